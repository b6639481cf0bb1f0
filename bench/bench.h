/* SPDX-License-Identifier: MIT */
/*
 * Benchmark harness shared by the programs under bench/: command-line options, timing,
 * percentiles, CPU pinning, process helpers, and the result convention of
 * the project: one JSON line per measurement
 *   {"bench":"qp_stream","system":"vmfabric_qp","msg_bytes":65536,
 *    "mode":"blocking","metric":"gbit_s","value":123.4}
 * on stdout (and appended to --out FILE), then a human table, then the
 * targets as ratios measured in the same run.
 */
#ifndef VMFABRIC_BENCH_H
#define VMFABRIC_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

struct bench_opts {
	bool quick;	 /* short run: well under 30 s in all */
	bool pin;	 /* pin the two sides to different CPUs */
	const char *out; /* JSON lines appended here too, or NULL */
	const char *only; /* run only measurements whose bench name starts so */
};

/* Parses --quick, --no-pin, --out FILE, --only NAME, --help. Exits on --help. */
void bench_parse(int argc, char **argv, struct bench_opts *o, const char *usage);

/* JSON lines appended to @path too (what --out does); exits if it cannot be opened. */
FILE *bench_open_out(const char *path);

double bench_now(void); /* seconds, monotonic */

/* Record one measurement: prints its JSON line and keeps it for the table. */
void bench_emit(const char *bench, const char *system, long msg_bytes, const char *mode,
		const char *metric, double value);
/* Look a recorded value up (NaN when absent). */
double bench_value(const char *bench, const char *system, long msg_bytes, const char *mode,
		   const char *metric);
/* A target, as a ratio or a bound measured in this run. */
void bench_target(const char *name, double value, const char *op, double goal,
		  const char *what);
/* Human table of every measurement, then the targets. Returns 0. */
int bench_report(void);

/* Percentile p (0..100) of n samples; sorts the array. */
double bench_percentile(double *v, size_t n, double p);

/* Pin the calling process to CPU @cpu (modulo the CPUs available). */
void bench_pin(const struct bench_opts *o, int cpu);

/* fork() with the child pinned to CPU 1 and the parent to CPU 0. */
pid_t bench_fork(const struct bench_opts *o);
/* Wait for a child, report a non-zero exit on stderr. */
int bench_wait(pid_t pid);

/* A connected TCP loopback pair (127.0.0.1), NODELAY set if asked. */
int bench_tcp_pair(int fd[2], bool nodelay);

/*
 * As bench_emit, with more fields: @fields is JSON members without the
 * braces, e.g. "path":"guest_to_host","accel":"tcg" (NULL or "": none). They
 * go between "mode" and "metric" in the JSON line and into a last column of
 * the table, as key=value. bench_value does not look at them.
 */
void bench_emit_fields(const char *bench, const char *system, long msg_bytes, const char *mode,
		       const char *fields, const char *metric, double value);
/* A line printed under the table by bench_report (what the figures are). */
void bench_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * A private vmfabricd for a run: @config is the text of its host
 * configuration; its socket is in a fresh directory under /tmp, exported
 * as VMFABRIC_SOCKET and set with vmci_set_daemon(). Killed if the run
 * exits without stopping it. Exits the run if it does not come up, showing
 * what it logged (its errors go to vmfabricd.log in that directory).
 */
struct bench_daemon {
	pid_t pid;
	char dir[64], sock[100], conf[128];
};
void bench_daemon_start(struct bench_daemon *d, const char *exe, const char *config);
/* The same, the daemon in network namespace @netns (/run/netns/NAME; NULL: this one's). */
void bench_daemon_start_ns(struct bench_daemon *d, const char *exe, const char *config,
			   const char *netns);
void bench_daemon_stop(struct bench_daemon *d);

#endif
