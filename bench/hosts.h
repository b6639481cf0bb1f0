/* SPDX-License-Identifier: MIT */
/*
 * Two hosts on one machine, for benchmarks between hosts: network
 * namespaces PREFIXa and PREFIXb joined by a veth pair (each end named
 * after its namespace, its offloads off, as an uplink needs), each with
 * its own vmfabricd: vSwitch0 at the chosen MTU, uplink vmnic1 on the
 * veth end, VMkernel adapter vmk1 on "VM Network" with an IPv4 address,
 * vmrdma0 paired with vmnic1 and bound to vmk1. The veth, the switch and
 * vmk1 all get the MTU. Processes using the verbs may stay in the
 * caller's namespace (they reach a daemon by its socket); processes using
 * a host's IP stack enter its namespace (bench_hosts_enter()).
 */
#ifndef VMFABRIC_BENCH_HOSTS_H
#define VMFABRIC_BENCH_HOSTS_H

#include <stdbool.h>
#include <stddef.h>

#include "bench.h"

struct bench_hosts {
	char ns[2][16];	   /* the namespaces, and their veth ends */
	char ip[2][16];	   /* vmk1's IPv4 addresses */
	unsigned mtu;	   /* the veth's, vSwitch0's and vmk1's */
	bool offloads_off; /* ethtool turned tso, gso, gro and tx off on both ends */
	bool up;
	struct bench_daemon d[2];
};

/*
 * Set the two hosts up and wait until both devices can carry RoCE v2.
 * @vmfabricd and @cli are the programs' paths. 0, or -errno with the
 * reason in @why (not root, no iproute2, an MTU the veth refuses, ...):
 * nothing is left behind then.
 */
int bench_hosts_up(struct bench_hosts *h, const char *prefix, unsigned mtu, const char *vmfabricd,
		   const char *cli, char *why, size_t len);
/* Stop both daemons and delete the namespaces (the veth goes with them). */
void bench_hosts_down(struct bench_hosts *h);
/* Move the calling process into host @i's network namespace. 0 or -errno. */
int bench_hosts_enter(const struct bench_hosts *h, int i);

#endif
