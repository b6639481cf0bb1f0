/* SPDX-License-Identifier: MIT */
/*
 * The fd keeper (see keeper.h): its protocol, the process itself, and the
 * daemon's side.
 *
 * Protocol, over SOCK_SEQPACKET: fixed-size messages (struct keep_msg).
 * HELLO (daemon: its control socket's path, whether it wants the keeper's
 * copy) -> WELCOME (keeper: its path, whether it has a copy) or BUSY
 * (another daemon is connected). SNAP carries a snapshot: the JSON in a
 * memfd, the first descriptor, then the descriptors it names, at most
 * FDPASS_SCM_MAX per message; a snapshot replaces the previous one when
 * its last descriptor arrives. BYE: the daemon stops cleanly, the keeper
 * ends. The JSON's "fds" array lists the sender's numbers of the
 * descriptors, in the order sent, so that a receiver renumbers every
 * descriptor field (listen, pidfd, sock, fd, kick, call, err) to its own.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/fdpass.h"
#include "common/log.h"
#include "common/proc.h"
#include "keeper.h"

#define KEEP_MAGIC 0x70656b76u /* "vkep" */
#define KEEP_TIMEOUT_MS 2000
#define KEEP_MAX_FDS (1u << 16)
/* A keeper that dies this soon after its start, three times running: give up. */
#define KEEP_QUICK_NS 1000000000ll
#define KEEP_QUICK_MAX 3

enum keep_type { KEEP_HELLO = 1, KEEP_WELCOME, KEEP_BUSY, KEEP_SNAP, KEEP_BYE };
#define KEEP_F_WANT 1u /* HELLO: send me your copy */
#define KEEP_F_HAVE 1u /* WELCOME: I hold one (sent next if wanted) */

struct keep_msg {
	uint32_t magic, type;
	uint32_t seq;	/* SNAP: the snapshot's number */
	uint32_t nfds;	/* SNAP: descriptors in the whole snapshot (the memfd first) */
	uint32_t first; /* SNAP: index of this message's first descriptor */
	uint32_t flags;
	uint32_t pid;	/* WELCOME: the keeper's */
	char path[108]; /* HELLO, WELCOME: the control socket */
};

/* A snapshot: the memfd with the JSON, then its descriptors. */
struct snap {
	uint32_t seq, n, got;
	int *fds;
};

static void
snap_free(struct snap *s)
{
	for (uint32_t i = 0; i < s->got; i++)
		close(s->fds[i]);
	free(s->fds);
	memset(s, 0, sizeof(*s));
}

static void
close_all(const int *fds, int n)
{
	for (int i = 0; i < n; i++)
		close(fds[i]);
}

/*
 * The keeper's socket for control socket @path: "@path.keep" next to it, in
 * the control socket's directory, where only its owner (root) makes files,
 * with mode 0600. A path too long for that gets an abstract name instead,
 * a hash of the path (which anyone in the network namespace could take
 * first: a crash then loses the VMs, and the daemon says why). Either way
 * the keeper checks the full path in HELLO. Returns the address length;
 * *@file: a socket file (to replace when stale, to remove after).
 */
static socklen_t
keep_addr(const char *path, struct sockaddr_un *a, bool *file)
{
	size_t len = strlen(path);
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	int n;

	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	*file = len + sizeof(".keep") <= sizeof(a->sun_path);
	if (*file) {
		memcpy(a->sun_path, path, len);
		memcpy(a->sun_path + len, ".keep", sizeof(".keep"));
		return (socklen_t)sizeof(*a);
	}
	for (const char *p = path; *p; p++)
		h = (h ^ (uint8_t)*p) * 1099511628211ull;
	n = snprintf(a->sun_path + 1, sizeof(a->sun_path) - 1, KEEPER_NAME "-%016llx",
		     (unsigned long long)h);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

static void
set_timeouts(int fd)
{
	struct timeval tv = { .tv_sec = KEEP_TIMEOUT_MS / 1000 };

	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

static int
send_msg(int fd, uint32_t type, uint32_t flags, const char *path)
{
	struct keep_msg m = {
		.magic = KEEP_MAGIC, .type = type, .flags = flags, .pid = (uint32_t)getpid()
	};
	struct iovec iov = { &m, sizeof(m) };
	ssize_t n;

	if (path)
		snprintf(m.path, sizeof(m.path), "%s", path);
	n = fdpass_send(fd, &iov, 1, NULL, 0, 0);
	return n < 0 ? (int)n : 0;
}

/*
 * One message and its descriptors (*@nfds of them in @fds, close-on-exec).
 * Bytes received (0: the peer hung up), -EPROTO for anything malformed
 * (its descriptors closed), or -errno.
 */
static ssize_t
recv_msg(int fd, struct keep_msg *m, int *fds, int *nfds)
{
	struct iovec iov = { m, sizeof(*m) };
	int mflags = 0;
	ssize_t n = fdpass_recv(fd, &iov, 1, fds, nfds, FDPASS_SCM_MAX, 0, &mflags);

	if (n < 0 || (n == 0 && !*nfds))
		return n; /* an error, or the peer hung up */
	if (n != sizeof(*m) || (mflags & MSG_TRUNC) || m->magic != KEEP_MAGIC) {
		close_all(fds, *nfds);
		*nfds = 0;
		return -EPROTO;
	}
	m->path[sizeof(m->path) - 1] = 0;
	return n;
}

/* Add SNAP message @m's descriptors to @s: 1 when complete, 0 for more, -EPROTO. */
static int
snap_add(struct snap *s, const struct keep_msg *m, const int *fds, int nfds)
{
	if (m->first == 0) {
		snap_free(s);
		if (!m->nfds || m->nfds > KEEP_MAX_FDS || !(s->fds = calloc(m->nfds, sizeof(int))))
			goto bad;
		s->seq = m->seq;
		s->n = m->nfds;
	} else if (!s->fds || m->seq != s->seq || m->first != s->got || m->nfds != s->n) {
		goto bad;
	}
	if (!nfds || (uint32_t)nfds > s->n - s->got)
		goto bad;
	memcpy(s->fds + s->got, fds, sizeof(int) * (size_t)nfds);
	s->got += (uint32_t)nfds;
	return s->got == s->n;
bad:
	close_all(fds, nfds);
	snap_free(s);
	return -EPROTO;
}

static int
snap_send(int fd, uint32_t seq, const int *fds, uint32_t n)
{
	for (uint32_t first = 0; first < n; first += FDPASS_SCM_MAX) {
		uint32_t k = n - first < FDPASS_SCM_MAX ? n - first : FDPASS_SCM_MAX;
		struct keep_msg m = {
			.magic = KEEP_MAGIC, .type = KEEP_SNAP, .seq = seq, .nfds = n, .first = first
		};
		struct iovec iov = { &m, sizeof(m) };
		ssize_t r = fdpass_send(fd, &iov, 1, fds + first, (int)k, 0);

		if (r < 0)
			return (int)r;
	}
	return 0;
}

/* ---------------------------------------------------------------------- */
/* The keeper process */

struct kp {
	int conn, lfd;
	bool greeted; /* conn said HELLO (or is the daemon that started us) */
	const char *path;
	struct snap cur, next;
};

static void
kp_hello(struct kp *p, const struct keep_msg *m)
{
	bool ours = !strcmp(m->path, p->path);
	bool have = ours && p->cur.n;

	if (send_msg(p->conn, KEEP_WELCOME, have ? KEEP_F_HAVE : 0, p->path) < 0 || !ours) {
		if (!ours)
			log_warn(KEEPER_NAME ": a vmfabricd for %s asked (this one keeps %s)", m->path,
				 p->path);
		close(p->conn);
		p->conn = -1;
		return;
	}
	p->greeted = true;
	if (have && (m->flags & KEEP_F_WANT)) {
		if (snap_send(p->conn, p->cur.seq, p->cur.fds, p->cur.n) < 0) {
			log_err(KEEPER_NAME ": handing over to vmfabricd: %s", strerror(errno));
			close(p->conn);
			p->conn = -1;
			return;
		}
		log_info(KEEPER_NAME ": handed %u descriptors to the new vmfabricd", p->cur.n - 1);
	}
}

/* The daemon's message: 1 on BYE, 0, or -errno (the connection is done). */
static int
kp_serve(struct kp *p)
{
	int fds[FDPASS_SCM_MAX], nfds, r;
	struct keep_msg m;
	ssize_t n = recv_msg(p->conn, &m, fds, &nfds);

	if (n <= 0)
		return n == 0 ? -ENOTCONN : (int)n;
	if (!p->greeted && m.type != KEEP_HELLO)
		m.type = 0; /* refused below */
	switch (m.type) {
	case KEEP_HELLO:
		if (p->greeted || nfds)
			break;
		kp_hello(p, &m);
		return 0;
	case KEEP_SNAP:
		r = snap_add(&p->next, &m, fds, nfds);
		if (r < 0)
			return r;
		if (r == 1) { /* complete: it replaces the old copy, whose descriptors go */
			snap_free(&p->cur);
			p->cur = p->next;
			memset(&p->next, 0, sizeof(p->next));
		}
		return 0;
	case KEEP_BYE:
		close_all(fds, nfds);
		return 1;
	}
	close_all(fds, nfds);
	return -EPROTO;
}

/* The daemon's connection is readable: 1 on BYE, else 0 (the connection may be gone). */
static int
kp_conn(struct kp *p)
{
	int r = kp_serve(p);

	if (r == 0 || r == 1)
		return r;
	if (r == -ENOTCONN && p->cur.n)
		log_warn(KEEPER_NAME ": vmfabricd gone without stopping: keeping %u descriptors for "
			 "the next one on %s",
			 p->cur.n - 1, p->path);
	else if (r != -ENOTCONN)
		log_err(KEEPER_NAME ": vmfabricd's connection: %s", strerror(-r));
	close(p->conn);
	p->conn = -1;
	snap_free(&p->next);
	return 0;
}

/* A daemon connects: 1 if the one before said BYE meanwhile, else 0. */
static int
kp_accept(struct kp *p)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	int fd = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC);
	struct pollfd q;

	if (fd < 0)
		return 0;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 || cr.uid != geteuid()) {
		log_warn(KEEPER_NAME ": refused a connection from uid %d", (int)cr.uid);
		close(fd);
		return 0;
	}
	/* What a daemon that just died still had queued (its last state, its hangup) first. */
	while (p->conn >= 0 && (q = (struct pollfd){ .fd = p->conn, .events = POLLIN },
				poll(&q, 1, 0) == 1)) {
		if (kp_conn(p) == 1) {
			close(fd);
			return 1;
		}
	}
	if (p->conn >= 0) { /* a daemon is connected: it keeps the socket */
		send_msg(fd, KEEP_BUSY, 0, p->path);
		close(fd);
		return 0;
	}
	set_timeouts(fd);
	p->conn = fd;
	p->greeted = false;
	return 0;
}

/*
 * Whatever the daemon left open across exec by mistake (what it inherited
 * itself, say) would be kept alive here for as long as the keeper lives: a
 * TAP interface, a client's socket. Only ours and the standard ones stay.
 */
static void
close_others(int a, int b)
{
	int lo = a < b ? a : b, hi = a < b ? b : a;

	if (lo > 3)
		close_range(3, (unsigned)lo - 1, 0);
	if (hi > lo + 1)
		close_range((unsigned)lo + 1, (unsigned)hi - 1, 0);
	close_range((unsigned)hi + 1, ~0u, 0);
}

void
keeper_main(int conn, int lfd, const char *path)
{
	struct kp p = { .conn = conn, .lfd = lfd, .greeted = true, .path = path };
	struct rlimit rl;
	int r = 0;

	prctl(PR_SET_NAME, KEEPER_NAME);
	/* A terminal's ^C or hangup is for the daemon, which tells us (BYE). */
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max; /* it holds what the daemon holds for VMs */
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	fcntl(conn, F_SETFD, FD_CLOEXEC);
	fcntl(lfd, F_SETFD, FD_CLOEXEC);
	close_others(conn, lfd);
	set_timeouts(conn);
	for (;;) {
		struct pollfd pf[2] = { { .fd = lfd, .events = POLLIN },
					{ .fd = p.conn, .events = POLLIN } };

		if (poll(pf, p.conn >= 0 ? 2 : 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		/* The daemon's connection first: a crashed one's hangup before its successor. */
		if (p.conn >= 0 && pf[1].revents && (r = kp_conn(&p)) == 1)
			break;
		if ((pf[0].revents & POLLIN) && (r = kp_accept(&p)) == 1)
			break;
	}
	snap_free(&p.cur);
	snap_free(&p.next);
	if (p.conn >= 0)
		close(p.conn);
	close(lfd);
	if (r == 1) { /* a clean stop: nothing for a next daemon to find */
		struct sockaddr_un a;
		bool file;

		keep_addr(path, &a, &file);
		if (file)
			unlink(a.sun_path);
	}
	exit(r == 1 ? 0 : 1);
}

/* ---------------------------------------------------------------------- */
/* The daemon's side: descriptors in the JSON */

static bool
fd_key(const char *k)
{
	static const char *const keys[] = { "listen", "pidfd", "sock", "fd", "kick", "call", "err" };

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (!strcmp(k, keys[i]))
			return true;
	return false;
}

struct fdset {
	int *v;
	size_t n, cap;
};

/* Call @fn on every descriptor field of @j (an integer >= 0 under an fd key). */
static void
fd_walk(json_t *j, void (*fn)(json_t *val, void *ctx), void *ctx)
{
	const char *k;
	json_t *v;
	size_t i;

	if (json_is_object(j)) {
		json_object_foreach(j, k, v) {
			if (json_is_integer(v) && fd_key(k) && json_integer_value(v) >= 0)
				fn(v, ctx);
			else
				fd_walk(v, fn, ctx);
		}
	} else if (json_is_array(j)) {
		json_array_foreach(j, i, v)
			fd_walk(v, fn, ctx);
	}
}

static void
fd_collect(json_t *val, void *ctx)
{
	struct fdset *s = ctx;
	int fd = (int)json_integer_value(val);
	int *nv;

	for (size_t i = 0; i < s->n; i++)
		if (s->v[i] == fd)
			return;
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 64;
		if (!(nv = realloc(s->v, s->cap * sizeof(int)))) {
			s->cap = s->n;
			return; /* sent without it: that VM's restore fails, others go on */
		}
		s->v = nv;
	}
	s->v[s->n++] = fd;
}

struct remap {
	json_t *old;	 /* the sender's numbers */
	const int *now;	 /* ours, in the same order */
	bool *used;
};

static void
fd_renumber(json_t *val, void *ctx)
{
	struct remap *r = ctx;
	json_int_t fd = json_integer_value(val);
	size_t i;
	json_t *o;

	json_array_foreach(r->old, i, o) {
		if (json_integer_value(o) == fd) {
			json_integer_set(val, r->now[i]);
			r->used[i] = true;
			return;
		}
	}
	json_integer_set(val, -1);
}

/* The JSON of a received snapshot, its descriptors renumbered (all of @s taken). */
static json_t *
snap_json(struct snap *s)
{
	struct remap r = { 0 };
	json_error_t e;
	json_t *doc;

	lseek(s->fds[0], 0, SEEK_SET);
	doc = json_loadfd(s->fds[0], 0, &e);
	r.old = doc ? json_object_get(doc, "fds") : NULL;
	r.now = s->fds + 1;
	r.used = calloc(s->n, sizeof(bool));
	if (!r.used || !json_is_array(r.old) || json_array_size(r.old) != s->n - 1) {
		log_err("fd keeper: its copy does not hold together%s%s", doc ? "" : ": ",
			doc ? "" : e.text);
		json_decref(doc);
		free(r.used);
		snap_free(s);
		return NULL;
	}
	json_incref(r.old);
	json_object_del(doc, "fds");
	fd_walk(doc, fd_renumber, &r);
	close(s->fds[0]);
	for (uint32_t i = 1; i < s->n; i++)
		if (!r.used[i - 1])
			close(s->fds[i]);
	json_decref(r.old);
	free(r.used);
	free(s->fds);
	memset(s, 0, sizeof(*s));
	return doc;
}

/* ---------------------------------------------------------------------- */
/* The daemon's side: the connection */

static void keeper_lost(struct keeper *k, const char *why);

static void
conn_event(struct loop_src *s, uint32_t events)
{
	struct keeper *k = (struct keeper *)((char *)s - offsetof(struct keeper, conn));
	int fds[FDPASS_SCM_MAX], nfds;
	struct keep_msg m;
	ssize_t n;

	(void)events;
	n = recv_msg(s->fd, &m, fds, &nfds);
	if (n == -EAGAIN)
		return;
	close_all(fds, nfds);
	keeper_lost(k, n == 0 ? "closed its connection" : "broke the protocol");
}

static void
proc_event(struct loop_src *s, uint32_t events)
{
	struct keeper *k = (struct keeper *)((char *)s - offsetof(struct keeper, proc));

	(void)events;
	keeper_lost(k, "exited");
}

/* Forget the keeper; @kill: make sure it is gone first. */
static void
drop(struct keeper *k, bool kill)
{
	if (k->conn.fd >= 0) {
		loop_del(k->loop, &k->conn);
		close(k->conn.fd);
		k->conn.fd = -1;
	}
	if (k->proc.fd >= 0) {
		struct pollfd p = { .fd = k->proc.fd, .events = POLLIN };
		siginfo_t si;

		if (kill)
			pidfd_send_signal(k->proc.fd, SIGKILL, NULL, 0);
		if (kill || k->child)
			poll(&p, 1, KEEP_TIMEOUT_MS);
		if (k->child)
			waitid((idtype_t)P_PIDFD, (id_t)k->proc.fd, &si, WEXITED | WNOHANG);
		loop_del(k->loop, &k->proc);
		close(k->proc.fd);
		k->proc.fd = -1;
	}
	k->pid = 0;
}

/* Watch the connection and the pidfd; a blocking socket with timeouts. */
static int
watch(struct keeper *k)
{
	int fl = fcntl(k->conn.fd, F_GETFL);

	if (fl >= 0)
		fcntl(k->conn.fd, F_SETFL, fl & ~O_NONBLOCK);
	set_timeouts(k->conn.fd);
	k->conn.fn = conn_event;
	k->proc.fn = proc_event;
	if (loop_add(k->loop, &k->conn, EPOLLIN) < 0 || loop_add(k->loop, &k->proc, EPOLLIN) < 0)
		return -errno;
	return 0;
}

static int
spawn(struct keeper *k)
{
	struct sockaddr_un a;
	bool file;
	socklen_t alen = keep_addr(k->path, &a, &file);
	char name[] = KEEPER_NAME, opt_s[] = "-s", arg[48];
	char *argv[] = { name, arg, opt_s, k->path, NULL };
	int lfd, sv[2] = { -1, -1 }, err;
	pid_t pid;

	if (file)
		unlink(a.sun_path); /* a dead keeper's: find() could not connect to it */
	lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	/*
	 * Bound and listening before the keeper runs: a daemon started after a
	 * crash right now finds the name taken and its connection waits in the
	 * backlog until the keeper takes it. (SO_PEERCRED then names whoever
	 * called listen() last: the keeper says its pid in WELCOME.)
	 */
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, alen) < 0 ||
	    (file && chmod(a.sun_path, 0600) < 0) || listen(lfd, 4) < 0 ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		err = -errno;
		goto fail;
	}
	snprintf(arg, sizeof(arg), "--keeper=%d,%d", sv[1], lfd);
	pid = fork();
	if (pid == 0) { /* async-signal-safe calls only until exec */
		sigset_t none;

		sigemptyset(&none);
		if (fcntl(sv[1], F_SETFD, 0) == 0 && fcntl(lfd, F_SETFD, 0) == 0 &&
		    sigprocmask(SIG_SETMASK, &none, NULL) == 0)
			execv(k->self, argv);
		_exit(127);
	}
	err = pid < 0 ? -errno : 0;
	close(sv[1]);
	sv[1] = -1;
	if (!err && (k->proc.fd = pidfd_open(pid, 0)) < 0) {
		err = -errno;
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	if (err)
		goto fail;
	close(lfd);
	k->conn.fd = sv[0];
	k->pid = pid;
	k->child = true;
	k->started++;
	k->last_start_ns = clock_ns();
	if ((err = watch(k))) {
		drop(k, true);
		return err;
	}
	log_info("fd keeper started (pid %d): it keeps the control socket and the VMs' devices "
		 "open if this daemon is killed",
		 (int)pid);
	return 0;
fail:
	for (int i = 0; i < 2; i++)
		if (sv[i] >= 0)
			close(sv[i]);
	if (lfd >= 0)
		close(lfd);
	return err;
}

static void
keeper_lost(struct keeper *k, const char *why)
{
	static unsigned quick;
	int err;

	log_warn("fd keeper (pid %d) %s: starting a new one", (int)k->pid, why);
	drop(k, true);
	quick = clock_ns() - k->last_start_ns < KEEP_QUICK_NS ? quick + 1 : 0;
	if (quick >= KEEP_QUICK_MAX) {
		log_err("fd keeper: died %u times right after starting: going on without one (a "
			"crash of this daemon now loses the VMs' vsock devices)",
			quick);
		k->given_up = true;
		return;
	}
	if ((err = spawn(k))) {
		log_err("fd keeper: cannot start one: %s", strerror(-err));
		return;
	}
	loop_mark_dirty(k->loop); /* the new one gets the state in the next round, idle or not */
}

/* The absolute path of @path, or @path itself if it does not fit. */
static void
set_path(struct keeper *k, const char *path)
{
	char cwd[4096];
	size_t a, b = strlen(path);

	if (path[0] != '/' && getcwd(cwd, sizeof(cwd)) &&
	    (a = strlen(cwd)) + 1 + b < sizeof(k->path)) {
		memcpy(k->path, cwd, a);
		k->path[a] = '/';
		memcpy(k->path + a + 1, path, b + 1);
	} else {
		snprintf(k->path, sizeof(k->path), "%s", path);
	}
}

static void
init(struct keeper *k, struct loop *loop, const char *self, const char *path)
{
	json_t *(*snapshot)(struct keeper *) = k->snapshot;
	void (*done)(struct keeper *) = k->snapshot_done;

	memset(k, 0, sizeof(*k));
	k->snapshot = snapshot;
	k->snapshot_done = done;
	k->loop = loop;
	k->self = self;
	k->conn.fd = k->proc.fd = -1;
	set_path(k, path);
}

/* Receive the keeper's copy after WELCOME: its JSON, or NULL. */
static json_t *
take_copy(struct keeper *k)
{
	struct snap s = { 0 };
	int fds[FDPASS_SCM_MAX], nfds, r = 0;
	struct keep_msg m;

	while (r == 0) {
		ssize_t n = recv_msg(k->conn.fd, &m, fds, &nfds);

		if (n <= 0 || m.type != KEEP_SNAP) {
			if (n > 0)
				close_all(fds, nfds);
			log_err("fd keeper: its copy did not come (%s)",
				n < 0 ? strerror((int)-n) : n == 0 ? "hung up" : "protocol");
			snap_free(&s);
			return NULL;
		}
		r = snap_add(&s, &m, fds, nfds);
	}
	return r == 1 ? snap_json(&s) : NULL;
}

/* Connect to @k->path's keeper: 1 found (*@saved its copy if asked), 0 none, -errno. */
static int
find(struct keeper *k, json_t **saved)
{
	struct sockaddr_un a;
	bool file;
	socklen_t alen = keep_addr(k->path, &a, &file), len;
	struct keep_msg m;
	struct ucred cr;
	int fd, nfds, fds[FDPASS_SCM_MAX];
	ssize_t n;

	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&a, alen) < 0) {
		close(fd);
		return 0;
	}
	len = sizeof(cr);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 || cr.uid != geteuid()) {
		log_err("fd keeper: the keeper socket of %s is held by uid %d, not ours: not used",
			k->path, (int)cr.uid);
		close(fd);
		return -EPERM;
	}
	set_timeouts(fd);
	k->conn.fd = fd;
	/* A busy keeper answers before HELLO, and hangs up: read even if sending failed. */
	send_msg(fd, KEEP_HELLO, saved ? KEEP_F_WANT : 0, k->path);
	n = recv_msg(fd, &m, fds, &nfds);
	if (n > 0)
		close_all(fds, nfds);
	if (n <= 0 || m.type == KEEP_BUSY || m.type != KEEP_WELCOME || strcmp(m.path, k->path)) {
		if (n > 0 && m.type == KEEP_BUSY)
			log_err("fd keeper: another vmfabricd is connected to the keeper of %s",
				k->path);
		else if (n > 0 && m.type == KEEP_WELCOME)
			log_err("fd keeper: the keeper found keeps %s, not %s: not used", m.path,
				k->path);
		else
			log_err("fd keeper of %s: no answer: not used", k->path);
		close(fd);
		k->conn.fd = -1;
		return -EBUSY;
	}
	k->pid = (pid_t)m.pid;
	k->child = false;
	if ((k->proc.fd = pidfd_open(k->pid, 0)) < 0 || watch(k)) {
		drop(k, false);
		return -ESRCH;
	}
	if (saved && (m.flags & KEEP_F_HAVE)) {
		*saved = take_copy(k);
		k->inherited = *saved != NULL;
	}
	log_info("fd keeper (pid %d) found%s", (int)k->pid,
		 k->inherited ? ": restoring what the daemon before this one left" : "");
	return 1;
}

int
keeper_open(struct keeper *k, struct loop *loop, const char *self, const char *path,
	    json_t **saved)
{
	int err;

	init(k, loop, self, path);
	if (saved)
		*saved = NULL;
	err = find(k, saved);
	if (err == 0 && (err = spawn(k)))
		log_err("fd keeper: cannot start one (%s): a crash of this daemon would lose the "
			"VMs' vsock devices",
			strerror(-err));
	return err < 0 ? err : 0;
}

int
keeper_adopt(struct keeper *k, struct loop *loop, const char *self, const char *path, json_t *o)
{
	json_int_t pid, started;
	int child;

	if (!o)
		return keeper_open(k, loop, self, path, NULL);
	init(k, loop, self, path);
	if (json_unpack(o, "{s:i, s:i, s:I, s:b, s:I}", "conn", &k->conn.fd, "pidfd", &k->proc.fd,
			"pid", &pid, "child", &child, "started", &started))
		return keeper_open(k, loop, self, path, NULL);
	fcntl(k->conn.fd, F_SETFD, FD_CLOEXEC);
	fcntl(k->proc.fd, F_SETFD, FD_CLOEXEC);
	k->pid = (pid_t)pid;
	k->child = child;
	k->started = (unsigned)started;
	if (watch(k)) {
		drop(k, true);
		return keeper_open(k, loop, self, path, NULL);
	}
	log_info("fd keeper (pid %d) kept across the restart", (int)k->pid);
	return 0;
}

json_t *
keeper_save(struct keeper *k)
{
	if (k->conn.fd < 0)
		return NULL;
	fcntl(k->conn.fd, F_SETFD, 0);
	fcntl(k->proc.fd, F_SETFD, 0);
	return json_pack("{s:i, s:i, s:I, s:b, s:I}", "conn", k->conn.fd, "pidfd", k->proc.fd,
			 "pid", (json_int_t)k->pid, "child", k->child, "started",
			 (json_int_t)k->started);
}

void
keeper_save_undo(struct keeper *k)
{
	if (k->conn.fd >= 0) {
		fcntl(k->conn.fd, F_SETFD, FD_CLOEXEC);
		fcntl(k->proc.fd, F_SETFD, FD_CLOEXEC);
	}
}

void
keeper_update(struct keeper *k)
{
	struct fdset s = { 0 };
	json_t *doc;
	char *text = NULL;
	int mfd = -1, err = -ENOMEM, *all = NULL;
	size_t len;

	if (k->conn.fd < 0 || !k->snapshot)
		return;
	doc = k->snapshot(k);
	if (doc) {
		json_t *arr = json_array();

		fd_walk(doc, fd_collect, &s);
		for (size_t i = 0; arr && i < s.n; i++)
			json_array_append_new(arr, json_integer(s.v[i]));
		json_object_set_new(doc, "fds", arr);
		text = json_dumps(doc, JSON_COMPACT);
		all = malloc((s.n + 1) * sizeof(int));
	}
	if (text && all && (mfd = memfd_create(KEEPER_NAME, MFD_CLOEXEC)) >= 0) {
		len = strlen(text);
		all[0] = mfd;
		memcpy(all + 1, s.v, s.n * sizeof(int));
		err = write(mfd, text, len) == (ssize_t)len ? snap_send(k->conn.fd, ++k->seq, all,
									(uint32_t)s.n + 1)
							    : -EIO;
	}
	if (k->snapshot_done)
		k->snapshot_done(k);
	if (mfd >= 0)
		close(mfd);
	free(all);
	free(text);
	free(s.v);
	json_decref(doc);
	if (!err)
		k->sent++;
	else
		keeper_lost(k, err == -ENOMEM ? "cannot be given the state (no memory)"
					      : "stopped taking the state");
}

void
keeper_close(struct keeper *k, bool bye)
{
	if (k->conn.fd < 0)
		return;
	if (bye && send_msg(k->conn.fd, KEEP_BYE, 0, NULL) == 0) {
		/* Gone before we are: a daemon started next must not find it. */
		struct pollfd p = { .fd = k->proc.fd, .events = POLLIN };

		if (!k->child && k->proc.fd >= 0)
			poll(&p, 1, KEEP_TIMEOUT_MS);
		drop(k, false); /* waits for a child's exit (it closes everything first) */
		return;
	}
	if (!bye)
		log_info("fd keeper (pid %d) left with what it holds, for the next daemon",
			 (int)k->pid);
	k->child = false; /* not waited for */
	drop(k, false);
}

json_t *
keeper_status(const struct keeper *k)
{
	if (k->conn.fd < 0)
		return NULL;
	return json_pack("{s:I, s:I, s:I, s:I}", "pid", (json_int_t)k->pid, "fds",
			 (json_int_t)proc_fd_count_of(k->pid), "started", (json_int_t)k->started,
			 "snapshots", (json_int_t)k->sent);
}
