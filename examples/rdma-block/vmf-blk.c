/* SPDX-License-Identifier: MIT */
/*
 * vmf-blk: the host side of the rdma-block example (docs/RDMA.md "Storage
 * over RDMA"): connects to a vmf-blk-target over vmfabric's RDMA verbs and
 * reads, writes, flushes or verifies block ranges, with up to -q commands
 * in flight. verify writes a pattern that names each block (its LBA and a
 * seed), flushes, reads it back and compares every byte.
 *
 *   vmf-blk [options] TARGET identify|flush
 *   vmf-blk [options] TARGET read|write LBA COUNT [FILE]
 *   vmf-blk [options] TARGET verify [LBA COUNT]
 * TARGET is CID:PORT on this host, or IPv4:PORT / [IPv6]:PORT of another
 * host's VMkernel adapter (RoCE v2).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blk.h"
#include "vmfabric/vmci.h"

__attribute__((noreturn)) static void
usage(int status)
{
	fprintf(
	    status ? stderr : stdout,
	    "usage: vmf-blk [options] CID:PORT|IPv4:PORT|[IPv6]:PORT COMMAND [ARGS]\n"
	    "  identify               the device: blocks, limits, serial, model\n"
	    "  read LBA COUNT [FILE]  COUNT blocks from LBA to FILE (default: stdout)\n"
	    "  write LBA COUNT [FILE] COUNT blocks from FILE (default: stdin) to LBA\n"
	    "  flush                  make written blocks durable (fdatasync at the target)\n"
	    "  verify [LBA COUNT]     write a pattern, flush, read it back, compare\n"
	    "                         (default: the whole device, 64 MiB at most)\n"
	    "options:\n"
	    "  -c, --context NAME|CID act as this context (default: VMFABRIC_CONTEXT, the host)\n"
	    "  -q, --qdepth N         commands in flight (default 8, max %u)\n"
	    "  -b, --blocks N         blocks a command (default 32, max %u)\n"
	    "  -t, --timeout MS       for connecting and for each answer (default 5000)\n"
	    "  -S, --seed N           verify's pattern seed (default: the time)\n",
	    BLK_MAX_QDEPTH, BLK_MAX_BLOCKS);
	exit(status);
}

static uint64_t
number(const char *s, const char *what)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *end || *s == '-') {
		fprintf(stderr, "vmf-blk: %s is not a number: %s\n", what, s);
		exit(2);
	}
	return v;
}

/*
 * TARGET: "CID:PORT" (digits: a context on this host), "a.b.c.d:PORT" or
 * "[v6]:PORT" (another host). False if it is none of them.
 */
static bool
parse_target(const char *s, struct blkc_config *cfg, struct sockaddr_storage *ss)
{
	const char *colon = strrchr(s, ':');
	char host[INET6_ADDRSTRLEN + 2];
	size_t n = colon ? (size_t)(colon - s) : 0;
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
	char *end;
	unsigned long port, cid;

	if (!colon || !n || n >= sizeof(host))
		return false;
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno || end == colon + 1 || *end || port > UINT32_MAX)
		return false;
	memcpy(host, s, n);
	host[n] = 0;
	cfg->port = (uint32_t)port;
	memset(ss, 0, sizeof(*ss));
	if (host[0] == '[' && host[n - 1] == ']') {
		host[n - 1] = 0;
		if (port > 65535 || inet_pton(AF_INET6, host + 1, &a6->sin6_addr) != 1)
			return false;
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
		cfg->addr = (const struct sockaddr *)ss;
		cfg->addr_len = sizeof(*a6);
		return true;
	}
	if (strchr(host, '.')) {
		if (port > 65535 || inet_pton(AF_INET, host, &a4->sin_addr) != 1)
			return false;
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)port);
		cfg->addr = (const struct sockaddr *)ss;
		cfg->addr_len = sizeof(*a4);
		return true;
	}
	cid = strtoul(host, &end, 10);
	if (*end || cid > UINT32_MAX)
		return false;
	cfg->cid = (uint32_t)cid;
	return true;
}

/* COUNT blocks, as many as one buffer of this process can hold. */
static uint64_t
count(const char *s)
{
	uint64_t n = number(s, "COUNT");

	if (n > SIZE_MAX / 2 / BLK_BLOCK_SIZE) {
		fprintf(stderr, "vmf-blk: COUNT is too large: %s\n", s);
		exit(2);
	}
	return n;
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
fail(const char *what, int err, uint16_t st)
{
	if (err == -ERANGE || (st && err != -EPROTO))
		fprintf(stderr, "vmf-blk: %s: %s (status 0x%02x)\n", what, blk_status_str(st), st);
	else
		fprintf(stderr, "vmf-blk: %s: %s\n", what, strerror(-err));
	return 1;
}

static int
full_io(int fd, uint8_t *buf, size_t len, bool out)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n =
		    out ? write(fd, buf + done, len - done) : read(fd, buf + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ENODATA;
		done += (size_t)n;
	}
	return 0;
}

/* Block @lba of the pattern: 64-bit words from a generator seeded by the seed and the LBA. */
static void
pattern(uint8_t *blk, uint64_t lba, uint64_t seed)
{
	uint64_t x = seed ^ (lba + 1) * 0x9e3779b97f4a7c15ull, w[BLK_BLOCK_SIZE / 8];

	w[0] = lba;
	w[1] = seed;
	for (size_t i = 2; i < BLK_BLOCK_SIZE / 8; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		w[i] = x;
	}
	memcpy(blk, w, sizeof(w));
}

static int
verify(struct blkc *c, uint64_t lba, uint64_t n, uint64_t seed)
{
	size_t len = (size_t)n * BLK_BLOCK_SIZE;
	uint8_t *wbuf = malloc(len), *rbuf = malloc(len), want[BLK_BLOCK_SIZE];
	double t0, t1, t2;
	uint16_t st = 0;
	int err;

	if (!wbuf || !rbuf) {
		free(wbuf);
		free(rbuf);
		return fail("verify", -ENOMEM, 0);
	}
	for (uint64_t i = 0; i < n; i++)
		pattern(wbuf + i * BLK_BLOCK_SIZE, lba + i, seed);
	memset(rbuf, 0, len);
	t0 = now_s();
	if ((err = blkc_write(c, lba, n, wbuf, &st)) || (err = blkc_flush(c, &st)))
		goto out;
	t1 = now_s();
	if ((err = blkc_read(c, lba, n, rbuf, &st)))
		goto out;
	t2 = now_s();
	for (uint64_t i = 0; i < n; i++) {
		pattern(want, lba + i, seed);
		if (memcmp(rbuf + i * BLK_BLOCK_SIZE, want, BLK_BLOCK_SIZE)) {
			fprintf(stderr, "vmf-blk: verify: block %llu differs\n",
				(unsigned long long)(lba + i));
			err = -EILSEQ;
			goto out;
		}
	}
	printf("verify: %llu blocks at LBA %llu (seed %llu): written and flushed %.1f MiB/s, "
	       "read back %.1f MiB/s, all equal\n",
	       (unsigned long long)n, (unsigned long long)lba, (unsigned long long)seed,
	       (double)len / 1048576 / (t1 - t0), (double)len / 1048576 / (t2 - t1));
out:
	free(wbuf);
	free(rbuf);
	if (err == -EILSEQ)
		return 1;
	return err ? fail("verify", err, st) : 0;
}

static int
transfer(struct blkc *c, bool write, uint64_t lba, uint64_t n, const char *path)
{
	size_t len = (size_t)n * BLK_BLOCK_SIZE;
	int fd = write ? STDIN_FILENO : STDOUT_FILENO, err;
	uint8_t *buf = malloc(len ? len : 1);
	uint16_t st = 0;

	if (!buf)
		return fail(write ? "write" : "read", -ENOMEM, 0);
	if (path && (fd = open(path, write ? O_RDONLY : O_WRONLY | O_CREAT | O_TRUNC, 0644)) < 0) {
		fprintf(stderr, "vmf-blk: %s: %s\n", path, strerror(errno));
		free(buf);
		return 1;
	}
	if (write && (err = full_io(fd, buf, len, false)))
		fprintf(stderr, "vmf-blk: %s: %s\n", path ? path : "stdin",
			err == -ENODATA ? "fewer bytes than COUNT blocks" : strerror(-err));
	else if ((err = write ? blkc_write(c, lba, n, buf, &st) : blkc_read(c, lba, n, buf, &st)))
		fail(write ? "write" : "read", err, st);
	else if (!write && (err = full_io(fd, buf, len, true)))
		fprintf(stderr, "vmf-blk: %s: %s\n", path ? path : "stdout", strerror(-err));
	if (path)
		close(fd);
	free(buf);
	return err ? 1 : 0;
}

static void
identify(const struct blkc_info *info)
{
	printf("blocks      %llu (%llu MiB)\n", (unsigned long long)info->nblocks,
	       (unsigned long long)(info->nblocks * info->block_size >> 20));
	printf("block size  %u\nmax blocks  %u a command\nqueue depth %u\n", info->block_size,
	       info->max_blocks, info->qdepth);
	printf("write cache %s\nserial      %s\nmodel       %s\n",
	       info->flags & BLK_ID_VOLATILE_CACHE ? "volatile (flush makes it durable)" : "none",
	       info->serial, info->model);
}

/* COMMAND with its @n arguments @arg: the exit status. */
static int
run(struct blkc *c, const char *cmd, int n, char **arg, uint64_t seed)
{
	struct blkc_info info;
	uint16_t st = 0;
	int err;

	blkc_get_info(c, &info);
	if (!strcmp(cmd, "identify") && n == 0) {
		identify(&info);
		return 0;
	}
	if (!strcmp(cmd, "flush") && n == 0)
		return (err = blkc_flush(c, &st)) ? fail("flush", err, st) : 0;
	if ((!strcmp(cmd, "read") || !strcmp(cmd, "write")) && (n == 2 || n == 3))
		return transfer(c, cmd[0] == 'w', number(arg[0], "LBA"), count(arg[1]),
				n == 3 ? arg[2] : NULL);
	if (!strcmp(cmd, "verify") && (n == 0 || n == 2)) {
		uint64_t lba = 0, k = info.nblocks < 16384 ? info.nblocks : 16384;

		if (n == 2) {
			lba = number(arg[0], "LBA");
			k = count(arg[1]);
		}
		return k ? verify(c, lba, k, seed) : 0;
	}
	fprintf(stderr, "vmf-blk: unknown command or arguments: %s\n", cmd);
	return 2;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "context", required_argument, NULL, 'c' },
		{ "qdepth", required_argument, NULL, 'q' },
		{ "blocks", required_argument, NULL, 'b' },
		{ "timeout", required_argument, NULL, 't' },
		{ "seed", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct blkc_config cfg = { 0 };
	uint64_t seed = (uint64_t)time(NULL);
	struct sockaddr_storage ss;
	struct blkc *c;
	int o, err, rc;

	while ((o = getopt_long(argc, argv, "c:q:b:t:S:h", opts, NULL)) != -1) {
		switch (o) {
		case 'c':
			if ((err = vmci_set_context(optarg))) {
				fprintf(stderr, "vmf-blk: context %s: %s\n", optarg,
					strerror(-err));
				return 2;
			}
			break;
		case 'q':
			cfg.qdepth = (unsigned)number(optarg, "the queue depth");
			break;
		case 'b':
			cfg.max_blocks = (unsigned)number(optarg, "blocks a command");
			break;
		case 't':
			cfg.timeout_ms = (int)number(optarg, "the timeout");
			break;
		case 'S':
			seed = number(optarg, "the seed");
			break;
		case 'h':
			usage(0);
		default:
			usage(2);
		}
	}
	if (argc - optind < 2 || !parse_target(argv[optind], &cfg, &ss))
		usage(2);
	if (cfg.qdepth > BLK_MAX_QDEPTH || cfg.max_blocks > BLK_MAX_BLOCKS) {
		fprintf(stderr, "vmf-blk: at most %u in flight and %u blocks a command\n",
			BLK_MAX_QDEPTH, BLK_MAX_BLOCKS);
		return 2;
	}
	if ((err = blkc_connect(&cfg, &c))) {
		fprintf(stderr, "vmf-blk: %s: %s\n", argv[optind],
			err == -ECONNREFUSED ? "refused (nobody listens, or the target said no)"
					     : strerror(-err));
		return 1;
	}
	rc = run(c, argv[optind + 1], argc - optind - 2, argv + optind + 2, seed);
	blkc_close(c);
	return rc;
}
