/* SPDX-License-Identifier: MIT */
/*
 * The RDMA device table (ESXi's device model, see device.h): loading the
 * rdmaN.* groups of the host configuration, what a device looks like now
 * (its paired uplink's state, speed and MTU, its bound VMkernel adapter's
 * addresses), whether it can carry RoCE v2 and why not, the rdma.device.*
 * management commands, and bindings written back to the configuration
 * file.
 *
 * Uplinks and VMkernel adapters belong to the switches' dataplane thread:
 * what is needed of them is copied on that thread (vsw_dp_call()); the
 * host's view of their interfaces (flags, MTU, speed, addresses) is asked
 * of the kernel here, on the control plane. A binding is written first and
 * changed in memory only once the file has been replaced, so that the
 * file and the daemon never disagree: the file is read again, the one
 * rdmaN.vmknic line replaced, added or removed (every other byte kept), the
 * result parsed again to check it, then written to a temporary file in the
 * same directory and renamed over the original.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <limits.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/conf.h"
#include "common/log.h"
#include "device.h"
#include "switch/dp.h"
#include "switch/vmk.h"

#define RDMA_DEV_DEFAULT_DESCRIPTION "vmfabric RoCE v2 adapter (software)"
#define RDMA_DEV_MAX_GROUPS	     64

/* ---------------------------------------------------------------------- */
/* What the dataplane thread owns, copied on it */

struct rdma_dev_snap {
	const char *uplink, *vmk; /* in: the names to look up (vmk may be "") */
	bool has_uplink, has_vmk;
	char device[IFNAMSIZ];	  /* the uplink's host interface */
	char uplink_sw[VSW_NAME]; /* its switch */
	unsigned sw_mtu;
	char vmk_sw[VSW_NAME], vmk_pg[VSW_NAME];
	char vmk_ip[24]; /* as configured: "a.b.c.d/len" or "" */
	uint16_t vmk_vlan;
	uint8_t vmk_mac[6];
};

static int
rdma_dev_snap_on_thread(void *ctx, void *arg)
{
	struct vsw_dp *dp = ctx;
	struct rdma_dev_snap *s = arg;

	for (unsigned i = 0; i < dp->nuplink && !s->has_uplink; i++) {
		const struct uplink_port *u = dp->uplink[i];

		if (strcmp(u->p.name, s->uplink))
			continue;
		s->has_uplink = true;
		snprintf(s->device, sizeof(s->device), "%s", u->device);
		snprintf(s->uplink_sw, sizeof(s->uplink_sw), "%s", dp->sw[u->sw].name);
		s->sw_mtu = dp->sw[u->sw].mtu;
	}
	for (unsigned i = 0; s->vmk[0] && i < dp->nvmk && !s->has_vmk; i++) {
		const struct vmk_port *v = dp->vmk[i];

		if (strcmp(v->p.name, s->vmk))
			continue;
		s->has_vmk = true;
		snprintf(s->vmk_sw, sizeof(s->vmk_sw), "%s", dp->sw[v->sw].name);
		snprintf(s->vmk_pg, sizeof(s->vmk_pg), "%s", v->portgroup);
		snprintf(s->vmk_ip, sizeof(s->vmk_ip), "%s", v->ip);
		s->vmk_vlan = v->p.vlan;
		memcpy(s->vmk_mac, v->mac, sizeof(s->vmk_mac));
	}
	return 0;
}

static void
rdma_dev_snap(struct vsw_dp *dp, const char *uplink, const char *vmk, struct rdma_dev_snap *s)
{
	memset(s, 0, sizeof(*s));
	s->uplink = uplink;
	s->vmk = vmk ? vmk : "";
	(void)vsw_dp_call(dp, rdma_dev_snap_on_thread, s); /* the function cannot fail */
}

/* ---------------------------------------------------------------------- */
/* The host's view of an interface */

struct rdma_dev_if {
	bool exists, up, running;
	unsigned mtu;
	long long speed_mbps; /* -1: unknown */
	bool has_ipv4, has_ipv6;
	struct in_addr ipv4;
	struct in6_addr ipv6;
	unsigned ipv4_prefix, ipv6_prefix;
};

static unsigned
rdma_dev_prefix(const unsigned char *mask, size_t len)
{
	unsigned n = 0;

	for (size_t i = 0; i < len; i++)
		n += (unsigned)__builtin_popcount(mask[i]);
	return n;
}

/* The first IPv4 and the first IPv6 address that is not link-local, of @ifname. */
static void
rdma_dev_if_addrs(const char *ifname, struct rdma_dev_if *st)
{
	struct ifaddrs *all, *a;

	if (getifaddrs(&all) < 0)
		return;
	for (a = all; a; a = a->ifa_next) {
		if (!a->ifa_addr || strcmp(a->ifa_name, ifname))
			continue;
		if (a->ifa_addr->sa_family == AF_INET && !st->has_ipv4) {
			const struct sockaddr_in *in = (const struct sockaddr_in *)a->ifa_addr;
			const struct sockaddr_in *m = (const struct sockaddr_in *)a->ifa_netmask;

			st->has_ipv4 = true;
			st->ipv4 = in->sin_addr;
			st->ipv4_prefix =
			    m ? rdma_dev_prefix((const unsigned char *)&m->sin_addr, 4) : 32;
		} else if (a->ifa_addr->sa_family == AF_INET6 && !st->has_ipv6) {
			const struct sockaddr_in6 *in = (const struct sockaddr_in6 *)a->ifa_addr;
			const struct sockaddr_in6 *m = (const struct sockaddr_in6 *)a->ifa_netmask;

			if (IN6_IS_ADDR_LINKLOCAL(&in->sin6_addr))
				continue;
			st->has_ipv6 = true;
			st->ipv6 = in->sin6_addr;
			st->ipv6_prefix =
			    m ? rdma_dev_prefix((const unsigned char *)&m->sin6_addr, 16) : 128;
		}
	}
	freeifaddrs(all);
}

static void
rdma_dev_if_query(const char *ifname, bool addrs, struct rdma_dev_if *st)
{
	struct ethtool_cmd ecmd = { .cmd = ETHTOOL_GSET };
	struct ifreq ifr = { 0 };
	int s;

	memset(st, 0, sizeof(*st));
	st->speed_mbps = -1;
	if (!ifname[0] || strlen(ifname) >= sizeof(ifr.ifr_name))
		return;
	s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return;
	memcpy(ifr.ifr_name, ifname, strlen(ifname) + 1);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
		st->exists = true;
		st->up = ifr.ifr_flags & IFF_UP;
		st->running = ifr.ifr_flags & IFF_RUNNING;
		if (ioctl(s, SIOCGIFMTU, &ifr) == 0 && ifr.ifr_mtu > 0)
			st->mtu = (unsigned)ifr.ifr_mtu;
		ifr.ifr_data = (char *)&ecmd;
		if (ioctl(s, SIOCETHTOOL, &ifr) == 0) {
			uint32_t sp = ethtool_cmd_speed(&ecmd);

			if (sp && sp != (uint32_t)SPEED_UNKNOWN)
				st->speed_mbps = sp;
		}
	}
	close(s);
	if (st->exists && addrs)
		rdma_dev_if_addrs(ifname, st);
}

/* "a.b.c.d/len" (a VMkernel adapter's configured address) into @st, when it has none. */
static void
rdma_dev_conf_ipv4(const char *cidr, struct rdma_dev_if *st)
{
	unsigned len;

	if (st->has_ipv4 || !cidr[0] || vmk_cidr_parse(cidr, &st->ipv4, &len))
		return;
	st->has_ipv4 = true;
	st->ipv4_prefix = len;
}

/* ---------------------------------------------------------------------- */
/* A device as it is now */

unsigned
rdma_dev_path_mtu(unsigned eth_mtu)
{
	static const unsigned ib[] = { 4096, 2048, 1024, 512, 256 };

	for (size_t i = 0; i < sizeof(ib) / sizeof(ib[0]); i++)
		if (eth_mtu >= ib[i] + RDMA_DEV_HDR_ROOM)
			return ib[i];
	return 0;
}

struct rdma_dev_view {
	struct rdma_dev_snap s;
	struct rdma_dev_if uplink, vmk;
	struct rdma_dev_source src;
	int err; /* rdma_dev_roce_source()'s */
};

__attribute__((format(printf, 3, 4))) static int
rdma_dev_why(struct rdma_dev_source *src, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(src->why, sizeof(src->why), fmt, ap);
	va_end(ap);
	return err;
}

/* Why @dev cannot carry RoCE (the first reason found), or 0. */
static int
rdma_dev_judge(const struct rdma_dev *dev, struct rdma_dev_view *v)
{
	struct rdma_dev_source *src = &v->src;

	if (!v->s.has_uplink)
		return rdma_dev_why(src, -ENODEV, "paired uplink %s does not exist", dev->uplink);
	if (!dev->vmknic[0])
		return rdma_dev_why(src, -ENOTCONN, "not bound to a VMkernel adapter");
	if (!v->s.has_vmk)
		return rdma_dev_why(src, -ENODEV, "%s does not exist", dev->vmknic);
	if (strcmp(v->s.vmk_sw, v->s.uplink_sw))
		return rdma_dev_why(src, -EXDEV, "paired uplink %s is not on %s", dev->uplink,
				    v->s.vmk_sw);
	if (!src->has_ipv4 && !src->has_ipv6)
		return rdma_dev_why(src, -EADDRNOTAVAIL, "%s has no IP address", dev->vmknic);
	if (!v->uplink.exists)
		return rdma_dev_why(src, -ENETDOWN, "uplink down (%s: interface %s is gone)",
				    dev->uplink, v->s.device);
	if (!src->uplink_up)
		return rdma_dev_why(src, -ENETDOWN, "uplink down (%s)", dev->uplink);
	if (!src->path_mtu)
		return rdma_dev_why(src, -EMSGSIZE, "MTU %u is too small for RoCE (%u at least)",
				    src->eth_mtu, 256 + RDMA_DEV_HDR_ROOM);
	return 0;
}

static void
rdma_dev_view(const struct rdma_devs *d, const struct rdma_dev *dev, struct rdma_dev_view *v)
{
	struct rdma_dev_source *src = &v->src;
	unsigned mtu;

	memset(v, 0, sizeof(*v));
	rdma_dev_snap(d->dp, dev->uplink, dev->vmknic, &v->s);
	rdma_dev_if_query(v->s.device, false, &v->uplink);
	src->uplink_up = v->uplink.exists && v->uplink.up && v->uplink.running;
	snprintf(src->vswitch, sizeof(src->vswitch), "%s", v->s.uplink_sw);
	mtu = v->s.sw_mtu;
	if (v->uplink.mtu && v->uplink.mtu < mtu)
		mtu = v->uplink.mtu;
	if (v->s.has_vmk) {
		rdma_dev_if_query(dev->vmknic, true, &v->vmk);
		rdma_dev_conf_ipv4(v->s.vmk_ip, &v->vmk); /* e.g. the TAP moved elsewhere */
		snprintf(src->vmknic, sizeof(src->vmknic), "%s", dev->vmknic);
		src->vlan = v->s.vmk_vlan;
		memcpy(src->mac, v->s.vmk_mac, sizeof(src->mac));
		src->has_ipv4 = v->vmk.has_ipv4;
		src->has_ipv6 = v->vmk.has_ipv6;
		src->ipv4 = v->vmk.ipv4;
		src->ipv6 = v->vmk.ipv6;
		src->ipv4_prefix = v->vmk.ipv4_prefix;
		src->ipv6_prefix = v->vmk.ipv6_prefix;
		if (v->vmk.mtu && v->vmk.mtu < mtu)
			mtu = v->vmk.mtu;
	}
	src->eth_mtu = mtu;
	src->path_mtu = rdma_dev_path_mtu(mtu);
	v->err = rdma_dev_judge(dev, v);
}

int
rdma_dev_roce_source(const struct rdma_devs *d, const struct rdma_dev *dev,
		     struct rdma_dev_source *src, const char **why)
{
	struct rdma_dev_view v;

	rdma_dev_view(d, dev, &v);
	*src = v.src;
	if (why)
		*why = src->why;
	return v.err;
}

const struct rdma_dev *
rdma_dev_find(const struct rdma_devs *d, const char *name)
{
	for (size_t i = 0; i < d->n; i++)
		if (!strcmp(d->dev[i].name, name))
			return &d->dev[i];
	return NULL;
}

/* ---------------------------------------------------------------------- */
/* The host configuration */

/* The entry of @key exactly (any case), or conf_count(). */
static size_t
rdma_dev_key_index(const struct conf *c, const char *key)
{
	for (size_t i = 0; i < conf_count(c); i++)
		if (!strcasecmp(conf_key(c, i), key))
			return i;
	return conf_count(c);
}

/* Fail with @msg at key rdma@g.@sub, or at the group's first key when it is absent. */
static int
rdma_dev_fail(struct conf_error *err, const struct conf *c, long g, const char *sub, size_t first,
	      int e, const char *msg)
{
	char key[64];
	size_t i;

	snprintf(key, sizeof(key), "rdma%ld.%s", g, sub);
	i = rdma_dev_key_index(c, key);
	conf_fail_at(err, c, i < conf_count(c) ? i : first, msg);
	return e;
}

static bool
rdma_dev_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (!n || n >= sizeof(((struct rdma_dev *)0)->name))
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || *s == '.' || *s == '-'))
			return false;
	return true;
}

/* The name of group @g of @c: rdmaN.name, or vmrdmaN. */
static void
rdma_dev_group_name(const struct conf *c, long g, char *name, size_t size)
{
	char key[64];
	const char *v;

	snprintf(key, sizeof(key), "rdma%ld.name", g);
	v = conf_get(c, key);
	if (v)
		snprintf(name, size, "%s", v);
	else
		snprintf(name, size, "vmrdma%ld", g);
}

/* rdmaN.vmknic at load: a VMkernel adapter of the configuration must be on the right switch. */
static int
rdma_dev_load_vmknic(struct rdma_devs *d, struct rdma_dev *dev, const struct conf *c, size_t first,
		     struct conf_error *err)
{
	struct rdma_dev_snap s;
	char msg[200];

	if (!dev->vmknic[0])
		return 0;
	rdma_dev_snap(d->dp, dev->uplink, dev->vmknic, &s);
	if (!s.has_vmk) {
		log_warn("configuration: rdma%ld.vmknic: no VMkernel adapter \"%s\" (yet): %s is "
			 "not usable for RoCE until one is added",
			 dev->group, dev->vmknic, dev->name);
		return 0;
	}
	if (!strcmp(s.vmk_sw, s.uplink_sw))
		return 0;
	snprintf(msg, sizeof(msg), "%s is on %s, but the paired uplink %s is on %s", dev->vmknic,
		 s.vmk_sw, dev->uplink, s.uplink_sw);
	return rdma_dev_fail(err, c, dev->group, "vmknic", first, -EINVAL, msg);
}

static int
rdma_dev_load_group(struct rdma_devs *d, struct conf *c, long g, size_t first,
		    struct conf_error *err)
{
	struct rdma_dev *dev = &d->dev[d->n];
	const char *uplink, *vmknic, *desc;
	struct rdma_dev_snap s;
	char key[64], msg[160];

#define RKEY(k) (snprintf(key, sizeof(key), "rdma%ld." k, g), conf_mark_used(c, key), key)
	(void)RKEY("name");
	uplink = conf_get(c, RKEY("uplink"));
	vmknic = conf_get(c, RKEY("vmknic"));
	desc = conf_get(c, RKEY("description"));
#undef RKEY
	if (d->n == RDMA_DEV_MAX)
		return rdma_dev_fail(err, c, g, "name", first, -ENOSPC,
				     "too many RDMA devices (8 at most)");
	memset(dev, 0, sizeof(*dev));
	dev->group = g;
	rdma_dev_group_name(c, g, dev->name, sizeof(dev->name));
	if (!rdma_dev_name_ok(dev->name))
		return rdma_dev_fail(err, c, g, "name", first, -EINVAL,
				     "an RDMA device's name is 1 to 31 letters, digits, '_', '.' "
				     "or '-'");
	if (rdma_dev_find(d, dev->name))
		return rdma_dev_fail(err, c, g, "name", first, -EEXIST,
				     "an RDMA device of that name exists already");
	if (!uplink || !*uplink)
		return rdma_dev_fail(err, c, g, "uplink", first, -EINVAL,
				     "an RDMA device needs its paired uplink (rdmaN.uplink: the "
				     "name of an uplinkN)");
	snprintf(dev->uplink, sizeof(dev->uplink), "%s", uplink);
	rdma_dev_snap(d->dp, uplink, NULL, &s);
	if (strlen(uplink) >= sizeof(dev->uplink) || !s.has_uplink)
		return rdma_dev_fail(err, c, g, "uplink", first, -EINVAL,
				     "no uplink of that name: the paired uplink is an uplink of a "
				     "switch (uplinkN.name)");
	for (size_t i = 0; i < d->n; i++)
		if (!strcmp(d->dev[i].uplink, dev->uplink)) {
			snprintf(msg, sizeof(msg), "uplink %s is paired with %s already",
				 dev->uplink, d->dev[i].name);
			return rdma_dev_fail(err, c, g, "uplink", first, -EEXIST, msg);
		}
	if (vmknic && (strlen(vmknic) >= IFNAMSIZ || !conf_text(vmknic)))
		return rdma_dev_fail(err, c, g, "vmknic", first, -EINVAL,
				     "rdmaN.vmknic is a VMkernel adapter's name (15 printable ASCII "
				     "characters at most), or \"\"");
	snprintf(dev->vmknic, sizeof(dev->vmknic), "%s", vmknic ? vmknic : "");
	if (desc && (strlen(desc) >= sizeof(dev->description) || !conf_text(desc)))
		return rdma_dev_fail(err, c, g, "description", first, -EINVAL,
				     "rdmaN.description is 95 printable ASCII characters at most");
	snprintf(dev->description, sizeof(dev->description), "%s",
		 desc ? desc : RDMA_DEV_DEFAULT_DESCRIPTION);
	for (size_t i = 0; dev->vmknic[0] && i < d->n; i++)
		if (!strcmp(d->dev[i].vmknic, dev->vmknic)) {
			snprintf(msg, sizeof(msg), "%s is bound to %s already", dev->vmknic,
				 d->dev[i].name);
			return rdma_dev_fail(err, c, g, "vmknic", first, -EEXIST, msg);
		}
	if (rdma_dev_load_vmknic(d, dev, c, first, err))
		return -EINVAL;
	d->n++;
	return 0;
}

int
rdma_devs_load(struct rdma_devs *d, struct conf *c, struct vsw_dp *dp, const char *path,
	       struct conf_error *err)
{
	long seen[RDMA_DEV_MAX_GROUPS];
	size_t nseen = 0;
	char real[PATH_MAX];
	int e = 0;

	memset(d, 0, sizeof(*d));
	d->dp = dp;
	d->dev = calloc(RDMA_DEV_MAX, sizeof(*d->dev));
	if (!d->dev)
		return -ENOMEM;
	/* The file itself, even if it is reached through a link or from another directory. */
	if (path && !(d->path = strdup(realpath(path, real) ? real : path))) {
		rdma_devs_free(d);
		return -ENOMEM;
	}
	for (size_t i = 0; i < conf_count(c) && !e; i++) {
		long g = conf_group(conf_key(c, i), "rdma");
		bool dup = false;

		if (g < 0)
			continue;
		for (size_t k = 0; k < nseen; k++)
			dup |= seen[k] == g;
		if (dup)
			continue;
		if (nseen == RDMA_DEV_MAX_GROUPS) {
			conf_fail_at(err, c, i, "too many rdmaN groups");
			e = -E2BIG;
			break;
		}
		seen[nseen++] = g;
		e = rdma_dev_load_group(d, c, g, i, err);
	}
	if (e) {
		rdma_devs_free(d);
		return e;
	}
	for (size_t i = 0; i < d->n; i++)
		log_info("RDMA device %s: paired uplink %s%s%s", d->dev[i].name, d->dev[i].uplink,
			 d->dev[i].vmknic[0] ? ", bound to " : ", not bound", d->dev[i].vmknic);
	return 0;
}

void
rdma_devs_free(struct rdma_devs *d)
{
	free(d->dev);
	free(d->path);
	memset(d, 0, sizeof(*d));
}

/* ---------------------------------------------------------------------- */
/* Bindings written back to the configuration file */

/* @v as a quoted value, with VMware's |XX escapes for '"', '|' and non-printable bytes. */
static void
rdma_dev_quote(char *dst, size_t size, const char *v)
{
	size_t o = 0;

	dst[o++] = '"';
	for (const unsigned char *s = (const unsigned char *)v; *s && o + 5 < size; s++) {
		if (*s >= ' ' && *s < 0x7f && *s != '"' && *s != '|')
			dst[o++] = (char)*s;
		else
			o += (size_t)snprintf(dst + o, size - o, "|%02X", *s);
	}
	dst[o++] = '"';
	dst[o] = 0;
}

/* The whole regular file at @path (at most CONF_MAX_FILE bytes), and its mode and owner. */
static int
rdma_dev_read_file(const char *path, char **text, size_t *len, struct stat *st)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), e = 0;
	size_t got = 0;
	char *buf;

	if (fd < 0)
		return -errno;
	if (fstat(fd, st) < 0)
		e = -errno;
	else if (!S_ISREG(st->st_mode))
		e = -EINVAL;
	else if (st->st_size > CONF_MAX_FILE)
		e = -EFBIG;
	if (e) {
		close(fd);
		return e;
	}
	buf = malloc((size_t)st->st_size + 1);
	while (buf && got < (size_t)st->st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st->st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	if (!buf)
		return -ENOMEM;
	buf[got] = 0;
	*text = buf;
	*len = got;
	return 0;
}

/* Write @len bytes of @text over @path: a temporary file beside it, renamed. */
static int
rdma_dev_replace_file(const char *path, const char *text, size_t len, const struct stat *st)
{
	char tmp[PATH_MAX + 8], dir[PATH_MAX], *slash;
	size_t off = 0;
	int fd, dfd, e = 0;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path) >= sizeof(tmp))
		return -ENAMETOOLONG;
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fchmod(fd, st->st_mode & 07777) < 0)
		e = -errno;
	if (fchown(fd, st->st_uid, st->st_gid) < 0 && errno != EPERM)
		e = e ?: -errno;
	while (!e && off < len) {
		ssize_t n = write(fd, text + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			e = -errno;
		else
			off += (size_t)n;
	}
	if (!e && fsync(fd) < 0)
		e = -errno;
	if (close(fd) < 0 && !e)
		e = -errno;
	if (!e && rename(tmp, path) < 0)
		e = -errno;
	if (e) {
		unlink(tmp);
		return e;
	}
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash)
		*(slash == dir ? slash + 1 : slash) = 0;
	dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd); /* the rename itself, on the way to the disk */
		close(dfd);
	}
	return 0;
}

/* A text being rebuilt. */
struct rdma_dev_buf {
	char *p;
	size_t len, cap;
};

static int
rdma_dev_put(struct rdma_dev_buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = (b->len + n + 1) * 2;
		char *p = realloc(b->p, cap);

		if (!p)
			return -ENOMEM;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
	return 0;
}

/*
 * Line @line (without its end) with its value replaced by @quoted: the
 * indentation, the key as written, the spaces around '=' and what follows
 * the value (a comment) are kept.
 */
static int
rdma_dev_put_replaced(struct rdma_dev_buf *b, const char *line, size_t n, const char *quoted)
{
	size_t i = 0, vs, ve;

	while (i < n && line[i] != '=')
		i++;
	if (i == n)
		return -EINVAL;
	i++;
	while (i < n && (line[i] == ' ' || line[i] == '\t'))
		i++;
	vs = ve = i;
	if (ve < n && line[ve] == '"') {
		for (ve++; ve < n && line[ve] != '"'; ve++)
			;
		ve += ve < n;
	} else {
		while (ve < n && line[ve] != ' ' && line[ve] != '\t')
			ve++;
	}
	if (rdma_dev_put(b, line, vs) || rdma_dev_put(b, quoted, strlen(quoted)) ||
	    rdma_dev_put(b, line + ve, n - ve))
		return -ENOMEM;
	return 0;
}

/* Where group @g of @c says what: the entry of rdma@g.vmknic, the last line of the group. */
struct rdma_dev_edit {
	long g;
	unsigned vmknic_line; /* 0: none */
	unsigned last_line;
	char prefix[64]; /* "rdma0" as the group's last key writes it */
	char quoted[96]; /* the new value, or "" to remove the line */
};

static int
rdma_dev_rewrite(const char *text, size_t len, const struct rdma_dev_edit *ed,
		 struct rdma_dev_buf *out)
{
	unsigned line = 0;
	size_t s = 0;
	int e = 0;

	while (s < len && !e) {
		const char *nl = memchr(text + s, '\n', len - s);
		size_t end = nl ? (size_t)(nl - text) : len, body = end;
		bool crlf = body > s && text[body - 1] == '\r';

		body -= crlf;
		line++;
		if (line == ed->vmknic_line) {
			if (ed->quoted[0])
				e = rdma_dev_put_replaced(out, text + s, body - s, ed->quoted)
					?: rdma_dev_put(out, text + body,
							(nl ? end + 1 : end) - body);
			/* unbind: the line goes */
		} else {
			e = rdma_dev_put(out, text + s, (nl ? end + 1 : end) - s);
		}
		if (!e && line == ed->last_line && !ed->vmknic_line && ed->quoted[0]) {
			const char *eol = crlf ? "\r\n" : "\n";
			char add[192];
			int n;

			if (!nl)
				e = rdma_dev_put(out, eol, strlen(eol));
			n = snprintf(add, sizeof(add), "%s.vmknic = %s%s", ed->prefix, ed->quoted,
				     eol);
			e = e ?: rdma_dev_put(out, add, (size_t)n);
		}
		s = nl ? end + 1 : len;
	}
	return e ?: (out->p ? 0 : rdma_dev_put(out, "", 0));
}

/* Find the group of device @name in @c and what rdma_dev_rewrite() needs. */
static int
rdma_dev_find_group(const struct conf *c, const char *name, struct rdma_dev_edit *ed)
{
	char key[64], gname[64];

	ed->g = -1;
	for (size_t i = 0; i < conf_count(c) && ed->g < 0; i++) {
		long g = conf_group(conf_key(c, i), "rdma");

		if (g < 0)
			continue;
		rdma_dev_group_name(c, g, gname, sizeof(gname));
		if (!strcmp(gname, name))
			ed->g = g;
	}
	if (ed->g < 0)
		return -ENOENT;
	snprintf(key, sizeof(key), "rdma%ld.vmknic", ed->g);
	for (size_t i = 0; i < conf_count(c); i++) {
		const char *k = conf_key(c, i);
		const char *dot = strchr(k, '.');

		if (conf_group(k, "rdma") != ed->g)
			continue;
		if (!strcasecmp(k, key))
			ed->vmknic_line = conf_line(c, i);
		if (conf_line(c, i) >= ed->last_line && dot) {
			ed->last_line = conf_line(c, i);
			snprintf(ed->prefix, sizeof(ed->prefix), "%.*s", (int)(dot - k), k);
		}
	}
	return 0;
}

/*
 * Make the file say that @dev is bound to @vmknic ("" or NULL: unbound).
 * 0, or -errno with the reason in @why.
 */
static int
rdma_dev_persist(const struct rdma_devs *d, const struct rdma_dev *dev, const char *vmknic,
		 char *why, size_t size)
{
	struct rdma_dev_edit ed = { 0 };
	struct rdma_dev_buf out = { 0 };
	struct conf_error ce = { 0 };
	struct conf *c = NULL, *check = NULL;
	struct stat st;
	char *text = NULL, cbuf[700], key[64];
	const char *now;
	size_t len = 0, want;
	bool bind;
	int e;

	if ((e = rdma_dev_read_file(d->path, &text, &len, &st))) {
		snprintf(why, size, "cannot read %s: %s", d->path, strerror(-e));
		return e;
	}
	if ((e = conf_parse(d->path, text, len, &c, &ce))) {
		snprintf(why, size, "%s no longer parses (%s)", d->path,
			 conf_error_str(&ce, cbuf, sizeof(cbuf)));
		goto out;
	}
	if ((e = rdma_dev_find_group(c, dev->name, &ed))) {
		snprintf(why, size, "%s no longer has an rdmaN group for %s", d->path, dev->name);
		goto out;
	}
	if (vmknic && *vmknic)
		rdma_dev_quote(ed.quoted, sizeof(ed.quoted), vmknic);
	if ((e = rdma_dev_rewrite(text, len, &ed, &out))) {
		snprintf(why, size, "cannot rewrite %s: %s", d->path, strerror(-e));
		goto out;
	}
	/* What was written must read back as the binding, and nothing else moved. */
	bind = vmknic && *vmknic;
	want = conf_count(c) + (bind && !ed.vmknic_line) - (!bind && ed.vmknic_line);
	snprintf(key, sizeof(key), "rdma%ld.vmknic", ed.g);
	e = conf_parse(d->path, out.p, out.len, &check, &ce);
	now = e ? NULL : conf_get(check, key);
	if (e || (bind ? !now || strcmp(now, vmknic) : now != NULL) || conf_count(check) != want) {
		snprintf(why, size,
			 "cannot rewrite %s: its %s line is not one this daemon can edit", d->path,
			 key);
		e = -EINVAL;
		goto out;
	}
	if ((e = rdma_dev_replace_file(d->path, out.p, out.len, &st)))
		snprintf(why, size, "cannot write %s: %s", d->path, strerror(-e));
out:
	conf_free(check);
	conf_free(c);
	free(out.p);
	free(text);
	return e;
}

/* ---------------------------------------------------------------------- */
/* Management */

static json_t *
rdma_dev_str_or_null(const char *s)
{
	return s && *s ? json_string(s) : json_null();
}

static json_t *
rdma_dev_why_json(const struct rdma_dev_view *v)
{
	return v->err ? json_string(v->src.why) : json_null();
}

static json_t *
rdma_dev_list_row(const struct rdma_dev *dev, const struct rdma_dev_view *v)
{
	json_t *o = json_pack("{s:s, s:s, s:s}", "name", dev->name, "driver", RDMA_DEV_DRIVER,
			      "state", v->src.uplink_up ? "active" : "down");

	if (!o)
		return NULL;
	json_object_set_new(o, "speed_mbps",
			    v->uplink.speed_mbps >= 0 ? json_integer(v->uplink.speed_mbps)
						      : json_null());
	json_object_set_new(o, "paired_uplink", json_string(dev->uplink));
	json_object_set_new(o, "uplink_device", rdma_dev_str_or_null(v->s.device));
	json_object_set_new(o, "vswitch", rdma_dev_str_or_null(v->s.uplink_sw));
	json_object_set_new(o, "description", json_string(dev->description));
	json_object_set_new(o, "mtu",
			    v->src.path_mtu ? json_integer(v->src.path_mtu) : json_null());
	json_object_set_new(o, "eth_mtu", json_integer(v->src.eth_mtu));
	json_object_set_new(o, "vmknic", rdma_dev_str_or_null(dev->vmknic));
	json_object_set_new(o, "roce_usable", json_boolean(!v->err));
	json_object_set_new(o, "roce_why", rdma_dev_why_json(v));
	return o;
}

static json_t *
rdma_dev_vmknic_row(const struct rdma_dev *dev, const struct rdma_dev_view *v)
{
	const struct rdma_dev_source *src = &v->src;
	char a[INET6_ADDRSTRLEN + 8], m[18];
	json_t *o = json_pack("{s:s, s:s, s:s}", "device", dev->name, "uplink", dev->uplink,
			      "vswitch", v->s.uplink_sw);

	if (!o)
		return NULL;
	json_object_set_new(o, "vmknic", rdma_dev_str_or_null(dev->vmknic));
	json_object_set_new(o, "vmknic_vswitch", rdma_dev_str_or_null(v->s.vmk_sw));
	json_object_set_new(o, "portgroup", rdma_dev_str_or_null(v->s.vmk_pg));
	if (src->has_ipv4 && inet_ntop(AF_INET, &src->ipv4, a, sizeof(a)))
		snprintf(a + strlen(a), sizeof(a) - strlen(a), "/%u", src->ipv4_prefix);
	else
		a[0] = 0;
	json_object_set_new(o, "ipv4", rdma_dev_str_or_null(a));
	if (src->has_ipv6 && inet_ntop(AF_INET6, &src->ipv6, a, sizeof(a)))
		snprintf(a + strlen(a), sizeof(a) - strlen(a), "/%u", src->ipv6_prefix);
	else
		a[0] = 0;
	json_object_set_new(o, "ipv6", rdma_dev_str_or_null(a));
	snprintf(m, sizeof(m), "%02x:%02x:%02x:%02x:%02x:%02x", src->mac[0], src->mac[1],
		 src->mac[2], src->mac[3], src->mac[4], src->mac[5]);
	json_object_set_new(o, "mac", rdma_dev_str_or_null(v->s.has_vmk ? m : NULL));
	json_object_set_new(o, "roce_usable", json_boolean(!v->err));
	json_object_set_new(o, "roce_why", rdma_dev_why_json(v));
	return o;
}

static int
rdma_dev_list(const struct rdma_devs *d, bool vmknics, json_t **out)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr && i < d->n; i++) {
		struct rdma_dev_view v;

		rdma_dev_view(d, &d->dev[i], &v);
		json_array_append_new(arr, vmknics ? rdma_dev_vmknic_row(&d->dev[i], &v)
						   : rdma_dev_list_row(&d->dev[i], &v));
	}
	*out = json_pack("{s:o, s:o}", vmknics ? "vmknics" : "devices", arr, "config_file",
			 rdma_dev_str_or_null(d->path));
	return *out ? 0 : -ENOMEM;
}

/* A bind or unbind request: "key=value" lines. */
struct rdma_dev_change {
	const char *cmd;
	const char *device, *nic; /* NULL: not given */
	char buf[192];
	char why[PATH_MAX + 320];
};

static int
rdma_dev_change_parse(struct rdma_dev_change *c, const char *arg)
{
	static const char *const keys[] = { "device", "nic" };
	const char *v[2] = { 0 };
	int err;

	snprintf(c->buf, sizeof(c->buf), "%s", arg ? arg : "");
	if ((err = conf_kv_lines(c->buf, keys, v, 2)))
		return err;
	c->device = v[0];
	c->nic = v[1];
	return 0;
}

__attribute__((format(printf, 3, 4))) static int
rdma_dev_refuse(struct rdma_dev_change *c, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->why, sizeof(c->why), fmt, ap);
	va_end(ap);
	return err;
}

/* Checks of a binding of @dev to @nic that do not depend on the file. */
static int
rdma_dev_bind_check(const struct rdma_devs *d, const struct rdma_dev *dev, const char *nic,
		    struct rdma_dev_change *c)
{
	struct rdma_dev_snap s;

	if (!*nic || strlen(nic) >= IFNAMSIZ)
		return rdma_dev_refuse(c, -EINVAL,
				       "--nic is a VMkernel adapter's name (network "
				       "ip interface list shows them)");
	rdma_dev_snap(d->dp, dev->uplink, nic, &s);
	if (!s.has_vmk)
		return rdma_dev_refuse(c, -ENOENT,
				       "no VMkernel adapter \"%s\" (network ip interface list "
				       "shows them)",
				       nic);
	if (!s.has_uplink)
		return rdma_dev_refuse(c, -ENODEV, "%s's paired uplink %s does not exist",
				       dev->name, dev->uplink);
	if (strcmp(s.vmk_sw, s.uplink_sw))
		return rdma_dev_refuse(c, -EXDEV,
				       "%s is on %s, but %s's paired uplink %s is on %s: bind a "
				       "VMkernel adapter of %s",
				       nic, s.vmk_sw, dev->name, dev->uplink, s.uplink_sw,
				       s.uplink_sw);
	for (size_t i = 0; i < d->n; i++)
		if (&d->dev[i] != dev && !strcmp(d->dev[i].vmknic, nic))
			return rdma_dev_refuse(c, -EBUSY, "%s is bound to %s already", nic,
					       d->dev[i].name);
	return 0;
}

/* Bind or unbind as @c asks; the binding it had goes into @previous (32 bytes). */
static int
rdma_dev_change(struct rdma_devs *d, struct rdma_dev_change *c, char *previous)
{
	bool bind = !strcmp(c->cmd, "rdma.device.vmknic.bind");
	struct rdma_dev *dev = NULL;
	char why[PATH_MAX + 256];
	int e;

	if (!c->device || !*c->device)
		return rdma_dev_refuse(c, -EINVAL,
				       "--device is needed (rdma device list shows "
				       "the RDMA devices)");
	for (size_t i = 0; i < d->n && !dev; i++)
		if (!strcmp(d->dev[i].name, c->device))
			dev = &d->dev[i];
	if (!dev)
		return rdma_dev_refuse(
		    c, -ENODEV, "no RDMA device \"%s\" (rdma device list shows them)", c->device);
	snprintf(previous, sizeof(dev->vmknic), "%s", dev->vmknic);
	if (bind && !c->nic)
		return rdma_dev_refuse(c, -EINVAL,
				       "--nic is needed (a VMkernel adapter of the "
				       "paired uplink's switch)");
	if (bind && (e = rdma_dev_bind_check(d, dev, c->nic, c)))
		return e;
	if (!bind && !dev->vmknic[0])
		return rdma_dev_refuse(c, -ENOTCONN, "%s is not bound to a VMkernel adapter",
				       dev->name);
	if (bind && !strcmp(dev->vmknic, c->nic))
		return 0; /* as it is */
	if (d->path && (e = rdma_dev_persist(d, dev, bind ? c->nic : NULL, why, sizeof(why))))
		return rdma_dev_refuse(c, e, "%s (the binding is unchanged)", why);
	snprintf(dev->vmknic, sizeof(dev->vmknic), "%s", bind ? c->nic : "");
	log_info("RDMA device %s %s %s (%s%s)", dev->name, bind ? "bound to" : "unbound from",
		 bind ? dev->vmknic : previous,
		 d->path ? "kept in " : "in memory only: built-in configuration",
		 d->path ? d->path : "");
	return 0;
}

static int
rdma_dev_mgmt_change(struct rdma_devs *d, const char *cmd, const char *arg, uid_t uid, json_t **out)
{
	struct rdma_dev_change c = { .cmd = cmd };
	char previous[32] = "";
	const struct rdma_dev *dev;
	struct rdma_dev_view v;
	int e;

	if (uid != 0)
		e = rdma_dev_refuse(&c, -EPERM, "binding and unbinding RDMA devices needs root");
	else if (rdma_dev_change_parse(&c, arg))
		e = rdma_dev_refuse(&c, -EINVAL, "the request's options are not device=, nic=");
	else
		e = rdma_dev_change(d, &c, previous);
	if (e) {
		*out = json_pack("{s:s, s:i}", "error", c.why, "errno", -e);
		return *out ? 0 : -ENOMEM;
	}
	dev = rdma_dev_find(d, c.device);
	rdma_dev_view(d, dev, &v);
	*out = json_pack("{s:s, s:s}", "done", cmd, "device", dev->name);
	if (!*out)
		return -ENOMEM;
	json_object_set_new(*out, "vmknic", rdma_dev_str_or_null(dev->vmknic));
	json_object_set_new(*out, "previous", rdma_dev_str_or_null(previous));
	json_object_set_new(*out, "kept_in",
			    json_string(d->path ? d->path
						: "memory, until vmfabricd restarts (built-in "
						  "configuration)"));
	json_object_set_new(*out, "roce_usable", json_boolean(!v.err));
	json_object_set_new(*out, "roce_why", rdma_dev_why_json(&v));
	return 0;
}

int
rdma_dev_mgmt(struct rdma_devs *d, const char *cmd, const char *arg, uid_t uid, json_t **out)
{
	if (!strcmp(cmd, "rdma.device.list"))
		return rdma_dev_list(d, false, out);
	if (!strcmp(cmd, "rdma.device.vmknic.list"))
		return rdma_dev_list(d, true, out);
	if (!strcmp(cmd, "rdma.device.vmknic.bind") || !strcmp(cmd, "rdma.device.vmknic.unbind"))
		return rdma_dev_mgmt_change(d, cmd, arg, uid, out);
	return -EOPNOTSUPP;
}
