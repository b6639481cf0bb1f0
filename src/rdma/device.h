/* SPDX-License-Identifier: MIT */
/*
 * The RDMA devices (ESXi's device model): vmrdma0, ... each paired with one
 * uplink of a switch (its "paired uplink", vmnic1) and optionally bound to a
 * VMkernel adapter of the same switch (vmk1), whose IP address and MAC are
 * the device's RoCE v2 source. Devices come from the host configuration
 * (rdmaN.name, rdmaN.uplink, rdmaN.vmknic, rdmaN.description); bindings
 * change at run time and are written back to the configuration file the
 * daemon was started with (only the rdmaN.vmknic line, atomically).
 *
 * Threads: the table is the control plane's (the main loop's). What it
 * shows of uplinks and VMkernel adapters is read on the switches' dataplane
 * thread through a command (switch/dp.h), so none of these functions may be
 * called from that thread.
 */
#ifndef VMFABRIC_RDMA_DEVICE_H
#define VMFABRIC_RDMA_DEVICE_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#define RDMA_DEV_MAX	  8 /* one per uplink at most (VSW_MAX_UPLINKS) */
#define RDMA_DEV_DRIVER	  "vmfabric"
#define RDMA_DEV_HDR_ROOM 80 /* bytes of headers a path MTU leaves room for (as soft-RoCE) */
#define RDMA_DEV_WHY_MAX  128

struct conf;
struct conf_error;
struct vsw_dp;

struct rdma_dev {
	char name[32];	      /* "vmrdma0": rdmaN.name, default vmrdmaN */
	char uplink[32];      /* the paired uplink ("vmnic1"): rdmaN.uplink, always set */
	char vmknic[32];      /* the VMkernel adapter it is bound to ("vmk1"), or "" */
	char description[96]; /* rdmaN.description, or a default */
	long group;	      /* N of its rdmaN.* keys in the configuration it came from */
};

struct rdma_devs {
	struct rdma_dev *dev; /* in configuration order */
	size_t n;
	struct vsw_dp *dp; /* the switches: uplinks and VMkernel adapters (not owned) */
	char *path;	   /* the configuration file bindings are written to; NULL: built-in */
};

/*
 * The devices of host configuration @c (groups rdmaN.*; their keys are
 * marked used). @dp must have been loaded from the same configuration
 * (vsw_dp_load()): a device's rdmaN.uplink must name one of its uplinks,
 * and a binding to one of its VMkernel adapters must be on the same switch
 * (a binding to an adapter the configuration does not have is kept, and
 * logged: one may be added at run time). @path: the file @c was read from,
 * where bind and unbind write; NULL for the built-in configuration (the
 * bindings then last until the daemon restarts).
 *
 * Returns 0, or -EINVAL / -EEXIST / -ENOSPC with @err naming the line and
 * key (the caller adds the file, as for every configuration error), or
 * -ENOMEM. On failure @d is left empty.
 */
int rdma_devs_load(struct rdma_devs *d, struct conf *c, struct vsw_dp *dp, const char *path,
		   struct conf_error *err);
void rdma_devs_free(struct rdma_devs *d);

/* The device named @name, or NULL. */
const struct rdma_dev *rdma_dev_find(const struct rdma_devs *d, const char *name);

/* Where a device's RoCE v2 frames come from, as rdma_dev_roce_source() finds it now. */
struct rdma_dev_source {
	char why[RDMA_DEV_WHY_MAX]; /* why the device cannot carry RoCE; "" when it can */
	bool uplink_up;		    /* the paired uplink's interface exists, is up, has carrier */
	char vswitch[32];	    /* the paired uplink's switch */
	char vmknic[32];	    /* the bound VMkernel adapter, "" if none */
	uint16_t vlan;		    /* its port group's VLAN (0 untagged; 4095 trunk) */
	bool has_ipv4, has_ipv6;    /* at least one of them when usable */
	struct in_addr ipv4;
	struct in6_addr ipv6; /* not link-local */
	unsigned ipv4_prefix, ipv6_prefix;
	uint8_t mac[6];	   /* the VMkernel adapter's MAC: the frames' source address */
	unsigned eth_mtu;  /* the smallest of the switch's, the uplink's and the adapter's MTU */
	unsigned path_mtu; /* rdma_dev_path_mtu(eth_mtu): 256..4096, or 0 */
};

/*
 * Whether @dev can carry RoCE v2 across hosts now: bound to a VMkernel
 * adapter that exists, is on the paired uplink's switch and has an IPv4 or
 * (not link-local) IPv6 address, with the uplink up and an MTU of 336 or
 * more. Fills @src either way (as much as is known) and points *@why (may
 * be NULL) at src->why.
 *
 * Returns 0 when usable; otherwise -ENOTCONN (not bound), -ENODEV (the
 * adapter does not exist), -EXDEV (on another switch), -EADDRNOTAVAIL (no
 * IP address), -ENETDOWN (uplink down or gone), -EMSGSIZE (MTU too small),
 * each with the reason in src->why, e.g. "vmk1 has no IP address".
 */
int rdma_dev_roce_source(const struct rdma_devs *d, const struct rdma_dev *dev,
			 struct rdma_dev_source *src, const char **why);

/*
 * The InfiniBand path MTU an Ethernet MTU allows, as Linux's soft-RoCE
 * chooses it: @eth_mtu minus RDMA_DEV_HDR_ROOM, rounded down to 256, 512,
 * 1024, 2048 or 4096 (1500 -> 1024, 9000 -> 4096); 0 below 336.
 */
unsigned rdma_dev_path_mtu(unsigned eth_mtu);

/*
 * Management: rdma.device.list, rdma.device.vmknic.list, and (@uid 0 only)
 * rdma.device.vmknic.bind ("device=vmrdma0\nnic=vmk1" in @arg) and
 * rdma.device.vmknic.unbind ("device=vmrdma0"). A refusal is a document
 * {"error": why, "errno": N}, not an error return. Returns 0 with *@out
 * set, -EOPNOTSUPP for a command that is not one of these, or -ENOMEM.
 * docs/MANAGEMENT.md has the fields.
 */
int rdma_dev_mgmt(struct rdma_devs *d, const char *cmd, const char *arg, uid_t uid, json_t **out);

#endif
