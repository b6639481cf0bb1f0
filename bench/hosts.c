/* SPDX-License-Identifier: MIT */
/*
 * Two namespace hosts joined by a veth pair, each with its vmfabricd; see
 * hosts.h. The namespaces are made and removed with iproute2 (ip netns),
 * the offloads turned off with ethtool; a run that exits early removes
 * what it made.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hosts.h"

static struct bench_hosts *live; /* removed at exit if the run leaves early */

__attribute__((format(printf, 1, 2))) static int
sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void
remove_namespaces(const struct bench_hosts *h)
{
	(void)sh("ip netns del %s 2>/dev/null; ip netns del %s 2>/dev/null", h->ns[0], h->ns[1]);
}

static void
down_at_exit(void)
{
	if (live && live->up)
		remove_namespaces(live); /* the daemons were killed by bench-common's handler */
}

/* Whether host @i's device says it can carry RoCE v2 (the XDP program bounces the carrier). */
static bool
usable(const struct bench_hosts *h, int i, const char *cli)
{
	char cmd[256], line[256];
	bool yes = false;
	FILE *p;

	snprintf(cmd, sizeof(cmd),
		 "%s --socket %s rdma device vmknic list --format=json 2>/dev/null", cli,
		 h->d[i].sock);
	if (!(p = popen(cmd, "r")))
		return false;
	while (fgets(line, sizeof(line), p))
		yes |= strstr(line, "\"roce_usable\": true") != NULL ||
		       strstr(line, "\"roce_usable\":true") != NULL;
	pclose(p);
	return yes;
}

int
bench_hosts_up(struct bench_hosts *h, const char *prefix, unsigned mtu, const char *vmfabricd,
	       const char *cli, char *why, size_t len)
{
	static bool registered;
	char conf[1024];

	memset(h, 0, sizeof(*h));
	h->mtu = mtu;
	if (geteuid() != 0) {
		snprintf(why, len, "needs root (network namespaces, a veth pair, TAP interfaces)");
		return -EPERM;
	}
	if (sh("command -v ip >/dev/null 2>&1")) {
		snprintf(why, len, "no ip command (iproute2)");
		return -ENOENT;
	}
	if (access("/dev/net/tun", R_OK | W_OK)) {
		snprintf(why, len, "no /dev/net/tun");
		return -ENOENT;
	}
	for (int i = 0; i < 2; i++) {
		snprintf(h->ns[i], sizeof(h->ns[i]), "%s%c", prefix, 'a' + i);
		snprintf(h->ip[i], sizeof(h->ip[i]), "10.77.12.%d", i + 1);
	}
	remove_namespaces(h); /* a run killed earlier */
	if (!registered)
		atexit(down_at_exit);
	registered = true;
	live = h;
	h->up = true;
	if (sh("ip netns add %s && ip netns add %s && "
	       "ip -n %s link add %s type veth peer name %s netns %s",
	       h->ns[0], h->ns[1], h->ns[0], h->ns[0], h->ns[1], h->ns[1])) {
		snprintf(why, len, "ip netns / ip link add veth failed");
		goto fail;
	}
	/*
	 * arp off: the veth ends have no address, but a kernel answers ARP for
	 * its addresses on any interface (arp_ignore 0): the peer would learn
	 * the veth's MAC for vmk1's IP, and its frames would reach this host's
	 * IP stack through the veth, around the switch and vmk1.
	 */
	if (sh("ip -n %s link set dev %s mtu %u arp off up && "
	       "ip -n %s link set dev %s mtu %u arp off up",
	       h->ns[0], h->ns[0], mtu, h->ns[1], h->ns[1], mtu)) {
		snprintf(why, len, "the veth refused MTU %u", mtu);
		goto fail;
	}
	h->offloads_off = !sh("command -v ethtool >/dev/null 2>&1") &&
			  !sh("ip netns exec %s ethtool -K %s tso off gso off gro off tx off "
			      ">/dev/null 2>&1 && "
			      "ip netns exec %s ethtool -K %s tso off gso off gro off tx off "
			      ">/dev/null 2>&1",
			      h->ns[0], h->ns[0], h->ns[1], h->ns[1]);
	for (int i = 0; i < 2; i++) {
		snprintf(conf, sizeof(conf),
			 "vswitch0.name = \"vSwitch0\"\nvswitch0.mtu = \"%u\"\n"
			 "portgroup0.name = \"VM Network\"\nportgroup0.vswitch = \"vSwitch0\"\n"
			 "uplink0.name = \"vmnic1\"\nuplink0.device = \"%s\"\n"
			 "vmk0.name = \"vmk1\"\nvmk0.portgroup = \"VM Network\"\n"
			 "vmk0.ip = \"%s/24\"\n"
			 "rdma0.name = \"vmrdma0\"\nrdma0.uplink = \"vmnic1\"\n"
			 "rdma0.vmknic = \"vmk1\"\n",
			 mtu, h->ns[i], h->ip[i]);
		bench_daemon_start_ns(&h->d[i], vmfabricd, conf, h->ns[i]);
		for (int t = 0; mtu != 1500; t++) { /* vmk1 comes up beside the socket */
			if (!sh("ip -n %s link set dev vmk1 mtu %u 2>/dev/null", h->ns[i], mtu))
				break;
			if (t == 100) {
				snprintf(why, len, "vmk1 refused MTU %u", mtu);
				goto fail;
			}
			usleep(50000);
		}
	}
	for (int i = 0; i < 2; i++) {
		int t = 0;

		/* Usable first; the connection manager's TCP listener follows within 1 s. */
		while ((!usable(h, i, cli) || sh("ip netns exec %s grep -q "
						 "':12B7 00000000:0000 0A' /proc/net/tcp",
						 h->ns[i])) &&
		       ++t < 100)
			usleep(50000);
		if (t == 100) {
			snprintf(why, len,
				 "%s's vmrdma0 did not become usable for RoCE (or its connection "
				 "manager did not listen on TCP port 4791) in 5 s",
				 h->ns[i]);
			goto fail;
		}
	}
	return 0;
fail:
	bench_hosts_down(h);
	return -EIO;
}

void
bench_hosts_down(struct bench_hosts *h)
{
	if (!h->up)
		return;
	for (int i = 0; i < 2; i++)
		if (h->d[i].pid > 0)
			bench_daemon_stop(&h->d[i]);
	remove_namespaces(h);
	h->up = false;
	if (live == h)
		live = NULL;
}

int
bench_hosts_enter(const struct bench_hosts *h, int i)
{
	char path[64];
	int fd, err = 0;

	snprintf(path, sizeof(path), "/run/netns/%s", h->ns[i]);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -errno;
	if (setns(fd, CLONE_NEWNET))
		err = -errno;
	close(fd);
	return err;
}
