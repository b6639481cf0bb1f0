/* SPDX-License-Identifier: MIT */
/*
 * Test runner: runs every test of tests/list.h (or those whose names start
 * with one of the prefixes given) in a forked child, in its own process
 * group, several at a time, each with its timeout. A child's output goes to
 * a private file and is shown only if the test fails or skips (a passing
 * test's "figure: " lines, its measurements, are shown). The last line
 * is "N passed, N failed, N skipped"; the exit status is 1 if any failed.
 *
 *   vmf-test [-j JOBS] [-l] [--timeout-scale F] [PREFIX...]
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

struct th_test {
	const char *name;
	void (*fn)(void);
	int timeout_s;
};

#define X_ENTRY(name, timeout) { #name, test_##name, timeout },
static const struct th_test tests[] = { TEST_LIST(X_ENTRY) };
#define NTESTS (sizeof(tests) / sizeof(tests[0]))

struct th_slot {
	const struct th_test *t;
	pid_t pid;
	int out; /* memfd holding the child's output */
	double start, deadline;
};

static double
th_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void
th_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s:%d: ", file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(NULL);
	_exit(1);
}

void
th_skip(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(NULL);
	_exit(TH_EXIT_SKIP);
}

int
th_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	ASSERT(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

void
th_log(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

size_t
th_memdiff(const void *a, const void *b, size_t n)
{
	const unsigned char *x = a, *y = b;

	for (size_t i = 0; i < n; i++)
		if (x[i] != y[i])
			return i;
	return (size_t)-1;
}

uint64_t
th_rand(uint64_t *s)
{
	uint64_t x = *s ? *s : 0x9e3779b97f4a7c15ull;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dull;
}

void
th_fill(uint64_t *s, void *buf, size_t len)
{
	unsigned char *p = buf;
	uint64_t r = 0;

	for (size_t i = 0; i < len; i++) {
		if (i % 8 == 0)
			r = th_rand(s);
		p[i] = (unsigned char)(r >> (8 * (i % 8)));
	}
}

static void
th_start(struct th_slot *s, const struct th_test *t, double scale)
{
	char name[64];

	snprintf(name, sizeof(name), "test-%s", t->name);
	s->t = t;
	s->out = memfd_create(name, MFD_CLOEXEC);
	s->start = th_now();
	s->deadline = s->start + t->timeout_s * scale;
	fflush(NULL);
	s->pid = fork();
	if (s->pid == 0) {
		setpgid(0, 0);
		dup2(s->out, STDOUT_FILENO);
		dup2(s->out, STDERR_FILENO);
		signal(SIGPIPE, SIG_IGN);
		t->fn();
		fflush(NULL);
		_exit(0);
	}
	if (s->pid > 0)
		setpgid(s->pid, s->pid);
}

/* A passing test's "figure: {...}" lines (measurements for the docs' tables). */
static void
th_figures(int fd)
{
	char line[1024];
	FILE *f = fdopen(dup(fd), "r");

	if (!f)
		return;
	rewind(f);
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "figure: ", 8))
			printf("    %s", line);
	fclose(f);
}

static void
th_dump(int fd)
{
	char buf[4096];
	ssize_t n;
	off_t off = 0;
	int bol = 1;

	while ((n = pread(fd, buf, sizeof(buf), off)) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			if (bol)
				fputs("    ", stdout);
			putchar(buf[i]);
			bol = buf[i] == '\n';
		}
		off += n;
	}
	if (!bol)
		putchar('\n');
}

static int
th_match(const char *name, int npre, char **pre)
{
	if (npre == 0)
		return 1;
	for (int i = 0; i < npre; i++)
		if (strncmp(name, pre[i], strlen(pre[i])) == 0)
			return 1;
	return 0;
}

int
main(int argc, char **argv)
{
	struct th_slot slot[16] = { 0 };
	int jobs = (int)sysconf(_SC_NPROCESSORS_ONLN), running = 0, opt;
	int passed = 0, failed = 0, skipped = 0;
	double scale = 1.0;
	size_t next = 0;
	const char *env;

	while ((opt = getopt(argc, argv, "j:lt:")) != -1) {
		switch (opt) {
		case 'j':
			jobs = atoi(optarg);
			break;
		case 'l':
			for (size_t i = 0; i < NTESTS; i++)
				printf("%s\n", tests[i].name);
			return 0;
		case 't':
			scale = atof(optarg);
			break;
		default:
			fprintf(stderr, "usage: %s [-j JOBS] [-l] [-t TIMEOUT_SCALE] [PREFIX...]\n",
				argv[0]);
			return 2;
		}
	}
	if ((env = getenv("VMF_TEST_TIMEOUT_SCALE")))
		scale = atof(env);
	if (jobs < 1)
		jobs = 1;
	if (jobs > 16)
		jobs = 16;
	if (scale <= 0)
		scale = 1.0;
	signal(SIGPIPE, SIG_IGN);

	for (;;) {
		while (running < jobs && next < NTESTS) {
			const struct th_test *t = &tests[next++];
			int i = 0;

			if (!th_match(t->name, argc - optind, argv + optind))
				continue;
			while (slot[i].t)
				i++;
			th_start(&slot[i], t, scale);
			running++;
		}
		if (running == 0)
			break;
		usleep(2000);
		for (int i = 0; i < jobs; i++) {
			struct th_slot *s = &slot[i];
			int status, r;
			pid_t w;

			if (!s->t)
				continue;
			w = waitpid(s->pid, &status, WNOHANG);
			if (w == 0 && th_now() < s->deadline)
				continue;
			if (w == 0) {
				kill(-s->pid, SIGKILL);
				waitpid(s->pid, &status, 0);
				printf("FAIL %s: timed out after %.0f s\n", s->t->name,
				       s->deadline - s->start);
				th_dump(s->out);
				failed++;
			} else {
				kill(-s->pid, SIGKILL); /* leftovers of the test's process group */
				r = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
				if (r == 0) {
					printf("ok   %s (%.2f s)\n", s->t->name, th_now() - s->start);
					th_figures(s->out);
					passed++;
				} else if (r == TH_EXIT_SKIP) {
					printf("skip %s: ", s->t->name);
					fflush(stdout);
					th_dump(s->out);
					skipped++;
				} else {
					if (WIFSIGNALED(status))
						printf("FAIL %s: killed by signal %d (%s)\n", s->t->name,
						       WTERMSIG(status), strsignal(WTERMSIG(status)));
					else
						printf("FAIL %s: exit status %d\n", s->t->name, r);
					th_dump(s->out);
					failed++;
				}
			}
			fflush(stdout);
			close(s->out);
			s->t = NULL;
			running--;
		}
	}
	printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
	return failed ? 1 : 0;
}
