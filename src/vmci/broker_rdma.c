/* SPDX-License-Identifier: MIT */
/*
 * The broker's side of RDMA verbs (wire.h, "RDMA verbs"): per verbs
 * context (one control connection) its memory regions with the segments
 * that hold them, its QPs and their connections; device-wide QP numbers;
 * the connection manager's requests between a connector and a listener.
 * The daemon is never in the data path on one host: it only decides who
 * may map what. A peer gets an MR's segment only through a QP connected
 * both ways (each QP RTR towards the other) to a QP of the MR's protection
 * domain, and read-only unless the MR allows remote writes or atomics.
 *
 * Threat model: clients are untrusted. Every number in a request is
 * checked against the requester's own objects; segment descriptors must
 * be sealed memfds of the size claimed, covering the MR; a ring handed to
 * a peer was checked to be a queue pair's descriptors by type (the peer's
 * library validates the layout before mapping). Nothing a client sends
 * makes the daemon touch the memory it describes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "broker.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/wire_io.h"
#include "rdma/device.h"
#include "rdma/engine.h"
#include "rdma_cm_net.h"
#include "switch/dp.h"
#include "vmfabric/vrdma.h"

#define QPN_BASE 2u	       /* QP 0 and 1 are the IBA's special QPs */
#define QPN_MAX	 (1u << 24)    /* 24-bit QP numbers */
#define CLIENT_QPS_MAX 1024u   /* per verbs context: the key page's slots */
#define SEG_MAX	 (1ull << 40)

struct rdma_mr_rec {
	uint32_t rkey, pd, access, nseg;
	uint64_t va, len;
	int fd[WIRE_RDMA_SEGS];
	uint64_t seg_va[WIRE_RDMA_SEGS], seg_len[WIRE_RDMA_SEGS];
	/* The RoCE engine's view (client->mem_lock): mapped on first use, referenced by requests. */
	uint8_t *map[WIRE_RDMA_SEGS];
	unsigned refs;
	bool dead; /* deregistered while referenced: freed by the last put */
};

struct rdma_qp_rec {
	uint32_t qpn, pd, slot;
	struct rdma_client *owner;
	struct rdma_qp_rec *next; /* in the owner's list */
	bool rtr;		  /* connected towards (dest_cid, dest_qpn) */
	uint32_t dest_cid, dest_qpn;
	int ring[4]; /* side 1 of its inbound ring until a peer attaches; -1 after */
	/* A QP to another host: its RTR attributes, and whether the RoCE engine runs it. */
	bool global, engine;
	struct wire_rdma_qp g;
};

struct rdma_client {
	struct vmci_conn *c;
	pthread_mutex_t mem_lock; /* the MR table against the RoCE engine (dataplane thread) */
	int page_fd;
	const struct wire_rdma_page *page; /* its key page, mapped read-only */
	char dev[32];
	struct rdma_mr_rec **mrs; /* by rkey >> 8 */
	uint32_t nmrs;		  /* live */
	uint8_t key_gen;
	struct rdma_qp_rec *qps;
	uint32_t nqps;
};

struct rdma_cm_pend {
	struct rdma_cm_pend *next;
	uint64_t id;
	struct vmci_conn *connector, *listener;
	struct wire_hdr req; /* the CONNECT to answer */
	struct wire_rdma_cm cm;
};

static void
close_fds(int *fds, int n)
{
	for (int i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]), fds[i] = -1;
}

/* ---------------------------------------------------------------------- */
/* Devices */

/*
 * The device @name ("" : the first) of this daemon: one of the host
 * configuration's rdmaN devices, or, when it declares none, "vmrdma0" for
 * this host only (no paired uplink: RDMA between processes and VMs of the
 * host needs no NIC).
 */
#define HOST_DEV "vmrdma0"

static int
dev_lookup(struct vmci_broker *b, const char *name, struct wire_rdma_open *o)
{
	const struct rdma_devs *d = &b->rdma_devs;
	const struct rdma_dev *dev;
	struct rdma_dev_source src;

	o->out_uplink[0] = o->out_vmknic[0] = 0;
	o->out_mtu = 4096; /* on one host nothing is cut into packets */
	if (!d->n) {
		if (name[0] && strcmp(name, HOST_DEV))
			return -ENODEV;
		snprintf(o->dev, sizeof(o->dev), HOST_DEV);
		return 0;
	}
	dev = name[0] ? rdma_dev_find(d, name) : &d->dev[0];
	if (!dev)
		return -ENODEV;
	snprintf(o->dev, sizeof(o->dev), "%s", dev->name);
	snprintf(o->out_uplink, sizeof(o->out_uplink), "%s", dev->uplink);
	snprintf(o->out_vmknic, sizeof(o->out_vmknic), "%s", dev->vmknic);
	if (!rdma_dev_roce_source(d, dev, &src, NULL) && src.path_mtu)
		o->out_mtu = src.path_mtu;
	return 0;
}

/* ---------------------------------------------------------------------- */
/* QP numbers */

static struct rdma_qp_rec *
qp_find(struct broker_rdma *r, uint32_t qpn)
{
	if (qpn < QPN_BASE || qpn - QPN_BASE >= r->nqps)
		return NULL;
	return r->qps[qpn - QPN_BASE];
}

static int
qp_number(struct broker_rdma *r, struct rdma_qp_rec *q)
{
	uint32_t n = r->nqps, i;

	/* From a moving cursor, so that a number is not reused at once. */
	for (i = 0; i < n; i++) {
		uint32_t k = (r->next_qpn + i) % n;

		if (!r->qps[k]) {
			r->next_qpn = k + 1;
			r->qps[k] = q;
			q->qpn = k + QPN_BASE;
			return 0;
		}
	}
	if (n + QPN_BASE >= QPN_MAX)
		return -ENOSPC;
	{
		uint32_t cap = n ? n * 2 : 256;
		struct rdma_qp_rec **t = realloc(r->qps, cap * sizeof(*t));

		if (!t)
			return -ENOMEM;
		memset(t + n, 0, (cap - n) * sizeof(*t));
		r->qps = t;
		r->nqps = cap;
		r->qps[n] = q;
		r->next_qpn = n + 1;
		q->qpn = n + QPN_BASE;
	}
	return 0;
}

static struct rdma_qp_rec *
own_qp(struct rdma_client *cl, struct broker_rdma *r, uint32_t qpn)
{
	struct rdma_qp_rec *q = qp_find(r, qpn);

	return q && q->owner == cl ? q : NULL;
}

static void
qp_unlink(struct rdma_client *cl, struct rdma_qp_rec *q)
{
	for (struct rdma_qp_rec **p = &cl->qps; *p; p = &(*p)->next)
		if (*p == q) {
			*p = q->next;
			break;
		}
}

static void engine_remove(struct vmci_broker *b, struct rdma_qp_rec *q);

static void
rqp_free(struct broker_rdma *r, struct rdma_qp_rec *q)
{
	engine_remove(q->owner->c->b, q);
	broker__uncharge(q->owner->c, VMCI_LIM_RDMA_QPS, 1);
	r->qps[q->qpn - QPN_BASE] = NULL;
	close_fds(q->ring, 4);
	r->qps_live--;
	free(q);
}

/* The QP @q is connected to, if that one is connected back to @q. */
static struct rdma_qp_rec *
qp_peer(struct broker_rdma *r, const struct rdma_qp_rec *q)
{
	struct rdma_qp_rec *d;

	if (!q->rtr || !(d = qp_find(r, q->dest_qpn)))
		return NULL;
	if (d->owner->c->cid != q->dest_cid || !d->rtr || d->dest_qpn != q->qpn ||
	    d->dest_cid != q->owner->c->cid)
		return NULL;
	return d;
}

/* ---------------------------------------------------------------------- */
/* Memory regions */

/* A sealed memfd of exactly @len bytes (nobody can shrink it under a mapping). */
static int
check_segment(int fd, uint64_t len)
{
	struct stat st;
	int seals = fcntl(fd, F_GET_SEALS);

	if (seals < 0 || !(seals & F_SEAL_SHRINK) || !(seals & F_SEAL_SEAL))
		return -EINVAL;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != len)
		return -EINVAL;
	return 0;
}

static int
mr_reg(struct rdma_client *cl, struct broker_rdma *r, struct wire_msg *m)
{
	struct wire_rdma_mr *w = &m->body.rdma_mr;
	struct rdma_mr_rec *mr;
	uint64_t at;
	uint32_t idx;
	int err;

	if (w->nseg != (uint32_t)m->nfds || !w->len || w->len > SEG_MAX ||
	    w->va + w->len < w->va)
		return -EINVAL;
	if (w->access & ~(unsigned)(VRDMA_ACCESS_LOCAL_WRITE | VRDMA_ACCESS_REMOTE_WRITE |
				    VRDMA_ACCESS_REMOTE_READ | VRDMA_ACCESS_REMOTE_ATOMIC))
		return -EINVAL;
	/* The segments must follow each other and cover the MR. */
	at = w->seg_va[0];
	if (at > w->va)
		return -EINVAL;
	for (uint32_t i = 0; i < w->nseg; i++) {
		if (w->seg_va[i] != at || !w->seg_len[i] || w->seg_len[i] > SEG_MAX ||
		    check_segment(m->fds[i], w->seg_len[i]))
			return -EINVAL;
		at += w->seg_len[i];
	}
	if (at < w->va + w->len)
		return -EINVAL;
	for (idx = 1; idx < WIRE_RDMA_KEYS && cl->mrs[idx]; idx++)
		;
	if (idx == WIRE_RDMA_KEYS)
		return -ENOSPC;
	if ((err = broker__charge(cl->c, VMCI_LIM_RDMA_MRS, 1)))
		return err;
	if ((err = broker__charge(cl->c, VMCI_LIM_RDMA_MR_BYTES, w->len))) {
		broker__uncharge(cl->c, VMCI_LIM_RDMA_MRS, 1);
		return err;
	}
	if (!(mr = calloc(1, sizeof(*mr)))) {
		broker__uncharge(cl->c, VMCI_LIM_RDMA_MRS, 1);
		broker__uncharge(cl->c, VMCI_LIM_RDMA_MR_BYTES, w->len);
		return -ENOMEM;
	}
	if (!++cl->key_gen)
		cl->key_gen = 1;
	mr->rkey = idx << 8 | cl->key_gen;
	mr->pd = w->pd;
	mr->access = w->access;
	mr->va = w->va;
	mr->len = w->len;
	mr->nseg = w->nseg;
	for (uint32_t i = 0; i < WIRE_RDMA_SEGS; i++) {
		mr->fd[i] = i < w->nseg ? m->fds[i] : -1;
		mr->seg_va[i] = w->seg_va[i];
		mr->seg_len[i] = w->seg_len[i];
	}
	m->nfds = 0; /* kept */
	pthread_mutex_lock(&cl->mem_lock); /* the RoCE engine reads the table under it */
	cl->mrs[idx] = mr;
	pthread_mutex_unlock(&cl->mem_lock);
	cl->nmrs++;
	r->mrs++;
	w->out_rkey = mr->rkey;
	return broker__reply(cl->c, &m->hdr, 0, w, NULL, 0);
}

static void
mr_release(struct rdma_mr_rec *mr)
{
	for (uint32_t i = 0; i < mr->nseg; i++)
		if (mr->map[i])
			munmap(mr->map[i], mr->seg_len[i]);
	close_fds(mr->fd, WIRE_RDMA_SEGS);
	free(mr);
}

static void
mr_free(struct rdma_client *cl, struct broker_rdma *r, uint32_t idx)
{
	struct rdma_mr_rec *mr = cl->mrs[idx];
	uint64_t len = mr->len;

	/* The engine holds the lock while it touches the memory: after this, it cannot. */
	pthread_mutex_lock(&cl->mem_lock);
	cl->mrs[idx] = NULL;
	if (mr->refs)
		mr->dead = true; /* requests in flight still name it: the last one frees it */
	else
		mr_release(mr);
	pthread_mutex_unlock(&cl->mem_lock);
	broker__uncharge(cl->c, VMCI_LIM_RDMA_MRS, 1);
	broker__uncharge(cl->c, VMCI_LIM_RDMA_MR_BYTES, len);
	cl->nmrs--;
	r->mrs--;
}

/* ---------------------------------------------------------------------- */
/* The application's memory for the RoCE engine (struct reng_mem_ops), under mem_lock */

static int
mem_get(void *owner, uint32_t key, uint32_t pd, uint64_t va, uint64_t len, unsigned access,
	uint8_t **out, void **ref)
{
	struct rdma_client *cl = owner;
	uint32_t idx = key >> 8;
	struct rdma_mr_rec *mr = idx < WIRE_RDMA_KEYS ? cl->mrs[idx] : NULL;

	if (!mr || mr->rkey != key || mr->pd != pd || (mr->access & access) != access)
		return -EACCES;
	if (va < mr->va || va + len < va || va + len > mr->va + mr->len)
		return -EACCES;
	for (uint32_t i = 0; i < mr->nseg; i++) {
		if (va < mr->seg_va[i] || va - mr->seg_va[i] >= mr->seg_len[i])
			continue;
		/* One segment must hold it all: requests do not straddle (docs/RDMA.md). */
		if (va + len > mr->seg_va[i] + mr->seg_len[i])
			return -EACCES;
		if (!mr->map[i]) {
			void *p = mmap(NULL, mr->seg_len[i], PROT_READ | PROT_WRITE, MAP_SHARED,
				       mr->fd[i], 0);

			if (p == MAP_FAILED)
				return -EACCES;
			mr->map[i] = p;
		}
		*out = mr->map[i] + (va - mr->seg_va[i]);
		*ref = mr;
		mr->refs++;
		return 0;
	}
	return -EACCES;
}

static void
mem_put(void *owner, void *ref)
{
	struct rdma_mr_rec *mr = ref;

	(void)owner;
	if (!--mr->refs && mr->dead)
		mr_release(mr);
}

static void
mem_lock(void *owner)
{
	pthread_mutex_lock(&((struct rdma_client *)owner)->mem_lock);
}

static void
mem_unlock(void *owner)
{
	pthread_mutex_unlock(&((struct rdma_client *)owner)->mem_lock);
}

static const struct reng_mem_ops client_mem = { .get = mem_get, .put = mem_put,
						 .lock = mem_lock, .unlock = mem_unlock };

static struct rdma_mr_rec *
mr_find(struct rdma_client *cl, uint32_t rkey)
{
	uint32_t idx = rkey >> 8;
	struct rdma_mr_rec *mr = idx < WIRE_RDMA_KEYS ? cl->mrs[idx] : NULL;

	return mr && mr->rkey == rkey ? mr : NULL;
}

static int
mr_dereg(struct rdma_client *cl, struct broker_rdma *r, struct wire_msg *m)
{
	struct rdma_mr_rec *mr = mr_find(cl, m->body.rdma_mr.out_rkey);

	if (!mr)
		return -EINVAL;
	mr_free(cl, r, mr->rkey >> 8);
	return broker__reply(cl->c, &m->hdr, 0, &m->body, NULL, 0);
}

/* A descriptor for a peer: the segment itself, or a read-only opening of it. */
static int
segment_for_peer(int fd, bool writable)
{
	char path[64];

	if (writable)
		return fcntl(fd, F_DUPFD_CLOEXEC, 3);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	return open(path, O_RDONLY | O_CLOEXEC);
}

static int
mr_map(struct rdma_client *cl, struct broker_rdma *r, struct wire_msg *m)
{
	struct wire_rdma_map *w = &m->body.rdma_map;
	struct rdma_qp_rec *q = own_qp(cl, r, w->qpn), *d;
	struct rdma_mr_rec *mr;
	bool writable;
	int fd, err;

	if (!q)
		return -EINVAL;
	if (!(d = qp_peer(r, q)))
		return -ENOTCONN;
	mr = mr_find(d->owner, w->rkey);
	/* An MR of another PD, or not for remote access, is no MR for this QP. */
	if (!mr || mr->pd != d->pd ||
	    !(mr->access & (VRDMA_ACCESS_REMOTE_READ | VRDMA_ACCESS_REMOTE_WRITE |
			    VRDMA_ACCESS_REMOTE_ATOMIC)))
		return -EACCES;
	if (w->piece >= mr->nseg)
		return -EINVAL;
	writable = mr->access & (VRDMA_ACCESS_REMOTE_WRITE | VRDMA_ACCESS_REMOTE_ATOMIC);
	if ((fd = segment_for_peer(mr->fd[w->piece], writable)) < 0)
		return -errno;
	w->out_va = mr->va;
	w->out_len = mr->len;
	w->out_access = mr->access;
	w->out_nseg = mr->nseg;
	w->out_seg_va = mr->seg_va[w->piece];
	w->out_seg_len = mr->seg_len[w->piece];
	err = broker__reply(cl->c, &m->hdr, 0, w, &fd, 1);
	close(fd);
	return err;
}

/* ---------------------------------------------------------------------- */
/* Queue pairs */

static int
rqp_create(struct rdma_client *cl, struct broker_rdma *r, struct wire_msg *m)
{
	struct wire_rdma_qp *w = &m->body.rdma_qp;
	struct rdma_qp_rec *q;
	int err;

	if (cl->nqps >= CLIENT_QPS_MAX || w->slot >= WIRE_RDMA_QP_SLOTS)
		return -ENOSPC;
	for (q = cl->qps; q; q = q->next)
		if (q->slot == w->slot)
			return -EBUSY;
	if ((err = broker__charge(cl->c, VMCI_LIM_RDMA_QPS, 1)))
		return err;
	if (!(q = calloc(1, sizeof(*q)))) {
		broker__uncharge(cl->c, VMCI_LIM_RDMA_QPS, 1);
		return -ENOMEM;
	}
	q->pd = w->pd;
	q->slot = w->slot;
	q->owner = cl;
	for (int i = 0; i < 4; i++)
		q->ring[i] = -1;
	if ((err = qp_number(r, q))) {
		broker__uncharge(cl->c, VMCI_LIM_RDMA_QPS, 1);
		free(q);
		return err;
	}
	q->next = cl->qps;
	cl->qps = q;
	cl->nqps++;
	r->qps_live++;
	w->out_qpn = q->qpn;
	return broker__reply(cl->c, &m->hdr, 0, w, NULL, 0);
}

static int
is_socket(int fd, int type)
{
	int t;
	socklen_t l = sizeof(t);

	return getsockopt(fd, SOL_SOCKET, SO_TYPE, &t, &l) == 0 && t == type;
}

static bool
is_eventfd(int fd)
{
	char path[64], target[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	if (n <= 0)
		return false;
	target[n] = 0;
	return !strcmp(target, "anon_inode:[eventfd]");
}

/* Whether the QP's context may reach its destination: another host, or a context here. */
static int
rtr_policy(struct rdma_client *cl, const struct wire_rdma_qp *w)
{
	struct vmci_reg *reg = &cl->c->b->reg;
	struct vmci_ctx *me = vmci_reg_find(reg, cl->c->cid), *dst;

	if (!me)
		return -EACCES;
	if (w->global)
		return me->restricted ? -EACCES : 0; /* another host is not "the host" */
	dst = vmci_reg_find(reg, w->dest_cid);
	if (!dst || vmci_policy(me, dst)) {
		log_rl(LOG_LVL_WARN, "rdma: context %u may not reach context %u", cl->c->cid,
		       w->dest_cid);
		return -EACCES;
	}
	return 0;
}

static int
qp_rtr(struct rdma_client *cl, struct broker_rdma *r, struct wire_msg *m)
{
	struct wire_rdma_qp *w = &m->body.rdma_qp;
	struct rdma_qp_rec *q = own_qp(cl, r, w->qpn);
	struct stat st;
	int err;

	if (!q || q->rtr)
		return -EINVAL;
	/* memfd, two eventfds, the liveness socket: checked by kind here, by layout at attach. */
	if (fstat(m->fds[0], &st) < 0 || !S_ISREG(st.st_mode) || !is_eventfd(m->fds[1]) ||
	    !is_eventfd(m->fds[2]) || !is_socket(m->fds[3], SOCK_SEQPACKET))
		return -EINVAL;
	if (w->dest_qpn < QPN_BASE || w->dest_qpn >= QPN_MAX)
		return -EINVAL;
	/* The VMCI policy holds for QPs connected by hand as for the connection manager's. */
	if ((err = rtr_policy(cl, w)))
		return err;
	if (w->global) {
		if (!roce_mtu_valid(w->mtu) || w->max_dest_rd_atomic > 16 || w->min_rnr_timer > 31)
			return -EINVAL;
		q->global = true;
		q->g = *w;
	}
	q->rtr = true;
	q->dest_cid = w->dest_cid;
	q->dest_qpn = w->dest_qpn;
	for (int i = 0; i < 4; i++)
		q->ring[i] = m->fds[i];
	m->nfds = 0;
	return broker__reply(cl->c, &m->hdr, 0, w, NULL, 0);
}

static int
rqp_attach(struct rdma_client *cl, struct broker_rdma *r, struct wire_msg *m)
{
	struct wire_rdma_qp *w = &m->body.rdma_qp;
	struct rdma_qp_rec *q = own_qp(cl, r, w->qpn), *d;
	int fds[5], err;

	if (!q || !q->rtr)
		return -EINVAL;
	if (!(d = qp_peer(r, q)))
		return -EAGAIN; /* the peer is not RTR towards this QP (yet) */
	if (d->ring[0] < 0)
		return -EALREADY; /* handed out once */
	memcpy(fds, d->ring, sizeof(d->ring));
	/* The key page is its owner's to write: a peer gets a read-only opening. */
	if ((fds[4] = segment_for_peer(d->owner->page_fd, false)) < 0)
		return -errno;
	w->out_slot = d->slot;
	w->out_qpn = d->qpn;
	err = broker__reply(cl->c, &m->hdr, 0, w, fds, 5);
	close(fds[4]);
	/* The peer's liveness socket must be held by this QP's process only. */
	close_fds(d->ring, 4);
	return err;
}

/* ---------------------------------------------------------------------- */
/* QPs to other hosts: the RoCE engine on the dataplane thread */

struct engine_add {
	struct reng_qp_params p;
	char vmk[32];
	uint32_t qpn;
};

static int
do_engine_add(void *ctx, void *arg)
{
	struct vsw_dp *d = ctx;
	struct engine_add *a = arg;

	for (unsigned k = 0; k < d->nvmk; k++)
		if (!strcmp(d->vmk[k]->p.name, a->vmk)) {
			a->p.path.vmk = d->vmk[k];
			a->p.path.sw = &d->sw[d->vmk[k]->sw];
			return d->roce ? reng_qp_add(d->roce, &a->p, a->qpn) : -ENETDOWN;
		}
	return -ENODEV;
}

static int
do_engine_remove(void *ctx, void *arg)
{
	struct vsw_dp *d = ctx;

	if (d->roce)
		reng_qp_remove(d->roce, *(uint32_t *)arg);
	return 0;
}

static void
engine_remove(struct vmci_broker *b, struct rdma_qp_rec *q)
{
	if (q->engine)
		vsw_dp_call(&b->dp, do_engine_remove, &q->qpn);
	q->engine = false;
}

/*
 * The MAC of @ip on interface @ifname from the host's neighbour table:
 * 0, or -EAGAIN when the table has no complete entry (yet).
 */
static int
neigh_lookup(const char *ifname, const uint8_t ip[4], uint8_t mac[6])
{
	struct arpreq ar = { 0 };
	struct sockaddr_in *sin = (struct sockaddr_in *)&ar.arp_pa;
	int s, err = -EAGAIN;

	if (strlen(ifname) >= sizeof(ar.arp_dev))
		return -ENAMETOOLONG;
	if ((s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
		return -errno;
	sin->sin_family = AF_INET;
	memcpy(&sin->sin_addr, ip, 4);
	memcpy(ar.arp_dev, ifname, strlen(ifname) + 1);
	if (ioctl(s, SIOCGARP, &ar) == 0 && (ar.arp_flags & ATF_COM)) {
		memcpy(mac, ar.arp_ha.sa_data, 6);
		err = 0;
	}
	close(s);
	return err;
}

/* Make the host resolve @ip on @ifname (ARP): a datagram to the discard port. */
static void
neigh_probe(const char *ifname, const uint8_t ip[4])
{
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(9) };
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (s < 0)
		return;
	memcpy(&to.sin_addr, ip, 4);
	setsockopt(s, SOL_SOCKET, SO_BINDTODEVICE, ifname, (socklen_t)strlen(ifname));
	sendto(s, "", 0, MSG_DONTWAIT, (struct sockaddr *)&to, sizeof(to));
	close(s);
}

/*
 * An RTS whose peer's MAC is not known yet: the request is kept and tried
 * again every RTS_RETRY_NS on the control loop (never waiting there) until
 * the neighbour table has it, or RTS_WAIT_NS have passed
 * (-EHOSTUNREACH), or the client goes.
 */
#define RTS_RETRY_NS (5 * 1000000ll)
/* Past the kernel's ARP retransmission (1 s): a lost request or a loaded host. */
#define RTS_WAIT_NS  (3000 * 1000000ll)

enum rts_try { RTS_FIRST, RTS_AGAIN, RTS_LAST };

struct rdma_rts_wait {
	struct rdma_rts_wait *next;
	struct rdma_client *cl;
	struct wire_msg m; /* the request (RTS carries no descriptors) */
	int64_t deadline;
};

static int rqp_rts(struct rdma_client *cl, struct broker_rdma *r, struct wire_msg *m,
		   enum rts_try t);

static void
rts_timer_set(struct broker_rdma *r)
{
	struct itimerspec it = { 0 };

	if (r->rts_wait)
		it.it_value.tv_nsec = it.it_interval.tv_nsec = RTS_RETRY_NS;
	timerfd_settime(r->rts_timer.fd, 0, &it, NULL);
}

static void
rts_timer_fired(struct loop_src *src, uint32_t events)
{
	struct broker_rdma *r = (struct broker_rdma *)((char *)src -
						      offsetof(struct broker_rdma, rts_timer));
	struct rdma_rts_wait **pp = &r->rts_wait, *w;
	int64_t now = clock_ns();
	uint64_t ticks;

	(void)events;
	if (read(src->fd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
		log_rl(LOG_LVL_WARN, "rdma: RTS timer: %s", strerror(errno));
	while ((w = *pp)) {
		int err = rqp_rts(w->cl, r, &w->m, now >= w->deadline ? RTS_LAST : RTS_AGAIN);

		if (err == 1) {
			pp = &w->next; /* still not in the table */
			continue;
		}
		if (err < 0)
			broker__reply(w->cl->c, &w->m.hdr, err == WIRE_FATAL ? -EPROTO : err,
				      &w->m.body, NULL, 0);
		*pp = w->next;
		free(w);
	}
	rts_timer_set(r);
}

/* Keep @m to try again; 0 (answered later) or -errno. */
#define RTS_WAITS_MAX 64 /* per client: each costs a neighbour lookup every RTS_RETRY_NS */

static int
rts_wait(struct rdma_client *cl, struct broker_rdma *r, const struct wire_msg *m)
{
	struct rdma_rts_wait *w;
	unsigned n = 0;

	for (w = r->rts_wait; w; w = w->next) {
		if (w->cl != cl)
			continue;
		if (w->m.body.rdma_qp.qpn == m->body.rdma_qp.qpn)
			return -EBUSY; /* this QP's RTS is already waiting */
		if (++n >= RTS_WAITS_MAX)
			return -ENOBUFS;
	}
	if (!(w = calloc(1, sizeof(*w))))
		return -ENOMEM;
	if (!r->rts_timer.fn) {
		r->rts_timer = (struct loop_src){ .fn = rts_timer_fired };
		r->rts_timer.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
		if (r->rts_timer.fd < 0 || loop_add(cl->c->b->loop, &r->rts_timer, EPOLLIN)) {
			int err = -errno;

			if (r->rts_timer.fd >= 0)
				close(r->rts_timer.fd);
			r->rts_timer = (struct loop_src){ 0 };
			free(w);
			return err;
		}
	}
	w->cl = cl;
	w->m = *m;
	w->m.nfds = 0;
	w->deadline = clock_ns() + RTS_WAIT_NS;
	w->next = r->rts_wait;
	r->rts_wait = w;
	rts_timer_set(r);
	return 0;
}

/* The client goes: its waiting RTS requests with it. */
static void
rts_forget(struct broker_rdma *r, const struct rdma_client *cl)
{
	struct rdma_rts_wait **pp = &r->rts_wait, *w;

	while ((w = *pp)) {
		if (w->cl == cl) {
			*pp = w->next;
			free(w);
		} else {
			pp = &w->next;
		}
	}
}

/* RTS of a QP to another host: its path, then the engine takes it. */
/*
 * The first try answers or defers (rts_wait); a later one answers, or
 * returns 1 while the neighbour is still unknown and time remains.
 */
static int
rqp_rts(struct rdma_client *cl, struct broker_rdma *r, struct wire_msg *m, enum rts_try t)
{
	struct wire_rdma_qp *w = &m->body.rdma_qp;
	struct rdma_qp_rec *q = own_qp(cl, r, w->qpn);
	struct vmci_broker *b = cl->c->b;
	const struct rdma_dev *dev = rdma_dev_find(&b->rdma_devs, cl->dev);
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	struct rdma_dev_source src;
	struct engine_add a = { .qpn = w->qpn };
	struct qp_fds f;
	struct qp *ring;
	const char *why;
	int err;

	if (!q || !q->global || q->engine || q->ring[0] < 0 || w->timeout > 31 ||
	    w->retry_cnt > 7 || w->rnr_retry > 7 || w->max_rd_atomic > 16 || !w->sq_depth ||
	    w->sq_depth > 65536 || !w->rq_depth || w->rq_depth > 65536)
		return -EINVAL;
	if (!dev || rdma_dev_roce_source(&b->rdma_devs, dev, &src, &why)) {
		log_rl(LOG_LVL_WARN, "rdma: %s cannot carry RoCE v2: %s", cl->dev,
		       dev ? why : "no paired uplink");
		return -ENETUNREACH;
	}
	if (memcmp(q->g.dgid, mapped, 12) || !src.has_ipv4)
		return -EOPNOTSUPP; /* IPv6 paths: not yet (docs/RDMA.md) */
	memcpy(a.p.path.src_ip, &src.ipv4, 4);
	memcpy(a.p.path.dst_ip, q->g.dgid + 12, 4);
	memcpy(a.p.path.src_mac, src.mac, 6);
	snprintf(a.vmk, sizeof(a.vmk), "%s", src.vmknic);
	err = neigh_lookup(src.vmknic, a.p.path.dst_ip, a.p.path.dst_mac);
	if (err == -EAGAIN && t == RTS_FIRST) {
		neigh_probe(src.vmknic, a.p.path.dst_ip);
		return rts_wait(cl, r, m);
	}
	if (err == -EAGAIN)
		return t == RTS_LAST ? -EHOSTUNREACH : 1;
	if (err)
		return err;
	a.p.path.src_port = (uint16_t)(0xc000 | (q->qpn & 0x3fff));
	a.p.rc = (struct rc_attr){ .mtu = q->g.mtu < src.path_mtu ? q->g.mtu : src.path_mtu,
				   .qpn = q->qpn, .dest_qpn = q->dest_qpn,
				   .sq_psn = w->sq_psn & 0xffffff, .rq_psn = q->g.rq_psn & 0xffffff,
				   .pkey = ROCE_PKEY_DEFAULT, .timeout = w->timeout,
				   .retry_cnt = w->retry_cnt, .rnr_retry = w->rnr_retry,
				   .min_rnr_timer = q->g.min_rnr_timer,
				   .max_rd_atomic = w->max_rd_atomic,
				   .max_dest_rd_atomic = q->g.max_dest_rd_atomic,
				   .sq_depth = w->sq_depth, .rq_depth = w->rq_depth,
				   .max_sge = RENG_MAX_SGE,
				   /*
				    * Half an uplink's transmit ring (256 frames) in flight:
				    * the engine cannot see that ring fill, and a frame it
				    * drops costs a go-back-N of everything behind it.
				    */
				   .window = 128 };
	a.p.pd = q->pd;
	a.p.qp_access = w->access;
	if (q->slot < WIRE_RDMA_QP_SLOTS) /* and as the application changes it later */
		a.p.access_live = &cl->page->slots[q->slot].qp_access;
	a.p.mem = &client_mem;
	a.p.owner = cl;
	f = (struct qp_fds){ q->ring[0], q->ring[1], q->ring[2], q->ring[3] };
	if ((err = qp_attach(&f, &ring)))
		return err;
	for (int i = 0; i < 4; i++)
		q->ring[i] = -1; /* the queue pair's now */
	a.p.ring = ring;
	if ((err = vsw_dp_call(&b->dp, do_engine_add, &a))) {
		qp_close(ring);
		return err;
	}
	q->engine = true;
	return broker__reply(cl->c, &m->hdr, 0, w, NULL, 0);
}

static void
rqp_reset(struct rdma_qp_rec *q)
{
	engine_remove(q->owner->c->b, q);
	q->global = false;
	q->rtr = false;
	q->dest_cid = q->dest_qpn = 0;
	close_fds(q->ring, 4);
}

static int
qp_msg(struct rdma_client *cl, struct broker_rdma *r, struct wire_msg *m)
{
	struct wire_rdma_qp *w = &m->body.rdma_qp;
	struct rdma_qp_rec *q;

	switch (m->hdr.type) {
	case WIRE_RDMA_QP_CREATE:
		return rqp_create(cl, r, m);
	case WIRE_RDMA_QP_RTR:
		return qp_rtr(cl, r, m);
	case WIRE_RDMA_QP_ATTACH:
		return rqp_attach(cl, r, m);
	case WIRE_RDMA_QP_RTS:
		return rqp_rts(cl, r, m, RTS_FIRST);
	}
	if (!(q = own_qp(cl, r, w->qpn)))
		return -EINVAL;
	if (m->hdr.type == WIRE_RDMA_QP_RESET) {
		rqp_reset(q);
	} else {
		qp_unlink(cl, q);
		cl->nqps--;
		rqp_free(r, q);
	}
	return broker__reply(cl->c, &m->hdr, 0, w, NULL, 0);
}

/* ---------------------------------------------------------------------- */
/* Connection manager */

static void
pend_unlink(struct broker_rdma *r, struct rdma_cm_pend *p)
{
	for (struct rdma_cm_pend **pp = &r->pend; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	free(p);
}

static struct rdma_cm_pend *
pend_find(struct broker_rdma *r, uint64_t id, const struct vmci_conn *listener)
{
	for (struct rdma_cm_pend *p = r->pend; p; p = p->next)
		if (p->id == id && p->listener == listener)
			return p;
	return NULL;
}

static int
cm_listen(struct vmci_conn *c, struct wire_msg *m)
{
	struct wire_bind *w = &m->body.bind;
	int err;

	if (c->state != CONN_READY)
		return c->state == CONN_NEW ? WIRE_FATAL : -EINVAL;
	if (w->port != VMCI_PORT_ANY && w->port < VMCI_PORT_PRIVILEGED && !c->privileged)
		return -EACCES;
	if ((err = broker__charge(c, VMCI_LIM_PORTS, 1)))
		return err; /* given back when the connection closes */
	if (w->port != VMCI_PORT_ANY) {
		err = vmci_port_bind(&c->b->ports, VMCI_SPACE_RDMA, c->cid, w->port, c, &c->port);
	} else {
		/*
		 * Ephemeral ports from the dynamic range (49152-65535), not
		 * VMCI's 32-bit cursor: a peer on another host names the port
		 * in 16 bits.
		 */
		struct broker_rdma *r = &c->b->rdma;

		err = -EADDRNOTAVAIL;
		for (unsigned i = 0; i < 16384 && err; i++) {
			uint32_t port = 49152 + (r->next_port++ % 16384);

			err = vmci_port_bind(&c->b->ports, VMCI_SPACE_RDMA, c->cid, port, c,
					     &c->port);
			if (err && err != -EADDRINUSE)
				break;
		}
	}
	if (err) {
		broker__uncharge(c, VMCI_LIM_PORTS, 1);
		return err;
	}
	c->state = CONN_RDMA_LISTEN;
	w->out_port = c->port;
	return broker__reply(c, &m->hdr, 0, w, NULL, 0);
}

/* A QP of the process and context of @c (maybe on another of its connections). */
static struct rdma_qp_rec *
process_qp(struct vmci_conn *c, struct broker_rdma *r, uint32_t qpn)
{
	struct rdma_qp_rec *q = qp_find(r, qpn);

	return q && q->owner->c->pid == c->pid && q->owner->c->cid == c->cid ? q : NULL;
}

/*
 * CONNECT comes on a connection of its own (the reply waits for the
 * listener), from the process that owns the QP.
 */
static int
cm_connect(struct vmci_conn *c, struct broker_rdma *r, struct wire_msg *m)
{
	struct wire_rdma_cm *w = &m->body.rdma_cm;
	struct vmci_conn *l;
	struct rdma_cm_pend *p;
	struct wire_hdr h = { .type = WIRE_RDMA_CM_REQ, .len = sizeof(*w) };
	struct vmci_ctx *src = vmci_reg_find(&c->b->reg, c->cid);
	struct vmci_ctx *dst = vmci_reg_find(&c->b->reg, w->cid);

	if (c->state != CONN_READY)
		return c->state == CONN_NEW ? WIRE_FATAL : -EINVAL;
	if (!process_qp(c, r, w->qpn) || w->priv_len > WIRE_RDMA_PRIV)
		return -EINVAL;
	if (w->family) /* to another host (rdma_cm_net.c) */
		return cmnet_connect(c, m, process_qp(c, r, w->qpn)->owner->dev);
	l = vmci_port_find(&c->b->ports, VMCI_SPACE_RDMA, w->cid, w->port);
	if (!l)
		return -ECONNREFUSED;
	/* The VMCI policy decides who may reach whom, for RDMA as for sockets. */
	if (!src || !dst || vmci_policy(src, dst)) {
		log_rl(LOG_LVL_WARN, "rdma: context %u may not connect to context %u", c->cid,
		       w->cid);
		return -EACCES;
	}
	if (!(p = calloc(1, sizeof(*p))))
		return -ENOMEM;
	p->id = ++r->next_req;
	p->connector = c;
	p->listener = l;
	p->req = m->hdr;
	p->cm = *w;
	w->id = p->id;
	w->cid = c->cid;
	if (wire_send(l->src.fd, &h, w, NULL, 0) < 0) {
		free(p);
		return -ECONNREFUSED;
	}
	p->next = r->pend;
	r->pend = p;
	return 0; /* answered at ACCEPT or REJECT */
}

static int
cm_answer(struct vmci_conn *c, struct broker_rdma *r, struct wire_msg *m)
{
	struct wire_rdma_cm *w = &m->body.rdma_cm, rep;
	struct rdma_cm_pend *p = pend_find(r, w->id, c);
	struct rdma_qp_rec *q;
	int err;

	if (c->state != CONN_RDMA_LISTEN)
		return -EINVAL;
	if (w->family) /* a request from another host (rdma_cm_net.c) */
		return cmnet_answer(c, m, process_qp(c, r, w->qpn) != NULL);
	if (!p)
		return -ECONNABORTED; /* the connector gave up or went away */
	if (m->hdr.type == WIRE_RDMA_CM_REJECT) {
		broker__reply(p->connector, &p->req, -ECONNREFUSED, &p->cm, NULL, 0);
		pend_unlink(r, p);
		return broker__reply(c, &m->hdr, 0, w, NULL, 0);
	}
	/* The accepting QP must be the listening process's, in the listener's context. */
	q = process_qp(c, r, w->qpn);
	if (!q || w->priv_len > WIRE_RDMA_PRIV)
		return -EINVAL;
	rep = *w;
	rep.cid = c->cid;
	err = broker__reply(p->connector, &p->req, 0, &rep, NULL, 0);
	pend_unlink(r, p);
	if (err)
		return -ECONNABORTED;
	return broker__reply(c, &m->hdr, 0, w, NULL, 0);
}

/* ---------------------------------------------------------------------- */

static int
rdma_open(struct vmci_conn *c, struct wire_msg *m)
{
	struct wire_rdma_open *w = &m->body.rdma_open;
	struct rdma_client *cl;
	int err;

	if (c->state != CONN_READY)
		return c->state == CONN_NEW ? WIRE_FATAL : -EINVAL;
	w->dev[sizeof(w->dev) - 1] = 0;
	if ((err = dev_lookup(c->b, w->dev, w)))
		return err;
	if ((err = check_segment(m->fds[0], sizeof(struct wire_rdma_page))))
		return err;
	if (!(cl = calloc(1, sizeof(*cl))) || !(cl->mrs = calloc(WIRE_RDMA_KEYS, sizeof(*cl->mrs)))) {
		free(cl);
		return -ENOMEM;
	}
	cl->page = mmap(NULL, sizeof(*cl->page), PROT_READ, MAP_SHARED, m->fds[0], 0);
	if (cl->page == MAP_FAILED) {
		err = -errno;
		free(cl->mrs);
		free(cl);
		return err;
	}
	cl->c = c;
	pthread_mutex_init(&cl->mem_lock, NULL);
	cl->page_fd = m->fds[0];
	m->nfds = 0;
	snprintf(cl->dev, sizeof(cl->dev), "%s", w->dev);
	c->rdma = cl;
	c->state = CONN_RDMA;
	w->out_cid = c->cid;
	return broker__reply(c, &m->hdr, 0, w, NULL, 0);
}

static int
rdma_devices(struct vmci_conn *c, struct wire_msg *m)
{
	struct wire_rdma_devices *w = &m->body.rdma_devices;
	const struct rdma_devs *d = &c->b->rdma_devs;

	if (c->state == CONN_NEW)
		return WIRE_FATAL;
	memset(w, 0, sizeof(*w));
	w->out_count = d->n ? (uint32_t)d->n : 1;
	for (size_t i = 0; i < w->out_count && i < WIRE_RDMA_DEVS; i++)
		snprintf(w->out_names[i], sizeof(w->out_names[i]), "%s",
			 d->n ? d->dev[i].name : HOST_DEV);
	return broker__reply(c, &m->hdr, 0, w, NULL, 0);
}

int
broker__rdma_msg(struct vmci_conn *c, struct wire_msg *m)
{
	struct broker_rdma *r = &c->b->rdma;
	struct rdma_client *cl = c->rdma;

	switch (m->hdr.type) {
	case WIRE_RDMA_OPEN:
		return rdma_open(c, m);
	case WIRE_RDMA_CM_LISTEN:
		return cm_listen(c, m);
	case WIRE_RDMA_CM_ACCEPT:
	case WIRE_RDMA_CM_REJECT:
		return cm_answer(c, r, m);
	case WIRE_RDMA_CM_CONNECT:
		return cm_connect(c, r, m);
	case WIRE_RDMA_DEVICES:
		return rdma_devices(c, m);
	}
	if (!cl)
		return c->state == CONN_NEW ? WIRE_FATAL : -EINVAL;
	switch (m->hdr.type) {
	case WIRE_RDMA_MR_REG:
		return mr_reg(cl, r, m);
	case WIRE_RDMA_MR_DEREG:
		return mr_dereg(cl, r, m);
	case WIRE_RDMA_MR_MAP:
		return mr_map(cl, r, m);
	default:
		return qp_msg(cl, r, m);
	}
}

void
broker__rdma_close(struct vmci_conn *c)
{
	struct broker_rdma *r = &c->b->rdma;
	struct rdma_client *cl = c->rdma;
	struct rdma_cm_pend *p, *next;

	cmnet_conn_closed(c);
	for (p = r->pend; p; p = next) {
		next = p->next;
		if (p->listener == c)
			broker__reply(p->connector, &p->req, -ECONNREFUSED, &p->cm, NULL, 0);
		if (p->listener == c || p->connector == c)
			pend_unlink(r, p);
	}
	if (c->state == CONN_RDMA_LISTEN)
		vmci_port_unbind(&c->b->ports, VMCI_SPACE_RDMA, c->cid, c->port);
	if (!cl)
		return;
	rts_forget(r, cl);
	while (cl->qps) {
		struct rdma_qp_rec *q = cl->qps;

		cl->qps = q->next;
		rqp_free(r, q);
	}
	for (uint32_t i = 0; i < WIRE_RDMA_KEYS; i++)
		if (cl->mrs[i])
			mr_free(cl, r, i);
	free(cl->mrs);
	munmap((void *)(uintptr_t)cl->page, sizeof(*cl->page));
	close(cl->page_fd);
	pthread_mutex_destroy(&cl->mem_lock);
	free(cl);
	c->rdma = NULL;
}

void
broker__rdma_fini(struct vmci_broker *b)
{
	while (b->rdma.rts_wait) {
		struct rdma_rts_wait *w = b->rdma.rts_wait;

		b->rdma.rts_wait = w->next;
		free(w);
	}
	if (b->rdma.rts_timer.fn) {
		loop_del(b->loop, &b->rdma.rts_timer);
		close(b->rdma.rts_timer.fd);
	}
	free(b->rdma.qps);
	b->rdma = (struct broker_rdma){ 0 };
}

static int
do_engine_stats(void *ctx, void *arg)
{
	struct vsw_dp *d = ctx;

	if (d->roce)
		reng_get_stats(d->roce, arg);
	return 0;
}

json_t *
broker__rdma_stats(struct vmci_broker *b)
{
	struct reng_stats st = { 0 };
	json_t *o = json_object(), *e = json_object();

	vsw_dp_call(&b->dp, do_engine_stats, &st);
	if (!o || !e) {
		json_decref(o);
		json_decref(e);
		return NULL;
	}
	json_object_set_new(o, "qps", json_integer((json_int_t)b->rdma.qps_live));
	json_object_set_new(o, "mrs", json_integer((json_int_t)b->rdma.mrs));
#define SET(obj, name, v) json_object_set_new(obj, name, json_integer((json_int_t)(v)))
	SET(e, "qps", st.qps);
	SET(e, "frames_in", st.frames_in);
	SET(e, "frames_out", st.frames_out);
	SET(e, "bad_frames", st.bad_frames);
	SET(e, "no_qp", st.no_qp);
	SET(e, "faults_dropped", st.faults_dropped);
	SET(e, "faults_duped", st.faults_duped);
	SET(e, "packets_sent", st.rc.packets_sent);
	SET(e, "packets_rcvd", st.rc.packets_rcvd);
	SET(e, "retransmits", st.rc.retransmits);
	SET(e, "timeouts", st.rc.timeouts);
	SET(e, "naks_sent", st.rc.naks_sent);
	SET(e, "naks_rcvd", st.rc.naks_rcvd);
	SET(e, "rnr_naks_sent", st.rc.rnr_naks_sent);
	SET(e, "rnr_naks_rcvd", st.rc.rnr_naks_rcvd);
	SET(e, "dup_requests", st.rc.dup_requests);
	SET(e, "dropped", st.rc.dropped);
#undef SET
	json_object_set_new(o, "roce", e);
	return o;
}
