/* SPDX-License-Identifier: MIT */
/*
 * The switches' dataplane: one thread that owns every switch and port. It
 * drains the ports' transmit rings in batches, reading each frame in place
 * and handing it to the switch, which copies it once into the destination's
 * receive ring (VMQ on) or into the default queue (off). While any ring had
 * work in the last 50 µs it polls; then it arms every ring and sleeps, so
 * senders make no system call while it is busy. The control plane adds and
 * removes ports and asks for listings through commands (common/cmdq.h): it
 * never touches the switches' structures itself.
 *
 * Process vNICs: a queue pair with the daemon, records of one frame each
 * (side 0 the daemon's: it writes queue 0, the vNIC's receive ring, and
 * reads queue 1, its transmit ring).
 */
#ifndef VMFABRIC_SWITCH_DP_H
#define VMFABRIC_SWITCH_DP_H

#include <jansson.h>
#include <pthread.h>
#include <sys/types.h>

#include "common/cmdq.h"
#include "uplink.h"
#include "vmk.h"
#include "vswitch.h"

#define VSW_MAX_SWITCHES 8
#define VSW_MAX_PORTGROUPS 64
#define VSW_MAX_UPLINKS 8
#define VSW_MAX_VMKS 8

struct vsw_portgroup {
	char name[VSW_NAME];
	unsigned sw; /* index of its switch */
	uint16_t vlan;
};

struct qp;

struct vnic_port {
	struct vsw_port p; /* first: the switch's view */
	unsigned sw;
	char portgroup[VSW_NAME];
	struct qp *qp;
	uint8_t mac[ETH_MAC_LEN];
	pid_t pid;
	bool dead; /* its ring broke: drained no more, removed by the control plane */
};

/* A capture on a port (see CAPTURE_OPEN in common/wire.h). */
struct vsw_capture {
	struct vsw_capture *next;
	char port[VSW_NAME];
	struct vsw_port *p; /* NULL once the port went */
	struct qp *qp;	    /* the daemon's side: queue 0 carries the copies */
	uint32_t snaplen;
	uint64_t missed;
};

struct vsw_dp {
	pthread_t thread;
	bool started; /* vsw_dp_start() made cmds (and ep) */
	bool running; /* the thread runs */
	struct cmdq cmds;
	int ep;
	/* Configuration (set before start; changed only through commands after). */
	struct vsw sw[VSW_MAX_SWITCHES];
	unsigned nsw;
	struct vsw_portgroup pg[VSW_MAX_PORTGROUPS];
	unsigned npg;
	struct uplink_port *uplink[VSW_MAX_UPLINKS]; /* opened by vsw_dp_start() */
	unsigned nuplink;
	struct vmk_port *vmk[VSW_MAX_VMKS]; /* made by vsw_dp_start() */
	unsigned nvmk;
	/* The thread's. */
	struct vnic_port **vnic;
	size_t nvnic, cap;
	struct vsw_capture *captures;
	int64_t aged_ns;
	bool stop;
};

/* The switches of the embedded default: vSwitch0 (MTU 1500, VMQ on), "VM Network" VLAN 0. */
int vsw_dp_init(struct vsw_dp *d);
/*
 * The switches, port groups and uplinks of a host configuration:
 *   vswitchN.name = "vSwitch0"   vswitchN.mtu = "1500"   vswitchN.vmq = "TRUE"
 *   portgroupN.name = "VM Network"   portgroupN.vswitch = "vSwitch0"   portgroupN.vlan = "0"
 *   uplinkN.name = "vmnic1"   uplinkN.device = "eth1"   uplinkN.vswitch = "vSwitch0"
 *   vmkN.name = "vmk1"   vmkN.portgroup = "VM Network"   vmkN.ip = "192.168.50.1/24"
 * (N an index; mtu 68-9000; vlan 0-4095). Without any vswitchN group, the
 * default of vsw_dp_init(). Errors name the key and line in @err.
 */
struct conf;
struct conf_error;
int vsw_dp_load(struct vsw_dp *d, struct conf *c, struct conf_error *err);
int vsw_dp_add_switch(struct vsw_dp *d, const char *name, uint32_t mtu, bool vmq);
int vsw_dp_add_portgroup(struct vsw_dp *d, const char *name, const char *sw, uint16_t vlan);
/* Opens the uplinks (their devices must exist: -ENODEV, logged) and starts the thread. */
int vsw_dp_start(struct vsw_dp *d);
void vsw_dp_stop(struct vsw_dp *d);

/*
 * A vNIC on port group @pg with @mac (all zero: one is made up), its queue
 * pair the daemon's side of a pair made by the caller. On success the
 * dataplane owns @v; -ENOENT (no such port group), -EEXIST (the MAC is
 * another port's), -ENOSPC.
 */
int vsw_dp_add_vnic(struct vsw_dp *d, struct vnic_port *v, const char *pg);
/* Take it out; the dataplane closes its queue pair and frees it. */
void vsw_dp_remove_vnic(struct vsw_dp *d, struct vnic_port *v);

/*
 * Start copying port @c->port's frames into @c->qp (made by the caller;
 * the dataplane owns @c on success). -ENOENT: no such port; -EBUSY: it is
 * captured already.
 */
int vsw_dp_capture_start(struct vsw_dp *d, struct vsw_capture *c);
/* Stop; the dataplane closes the queue pair and frees @c. */
void vsw_dp_capture_stop(struct vsw_dp *d, struct vsw_capture *c);

/*
 * Management: network.vswitch.list|add|remove|set, network.portgroup.list|add|remove|set,
 * network.port.list. Changes take "key=value" lines in @arg (vswitch,
 * portgroup, vlan, mtu, vmq) and need @uid 0. -EOPNOTSUPP: not a network command.
 */
int vsw_dp_mgmt(struct vsw_dp *d, const char *cmd, const char *arg, uid_t uid, json_t **out);

#endif
