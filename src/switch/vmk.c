/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "rdma/engine.h"
#include "vmk.h"

static int
vmk_enqueue(struct vsw_port *p, const struct iovec *iov, int iovcnt, size_t len)
{
	struct vmk_port *v = (struct vmk_port *)p;

	/* RoCE v2 for the adapter's address is the RDMA device's, not the host stack's. */
	if (v->roce && reng_input(v->roce, v, iov, iovcnt, len))
		return 0;
	/* A full TAP queue drops, as a NIC whose ring is full does. */
	return writev(v->fd, iov, iovcnt) == (ssize_t)len ? 0 : -ENOBUFS;
}

static const struct vsw_port_ops vmk_ops = { .enqueue = vmk_enqueue };

int
vmk_cidr_parse(const char *s, struct in_addr *a, unsigned *len)
{
	const char *slash = strchr(s, '/');
	char addr[INET_ADDRSTRLEN];
	size_t n = slash ? (size_t)(slash - s) : strlen(s);

	*len = 32;
	if (n >= sizeof(addr))
		return -EINVAL;
	memcpy(addr, s, n);
	addr[n] = 0;
	if (inet_pton(AF_INET, addr, a) != 1)
		return -EINVAL;
	if (!slash)
		return 0;
	/* "/", "/24x", "/-1", "/ 8": refused, not read as some prefix. */
	if (!slash[1] || strlen(slash + 1) > 2 || strspn(slash + 1, "0123456789") != strlen(slash + 1))
		return -EINVAL;
	*len = (unsigned)atoi(slash + 1);
	return *len <= 32 ? 0 : -EINVAL;
}

/* "a.b.c.d/len" on @ifr's interface through @s. */
static int
set_ipv4(int s, struct ifreq *ifr, const char *cidr)
{
	struct sockaddr_in *a = (struct sockaddr_in *)&ifr->ifr_addr;
	unsigned len;

	memset(&ifr->ifr_addr, 0, sizeof(ifr->ifr_addr));
	a->sin_family = AF_INET;
	if (vmk_cidr_parse(cidr, &a->sin_addr, &len))
		return -EINVAL;
	if (ioctl(s, SIOCSIFADDR, ifr) < 0)
		return -errno;
	a->sin_addr.s_addr = len ? htonl(~0u << (32 - len)) : 0;
	if (ioctl(s, SIOCSIFNETMASK, ifr) < 0)
		return -errno;
	return 0;
}

/*
 * Announce the adapter when it comes up (gratuitous ARP, unsolicited
 * neighbour advertisement): a daemon restarted after a crash makes the TAP
 * anew, with another MAC address, and the neighbours' caches would point
 * at the old one until they expire. Best effort.
 */
static void
announce_on_up(const char *ifname)
{
	static const char *const knobs[][2] = { { "ipv4", "arp_notify" }, { "ipv6", "ndisc_notify" } };
	char path[128];

	for (size_t i = 0; i < sizeof(knobs) / sizeof(knobs[0]); i++) {
		int fd;

		snprintf(path, sizeof(path), "/proc/sys/net/%s/conf/%s/%s", knobs[i][0], ifname,
			 knobs[i][1]);
		if ((fd = open(path, O_WRONLY | O_CLOEXEC)) < 0)
			continue;
		if (write(fd, "1", 1) < 0) {
			/* an older kernel, or no IPv6: the caches expire instead */
		}
		close(fd);
	}
}

int
vmk_open(struct vmk_port *v)
{
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI };
	int s = -1, err;

	v->fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
	if (v->fd < 0)
		return -errno;
	if (strlen(v->p.name) >= sizeof(ifr.ifr_name))
		goto fail_name;
	memcpy(ifr.ifr_name, v->p.name, strlen(v->p.name) + 1);
	if (ioctl(v->fd, TUNSETIFF, &ifr) < 0)
		goto fail_errno;
	announce_on_up(v->p.name);
	s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0 || ioctl(s, SIOCGIFHWADDR, &ifr) < 0)
		goto fail_errno;
	memcpy(v->mac, ifr.ifr_hwaddr.sa_data, sizeof(v->mac));
	if (v->ip[0] && (err = set_ipv4(s, &ifr, v->ip)))
		goto fail;
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		goto fail_errno;
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		goto fail_errno;
	close(s);
	v->p.kind = VSW_PORT_VMK;
	v->p.ops = &vmk_ops;
	v->p.up = true;
	return 0;
fail_name:
	errno = ENAMETOOLONG;
fail_errno:
	err = -errno;
fail:
	if (s >= 0)
		close(s);
	close(v->fd);
	v->fd = -1;
	return err;
}

void
vmk_close(struct vmk_port *v)
{
	if (v->fd >= 0)
		close(v->fd); /* the interface goes with its last descriptor */
	v->fd = -1;
}

int
vmk_drain(struct vmk_port *v, struct vsw *sw, int max, int64_t now)
{
	static uint8_t buf[VSW_FRAME_MAX + 64]; /* the dataplane thread's only */
	int n;

	for (n = 0; n < max; n++) {
		ssize_t r = read(v->fd, buf, sizeof(buf));
		struct iovec io = { buf, (size_t)r };

		if (r <= 0)
			break;
		vsw_input(sw, &v->p, &io, 1, (size_t)r, now);
	}
	return n;
}

int
vmk_set_ipv4(struct vmk_port *v, const char *cidr)
{
	struct ifreq ifr = { 0 };
	int s, err;

	if (strlen(cidr) >= sizeof(v->ip) || strlen(v->p.name) >= sizeof(ifr.ifr_name))
		return -EINVAL;
	s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	memcpy(ifr.ifr_name, v->p.name, strlen(v->p.name) + 1);
	err = set_ipv4(s, &ifr, cidr);
	close(s);
	if (!err)
		snprintf(v->ip, sizeof(v->ip), "%s", cidr);
	return err;
}
