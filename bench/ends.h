/* SPDX-License-Identifier: MIT */
/*
 * Connected endpoints of every system the benchmarks compare, behind one
 * interface, and the measurements they share: one-way stream throughput and
 * request/response round trips between two pinned processes. Systems:
 * the queue pair, VMCI sockets (needs a running vmfabricd), TCP loopback
 * and AF_UNIX stream sockets.
 */
#ifndef VMFABRIC_BENCH_ENDS_H
#define VMFABRIC_BENCH_ENDS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "bench.h"

enum bsys { BSYS_QP, BSYS_VMCI, BSYS_TCP, BSYS_UNIX, BSYS_N };
extern const char *const bsys_name[BSYS_N];

/*
 * blocking: default settings (queue pairs spin briefly before sleeping);
 * blocking_nospin: queue pairs sleep at once (sockets: as blocking);
 * busy_poll: never sleep (sockets: non-blocking calls in a loop).
 */
enum bmode { BMODE_BLOCKING, BMODE_NOSPIN, BMODE_BUSY, BMODE_N };
extern const char *const bmode_name[BMODE_N];

struct qp;
struct bend {
	enum bsys sys;
	bool busy;
	struct qp *qp;
	int fd;
};

/* Connect a pair and fork: each process gets its end in *@e; 0 in the child. */
pid_t bend_pair(const struct bench_opts *o, enum bsys sys, enum bmode mode, bool nodelay,
		struct bend *e);
ssize_t bend_write(struct bend *e, const void *buf, size_t len);
ssize_t bend_read(struct bend *e, void *buf, size_t len);
int bend_write_all(struct bend *e, const void *buf, size_t len);
int bend_read_all(struct bend *e, void *buf, size_t len);
void bend_close(struct bend *e);

/* Gbit/s of a one-way stream of @msg-byte writes, read 64 KiB at a time. */
double bench_stream_once(const struct bench_opts *o, enum bsys sys, size_t msg, enum bmode m);
/* @iters round trips of @msg bytes; fills rtt[] (microseconds). */
void bench_rr_once(const struct bench_opts *o, enum bsys sys, enum bmode m, size_t msg,
		   double *rtt, size_t iters);

/*
 * The two measurements over @systems (a bitmask of 1 << bsys) in @modes
 * (bitmask of 1 << bmode), in rounds where the systems take turns; emits
 * "<prefix>_stream" (64 B, 4 KiB, 64 KiB) and "<prefix>_rr" (64 B).
 */
void bench_run_stream(const struct bench_opts *o, const char *prefix, unsigned systems,
		      unsigned modes);
void bench_run_rr(const struct bench_opts *o, const char *prefix, unsigned systems,
		  unsigned modes);

#endif
