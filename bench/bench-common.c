/* SPDX-License-Identifier: MIT */
/*
 * Shared benchmark plumbing; see bench.h for the result convention. Results
 * are kept in memory so that targets can be computed as ratios of
 * measurements taken in the same run, against peers on the same machine.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "vmfabric/vmci.h"

struct result {
	char bench[32], system[32], mode[16], metric[16];
	char fields[192]; /* extra JSON members, or "" */
	long msg_bytes;
	double value;
};

struct target {
	char name[48], op[4], what[96];
	double value, goal;
};

static struct result results[512];
static size_t nresults;
static struct target targets[32];
static size_t ntargets;
static char notes[16][256];
static size_t nnotes;
static FILE *out;

void
bench_parse(int argc, char **argv, struct bench_opts *o, const char *usage)
{
	memset(o, 0, sizeof(*o));
	o->pin = true;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			o->quick = true;
		} else if (!strcmp(argv[i], "--no-pin")) {
			o->pin = false;
		} else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
			o->out = argv[++i];
		} else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
			o->only = argv[++i];
		} else {
			fprintf(stderr,
				"usage: %s [--quick] [--no-pin] [--out FILE] [--only BENCH]\n%s\n"
				"  --quick     short run (under 30 s)\n"
				"  --no-pin    do not pin the two sides to CPUs 0 and 1\n"
				"  --out FILE  append the JSON lines to FILE as well\n"
				"  --only B    run only the measurements named B...\n",
				argv[0], usage);
			exit(strcmp(argv[i], "--help") && strcmp(argv[i], "-h") ? 2 : 0);
		}
	}
	if (o->out)
		bench_open_out(o->out);
	if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
		o->pin = false;
}

FILE *
bench_open_out(const char *path)
{
	if (!(out = fopen(path, "a"))) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		exit(1);
	}
	return out;
}

double
bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void
bench_emit(const char *bench, const char *system, long msg_bytes, const char *mode,
	   const char *metric, double value)
{
	bench_emit_fields(bench, system, msg_bytes, mode, NULL, metric, value);
}

void
bench_emit_fields(const char *bench, const char *system, long msg_bytes, const char *mode,
		  const char *fields, const char *metric, double value)
{
	const char *sep = fields && *fields ? "," : "";
	char line[512];
	struct result *r;

	if (!fields)
		fields = "";
	snprintf(line, sizeof(line),
		 "{\"bench\":\"%s\",\"system\":\"%s\",\"msg_bytes\":%ld,\"mode\":\"%s\",%s%s"
		 "\"metric\":\"%s\",\"value\":%.4g}\n",
		 bench, system, msg_bytes, mode, fields, sep, metric, value);
	fputs(line, stdout);
	fflush(stdout);
	if (out) {
		fputs(line, out);
		fflush(out);
	}
	if (nresults == sizeof(results) / sizeof(results[0]))
		return;
	r = &results[nresults++];
	snprintf(r->bench, sizeof(r->bench), "%s", bench);
	snprintf(r->system, sizeof(r->system), "%s", system);
	snprintf(r->mode, sizeof(r->mode), "%s", mode);
	snprintf(r->metric, sizeof(r->metric), "%s", metric);
	snprintf(r->fields, sizeof(r->fields), "%s", fields);
	r->msg_bytes = msg_bytes;
	r->value = value;
}

double
bench_value(const char *bench, const char *system, long msg_bytes, const char *mode,
	    const char *metric)
{
	for (size_t i = 0; i < nresults; i++) {
		struct result *r = &results[i];
		if (!strcmp(r->bench, bench) && !strcmp(r->system, system) &&
		    r->msg_bytes == msg_bytes && !strcmp(r->mode, mode) &&
		    !strcmp(r->metric, metric))
			return r->value;
	}
	return NAN;
}

void
bench_target(const char *name, double value, const char *op, double goal, const char *what)
{
	char line[512];
	bool met = !strcmp(op, ">=") ? value >= goal : value <= goal;
	struct target *t;

	if (isnan(value))
		return; /* not measured in this run (--only) */
	snprintf(line, sizeof(line),
		 "{\"bench\":\"target\",\"target\":\"%s\",\"value\":%.4g,\"goal\":\"%s %g\","
		 "\"met\":%s}\n",
		 name, value, op, goal, met ? "true" : "false");
	fputs(line, stdout);
	if (out)
		fputs(line, out);
	if (ntargets == sizeof(targets) / sizeof(targets[0]))
		return;
	t = &targets[ntargets++];
	snprintf(t->name, sizeof(t->name), "%s", name);
	snprintf(t->op, sizeof(t->op), "%s", op);
	snprintf(t->what, sizeof(t->what), "%s", what);
	t->value = value;
	t->goal = goal;
}

void
bench_note(const char *fmt, ...)
{
	va_list ap;

	if (nnotes == sizeof(notes) / sizeof(notes[0]))
		return;
	va_start(ap, fmt);
	vsnprintf(notes[nnotes++], sizeof(notes[0]), fmt, ap);
	va_end(ap);
}

/* JSON members "k":"v","n":1 as the table shows them: k=v n=1. */
static void
fields_text(const char *json, char *buf, size_t len)
{
	bool quoted = false;
	size_t n = 0;

	for (const char *c = json; *c && n + 1 < len; c++) {
		if (*c == '"')
			quoted = !quoted;
		else if (!quoted && *c == ':')
			buf[n++] = '=';
		else if (!quoted && *c == ',')
			buf[n++] = ' ';
		else
			buf[n++] = *c;
	}
	buf[n] = 0;
}

/* The table's column widths: at least the usual ones, wider for longer names. */
static void
table_widths(int *wbench, int *wsys, bool *any_fields)
{
	*wbench = 12;
	*wsys = 14;
	*any_fields = false;
	for (size_t i = 0; i < nresults; i++) {
		int b = (int)strlen(results[i].bench), s = (int)strlen(results[i].system);
		*wbench = b > *wbench ? b : *wbench;
		*wsys = s > *wsys ? s : *wsys;
		*any_fields |= results[i].fields[0] != 0;
	}
}

int
bench_report(void)
{
	char text[sizeof(results[0].fields)];
	int wb, ws;
	bool fields;

	table_widths(&wb, &ws, &fields);
	printf("\n%-*s %-*s %9s %-16s %-11s %12s%s\n", wb, "bench", ws, "system", "msg_bytes",
	       "mode", "metric", "value", fields ? "  fields" : "");
	for (size_t i = 0; i < nresults; i++) {
		struct result *r = &results[i];
		fields_text(r->fields, text, sizeof(text));
		printf("%-*s %-*s %9ld %-16s %-11s %12.3f%s%s\n", wb, r->bench, ws, r->system,
		       r->msg_bytes, r->mode, r->metric, r->value, text[0] ? "  " : "", text);
	}
	for (size_t i = 0; i < nnotes; i++)
		printf("%s%s\n", i ? "" : "\n", notes[i]);
	if (ntargets)
		printf("\n%-26s %10s %-10s %-5s %s\n", "target", "measured", "goal", "met",
		       "meaning");
	for (size_t i = 0; i < ntargets; i++) {
		struct target *t = &targets[i];
		bool met = !strcmp(t->op, ">=") ? t->value >= t->goal : t->value <= t->goal;
		char goal[24];

		snprintf(goal, sizeof(goal), "%s %g", t->op, t->goal);
		printf("%-26s %10.3f %-10s %-5s %s\n", t->name, t->value, goal,
		       met ? "yes" : "NO", t->what);
	}
	if (out)
		fclose(out);
	return 0;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

double
bench_percentile(double *v, size_t n, double p)
{
	size_t i;

	if (n == 0)
		return NAN;
	qsort(v, n, sizeof(*v), cmp_double);
	i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

void
bench_pin(const struct bench_opts *o, int cpu)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	cpu_set_t set;

	if (!o->pin || n < 1)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu % n, &set);
	(void)sched_setaffinity(0, sizeof(set), &set);
}

pid_t
bench_fork(const struct bench_opts *o)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		perror("fork");
		exit(1);
	}
	bench_pin(o, pid == 0 ? 1 : 0);
	return pid;
}

int
bench_wait(pid_t pid)
{
	int status;

	if (waitpid(pid, &status, 0) < 0)
		return -errno;
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "bench: child %d ended with status 0x%x\n", (int)pid, status);
		return -1;
	}
	return 0;
}

int
bench_tcp_pair(int fd[2], bool nodelay)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int one = 1, l;

	l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&a, &len) < 0)
		return -errno;
	fd[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd[0] < 0 || connect(fd[0], (struct sockaddr *)&a, sizeof(a)) < 0)
		return -errno;
	fd[1] = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	close(l);
	if (fd[1] < 0)
		return -errno;
	if (nodelay) {
		setsockopt(fd[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		setsockopt(fd[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	return 0;
}

/* ---------------------------------------------------------------------- */
/* A private vmfabricd */

static pid_t running_daemons[4]; /* stopped on any exit, so that none is left behind */

static void
daemon_kill_at_exit(void)
{
	for (size_t i = 0; i < sizeof(running_daemons) / sizeof(running_daemons[0]); i++)
		if (running_daemons[i] > 0 && getpid() != running_daemons[i])
			kill(running_daemons[i], SIGKILL);
}

static void
daemon_track(pid_t old, pid_t pid)
{
	static bool registered;

	if (!registered)
		atexit(daemon_kill_at_exit);
	registered = true;
	for (size_t i = 0; i < sizeof(running_daemons) / sizeof(running_daemons[0]); i++)
		if (running_daemons[i] == old) {
			running_daemons[i] = pid;
			return;
		}
}

void
bench_daemon_start(struct bench_daemon *d, const char *exe, const char *config)
{
	bench_daemon_start_ns(d, exe, config, NULL);
}

void
bench_daemon_start_ns(struct bench_daemon *d, const char *exe, const char *config,
		      const char *netns)
{
	char log[sizeof(d->dir) + 16], line[256];
	FILE *f;

	snprintf(d->dir, sizeof(d->dir), "/tmp/vmf-bench-XXXXXX");
	if (!mkdtemp(d->dir)) {
		perror("bench: mkdtemp");
		exit(1);
	}
	snprintf(d->sock, sizeof(d->sock), "%s/vmfabricd.sock", d->dir);
	snprintf(d->conf, sizeof(d->conf), "%s/host.cfg", d->dir);
	f = fopen(d->conf, "w");
	if (!f || fputs(config, f) < 0 || fclose(f)) {
		perror(d->conf);
		exit(1);
	}
	snprintf(log, sizeof(log), "%s/vmfabricd.log", d->dir);
	fflush(NULL);
	d->pid = fork();
	if (d->pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		dup2(fd, STDERR_FILENO);
		if (netns) {
			char path[128];
			int ns;

			snprintf(path, sizeof(path), "/run/netns/%s", netns);
			if ((ns = open(path, O_RDONLY | O_CLOEXEC)) < 0 ||
			    setns(ns, CLONE_NEWNET)) {
				fprintf(stderr, "bench: network namespace %s: %s\n", netns,
					strerror(errno));
				_exit(127);
			}
			close(ns);
		}
		execl(exe, "vmfabricd", "-c", d->conf, "-s", d->sock, "-l", "error", (char *)NULL);
		_exit(127);
	}
	daemon_track(0, d->pid);
	setenv("VMFABRIC_SOCKET", d->sock, 1);
	vmci_set_daemon(d->sock);
	for (int i = 0; i < 500 && waitpid(d->pid, NULL, WNOHANG) == 0; i++) {
		struct sockaddr_un a = { .sun_family = AF_UNIX };
		int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
		snprintf(a.sun_path, sizeof(a.sun_path), "%s", d->sock);
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
			close(fd);
			return;
		}
		close(fd);
		usleep(10000);
	}
	/* What it said (its errors: -l error) tells why. */
	fprintf(stderr, "bench: vmfabricd did not start\n");
	f = fopen(log, "r");
	while (f && fgets(line, sizeof(line), f))
		fprintf(stderr, "  %s", line);
	exit(1);
}

void
bench_daemon_stop(struct bench_daemon *d)
{
	char cmd[128];

	kill(d->pid, SIGTERM);
	waitpid(d->pid, NULL, 0);
	daemon_track(d->pid, 0);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", d->dir);
	if (system(cmd)) {
	}
}
