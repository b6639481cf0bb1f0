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
#define VSW_MAX_VHOSTUSER 16

/* A vhost-user socket for an outside frontend (vhostuserN.* in the host configuration). */
struct vsw_vhostuser {
	char name[VSW_NAME];
	char portgroup[VSW_NAME];
	char path[108];
	uint8_t mac[ETH_MAC_LEN]; /* all zero: made up */
	struct vnet_port *port;	  /* made by vsw_dp_open_sockets() */
};

struct vsw_portgroup {
	char name[VSW_NAME];
	unsigned sw; /* index of its switch */
	uint16_t vlan;
};

struct qp;
struct dp_port;
struct vnet_port;
struct loop;

/*
 * A port the dataplane drives itself: a process vNIC, a VM's virtio-net
 * (vnet.h) or emulated NIC. The hooks run on the thread.
 */
struct dp_port_ops {
	const char *kind; /* in listings: "vnic", "virtio", "emulated" */
	/* Hand up to @max frames the port sent to @sw: how many. */
	int (*drain)(struct dp_port *p, struct vsw *sw, int max, int64_t now);
	/* End of a batch: publish what enqueue() wrote. Optional. */
	void (*flush)(struct dp_port *p);
	/* Before the thread sleeps: ask to be woken; true if work came meanwhile. Optional. */
	bool (*arm)(struct dp_port *p);
	/* After a sleep; @fired: its descriptor was among those that woke the thread. Optional. */
	void (*woken)(struct dp_port *p, bool fired);
	/* The listing's own fields. Optional. */
	void (*json)(const struct dp_port *p, json_t *o);
	/* Out of the switch: release everything and free the port. */
	void (*destroy)(struct dp_port *p);
};

struct dp_port {
	struct vsw_port p; /* first: the switch's view (p.name: the caller's, or made up) */
	const struct dp_port_ops *dops;
	unsigned sw;
	char portgroup[VSW_NAME];
	uint8_t mac[ETH_MAC_LEN]; /* configured on the port (all zero: one is made up) */
	int wake_fd;		  /* in the thread's epoll set while the port is in; -1: none */
	bool dead;		  /* broken or gone: drained no more, removed by the control plane */
	bool fired;
};

struct vnic_port {
	struct dp_port dp; /* first */
	struct qp *qp;
	pid_t pid;
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
	struct vsw_vhostuser vhu[VSW_MAX_VHOSTUSER];
	unsigned nvhu;
	/* The thread's. */
	struct dp_port **port;
	size_t nport, cap;
	struct vsw_capture *captures;
	struct reng *roce; /* the RoCE v2 engine (rdma/engine.h), beside the VMkernel adapters */
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
 *   vhostuserN.path = "/run/vmfabric/a.sock"   vhostuserN.portgroup = "VM Network"
 *   vhostuserN.name = "vhu0"   vhostuserN.address = "02:00:00:00:00:01"
 * (N an index; mtu 68-9000; vlan 0-4095). Without any vswitchN group, the
 * switches of vsw_dp_init(), with the file's port groups, uplinks, adapters
 * and vhost-user ports on them. Errors name the key and line in @err.
 */
struct conf;
struct conf_error;
int vsw_dp_load(struct vsw_dp *d, struct conf *c, struct conf_error *err);
int vsw_dp_add_switch(struct vsw_dp *d, const char *name, uint32_t mtu, bool vmq);
int vsw_dp_add_portgroup(struct vsw_dp *d, const char *name, const char *sw, uint16_t vlan);
/* Opens the uplinks (their devices must exist: -ENODEV, logged) and starts the thread. */
int vsw_dp_start(struct vsw_dp *d);
/* After the start: the vhostuserN sockets, listening on @loop (errors logged). */
int vsw_dp_open_sockets(struct vsw_dp *d, struct loop *loop);
void vsw_dp_stop(struct vsw_dp *d);

/*
 * A port on port group @pg: its ops, mac (all zero: one is made up) and
 * name ("": "vnicN") filled in by the caller; wake_fd joins the thread's
 * epoll set. On success the dataplane owns @p (removed with
 * vsw_dp_remove_port(), freed by its destroy hook on the thread); -ENOENT
 * (no such port group), -EEXIST (the MAC is another port's), -ENOSPC.
 */
int vsw_dp_add_port(struct vsw_dp *d, struct dp_port *p, const char *pg);
/* Take it out; the thread calls its destroy hook. */
void vsw_dp_remove_port(struct vsw_dp *d, struct dp_port *p);
/* A process vNIC: @v->qp is the daemon's side of a pair made by the caller. */
int vsw_dp_add_vnic(struct vsw_dp *d, struct vnic_port *v, const char *pg);
/*
 * Run @fn(@arg) on the thread and return its result (directly when the
 * thread is not running): for ports that change their own state.
 */
int vsw_dp_call(struct vsw_dp *d, cmdq_fn *fn, void *arg);
/* Add or remove a descriptor of port @p in the thread's epoll set (on the thread). */
int vsw_dp_watch(struct vsw_dp *d, struct dp_port *p, int fd, uint32_t events, bool on);

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
