/* SPDX-License-Identifier: MIT */
/*
 * bench/run rdma, measurement rdma_block: the rdma-block example
 * (examples/rdma-block, in the spirit of NVMe over RDMA) between two
 * processes, a target exporting a file on tmpfs (so that the figure is the
 * transport's, not a disk's) and a host keeping 16 commands in flight:
 * sequential 128 KiB and random 4 KiB, reads and writes, for a fixed time
 * each, after a warm-up. The host's buffers are its registered slots (no
 * copy into them per command); the target RDMA READs a host write into a
 * staging slot and pwrites it, preads a host read and RDMA WRITEs it.
 *
 * The peer in the same run, system "tcp": the same capsules over a TCP
 * loopback connection, the data in-band after a WRITE's capsule and a
 * READ's response, blocking sockets with TCP_NODELAY; its target checks
 * capsules with the same function and preads / pwrites the same file.
 * Both run again on a memory store (store "memory"): without the page
 * cache's copies, what is left is the transport. The vmfabric sides poll
 * for 50 us after work, then sleep on their completion channels (mode
 * spin_then_block); the TCP sides block (mode blocking). Targets on CPU
 * 1, hosts on CPU 0. Rounds alternate the two; the median is reported.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench-rdmablk.h"
#include "blk.h"
#include "vmfabric/vmci.h"

#define BENCH	   "rdma_block"
#define QDEPTH	   16u
#define MAX_BLOCKS 32u /* 128 KiB */
#define ROUNDS_MAX 3
/*
 * Both vmfabric sides poll this long after work, then sleep on their
 * completion channels. Busy-polling all the time was slower here, and
 * unsteady: on a 2-CPU machine a side that spins takes the CPU time its
 * peer's copies need whenever anything else runs.
 */
#define SPIN_US 50

enum { C_SEQ_READ, C_SEQ_WRITE, C_RAND_READ, C_RAND_WRITE, C_N };
enum { S_VMF, S_TCP, S_N };

static const struct bcase {
	const char *op, *pattern;
	uint8_t opcode;
	uint32_t blocks;
	bool rand;
} cases[C_N] = {
	{ "read", "seq", BLK_OP_READ, MAX_BLOCKS, false },
	{ "write", "seq", BLK_OP_WRITE, MAX_BLOCKS, false },
	{ "read", "rand", BLK_OP_READ, 1, true },
	{ "write", "rand", BLK_OP_WRITE, 1, true },
};

static const char *const sys_name[S_N] = { "vmfabric", "tcp" };
static const char *const sys_mode[S_N] = { "spin_then_block", "blocking" };

enum { ST_FILE, ST_MEM, ST_N };

struct bplan {
	double warm, dur; /* seconds a case */
	uint64_t nblocks; /* the store's */
	char path[128];	  /* the file */
	int store;	  /* this round's: ST_FILE or ST_MEM */
};

/* Between the parent and a round's two processes. */
struct bshared {
	_Atomic uint32_t port; /* the target's (RDMA CM or TCP), once it listens */
	uint32_t cid;	       /* the RDMA target's context */
	double res[C_N][2];    /* gbit_s, kiops */
	char why[256];
};

struct lbagen {
	uint64_t next, rng, nblocks;
	uint32_t n;
	bool rand;
};

static uint64_t
lba_next(struct lbagen *g)
{
	uint64_t l;

	if (g->rand) {
		g->rng ^= g->rng << 13;
		g->rng ^= g->rng >> 7;
		g->rng ^= g->rng << 17;
		return g->rng % (g->nblocks / g->n) * g->n;
	}
	l = g->next;
	g->next += g->n;
	if (g->next + g->n > g->nblocks)
		g->next = 0;
	return l;
}

static int
open_store(const struct bplan *p, struct blk_store **s)
{
	return p->store == ST_MEM ? blks_open_memory(p->nblocks * BLK_BLOCK_SIZE, s)
				  : blks_open_file(p->path, 0, s);
}

static void __attribute__((noreturn, format(printf, 2, 3)))
die(struct bshared *sh, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sh->why, sizeof(sh->why), fmt, ap);
	va_end(ap);
	_exit(1);
}

/*
 * The measuring loop of both systems: @submit one command, @reap some
 * completions (their bytes), until dur seconds after the warm-up; the rate
 * over the completions reaped in between.
 */
struct xport {
	int (*submit)(void *x, unsigned slot, uint64_t lba);
	int (*reap)(void *x, unsigned *slots, uint64_t *bytes, int max); /* count or -errno */
	void *x;
};

static int
measure(const struct xport *t, const struct bcase *k, const struct bplan *p, double out[2])
{
	struct lbagen g = {
		.rng = 0x9e3779b97f4a7c15ull, .nblocks = p->nblocks, .n = k->blocks, .rand = k->rand
	};
	double start = bench_now() + p->warm, t0 = 0, t1 = 0;
	uint64_t bytes = 0, ios = 0, b[QDEPTH];
	unsigned inflight = 0, s[QDEPTH];
	bool measuring = false, stopping = false;
	int n, err;

	for (unsigned i = 0; i < QDEPTH; i++, inflight++)
		if ((err = t->submit(t->x, i, lba_next(&g))))
			return err;
	while (inflight) {
		double now;

		if ((n = t->reap(t->x, s, b, (int)QDEPTH)) < 0)
			return n;
		now = bench_now();
		inflight -= (unsigned)n;
		if (!measuring && now >= start) {
			measuring = true;
			t0 = now;
		} else if (measuring && !stopping) {
			for (int i = 0; i < n; i++)
				bytes += b[i];
			ios += (uint64_t)n;
			if (now >= t0 + p->dur) {
				stopping = true;
				t1 = now;
			}
		}
		for (int i = 0; i < n && !stopping; i++, inflight++)
			if ((err = t->submit(t->x, s[i], lba_next(&g))))
				return err;
	}
	out[0] = (double)bytes * 8 / (t1 - t0) / 1e9;
	out[1] = (double)ios / (t1 - t0) / 1e3;
	return 0;
}

/* ---------------------------------------------------------------------- */
/* vmfabric: the example's library */

struct vmfx {
	struct blkc *c;
	uint8_t opcode;
	uint32_t blocks;
	int slot[QDEPTH];
};

static int
vmf_submit(void *x, unsigned i, uint64_t lba)
{
	struct vmfx *v = x;

	return blkc_submit(v->c, v->slot[i], v->opcode, lba, v->blocks, i);
}

static int
vmf_reap(void *x, unsigned *slots, uint64_t *bytes, int max)
{
	struct vmfx *v = x;
	struct blkc_cpl cpl[QDEPTH];
	int n = blkc_reap(v->c, cpl, max, 5000);

	for (int i = 0; i < n; i++) {
		if (cpl[i].status != BLK_SC_SUCCESS)
			return blk_status_errno(cpl[i].status);
		slots[i] = (unsigned)cpl[i].tag;
		bytes[i] = cpl[i].result;
	}
	return n ? n : -EPROTO; /* nothing in flight: lost commands */
}

static void __attribute__((noreturn))
vmf_target(const struct bench_opts *o, struct bshared *sh, const struct bplan *p)
{
	struct blkt_config cfg = { .max_qdepth = QDEPTH,
				   .max_blocks = MAX_BLOCKS,
				   .spin_us = SPIN_US };
	struct timespec zero = { 0, 0 };
	struct blk_store *s;
	struct blkt *t;
	sigset_t set;
	int err;

	bench_pin(o, 1);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, NULL);
	vmci_set_context("a");
	if ((err = open_store(p, &s)))
		die(sh, "target: store: %s", strerror(-err));
	cfg.store = s;
	if ((err = blkt_create(&cfg, &t)))
		die(sh, "target: blkt_create: %s", strerror(-err));
	sh->cid = blkt_cid(t);
	atomic_store(&sh->port, blkt_port(t));
	while (sigtimedwait(&set, NULL, &zero) != SIGTERM)
		if ((err = blkt_run(t, 100)))
			die(sh, "target: %s", strerror(-err));
	blkt_destroy(t);
	blks_close(s);
	_exit(0);
}

static void __attribute__((noreturn))
vmf_host(const struct bench_opts *o, struct bshared *sh, const struct bplan *p)
{
	struct blkc_config cfg = { .cid = sh->cid,
				   .port = atomic_load(&sh->port),
				   .qdepth = QDEPTH,
				   .max_blocks = MAX_BLOCKS,
				   .spin_us = SPIN_US };
	struct vmfx v;
	int err;

	bench_pin(o, 0);
	vmci_set_context("b");
	if ((err = blkc_connect(&cfg, &v.c)))
		die(sh, "host: blkc_connect: %s", strerror(-err));
	for (unsigned i = 0; i < QDEPTH; i++) {
		void *buf;

		if ((v.slot[i] = blkc_slot_get(v.c, &buf)) < 0)
			die(sh, "host: %u slots granted, %u wanted", i, QDEPTH);
		memset(buf, (int)(0x40 + i), MAX_BLOCKS * BLK_BLOCK_SIZE);
	}
	for (int k = 0; k < C_N; k++) {
		struct xport t = { vmf_submit, vmf_reap, &v };

		v.opcode = cases[k].opcode;
		v.blocks = cases[k].blocks;
		if ((err = measure(&t, &cases[k], p, sh->res[k])))
			die(sh, "host: %s %s: %s", cases[k].pattern, cases[k].op, strerror(-err));
	}
	for (unsigned i = 0; i < QDEPTH; i++)
		blkc_slot_put(v.c, v.slot[i]);
	blkc_close(v.c);
	_exit(0);
}

/* ---------------------------------------------------------------------- */
/* tcp: the same capsules over a stream, the data in-band */

static int
io_full(int fd, void *buf, size_t len, bool out)
{
	for (size_t done = 0; done < len;) {
		ssize_t n = out ? send(fd, (uint8_t *)buf + done, len - done, MSG_NOSIGNAL)
				: recv(fd, (uint8_t *)buf + done, len - done, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -ECONNRESET;
		done += (size_t)n;
	}
	return 0;
}

static int
writev_full(int fd, struct iovec *v, int n)
{
	while (n) {
		ssize_t k = writev(fd, v, n);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		while (n && (size_t)k >= v->iov_len)
			k -= (ssize_t)v->iov_len, v++, n--;
		if (n) {
			v->iov_base = (uint8_t *)v->iov_base + k;
			v->iov_len -= (size_t)k;
		}
	}
	return 0;
}

/* One command of the stream: checked, executed, answered (a READ's data after). */
static int
tcp_serve_one(int fd, struct blk_store *s, uint8_t *stage, const struct blk_geom *g)
{
	uint8_t cap[BLK_CMD_SIZE], rb[BLK_RSP_SIZE];
	struct blk_cmd c;
	struct blk_rsp r = { 0 };
	struct iovec v[2] = { { rb, sizeof(rb) }, { stage, 0 } };
	int err;

	if ((err = io_full(fd, cap, sizeof(cap), false)))
		return err == -ECONNRESET ? 1 : err; /* the host closed: done */
	r.status = blk_cmd_check(cap, sizeof(cap), g, &c);
	r.cid = c.cid;
	if (r.status == BLK_SC_SUCCESS && c.opcode == BLK_OP_WRITE) {
		if ((err = io_full(fd, stage, c.length, false)))
			return err;
		r.status = blks_write(s, c.lba, c.nblocks, stage) ? BLK_SC_INTERNAL : 0;
	} else if (r.status == BLK_SC_SUCCESS && c.opcode == BLK_OP_READ) {
		r.status = blks_read(s, c.lba, c.nblocks, stage) ? BLK_SC_INTERNAL : 0;
		v[1].iov_len = r.status ? 0 : c.length;
	} else if (r.status == BLK_SC_SUCCESS && c.opcode == BLK_OP_FLUSH) {
		r.status = blks_flush(s) ? BLK_SC_INTERNAL : 0;
	} else if (r.status != BLK_SC_SUCCESS) {
		return -EPROTO; /* the stream is out of step: a WRITE's data may follow */
	}
	if (r.status == BLK_SC_SUCCESS && (c.opcode == BLK_OP_READ || c.opcode == BLK_OP_WRITE))
		r.result = c.length;
	blk_rsp_pack(&r, rb);
	return writev_full(fd, v, 2);
}

static void __attribute__((noreturn))
tcp_target(const struct bench_opts *o, struct bshared *sh, const struct bplan *p, int l)
{
	struct blk_geom g = { .nblocks = p->nblocks, .max_blocks = MAX_BLOCKS };
	uint8_t *stage = malloc(MAX_BLOCKS * BLK_BLOCK_SIZE);
	struct blk_store *s;
	int fd, one = 1, err;

	bench_pin(o, 1);
	if (!stage)
		die(sh, "tcp target: no memory");
	if ((err = open_store(p, &s)))
		die(sh, "tcp target: store: %s", strerror(-err));
	if ((fd = accept4(l, NULL, NULL, SOCK_CLOEXEC)) < 0)
		die(sh, "tcp target: accept: %s", strerror(errno));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	while (!(err = tcp_serve_one(fd, s, stage, &g)))
		;
	if (err < 0)
		die(sh, "tcp target: %s", strerror(-err));
	blks_close(s);
	_exit(0);
}

struct tcpx {
	int fd;
	uint8_t opcode;
	uint32_t blocks;
	uint16_t cid[QDEPTH];
	uint8_t *data; /* QDEPTH slots of MAX_BLOCKS blocks */
};

static int
tcp_submit(void *x, unsigned i, uint64_t lba)
{
	struct tcpx *t = x;
	struct blk_cmd c = { .opcode = t->opcode,
			     .cid = (uint16_t)(t->cid[i] + QDEPTH),
			     .nblocks = t->blocks,
			     .lba = lba,
			     .length = t->blocks * BLK_BLOCK_SIZE };
	uint8_t cap[BLK_CMD_SIZE];
	struct iovec v[2] = { { cap, sizeof(cap) },
			      { t->data + (size_t)i * MAX_BLOCKS * BLK_BLOCK_SIZE, 0 } };

	t->cid[i] = c.cid; /* cid % QDEPTH is the slot */
	if (c.opcode == BLK_OP_WRITE)
		v[1].iov_len = c.length;
	blk_cmd_pack(&c, cap);
	return writev_full(t->fd, v, 2);
}

/* One response (and a READ's data) at a time: blocking reads. */
static int
tcp_reap(void *x, unsigned *slots, uint64_t *bytes, int max)
{
	struct tcpx *t = x;
	uint8_t rb[BLK_RSP_SIZE];
	struct blk_rsp r;
	unsigned i;
	int err;

	(void)max;
	if ((err = io_full(t->fd, rb, sizeof(rb), false)) ||
	    (err = blk_rsp_unpack(rb, sizeof(rb), &r)))
		return err;
	i = r.cid % QDEPTH;
	if (t->cid[i] != r.cid || r.result > MAX_BLOCKS * BLK_BLOCK_SIZE)
		return -EPROTO;
	if (r.status)
		return blk_status_errno(r.status);
	if (t->opcode == BLK_OP_READ &&
	    (err = io_full(t->fd, t->data + (size_t)i * MAX_BLOCKS * BLK_BLOCK_SIZE, r.result,
			   false)))
		return err;
	slots[0] = i;
	bytes[0] = r.result;
	return 1;
}

static void __attribute__((noreturn))
tcp_host(const struct bench_opts *o, struct bshared *sh, const struct bplan *p)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
				 .sin_port = htons((uint16_t)atomic_load(&sh->port)) };
	struct tcpx t = { .data = malloc(QDEPTH * MAX_BLOCKS * BLK_BLOCK_SIZE) };
	int one = 1, err;

	bench_pin(o, 0);
	if (!t.data)
		die(sh, "tcp host: no memory");
	memset(t.data, 0x5a, QDEPTH * MAX_BLOCKS * BLK_BLOCK_SIZE);
	for (unsigned i = 0; i < QDEPTH; i++)
		t.cid[i] = (uint16_t)i;
	t.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (t.fd < 0 || connect(t.fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		die(sh, "tcp host: connect: %s", strerror(errno));
	setsockopt(t.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	for (int k = 0; k < C_N; k++) {
		struct xport x = { tcp_submit, tcp_reap, &t };

		t.opcode = cases[k].opcode;
		t.blocks = cases[k].blocks;
		if ((err = measure(&x, &cases[k], p, sh->res[k])))
			die(sh, "tcp host: %s %s: %s", cases[k].pattern, cases[k].op,
			    strerror(-err));
	}
	close(t.fd);
	_exit(0);
}

/* ---------------------------------------------------------------------- */
/* The parent */

/* Wait for @pid up to @secs; killed after. True if it exited 0. */
static bool
reap_child(pid_t pid, double secs)
{
	double end = bench_now() + secs;
	int st;

	while (waitpid(pid, &st, WNOHANG) == 0) {
		if (bench_now() > end) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return false;
		}
		usleep(5000);
	}
	return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static int
tcp_listener(uint32_t *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&a, &len) < 0) {
		if (l >= 0)
			close(l);
		return -1;
	}
	*port = ntohs(a.sin_port);
	return l;
}

/* One system's round: a target, then once it listens a host; results in @sh. */
static bool
round_one(const struct bench_opts *o, const struct bplan *p, struct bshared *sh, int sys)
{
	double budget = 30 + C_N * (p->warm + p->dur) * 2;
	uint32_t tcp_port = 0;
	pid_t target, host;
	bool ok;
	int l = -1;

	atomic_store(&sh->port, 0);
	sh->why[0] = 0;
	for (int k = 0; k < C_N; k++)
		sh->res[k][0] = sh->res[k][1] = NAN;
	if (sys == S_TCP && (l = tcp_listener(&tcp_port)) < 0) {
		snprintf(sh->why, sizeof(sh->why), "tcp listener: %s", strerror(errno));
		return false;
	}
	fflush(NULL);
	if ((target = fork()) == 0) {
		if (sys == S_VMF)
			vmf_target(o, sh, p);
		tcp_target(o, sh, p, l);
	}
	if (sys == S_TCP) {
		close(l);
		atomic_store(&sh->port, tcp_port);
	}
	for (int i = 0; i < 1000 && !atomic_load(&sh->port); i++) {
		if (waitpid(target, NULL, WNOHANG) == target)
			return false;
		usleep(5000);
	}
	if (!atomic_load(&sh->port)) {
		kill(target, SIGKILL);
		waitpid(target, NULL, 0);
		snprintf(sh->why, sizeof(sh->why), "the target did not listen within 5 s");
		return false;
	}
	if ((host = fork()) == 0) {
		if (sys == S_VMF)
			vmf_host(o, sh, p);
		tcp_host(o, sh, p);
	}
	ok = reap_child(host, budget);
	if (sys == S_VMF)
		kill(target, SIGTERM); /* the TCP target ends with its connection */
	ok &= reap_child(target, 10);
	if (!ok && !sh->why[0])
		snprintf(sh->why, sizeof(sh->why), "a process of the round failed or hung");
	return ok;
}

/* A file of @blocks in tmpfs (else /tmp), written through so that its pages exist. */
static bool
make_file(struct bplan *p, char *where, size_t wlen)
{
	static const char *const dirs[] = { "/dev/shm", "/tmp" };
	uint8_t *chunk = malloc(1u << 20);
	struct statfs sf;
	int fd = -1;

	if (!chunk)
		return false;
	memset(chunk, 0xa5, 1u << 20);
	for (int i = 0; i < 2 && fd < 0; i++) {
		bool tmpfs = statfs(dirs[i], &sf) == 0 && sf.f_type == TMPFS_MAGIC;

		if (!tmpfs && i == 0)
			continue;
		snprintf(p->path, sizeof(p->path), "%s/vmf-bench-rdmablk-XXXXXX", dirs[i]);
		fd = mkstemp(p->path);
		snprintf(where, wlen, "%s", tmpfs ? "tmpfs" : "not_tmpfs");
	}
	for (uint64_t off = 0; fd >= 0 && off < p->nblocks * BLK_BLOCK_SIZE; off += 1u << 20)
		if (pwrite(fd, chunk, 1u << 20, (off_t)off) != 1 << 20) {
			close(fd);
			unlink(p->path);
			fd = -1;
		}
	free(chunk);
	if (fd < 0)
		return false;
	close(fd);
	return true;
}

static double
median_of(double v[ROUNDS_MAX], int n)
{
	double w[ROUNDS_MAX];
	size_t k = 0;

	for (int i = 0; i < n; i++)
		if (!isnan(v[i]))
			w[k++] = v[i];
	return k ? bench_percentile(w, k, 50) : NAN;
}

static const char *
store_name(int st, const char *fs)
{
	static char name[24];

	if (st == ST_MEM)
		return "memory";
	snprintf(name, sizeof(name), "%s_file", fs);
	return name;
}

/* One JSON line: metric @j (0: gbit_s, 1: kiops) of case @k, system @s, store @st. */
static void
emit(int st, int s, int k, int j, double v, const char *fs)
{
	char fields[192], spin[24] = "";

	if (s == S_VMF)
		snprintf(spin, sizeof(spin), ",\"spin_us\":%d", SPIN_US);
	snprintf(fields, sizeof(fields),
		 "\"op\":\"%s\",\"pattern\":\"%s\",\"block_bytes\":%u,\"queue_depth\":%u,"
		 "\"store\":\"%s\"%s",
		 cases[k].op, cases[k].pattern, cases[k].blocks * BLK_BLOCK_SIZE, QDEPTH,
		 store_name(st, fs), spin);
	bench_emit_fields(BENCH, sys_name[s], (long)cases[k].blocks * BLK_BLOCK_SIZE, sys_mode[s],
			  fields, j ? "kiops" : "gbit_s", v);
}

static void
report(double res[ST_N][S_N][C_N][2][ROUNDS_MAX], int rounds, const char *fs)
{
	for (int st = 0; st < ST_N; st++) {
		double m[S_N][C_N][2];

		for (int s = 0; s < S_N; s++)
			for (int k = 0; k < C_N; k++)
				for (int j = 0; j < 2; j++)
					if (!isnan(m[s][k][j] =
						       median_of(res[st][s][k][j], rounds)))
						emit(st, s, k, j, m[s][k][j], fs);
		printf("\nrdma_block: store %s, %u commands in flight, median of %d round%s\n",
		       store_name(st, fs), QDEPTH, rounds, rounds > 1 ? "s" : "");
		printf("%-6s %-8s %11s %11s %10s %11s %10s %8s\n", "op", "pattern", "block_bytes",
		       "vmf gbit_s", "vmf kiops", "tcp gbit_s", "tcp kiops", "vmf/tcp");
		for (int k = 0; k < C_N; k++)
			printf("%-6s %-8s %11u %11.2f %10.1f %11.2f %10.1f %8.2f\n", cases[k].op,
			       cases[k].pattern, cases[k].blocks * BLK_BLOCK_SIZE, m[S_VMF][k][0],
			       m[S_VMF][k][1], m[S_TCP][k][0], m[S_TCP][k][1],
			       m[S_VMF][k][0] / m[S_TCP][k][0]);
	}
}

bool
bench_rdma_block(const struct bench_opts *o)
{
	static double res[ST_N][S_N][C_N][2][ROUNDS_MAX];
	struct bplan p = { .warm = o->quick ? 0.1 : 0.2,
			   .dur = o->quick ? 0.4 : 1.0,
			   .nblocks = (o->quick ? 64u : 256u) << (20 - BLK_BLOCK_SHIFT) };
	int rounds = o->quick ? 1 : ROUNDS_MAX;
	struct bshared *sh;
	char fs[16];
	bool ok = true;

	if (o->only && strncmp(BENCH, o->only, strlen(o->only)))
		return true;
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED || !make_file(&p, fs, sizeof(fs))) {
		fprintf(stderr, "bench rdma: rdma_block: no file to serve: %s\n", strerror(errno));
		return false;
	}
	for (int r = 0; r < rounds; r++)
		for (int i = 0; i < ST_N * S_N; i++) {
			int s = (r + i) % S_N; /* alternate which goes first */
			bool done;

			p.store = i / S_N;
			if (!(done = round_one(o, &p, sh, s)))
				fprintf(stderr,
					"bench rdma: rdma_block %s, store %s, round %d: %s\n",
					sys_name[s], store_name(p.store, fs), r + 1, sh->why);
			if (s == S_VMF)
				ok &= done;
			for (int k = 0; k < C_N; k++)
				for (int j = 0; j < 2; j++)
					res[p.store][s][k][j][r] = done ? sh->res[k][j] : NAN;
		}
	unlink(p.path);
	munmap(sh, sizeof(*sh));
	report(res, rounds, fs);
	bench_note("rdma_block: vmfabric = examples/rdma-block over the verbs (the target RDMA "
		   "READs / WRITEs the host's slots), tcp = the same capsules over TCP loopback, "
		   "data in-band; both targets serve the same %s file (pread/pwrite) or memory",
		   fs);
	return ok;
}
