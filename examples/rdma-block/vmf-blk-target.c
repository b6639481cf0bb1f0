/* SPDX-License-Identifier: MIT */
/*
 * vmf-blk-target: exports a file, or a size of anonymous memory, as a
 * block device of 4 KiB blocks over vmfabric's RDMA verbs (the rdma-block
 * example, docs/RDMA.md "Storage over RDMA"). It listens on a port of the
 * RDMA connection manager as the context VMFABRIC_CONTEXT (or -c) names,
 * prints one line saying where, serves hosts until SIGINT or SIGTERM and
 * logs connections on stderr.
 *
 *   vmf-blk-target [-c CONTEXT] [-p PORT] [-s SIZE] FILE
 *   vmf-blk-target [-c CONTEXT] [-p PORT] -m SIZE
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blk.h"
#include "vmfabric/vmci.h"

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void
log_line(void *arg, const char *msg)
{
	(void)arg;
	fprintf(stderr, "vmf-blk-target: %s\n", msg);
}

__attribute__((noreturn)) static void
usage(int status)
{
	fprintf(
	    status ? stderr : stdout,
	    "usage: vmf-blk-target [options] FILE\n"
	    "       vmf-blk-target [options] -m SIZE\n"
	    "Exports FILE (or SIZE bytes of memory) as a device of 4096-byte blocks over RDMA.\n"
	    "  -c, --context NAME|CID  act as this context (default: VMFABRIC_CONTEXT, the host)\n"
	    "  -p, --port N            the RDMA connection manager's port (default: ephemeral)\n"
	    "  -s, --size SIZE         create FILE if need be and make it SIZE bytes first\n"
	    "  -m, --memory SIZE       export SIZE bytes of anonymous memory instead of a file\n"
	    "  -q, --max-qdepth N      commands in flight per host, at most (default 32, max %u)\n"
	    "  -b, --max-blocks N      blocks per command, at most (default 64, max %u)\n"
	    "  -n, --max-hosts N       hosts at once (default 16)\n"
	    "      --spin-us N         busy-poll this long after work before sleeping (default "
	    "50)\n"
	    "SIZE takes a K, M or G suffix (powers of 1024).\n",
	    BLK_MAX_QDEPTH, BLK_MAX_BLOCKS);
	exit(status);
}

/* A number with an optional K/M/G suffix; false if it is not one. */
static bool
parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *s == '-')
		return false;
	switch (*end) {
	case 'k':
	case 'K':
		shift = 10;
		break;
	case 'm':
	case 'M':
		shift = 20;
		break;
	case 'g':
	case 'G':
		shift = 30;
		break;
	case 0:
		break;
	default:
		return false;
	}
	if (shift && end[1])
		return false;
	if (v > (UINT64_MAX >> shift))
		return false;
	*out = (uint64_t)v << shift;
	return true;
}

static unsigned
parse_count(const char *s, const char *what, unsigned max)
{
	uint64_t v;

	if (!parse_size(s, &v) || v == 0 || v > max) {
		fprintf(stderr, "vmf-blk-target: %s must be 1 to %u: %s\n", what, max, s);
		exit(2);
	}
	return (unsigned)v;
}

/* The options into @cfg, -s into @size, -m into @mem; exits on a bad one. */
static void
parse_options(int argc, char **argv, struct blkt_config *cfg, uint64_t *size, uint64_t *mem)
{
	static const struct option opts[] = {
		{ "context", required_argument, NULL, 'c' },
		{ "port", required_argument, NULL, 'p' },
		{ "size", required_argument, NULL, 's' },
		{ "memory", required_argument, NULL, 'm' },
		{ "max-qdepth", required_argument, NULL, 'q' },
		{ "max-blocks", required_argument, NULL, 'b' },
		{ "max-hosts", required_argument, NULL, 'n' },
		{ "spin-us", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int o, err;

	while ((o = getopt_long(argc, argv, "c:p:s:m:q:b:n:h", opts, NULL)) != -1) {
		uint64_t *v = o == 's' ? size : mem;

		switch (o) {
		case 'c':
			if ((err = vmci_set_context(optarg))) {
				fprintf(stderr, "vmf-blk-target: context %s: %s\n", optarg,
					strerror(-err));
				exit(2);
			}
			break;
		case 'p':
			cfg->port = parse_count(optarg, "the port", UINT32_MAX - 1);
			break;
		case 's':
		case 'm':
			if (!parse_size(optarg, v) || *v % BLK_BLOCK_SIZE || (o == 'm' && !*v)) {
				fprintf(stderr,
					"vmf-blk-target: a size is a non-zero multiple of %u: %s\n",
					BLK_BLOCK_SIZE, optarg);
				exit(2);
			}
			break;
		case 'q':
			cfg->max_qdepth = parse_count(optarg, "the queue depth", BLK_MAX_QDEPTH);
			break;
		case 'b':
			cfg->max_blocks = parse_count(optarg, "blocks a command", BLK_MAX_BLOCKS);
			break;
		case 'n':
			cfg->max_conns = parse_count(optarg, "hosts", 1024);
			break;
		case 'S':
			cfg->spin_us = (int)parse_count(optarg, "--spin-us", 10000000);
			break;
		case 'h':
			usage(0);
		default:
			usage(2);
		}
	}
}

int
main(int argc, char **argv)
{
	struct blkt_config cfg = { .log = log_line };
	struct sigaction sa = { .sa_handler = on_signal };
	uint64_t size = 0, mem = 0;
	struct blk_store *store;
	struct blkt *t;
	struct blkt_stats st;
	int err;

	parse_options(argc, argv, &cfg, &size, &mem);
	if (mem ? optind != argc : optind != argc - 1)
		usage(2);
	err = mem ? blks_open_memory(mem, &store) : blks_open_file(argv[optind], size, &store);
	if (err) {
		fprintf(stderr, "vmf-blk-target: %s: %s\n", mem ? "memory" : argv[optind],
			err == -EINVAL ? "not a file of one block at least" : strerror(-err));
		return 1;
	}
	cfg.store = store;
	if ((err = blkt_create(&cfg, &t))) {
		fprintf(stderr, "vmf-blk-target: %s\n",
			err == -EADDRINUSE ? "the port is in use"
			: err == -ENODEV || err == -EACCES || err == -ENETDOWN
			    ? "no RDMA device for this context (is vmfabricd running, VMCI on?)"
			    : strerror(-err));
		blks_close(store);
		return 1;
	}
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	printf("vmf-blk-target: %s, %llu blocks of %u bytes, listening on CID %u port %u\n",
	       mem ? "memory" : argv[optind], (unsigned long long)blks_nblocks(store),
	       BLK_BLOCK_SIZE, blkt_cid(t), blkt_port(t));
	fflush(stdout);
	while (!stop && !(err = blkt_run(t, 200)))
		;
	blkt_get_stats(t, &st);
	fprintf(stderr,
		"vmf-blk-target: %llu hosts (%llu refused, %llu dropped), %llu commands (%llu "
		"failed)\n",
		(unsigned long long)st.conns, (unsigned long long)st.rejected,
		(unsigned long long)st.dropped, (unsigned long long)st.cmds,
		(unsigned long long)st.errors);
	blkt_destroy(t);
	blks_close(store);
	if (err) {
		fprintf(stderr, "vmf-blk-target: %s\n", strerror(-err));
		return 1;
	}
	return 0;
}
