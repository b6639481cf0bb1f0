/* SPDX-License-Identifier: MIT */
/*
 * The rdma-block example (examples/rdma-block, docs/RDMA.md "Storage over
 * RDMA") against a private vmfabricd, the target in a child process acting
 * as context b, hosts as context a: every capsule check of the wire
 * format; checksummed random blocks at random LBAs with 8 commands in
 * flight, read back and compared, and the file's own bytes checked; the
 * memory store; malformed capsules, a command id in flight twice, a bad
 * rkey, a host that dies, too many hosts: the target answers or drops
 * that one connection and keeps serving; the two programs; and the same
 * blocks between two network-namespace hosts over RoCE v2 (root).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "blk.h"
#include "daemon.h"
#include "harness.h"
#include "vmfabric/vrdma.h"

#define DEV_BLOCKS 16384u /* 64 MiB */

/* ---------------------------------------------------------------------- */
/* The wire format, without a daemon */

static uint8_t *
capsule(const struct blk_cmd *c)
{
	static uint8_t b[BLK_CMD_SIZE];

	blk_cmd_pack(c, b);
	return b;
}

static uint16_t
check(const struct blk_cmd *c, const struct blk_geom *g)
{
	struct blk_cmd out;

	return blk_cmd_check(capsule(c), BLK_CMD_SIZE, g, &out);
}

TEST(rdmablk_capsules)
{
	const struct blk_geom g = { .nblocks = 1000, .max_blocks = 32 };
	struct blk_cmd ok = { .opcode = BLK_OP_READ,
			      .cid = 0x1234,
			      .nblocks = 4,
			      .lba = 996,
			      .addr = 0x10000,
			      .length = 4 * BLK_BLOCK_SIZE,
			      .rkey = 77 };
	struct blk_cmd c, out;
	struct blk_rsp r = { .cid = 9, .status = BLK_SC_LBA_RANGE, .result = 1 }, r2;
	uint8_t b[BLK_CMD_SIZE + 8];

	/* A round trip, little-endian at the documented offsets. */
	ASSERT_EQ(blk_cmd_check(capsule(&ok), BLK_CMD_SIZE, &g, &out), BLK_SC_SUCCESS);
	ASSERT_OK(memcmp(&ok, &out, sizeof(ok)));
	memcpy(b, capsule(&ok), BLK_CMD_SIZE);
	ASSERT_EQ(b[0], BLK_OP_READ);
	ASSERT_EQ(b[2], 0x34);
	ASSERT_EQ(b[3], 0x12);
	ASSERT_EQ(b[8], 996 & 0xff);
	ASSERT_EQ(b[28], 77);
	/* Sizes: the cid is still echoed when the bytes hold it. */
	for (size_t len = 0; len <= sizeof(b); len++) {
		ASSERT_EQ(blk_cmd_check(b, len, &g, &out),
			  len == BLK_CMD_SIZE ? BLK_SC_SUCCESS : BLK_SC_CAPSULE_SIZE);
		ASSERT_EQ(out.cid, len >= 4 ? 0x1234 : 0xffff);
	}
	/* Opcodes, flags, reserved bytes. */
	for (int op = 0; op < 256; op++) {
		c = ok;
		c.opcode = (uint8_t)op;
		if (op != BLK_OP_READ && op != BLK_OP_WRITE && op != BLK_OP_FLUSH &&
		    op != BLK_OP_IDENTIFY && op != BLK_OP_DISCONNECT)
			ASSERT_EQ(check(&c, &g), BLK_SC_INVALID_OPCODE);
	}
	c = ok;
	c.flags = 1;
	ASSERT_EQ(check(&c, &g), BLK_SC_INVALID_FIELD);
	for (size_t i = 0; i < sizeof(c.rsvd); i++) {
		c = ok;
		c.rsvd[i] = 0x80;
		ASSERT_EQ(check(&c, &g), BLK_SC_INVALID_FIELD);
	}
	/* Counts, lengths, address wrap, the LBA range (the last block is in range). */
	c = ok, c.nblocks = 0, c.length = 0;
	ASSERT_EQ(check(&c, &g), BLK_SC_INVALID_FIELD);
	c = ok, c.nblocks = 33, c.length = 33 * BLK_BLOCK_SIZE;
	ASSERT_EQ(check(&c, &g), BLK_SC_INVALID_FIELD);
	c = ok, c.nblocks = 0xffffffffu, c.length = 0;
	ASSERT_EQ(check(&c, &g), BLK_SC_INVALID_FIELD);
	c = ok, c.length = 4 * BLK_BLOCK_SIZE - 1;
	ASSERT_EQ(check(&c, &g), BLK_SC_DATA_LENGTH);
	c = ok, c.length = 5 * BLK_BLOCK_SIZE;
	ASSERT_EQ(check(&c, &g), BLK_SC_DATA_LENGTH);
	c = ok, c.addr = UINT64_MAX - 4096;
	ASSERT_EQ(check(&c, &g), BLK_SC_INVALID_FIELD);
	c = ok, c.lba = 997;
	ASSERT_EQ(check(&c, &g), BLK_SC_LBA_RANGE);
	c = ok, c.lba = 1000;
	ASSERT_EQ(check(&c, &g), BLK_SC_LBA_RANGE);
	c = ok, c.lba = UINT64_MAX - 1; /* lba + count wraps */
	ASSERT_EQ(check(&c, &g), BLK_SC_LBA_RANGE);
	c = ok, c.opcode = BLK_OP_WRITE, c.lba = 0, c.nblocks = 32, c.length = 32 * 4096;
	ASSERT_EQ(check(&c, &g), BLK_SC_SUCCESS);
	/* FLUSH and DISCONNECT: nothing but the cid; IDENTIFY: one 4096-byte buffer. */
	for (int op = 0; op < 2; op++) {
		uint8_t opc = op ? BLK_OP_DISCONNECT : BLK_OP_FLUSH;

		c = (struct blk_cmd){ .opcode = opc, .cid = 3 };
		ASSERT_EQ(check(&c, &g), BLK_SC_SUCCESS);
		c.lba = 1;
		ASSERT_EQ(check(&c, &g), BLK_SC_INVALID_FIELD);
		c = (struct blk_cmd){ .opcode = opc, .rkey = 1 };
		ASSERT_EQ(check(&c, &g), BLK_SC_INVALID_FIELD);
	}
	c = (struct blk_cmd){ .opcode = BLK_OP_IDENTIFY, .addr = 8192, .length = 4096, .rkey = 1 };
	ASSERT_EQ(check(&c, &g), BLK_SC_SUCCESS);
	c.length = 4095;
	ASSERT_EQ(check(&c, &g), BLK_SC_DATA_LENGTH);
	c.length = 4096, c.nblocks = 1;
	ASSERT_EQ(check(&c, &g), BLK_SC_INVALID_FIELD);
	/* Responses: the size and the reserved word. */
	blk_rsp_pack(&r, b);
	ASSERT_OK(blk_rsp_unpack(b, BLK_RSP_SIZE, &r2));
	ASSERT_EQ(r2.cid, 9);
	ASSERT_EQ(r2.status, BLK_SC_LBA_RANGE);
	ASSERT_EQ(r2.result, 1);
	ASSERT_EQ(blk_rsp_unpack(b, BLK_RSP_SIZE + 1, &r2), -EPROTO);
	b[5] = 1;
	ASSERT_EQ(blk_rsp_unpack(b, BLK_RSP_SIZE, &r2), -EPROTO);
	ASSERT_EQ(blk_status_errno(BLK_SC_LBA_RANGE), -ERANGE);
	ASSERT_EQ(blk_status_errno(0x99), -EPROTO);
	ASSERT(!strcmp(blk_status_str(BLK_SC_LBA_RANGE), "LBA out of range"));
}

/* ---------------------------------------------------------------------- */
/* A target in a child process */

struct tstate {
	uint32_t port, conns;
	struct blkt_stats st;
};

struct target {
	pid_t pid;
	struct tstate *sh; /* shared with the child: its port, then its counters */
};

/*
 * The target in a child, acting as context @ctx of the daemon at @sock
 * (NULL: the test's), on @port (0: an ephemeral one): @path (created at
 * @size bytes) or, with @path NULL, @size bytes of memory. It publishes
 * its port, then its counters after every pass, and exits 0 on SIGTERM.
 */
static void
target_start_on(struct target *tg, const char *path, uint64_t size, unsigned max_conns,
		const char *ctx, const char *sock, uint32_t port)
{
	tg->sh =
	    mmap(NULL, sizeof(*tg->sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT(tg->sh != MAP_FAILED);
	memset(tg->sh, 0, sizeof(*tg->sh));
	tg->pid = fork();
	ASSERT_GE(tg->pid, 0);
	if (tg->pid == 0) {
		struct blkt_config cfg = { .max_conns = max_conns, .port = port };
		struct blk_store *s;
		struct blkt *t;
		sigset_t set;
		int sig = 0;

		sigemptyset(&set);
		sigaddset(&set, SIGTERM);
		sigprocmask(SIG_BLOCK, &set, NULL);
		if (sock)
			ASSERT_OK(vmci_set_daemon(sock));
		ASSERT_OK(vmci_set_context(ctx));
		ASSERT_OK(path ? blks_open_file(path, size, &s) : blks_open_memory(size, &s));
		cfg.store = s;
		ASSERT_OK(blkt_create(&cfg, &t));
		__atomic_store_n(&tg->sh->port, blkt_port(t), __ATOMIC_RELEASE);
		while (!sig) {
			struct timespec zero = { 0, 0 };

			ASSERT_OK(blkt_run(t, 20));
			blkt_get_stats(t, &tg->sh->st);
			__atomic_store_n(&tg->sh->conns, blkt_conns(t), __ATOMIC_RELEASE);
			sig = sigtimedwait(&set, NULL, &zero) == SIGTERM;
		}
		blkt_destroy(t);
		blks_close(s);
		_exit(0);
	}
	for (int i = 0; i < 500 && !__atomic_load_n(&tg->sh->port, __ATOMIC_ACQUIRE); i++)
		usleep(10000);
	ASSERT_NE(tg->sh->port, 0);
}

/* As context b of the test's daemon. */
static void
target_start(struct target *tg, const char *path, uint64_t size, unsigned max_conns)
{
	target_start_on(tg, path, size, max_conns, "b", NULL, 0);
}

/* It must still be running, and end cleanly when asked. */
static void
target_stop(struct target *tg)
{
	int st;

	ASSERT_EQ(waitpid(tg->pid, &st, WNOHANG), 0);
	ASSERT_OK(kill(tg->pid, SIGTERM));
	ASSERT_EQ(waitpid(tg->pid, &st, 0), tg->pid);
	ASSERT(WIFEXITED(st));
	ASSERT_EQ(WEXITSTATUS(st), 0);
	munmap(tg->sh, sizeof(*tg->sh));
}

/*
 * Wait up to @ms for the target's counters: connections accepted in all,
 * dropped in all, open now (the first two only grow, so that a state the
 * target has not published yet is not taken for the one awaited).
 */
static void
target_wait(struct target *tg, uint64_t accepted, uint64_t dropped, uint32_t open, int ms)
{
	struct tstate *s = tg->sh;

	for (int i = 0; i < ms / 10; i++) {
		if (__atomic_load_n(&s->conns, __ATOMIC_ACQUIRE) == open &&
		    s->st.conns == accepted && s->st.dropped == dropped)
			break;
		usleep(10000);
	}
	ASSERT_EQ(__atomic_load_n(&s->conns, __ATOMIC_ACQUIRE), open);
	ASSERT_EQ(s->st.conns, accepted);
	ASSERT_EQ(s->st.dropped, dropped);
}

static struct blkc *
host(struct target *tg, unsigned qdepth, unsigned max_blocks)
{
	struct blkc_config cfg = {
		.cid = 4, .port = tg->sh->port, .qdepth = qdepth, .max_blocks = max_blocks
	};
	struct blkc *c;

	ASSERT_OK(vmci_set_context("a"));
	ASSERT_OK(blkc_connect(&cfg, &c));
	return c;
}

/* ---------------------------------------------------------------------- */
/* Checksummed blocks at random LBAs */

static uint64_t
fnv(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

/* A block that says where it belongs: LBA, generation, checksum of the rest, random bytes. */
static void
make_block(uint8_t *b, uint64_t lba, uint64_t gen, uint64_t *rng)
{
	th_fill(rng, b + 24, BLK_BLOCK_SIZE - 24);
	memcpy(b, &lba, 8);
	memcpy(b + 8, &gen, 8);
	*(uint64_t *)(void *)(b + 16) = fnv(b + 24, BLK_BLOCK_SIZE - 24);
}

static void
check_block(const uint8_t *b, uint64_t lba)
{
	uint64_t v, sum;

	memcpy(&v, b, 8);
	ASSERT_EQ(v, lba);
	memcpy(&sum, b + 16, 8);
	ASSERT_EQ(sum, fnv(b + 24, BLK_BLOCK_SIZE - 24));
}

struct extent {
	uint64_t lba;
	uint32_t n;
};

/*
 * Extents of 1..32 blocks at random LBAs, none overlapping (in flight
 * together, overlapping writes would have no defined order), @blocks in
 * all at least.
 */
static int
random_extents(struct extent *e, int max, uint32_t blocks, uint64_t *rng)
{
	uint32_t chunks = DEV_BLOCKS / 32, order[DEV_BLOCKS / 32], total = 0;
	int n = 0;

	for (uint32_t i = 0; i < chunks; i++)
		order[i] = i;
	for (uint32_t i = chunks - 1; i > 0; i--) {
		uint32_t j = (uint32_t)(th_rand(rng) % (i + 1)), t = order[i];

		order[i] = order[j];
		order[j] = t;
	}
	while (total < blocks && n < max && (uint32_t)n < chunks) {
		uint32_t len = 1 + (uint32_t)(th_rand(rng) % 32);
		uint32_t at = (uint32_t)(th_rand(rng) % (32 - len + 1));

		e[n].lba = (uint64_t)order[n] * 32 + at;
		e[n].n = len;
		total += len;
		n++;
	}
	return n;
}

/* Every extent, qdepth commands in flight, through the asynchronous interface. */
static void
run_extents(struct blkc *c, uint8_t op, const struct extent *e, int n, uint8_t *shadow)
{
	struct blkc_cpl cpl[8];
	int next = 0, done = 0, high = 0;

	while (done < n) {
		void *buf;
		int slot;

		while (next < n && (slot = blkc_slot_get(c, &buf)) >= 0) {
			if (op == BLK_OP_WRITE)
				memcpy(buf, shadow + e[next].lba * BLK_BLOCK_SIZE,
				       (size_t)e[next].n * BLK_BLOCK_SIZE);
			else
				memset(buf, 0xee, (size_t)e[next].n * BLK_BLOCK_SIZE);
			ASSERT_OK(blkc_submit(c, slot, op, e[next].lba, e[next].n, (uint64_t)next));
			next++;
		}
		if ((int)blkc_inflight(c) > high)
			high = (int)blkc_inflight(c);
		int k = blkc_reap(c, cpl, 8, -1);

		ASSERT_GT(k, 0);
		for (int i = 0; i < k; i++) {
			const struct extent *x = &e[cpl[i].tag];
			const uint8_t *b = blkc_slot_buf(c, cpl[i].slot);

			ASSERT_EQ(cpl[i].status, BLK_SC_SUCCESS);
			ASSERT_EQ(cpl[i].opcode, op);
			ASSERT_EQ(cpl[i].result, (uint64_t)x->n * BLK_BLOCK_SIZE);
			for (uint32_t j = 0; op == BLK_OP_READ && j < x->n; j++) {
				check_block(b + (size_t)j * BLK_BLOCK_SIZE, x->lba + j);
				ASSERT_MEM_EQ(b + (size_t)j * BLK_BLOCK_SIZE,
					      shadow + (x->lba + j) * BLK_BLOCK_SIZE,
					      BLK_BLOCK_SIZE);
			}
			blkc_slot_put(c, cpl[i].slot);
		}
		done += k;
	}
	ASSERT_EQ(high, 8); /* the queue depth was used */
}

TEST(rdmablk_random_blocks)
{
	struct tdaemon d;
	struct target tg;
	struct blkc *c;
	struct blkc_info info;
	struct extent e[512];
	uint64_t rng = 0x5eed, gen = 1;
	uint8_t *shadow = calloc(DEV_BLOCKS, BLK_BLOCK_SIZE), *buf, *tmp;
	char path[160];
	uint16_t st;
	int n, fd;

	ASSERT(shadow);
	td_start(&d, NULL);
	snprintf(path, sizeof(path), "%s/blk.img", d.dir);
	target_start(&tg, path, (uint64_t)DEV_BLOCKS * BLK_BLOCK_SIZE, 0);
	c = host(&tg, 8, 32);
	blkc_get_info(c, &info);
	ASSERT_EQ(info.nblocks, DEV_BLOCKS);
	ASSERT_EQ(info.block_size, BLK_BLOCK_SIZE);
	ASSERT_EQ(info.qdepth, 8);
	ASSERT_EQ(info.max_blocks, 32);
	ASSERT_EQ(info.flags, BLK_ID_VOLATILE_CACHE);
	/* 4 MiB at least of checksummed blocks at random LBAs, 8 in flight; then FLUSH. */
	n = random_extents(e, 512, 1024, &rng);
	for (int i = 0; i < n; i++)
		for (uint32_t j = 0; j < e[i].n; j++)
			make_block(shadow + (e[i].lba + j) * BLK_BLOCK_SIZE, e[i].lba + j, gen++,
				   &rng);
	run_extents(c, BLK_OP_WRITE, e, n, shadow);
	ASSERT_OK(blkc_flush(c, &st));
	ASSERT_EQ(st, BLK_SC_SUCCESS);
	/* Read back in another order: shuffled extents. */
	for (int i = n - 1; i > 0; i--) {
		int j = (int)(th_rand(&rng) % (uint64_t)(i + 1));
		struct extent t = e[i];

		e[i] = e[j];
		e[j] = t;
	}
	run_extents(c, BLK_OP_READ, e, n, shadow);
	/* The file itself holds exactly the shadow: written blocks and zeros elsewhere. */
	buf = malloc((size_t)DEV_BLOCKS * BLK_BLOCK_SIZE);
	ASSERT(buf);
	fd = open(path, O_RDONLY);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(pread(fd, buf, (size_t)DEV_BLOCKS * BLK_BLOCK_SIZE, 0),
		  (ssize_t)DEV_BLOCKS * BLK_BLOCK_SIZE);
	close(fd);
	ASSERT_MEM_EQ(buf, shadow, (size_t)DEV_BLOCKS * BLK_BLOCK_SIZE);
	/* The synchronous helpers over many commands: 1000 blocks across the device's end. */
	tmp = malloc(1000 * BLK_BLOCK_SIZE);
	ASSERT(tmp);
	for (uint32_t j = 0; j < 1000; j++)
		make_block(shadow + (size_t)(DEV_BLOCKS - 1000 + j) * BLK_BLOCK_SIZE,
			   DEV_BLOCKS - 1000 + j, gen++, &rng);
	ASSERT_OK(blkc_write(c, DEV_BLOCKS - 1000, 1000,
			     shadow + (size_t)(DEV_BLOCKS - 1000) * BLK_BLOCK_SIZE, &st));
	ASSERT_OK(blkc_read(c, DEV_BLOCKS - 1000, 1000, tmp, &st));
	ASSERT_MEM_EQ(tmp, shadow + (size_t)(DEV_BLOCKS - 1000) * BLK_BLOCK_SIZE,
		      1000 * BLK_BLOCK_SIZE);
	/* Out of range: an error status, nothing written, the connection goes on. */
	ASSERT_EQ(blkc_read(c, DEV_BLOCKS - 1, 2, tmp, &st), -ERANGE);
	ASSERT_EQ(st, BLK_SC_LBA_RANGE);
	ASSERT_EQ(blkc_write(c, DEV_BLOCKS, 1, tmp, &st), -ERANGE);
	ASSERT_EQ(st, BLK_SC_LBA_RANGE);
	ASSERT_EQ(blkc_read(c, UINT64_MAX - 3, 8, tmp, &st), -ERANGE);
	{
		void *sb;
		int slot = blkc_slot_get(c, &sb);
		struct blkc_cpl cpl;

		ASSERT_GE(slot, 0);
		ASSERT_EQ(blkc_submit(c, slot, BLK_OP_READ, 0, 33, 0), -EINVAL); /* > max_blocks */
		ASSERT_EQ(blkc_submit(c, slot, 0x55, 0, 1, 0), -EINVAL);
		ASSERT_OK(blkc_submit(c, slot, BLK_OP_WRITE, DEV_BLOCKS - 2, 3, 42));
		ASSERT_EQ(blkc_reap(c, &cpl, 1, -1), 1);
		ASSERT_EQ(cpl.tag, 42);
		ASSERT_EQ(cpl.status, BLK_SC_LBA_RANGE);
		ASSERT_EQ(cpl.result, 0);
		blkc_slot_put(c, slot);
	}
	ASSERT_OK(blkc_read(c, 0, 32, tmp, &st));
	ASSERT_MEM_EQ(tmp, shadow, 32 * BLK_BLOCK_SIZE);
	blkc_close(c);
	target_wait(&tg, 1, 0, 0, 2000);
	ASSERT_EQ(tg.sh->st.errors, 4);
	target_stop(&tg);
	fd = open(path, O_RDONLY);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(pread(fd, buf, (size_t)DEV_BLOCKS * BLK_BLOCK_SIZE, 0),
		  (ssize_t)DEV_BLOCKS * BLK_BLOCK_SIZE);
	close(fd);
	ASSERT_MEM_EQ(buf, shadow, (size_t)DEV_BLOCKS * BLK_BLOCK_SIZE);
	free(buf);
	free(tmp);
	free(shadow);
	td_stop(&d);
	td_cleanup(&d);
}

/* The memory store: RDMA straight in and out of it, several hosts at once. */
TEST(rdmablk_memory)
{
	struct tdaemon d;
	struct target tg;
	struct blkc *c[3];
	struct blkc_info info;
	uint64_t rng = 77;
	uint8_t *w = malloc(256 * BLK_BLOCK_SIZE), *r = malloc(256 * BLK_BLOCK_SIZE);

	ASSERT(w && r);
	td_start(&d, NULL);
	target_start(&tg, NULL, 8u << 20, 0);
	for (int i = 0; i < 3; i++)
		c[i] = host(&tg, 4 + (unsigned)i, 64);
	blkc_get_info(c[0], &info);
	ASSERT_EQ(info.nblocks, 2048);
	ASSERT_EQ(info.flags, 0); /* nothing to flush */
	ASSERT_EQ(info.qdepth, 4);
	ASSERT(strstr(info.model, "memory"));
	for (int i = 0; i < 3; i++) {
		th_fill(&rng, w, 256 * BLK_BLOCK_SIZE);
		ASSERT_OK(blkc_write(c[i], (uint64_t)i * 256, 256, w, NULL));
		ASSERT_OK(blkc_flush(c[i], NULL));
		/* Another host reads what this one wrote. */
		ASSERT_OK(blkc_read(c[(i + 1) % 3], (uint64_t)i * 256, 256, r, NULL));
		ASSERT_MEM_EQ(r, w, 256 * BLK_BLOCK_SIZE);
	}
	ASSERT_EQ(blkc_read(c[1], 2047, 2, r, NULL), -ERANGE);
	target_wait(&tg, 3, 0, 3, 2000);
	for (int i = 0; i < 3; i++)
		blkc_close(c[i]);
	target_wait(&tg, 3, 0, 0, 2000);
	target_stop(&tg);
	free(w);
	free(r);
	td_stop(&d);
	td_cleanup(&d);
}

/* ---------------------------------------------------------------------- */
/* A host that writes whatever bytes it likes */

struct raw {
	struct vrdma_context *ctx;
	struct vrdma_pd *pd;
	struct vrdma_cq *cq;
	struct vrdma_qp *qp;
	struct vrdma_mr *mr;
	uint8_t *buf; /* [0, 1024): receives; [4096, ...): data */
};

#define RAW_LEN (1u << 20)

static int
raw_connect(struct raw *r, uint32_t port, uint32_t magic)
{
	struct vrdma_qp_init_attr ia = { .qp_type = VRDMA_QPT_RC,
					 .cap = { .max_send_wr = 64,
						  .max_recv_wr = 16,
						  .max_send_sge = 1,
						  .max_recv_sge = 1,
						  .max_inline_data = 256 } };
	struct blk_conn_req q = {
		.magic = magic, .version = BLK_VERSION, .qdepth = 8, .max_blocks = 32
	};
	uint8_t priv[16];
	struct vrdma_conn_param p = { .private_data = priv, .private_data_len = sizeof(priv) };
	int err;

	memset(r, 0, sizeof(*r));
	ASSERT_OK(vmci_set_context("a"));
	ASSERT_OK(vrdma_open_device(NULL, &r->ctx));
	ASSERT_OK(vrdma_alloc_pd(r->ctx, &r->pd));
	ASSERT_OK(vrdma_create_cq(r->ctx, 128, NULL, NULL, &r->cq));
	ia.send_cq = ia.recv_cq = r->cq;
	ASSERT_OK(vrdma_create_qp(r->pd, &ia, &r->qp));
	r->buf = mmap(NULL, RAW_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT(r->buf != MAP_FAILED);
	ASSERT_OK(vrdma_reg_mr(r->pd, r->buf, RAW_LEN,
			       VRDMA_ACCESS_LOCAL_WRITE | VRDMA_ACCESS_REMOTE_READ |
				   VRDMA_ACCESS_REMOTE_WRITE,
			       &r->mr));
	blk_conn_req_pack(&q, priv);
	if ((err = vrdma_connect(r->qp, 4, port, &p, NULL, 5000)))
		return err;
	for (unsigned i = 0; i < 8; i++) {
		struct vrdma_sge s = { (uintptr_t)r->buf + i * 64, 64, r->mr->lkey };
		struct vrdma_recv_wr wr = { .wr_id = i, .sg_list = &s, .num_sge = 1 }, *bad;

		ASSERT_OK(vrdma_post_recv(r->qp, &wr, &bad));
	}
	return 0;
}

static void
raw_close(struct raw *r)
{
	ASSERT_OK(vrdma_destroy_qp(r->qp));
	ASSERT_OK(vrdma_destroy_cq(r->cq));
	ASSERT_OK(vrdma_dereg_mr(r->mr));
	munmap(r->buf, RAW_LEN);
	ASSERT_OK(vrdma_dealloc_pd(r->pd));
	ASSERT_OK(vrdma_close_device(r->ctx));
}

/* SEND @len bytes (inline up to 256, else from the data area). */
static void
raw_send(struct raw *r, const void *bytes, uint32_t len)
{
	struct vrdma_sge s = { (uintptr_t)bytes, len, 0 };
	struct vrdma_send_wr wr = { .wr_id = 1000,
				    .sg_list = &s,
				    .num_sge = 1,
				    .opcode = VRDMA_WR_SEND,
				    .send_flags = VRDMA_SEND_INLINE };
	struct vrdma_send_wr *bad;

	if (len > 256) {
		memcpy(r->buf + 4096, bytes, len);
		s = (struct vrdma_sge){ (uintptr_t)r->buf + 4096, len, r->mr->lkey };
		wr.send_flags = VRDMA_SEND_SIGNALED;
	}
	ASSERT_OK(vrdma_post_send(r->qp, &wr, &bad));
}

/* The next completion within @ms: 1 with it in *@wc, 0 when none came. */
static int
raw_wc(struct raw *r, struct vrdma_wc *wc, int ms)
{
	for (int i = 0; i < ms * 10; i++) {
		int n = vrdma_poll_cq(r->cq, 1, wc);

		ASSERT_GE(n, 0);
		if (n)
			return 1;
		usleep(100);
	}
	return 0;
}

/* The next response: its cid and status. */
static struct blk_rsp
raw_rsp(struct raw *r)
{
	struct vrdma_wc wc;
	struct blk_rsp rsp;
	struct vrdma_sge s;
	struct vrdma_recv_wr wr = { .sg_list = &s, .num_sge = 1 }, *bad;

	ASSERT_EQ(raw_wc(r, &wc, 5000), 1);
	ASSERT_EQ(wc.status, VRDMA_WC_SUCCESS);
	ASSERT_EQ(wc.opcode, VRDMA_WC_RECV);
	ASSERT_OK(blk_rsp_unpack(r->buf + wc.wr_id * 64, wc.byte_len, &rsp));
	s = (struct vrdma_sge){ (uintptr_t)r->buf + wc.wr_id * 64, 64, r->mr->lkey };
	wr.wr_id = wc.wr_id;
	ASSERT_OK(vrdma_post_recv(r->qp, &wr, &bad));
	return rsp;
}

static uint16_t
raw_cmd(struct raw *r, const struct blk_cmd *c)
{
	uint8_t b[BLK_CMD_SIZE];
	struct blk_rsp rsp;

	blk_cmd_pack(c, b);
	raw_send(r, b, sizeof(b));
	rsp = raw_rsp(r);
	ASSERT_EQ(rsp.cid, c->cid);
	return rsp.status;
}

static struct blk_cmd
raw_rw(struct raw *r, uint8_t op, uint16_t cid, uint64_t lba, uint32_t n)
{
	return (struct blk_cmd){ .opcode = op,
				 .cid = cid,
				 .lba = lba,
				 .nblocks = n,
				 .addr = (uintptr_t)r->buf + 8192,
				 .length = n * BLK_BLOCK_SIZE,
				 .rkey = r->mr->rkey };
}

TEST(rdmablk_malformed)
{
	struct tdaemon d;
	struct target tg;
	struct raw r;
	struct blk_cmd c;
	struct blk_rsp rsp[2];
	struct vrdma_wc wc;
	uint8_t junk[300], block[BLK_BLOCK_SIZE];
	char path[160];
	struct blkc *h[3], *x;
	struct blkc_config hc = { .cid = 4 };
	pid_t pid;
	int st;

	td_start(&d, NULL);
	snprintf(path, sizeof(path), "%s/blk.img", d.dir);
	target_start(&tg, path, 1u << 20, 3);
	hc.port = tg.sh->port;
	/* Not an rdma-block host: refused at connection time. */
	ASSERT_EQ(raw_connect(&r, tg.sh->port, 0x12345678), -ECONNREFUSED);
	raw_close(&r);
	ASSERT_OK(raw_connect(&r, tg.sh->port, BLK_MAGIC));
	/* Wrong sizes: the cid comes back when the bytes had one. */
	memset(junk, 0, sizeof(junk));
	junk[2] = 0x21;
	junk[3] = 0x43;
	for (uint32_t len = 0; len <= 256; len += len < 8 ? 1 : 61) {
		raw_send(&r, junk, len);
		rsp[0] = raw_rsp(&r);
		ASSERT_EQ(rsp[0].status, BLK_SC_CAPSULE_SIZE);
		ASSERT_EQ(rsp[0].cid, len >= 4 ? 0x4321 : 0xffff);
	}
	/* Every field the target must refuse. */
	c = raw_rw(&r, 0x55, 1, 0, 1);
	ASSERT_EQ(raw_cmd(&r, &c), BLK_SC_INVALID_OPCODE);
	c = raw_rw(&r, BLK_OP_READ, 2, 0, 1), c.flags = 4;
	ASSERT_EQ(raw_cmd(&r, &c), BLK_SC_INVALID_FIELD);
	c = raw_rw(&r, BLK_OP_READ, 3, 0, 1), c.rsvd[17] = 1;
	ASSERT_EQ(raw_cmd(&r, &c), BLK_SC_INVALID_FIELD);
	c = raw_rw(&r, BLK_OP_WRITE, 4, 0, 0);
	ASSERT_EQ(raw_cmd(&r, &c), BLK_SC_INVALID_FIELD);
	c = raw_rw(&r, BLK_OP_WRITE, 5, 0, 33);
	ASSERT_EQ(raw_cmd(&r, &c), BLK_SC_INVALID_FIELD);
	c = raw_rw(&r, BLK_OP_WRITE, 6, 0, 2), c.length = 4096;
	ASSERT_EQ(raw_cmd(&r, &c), BLK_SC_DATA_LENGTH);
	c = raw_rw(&r, BLK_OP_READ, 7, 0, 2), c.addr = UINT64_MAX - 100;
	ASSERT_EQ(raw_cmd(&r, &c), BLK_SC_INVALID_FIELD);
	c = raw_rw(&r, BLK_OP_READ, 8, 255, 2);
	ASSERT_EQ(raw_cmd(&r, &c), BLK_SC_LBA_RANGE);
	c = raw_rw(&r, BLK_OP_READ, 9, UINT64_MAX, 1);
	ASSERT_EQ(raw_cmd(&r, &c), BLK_SC_LBA_RANGE);
	c = (struct blk_cmd){ .opcode = BLK_OP_FLUSH, .cid = 10, .lba = 5 };
	ASSERT_EQ(raw_cmd(&r, &c), BLK_SC_INVALID_FIELD);
	c = raw_rw(&r, BLK_OP_IDENTIFY, 11, 0, 0), c.length = 100;
	ASSERT_EQ(raw_cmd(&r, &c), BLK_SC_DATA_LENGTH);
	/* ... and still works: a write and a read of the last block. */
	memset(r.buf + 8192, 0x3c, 4096);
	c = raw_rw(&r, BLK_OP_WRITE, 12, 255, 1);
	ASSERT_EQ(raw_cmd(&r, &c), BLK_SC_SUCCESS);
	memset(r.buf + 8192, 0, 4096);
	c = raw_rw(&r, BLK_OP_READ, 13, 255, 1);
	ASSERT_EQ(raw_cmd(&r, &c), BLK_SC_SUCCESS);
	ASSERT_EQ(r.buf[8192 + 4095], 0x3c);
	/* One command id twice in flight: the second is refused. The target is stopped
	 * while both arrive, so that it takes them in one pass. */
	ASSERT_OK(kill(tg.pid, SIGSTOP));
	ASSERT_EQ(waitpid(tg.pid, &st, WUNTRACED), tg.pid);
	c = raw_rw(&r, BLK_OP_WRITE, 77, 10, 1);
	blk_cmd_pack(&c, junk);
	raw_send(&r, junk, BLK_CMD_SIZE);
	c = raw_rw(&r, BLK_OP_READ, 77, 20, 1);
	blk_cmd_pack(&c, junk);
	raw_send(&r, junk, BLK_CMD_SIZE);
	ASSERT_OK(kill(tg.pid, SIGCONT));
	rsp[0] = raw_rsp(&r);
	rsp[1] = raw_rsp(&r);
	ASSERT_EQ(rsp[0].cid, 77);
	ASSERT_EQ(rsp[1].cid, 77);
	ASSERT_EQ(rsp[0].status, BLK_SC_CID_CONFLICT); /* answered at once */
	ASSERT_EQ(rsp[1].status, BLK_SC_SUCCESS);
	/* A SEND larger than the target's receives fails at the sender; the target is unharmed. */
	raw_send(&r, junk, sizeof(junk));
	ASSERT_EQ(raw_wc(&r, &wc, 2000), 1);
	ASSERT_EQ(wc.status, VRDMA_WC_REM_INV_REQ_ERR);
	raw_close(&r);
	target_wait(&tg, 1, 1, 0, 3000); /* a host whose QP went away: noticed, dropped */
	/* A bad rkey: the target's RDMA READ fails, that connection is dropped, no other. */
	h[0] = host(&tg, 4, 8);
	ASSERT_OK(raw_connect(&r, tg.sh->port, BLK_MAGIC));
	target_wait(&tg, 3, 1, 2, 2000);
	c = raw_rw(&r, BLK_OP_WRITE, 1, 0, 1), c.rkey ^= 0x100;
	blk_cmd_pack(&c, junk);
	raw_send(&r, junk, BLK_CMD_SIZE);
	target_wait(&tg, 3, 2, 1, 3000);
	ASSERT_EQ(raw_wc(&r, &wc, 200), 0); /* no answer */
	raw_close(&r);
	ASSERT_OK(blkc_read(h[0], 0, 1, block, NULL));
	/* A host that dies with commands in flight: noticed, dropped. */
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		struct blkc *k = host(&tg, 8, 8);
		void *b;

		for (int i = 0; i < 8; i++)
			ASSERT_OK(
			    blkc_submit(k, blkc_slot_get(k, &b), BLK_OP_READ, (uint64_t)i, 1, 0));
		_exit(0);
	}
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	target_wait(&tg, 4, 3, 1, 3000);
	/* At most three hosts: the fourth is refused, and served once one leaves. */
	h[1] = host(&tg, 8, 8);
	h[2] = host(&tg, 8, 8);
	ASSERT_OK(vmci_set_context("a"));
	ASSERT_EQ(blkc_connect(&hc, &x), -ECONNREFUSED);
	blkc_close(h[2]);
	target_wait(&tg, 6, 3, 2, 2000);
	ASSERT_OK(blkc_connect(&hc, &x));
	ASSERT_OK(blkc_flush(x, NULL));
	blkc_close(x);
	blkc_close(h[1]);
	blkc_close(h[0]);
	target_wait(&tg, 7, 3, 0, 2000);
	ASSERT_EQ(tg.sh->st.rejected, 2);
	target_stop(&tg);
	td_stop(&d);
	td_cleanup(&d);
}

/* ---------------------------------------------------------------------- */
/* The programs */

TEST(rdmablk_programs)
{
	struct tdaemon d;
	char cmd[2048], out[4096], path[160], in[160], back[160], line[256];
	unsigned cid = 0, port = 0;
	int fds[2], st;
	pid_t pid;
	FILE *f;

	td_start(&d, NULL);
	snprintf(path, sizeof(path), "%s/blk.img", d.dir);
	ASSERT_OK(pipe(fds));
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		dup2(fds[1], STDOUT_FILENO);
		close(fds[0]);
		execl(VMFABRIC_BUILD_DIR "/examples/rdma-block/vmf-blk-target", "vmf-blk-target",
		      "-c", "b", "-s", "16M", path, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	f = fdopen(fds[0], "r");
	ASSERT(f && fgets(line, sizeof(line), f));
	fclose(f);
	th_log("%s", line);
	ASSERT(strstr(line, "CID"));
	ASSERT(sscanf(strstr(line, "CID"), "CID %u port %u", &cid, &port) == 2);
	ASSERT_EQ(cid, 4);
	snprintf(cmd, sizeof(cmd),
		 VMFABRIC_BUILD_DIR "/examples/rdma-block/vmf-blk -c a %u:%u identify", cid, port);
	ASSERT_EQ(td_run(cmd, out, sizeof(out)), 0);
	ASSERT(strstr(out, "blocks      4096 (16 MiB)"));
	snprintf(cmd, sizeof(cmd),
		 VMFABRIC_BUILD_DIR
		 "/examples/rdma-block/vmf-blk -c a -q 4 -b 16 -S 7 %u:%u verify",
		 cid, port);
	ASSERT_EQ(td_run(cmd, out, sizeof(out)), 0);
	th_log("%s", out);
	ASSERT(strstr(out, "4096 blocks at LBA 0 (seed 7)"));
	ASSERT(strstr(out, "all equal"));
	/* write from a file, read back to another, the bytes equal; out of range refused. */
	snprintf(in, sizeof(in), "%s/in", d.dir);
	snprintf(back, sizeof(back), "%s/back", d.dir);
	snprintf(
	    cmd, sizeof(cmd),
	    "head -c 409600 /dev/urandom > %s && %s/examples/rdma-block/vmf-blk -c a %u:%u "
	    "write 3900 100 %s && %s/examples/rdma-block/vmf-blk -c a %u:%u read 3900 100 > %s "
	    "&& cmp %s %s && cmp -n 409600 -i 0:%u %s %s && echo same",
	    in, VMFABRIC_BUILD_DIR, cid, port, in, VMFABRIC_BUILD_DIR, cid, port, back, in, back,
	    3900 * 4096, in, path);
	ASSERT_EQ(td_run(cmd, out, sizeof(out)), 0);
	ASSERT(strstr(out, "same"));
	snprintf(cmd, sizeof(cmd),
		 VMFABRIC_BUILD_DIR "/examples/rdma-block/vmf-blk -c a %u:%u read 4090 10 2>&1 "
				    ">/dev/null",
		 cid, port);
	ASSERT_EQ(td_run(cmd, out, sizeof(out)), 1);
	ASSERT(strstr(out, "LBA out of range (status 0x80)"));
	snprintf(cmd, sizeof(cmd),
		 VMFABRIC_BUILD_DIR
		 "/examples/rdma-block/vmf-blk -c a %u:%u read 0 1 2>&1 >/dev/null",
		 cid, port + 1);
	ASSERT_EQ(td_run(cmd, out, sizeof(out)), 1);
	ASSERT(strstr(out, "refused"));
	ASSERT_OK(kill(pid, SIGTERM));
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	ASSERT(WIFEXITED(st));
	ASSERT_EQ(WEXITSTATUS(st), 0);
	td_stop(&d);
	td_cleanup(&d);
}

/* ---------------------------------------------------------------------- */
/* Between hosts: RoCE v2 */

/*
 * Two hosts, namespaces vmfb-a and vmfb-b joined by a veth pair, each with
 * its daemon: vSwitch0 with uplink vmnic1 on the veth end, vmk1 at
 * 10.77.12.1 / .2, vmrdma0 paired and bound to it.
 */
static void
two_hosts(struct tdaemon *d)
{
	char conf[512];

	if (geteuid() != 0)
		SKIP("needs root (network namespaces, a veth pair)");
	if (td_sh("command -v ip >/dev/null 2>&1"))
		SKIP("no ip command (iproute2)");
	(void)td_sh("ip netns del vmfb-a 2>/dev/null; ip netns del vmfb-b 2>/dev/null");
	ASSERT_EQ(td_sh("ip netns add vmfb-a && ip netns add vmfb-b && "
		 "ip -n vmfb-a link add vmfb-a type veth peer name vmfb-b netns vmfb-b && "
		 "ip -n vmfb-a link set dev vmfb-a up arp off && "
		 "ip -n vmfb-b link set dev vmfb-b up arp off && "
		 "{ ! command -v ethtool >/dev/null || "
		 "{ ip netns exec vmfb-a ethtool -K vmfb-a tso off gso off gro off tx off && "
		 "ip netns exec vmfb-b ethtool -K vmfb-b tso off gso off gro off tx off; } "
		 ">/dev/null 2>&1; }"),
		  0);
	for (int i = 0; i < 2; i++) {
		char ns[8];
		bool up = false;

		snprintf(ns, sizeof(ns), "vmfb-%c", 'a' + i);
		snprintf(conf, sizeof(conf),
			 "uplink0.name = \"vmnic1\"\nuplink0.device = \"%s\"\n"
			 "vmk0.name = \"vmk1\"\nvmk0.portgroup = \"VM Network\"\n"
			 "vmk0.ip = \"10.77.12.%d/24\"\n"
			 "rdma0.name = \"vmrdma0\"\nrdma0.uplink = \"vmnic1\"\n"
			 "rdma0.vmknic = \"vmk1\"\n",
			 ns, i + 1);
		td_start_ns(&d[i], conf, ns);
		/* The XDP program bounces the veth's carrier as it loads: wait for the link. */
		for (int t = 0; t < 500 && !up; t++) {
			char *json = td_mgmt(&d[i], "rdma.device.vmknic.list");

			up = strstr(json, "\"roce_usable\":true") != NULL;
			free(json);
			if (!up)
				usleep(10000);
		}
		ASSERT(up);
	}
}

/* The target on one host, a host on the other: the same blocks, over RoCE v2 through the switches.
 */
TEST(rdmablk_roce)
{
	struct tdaemon d[2];
	struct target tg;
	struct blkc *c;
	struct blkc_info info;
	struct extent e[512];
	struct sockaddr_in a = { .sin_family = AF_INET };
	struct blkc_config cfg = { .addr = (const struct sockaddr *)&a,
				   .addr_len = sizeof(a),
				   .qdepth = 8,
				   .max_blocks = 32,
				   .timeout_ms = 10000 };
	uint64_t rng = 0xb10c, gen = 1;
	uint8_t *shadow = calloc(DEV_BLOCKS, BLK_BLOCK_SIZE), *buf = malloc(BLK_BLOCK_SIZE * 8);
	char path[160];
	uint16_t st;
	int n, fd;

	ASSERT(shadow && buf);
	two_hosts(d);
	snprintf(path, sizeof(path), "%s/blk.img", d[0].dir);
	/* Hosts elsewhere reach listeners of the host context only, on ports an IP address can
	 * name. */
	target_start_on(&tg, path, (uint64_t)DEV_BLOCKS * BLK_BLOCK_SIZE, 0, "2", d[0].sock, 4420);
	a.sin_port = htons((uint16_t)tg.sh->port);
	ASSERT_EQ(inet_pton(AF_INET, "10.77.12.1", &a.sin_addr), 1);
	ASSERT_OK(vmci_set_daemon(d[1].sock));
	ASSERT_OK(vmci_set_context("2"));
	ASSERT_OK(blkc_connect(&cfg, &c));
	blkc_get_info(c, &info);
	ASSERT_EQ(info.nblocks, DEV_BLOCKS);
	ASSERT_EQ(info.qdepth, 8);
	/* 1 MiB at least of checksummed blocks at random LBAs, 8 in flight, read back. */
	n = random_extents(e, 512, 256, &rng);
	for (int i = 0; i < n; i++)
		for (uint32_t j = 0; j < e[i].n; j++)
			make_block(shadow + (e[i].lba + j) * BLK_BLOCK_SIZE, e[i].lba + j, gen++,
				   &rng);
	run_extents(c, BLK_OP_WRITE, e, n, shadow);
	ASSERT_OK(blkc_flush(c, &st));
	run_extents(c, BLK_OP_READ, e, n, shadow);
	ASSERT_EQ(blkc_read(c, DEV_BLOCKS - 4, 8, buf, &st), -ERANGE);
	ASSERT_EQ(st, BLK_SC_LBA_RANGE);
	blkc_close(c);
	target_wait(&tg, 1, 0, 0, 5000);
	target_stop(&tg);
	fd = open(path, O_RDONLY);
	ASSERT_GE(fd, 0);
	for (uint64_t lba = 0; lba < DEV_BLOCKS; lba += 8) {
		ASSERT_EQ(pread(fd, buf, 8 * BLK_BLOCK_SIZE, (off_t)(lba * BLK_BLOCK_SIZE)),
			  8 * BLK_BLOCK_SIZE);
		ASSERT_MEM_EQ(buf, shadow + lba * BLK_BLOCK_SIZE, 8 * BLK_BLOCK_SIZE);
	}
	close(fd);
	free(buf);
	free(shadow);
	td_stop(&d[0]);
	td_stop(&d[1]);
	td_cleanup(&d[0]);
	td_cleanup(&d[1]);
	(void)td_sh("ip netns del vmfb-a; ip netns del vmfb-b");
}
