/* SPDX-License-Identifier: MIT */
/*
 * Queue pair setup and teardown: the sealed memfd, its mapping, the two
 * eventfds and the liveness socket pair.
 *
 * The attacher trusts nothing the creator put in the memfd: it checks the
 * seals (so the object can never shrink under its mapping and fault it), the
 * object's size, and the meta page, which it reads exactly once into a
 * private copy. After attach the meta page is never looked at again.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qp_internal.h"

#define QP_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

bool
qp__size_ok(uint64_t size)
{
	return size >= QP_SIZE_MIN && size <= QP_SIZE_MAX && (size & (size - 1)) == 0;
}

void
qp__init(struct qp *qp, void *base, uint64_t s0, uint64_t s1, int side)
{
	uint8_t *b = base;
	struct qp_dir q0 = { .q = (struct qp_queue *)(b + QP_PAGE), .data = b + 2 * QP_PAGE,
			     .size = s0 };
	struct qp_dir q1 = { .q = (struct qp_queue *)(b + 2 * QP_PAGE + s0),
			     .data = b + 3 * QP_PAGE + s0, .size = s1 };

	memset(qp, 0, sizeof(*qp));
	qp->tx = side == 0 ? q0 : q1;
	qp->rx = side == 0 ? q1 : q0;
	qp->map = base;
	qp->wake = qp->peer_wake = qp->alive = qp->ep = -1;
	qp->mode = QP_BLOCKING;
	qp->timeout_ns = -1;
	qp->spin_ns = QP_SPIN_DEFAULT_NS;
	qp->tx_want = 1;
}

static int
qp_ep_add(struct qp *qp, int ep)
{
	struct epoll_event w = { .events = EPOLLIN | EPOLLET, .data.u64 = QP_EPOLL_WAKE };
	struct epoll_event a = { .events = EPOLLIN | EPOLLRDHUP, .data.u64 = QP_EPOLL_ALIVE };

	if (epoll_ctl(ep, EPOLL_CTL_ADD, qp->wake, &w) < 0)
		return -errno;
	if (qp->alive >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, qp->alive, &a) < 0) {
		int err = -errno;
		epoll_ctl(ep, EPOLL_CTL_DEL, qp->wake, NULL);
		return err;
	}
	return 0;
}

int
qp__wait_init(struct qp *qp)
{
	int ep = epoll_create1(EPOLL_CLOEXEC), err;

	if (ep < 0)
		return -errno;
	if ((err = qp_ep_add(qp, ep))) {
		close(ep);
		return err;
	}
	qp->ep = ep;
	qp->ep_owned = true;
	return 0;
}

int
qp__ep(struct qp *qp)
{
	int err;

	if (qp->ep >= 0)
		return qp->ep;
	if (qp->wake < 0)
		return -EBADF;
	err = qp__wait_init(qp);
	return err ? err : qp->ep;
}

int
qp_share_epoll(struct qp *qp, int ep)
{
	int err;

	if (qp->ep >= 0)
		return -EBUSY;
	if (qp->wake < 0)
		return -EBADF;
	if ((err = qp_ep_add(qp, ep)))
		return err;
	qp->ep = ep;
	qp->ep_owned = false;
	return 0;
}

static void
qp_close_fds(int *fds, int n)
{
	for (int i = 0; i < n; i++) {
		if (fds[i] >= 0)
			close(fds[i]);
		fds[i] = -1;
	}
}

static int
qp_make(size_t produce_size, size_t consume_size, struct qp **qpp, struct qp_fds *peer, bool lend)
{
	/* mem, ev0 (ours), ev1 (peer's), sp0, sp1, dup(ev0), dup(ev1) */
	int fd[7] = { -1, -1, -1, -1, -1, -1, -1 };
	size_t len = qp_layout_size(produce_size, consume_size);
	struct qp_meta *meta;
	struct qp *qp = NULL;
	void *base = MAP_FAILED;
	int err;

	if (!qp__size_ok(produce_size) || !qp__size_ok(consume_size))
		return -EINVAL;
	fd[0] = memfd_create("vmfabric-qp", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd[0] < 0 || ftruncate(fd[0], (off_t)len) < 0 ||
	    fcntl(fd[0], F_ADD_SEALS, QP_SEALS) < 0)
		goto fail_errno;
	base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd[0], 0);
	if (base == MAP_FAILED)
		goto fail_errno;
	fd[1] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	fd[2] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fd[1] < 0 || fd[2] < 0 ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, &fd[3]) < 0)
		goto fail_errno;
	if (!lend) {
		fd[5] = fcntl(fd[1], F_DUPFD_CLOEXEC, 0);
		fd[6] = fcntl(fd[2], F_DUPFD_CLOEXEC, 0);
		if (fd[5] < 0 || fd[6] < 0)
			goto fail_errno;
	}
	qp = malloc(sizeof(*qp));
	if (!qp) {
		err = -ENOMEM;
		goto fail;
	}
	meta = base;
	meta->magic = QP_MAGIC;
	meta->version = QP_VERSION;
	meta->size[0] = produce_size;
	meta->size[1] = consume_size;

	qp__init(qp, base, produce_size, consume_size, 0);
	qp->map_len = len;
	qp->wake = fd[1];
	qp->peer_wake = fd[2];
	qp->alive = fd[3];
	/* The memfd itself goes to the peer: our mapping keeps the object alive. */
	peer->mem = fd[0];
	peer->wake = lend ? fd[2] : fd[6];
	peer->peer_wake = lend ? fd[1] : fd[5];
	peer->alive = fd[4];
	*qpp = qp;
	return 0;

fail_errno:
	err = -errno;
fail:
	if (base != MAP_FAILED)
		munmap(base, len);
	qp_close_fds(fd, 7);
	free(qp);
	return err;
}

int
qp_create(size_t produce_size, size_t consume_size, struct qp **qpp, struct qp_fds *peer)
{
	return qp_make(produce_size, consume_size, qpp, peer, false);
}

int
qp_create_lent(size_t produce_size, size_t consume_size, struct qp **qpp, struct qp_fds *peer)
{
	return qp_make(produce_size, consume_size, qpp, peer, true);
}

/* Read the creator's meta page once and check it against the memfd. */
static int
qp_check_layout(const void *base, size_t len, uint64_t size[2])
{
	struct qp_meta m;

	memcpy(&m, base, sizeof(m));
	if (m.magic != QP_MAGIC || m.version != QP_VERSION)
		return -EPROTO;
	if (!qp__size_ok(m.size[0]) || !qp__size_ok(m.size[1]))
		return -EPROTO;
	if (qp_layout_size(m.size[0], m.size[1]) != len)
		return -EPROTO;
	size[0] = m.size[0];
	size[1] = m.size[1];
	return 0;
}

/* The memfd must be sealed and of a size some layout can have. */
static int
qp_check_mem(int mem, size_t *len)
{
	struct stat st;
	int seals;

	if (fstat(mem, &st) < 0)
		return -errno;
	seals = fcntl(mem, F_GET_SEALS);
	if (seals < 0 || (seals & QP_SEALS) != QP_SEALS)
		return -EPROTO;
	if (st.st_size < (off_t)qp_layout_size(QP_SIZE_MIN, QP_SIZE_MIN) ||
	    st.st_size > (off_t)qp_layout_size(QP_SIZE_MAX, QP_SIZE_MAX))
		return -EPROTO;
	*len = (size_t)st.st_size;
	return 0;
}

int
qp_watch_open(int memfd, struct qp_watch *w)
{
	struct qp_meta m;
	size_t len;
	uint8_t *base;
	int err;

	if ((err = qp_check_mem(memfd, &len)))
		return err;
	if (pread(memfd, &m, sizeof(m), 0) != (ssize_t)sizeof(m))
		return -EPROTO;
	if ((err = qp_check_layout(&m, len, w->size)))
		return err;
	/* One mapping from queue 0's header to queue 1's header, both included. */
	w->map_len = 2 * QP_PAGE + w->size[0];
	base = mmap(NULL, w->map_len, PROT_READ, MAP_SHARED, memfd, QP_PAGE);
	if (base == MAP_FAILED)
		return -errno;
	w->q[0] = (const struct qp_queue *)base;
	w->q[1] = (const struct qp_queue *)(base + QP_PAGE + w->size[0]);
	return 0;
}

void
qp_watch_read(const struct qp_watch *w, struct qp_counts *c)
{
	for (int i = 0; i < 2; i++) {
		c->size[i] = w->size[i];
		c->tail[i] = atomic_load_explicit(&w->q[i]->prod.index, memory_order_relaxed);
		c->head[i] = atomic_load_explicit(&w->q[i]->cons.index, memory_order_relaxed);
	}
}

void
qp_watch_close(struct qp_watch *w)
{
	if (w->q[0])
		munmap((void *)(uintptr_t)w->q[0], w->map_len);
	w->q[0] = w->q[1] = NULL;
}

int
qp_attach(const struct qp_fds *fds, struct qp **qpp)
{
	uint64_t size[2];
	struct qp *qp;
	void *base;
	size_t len;
	int err;

	if (fds->mem < 0 || fds->wake < 0 || fds->peer_wake < 0)
		return -EBADF;
	if ((err = qp_check_mem(fds->mem, &len)))
		return err;
	/*
	 * The eventfds come non-blocking from qp_create(). Setting O_NONBLOCK
	 * here would not protect us from a creator that clears it: the flag
	 * lives in the file description the creator shares.
	 */
	base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fds->mem, 0);
	if (base == MAP_FAILED)
		return -errno;
	err = qp_check_layout(base, len, size);
	if (err)
		goto fail;
	qp = malloc(sizeof(*qp));
	if (!qp) {
		err = -ENOMEM;
		goto fail;
	}
	qp__init(qp, base, size[0], size[1], 1);
	qp->map_len = len;
	qp->wake = fds->wake;
	qp->alive = fds->alive;
	qp->peer_wake = fds->peer_wake;
	close(fds->mem);
	*qpp = qp;
	return 0;
fail:
	munmap(base, len);
	return err;
}

int
qp_create_pair(size_t size0, size_t size1, struct qp **side0, struct qp **side1)
{
	struct qp_fds f;
	int err = qp_create(size0, size1, side0, &f);

	if (err)
		return err;
	if ((err = qp_attach(&f, side1))) {
		qp_close_fds((int[]){ f.mem, f.wake, f.peer_wake, f.alive }, 4);
		qp_close(*side0);
		*side0 = NULL;
	}
	return err;
}

int
qp_shutdown(struct qp *qp, int how)
{
	if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR)
		return -EINVAL;
	qp__shut(qp, how != SHUT_WR, how != SHUT_RD);
	return 0;
}

void
qp_detach(struct qp *qp)
{
	int fds[4];

	if (!qp)
		return;
	if (qp->map_len)
		munmap(qp->map, qp->map_len);
	fds[0] = qp->wake;
	fds[1] = qp->peer_wake;
	fds[2] = qp->alive;
	fds[3] = qp->ep_owned ? qp->ep : -1;
	qp_close_fds(fds, 4);
	free(qp);
}

void
qp_close(struct qp *qp)
{
	if (!qp)
		return;
	/* For good: a peer keeping its end for reuse must not wait for ours. */
	atomic_fetch_or_explicit(&qp->tx.q->prod.flags, QP_LINE_GONE, memory_order_relaxed);
	atomic_fetch_or_explicit(&qp->rx.q->cons.flags, QP_LINE_GONE, memory_order_relaxed);
	qp__shut(qp, true, true);
	qp_detach(qp);
}

void
qp_set_mode(struct qp *qp, enum qp_mode mode)
{
	qp->mode = mode;
}

void
qp_set_timeout(struct qp *qp, int64_t timeout_ns)
{
	qp->timeout_ns = timeout_ns < 0 ? -1 : timeout_ns;
}

void
qp_set_spin(struct qp *qp, uint32_t spin_ns)
{
	qp->spin_ns = spin_ns;
}

void
qp_get_stats(const struct qp *qp, struct qp_stats *st)
{
	*st = qp->st;
}

size_t
qp_tx_size(const struct qp *qp)
{
	return qp->tx.size;
}

size_t
qp_rx_size(const struct qp *qp)
{
	return qp->rx.size;
}

bool
qp_peer_reset(const struct qp *qp)
{
	return qp->peer_gone && !qp->rx.peer_shut &&
	       !qp__line_closed(qp, atomic_load_explicit(&qp->rx.q->prod.flags,
							 memory_order_acquire));
}

const char *
qp_broken_reason(const struct qp *qp)
{
	return qp->err ? qp->why : NULL;
}
