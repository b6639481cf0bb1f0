/* SPDX-License-Identifier: MIT */
/*
 * bench/run qp: the queue pair against TCP loopback and an AF_UNIX stream
 * socketpair, two processes each, measured in the same run.
 *   qp_stream  one-way throughput, 64 B / 4 KiB / 64 KiB writes, 128 KiB
 *              queues, the receiver reading up to 64 KiB per call (gbit_s)
 *   qp_rr      64 B request/response, round-trip time median and p99
 *              (rtt_us, rtt_p99_us)
 * each in the modes blocking, blocking_nospin (queue pair only) and busy_poll
 * (see enum mode).
 * Every side writes its whole message (partial writes are continued), as a
 * socket application would.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"
#include "vmfabric/qp.h"

enum sys { SYS_QP, SYS_TCP, SYS_UNIX, NSYS };
static const char *const sys_name[NSYS] = { "vmfabric_qp", "tcp_loopback", "af_unix" };

/*
 * blocking: default settings (the queue pair spins briefly before it sleeps);
 * blocking_nospin: the queue pair sleeps at once, every wait a real
 * sleep/wake through the eventfd (sockets: same as blocking);
 * busy_poll: never sleep (sockets: non-blocking calls in a loop).
 */
enum mode { MODE_BLOCKING, MODE_NOSPIN, MODE_BUSY, NMODE };
static const char *const mode_name[NMODE] = { "blocking", "blocking_nospin", "busy_poll" };

struct end {
	enum sys sys;
	bool busy;
	struct qp *qp;
	int fd;
};

static ssize_t
end_write(struct end *e, const void *buf, size_t len)
{
	ssize_t n;

	if (e->sys == SYS_QP)
		return qp_write(e->qp, buf, len, 0);
	do
		n = send(e->fd, buf, len, e->busy ? MSG_DONTWAIT : 0);
	while (n < 0 && (errno == EAGAIN || errno == EINTR));
	return n < 0 ? -errno : n;
}

static ssize_t
end_read(struct end *e, void *buf, size_t len)
{
	ssize_t n;

	if (e->sys == SYS_QP)
		return qp_read(e->qp, buf, len, 0);
	do
		n = recv(e->fd, buf, len, e->busy ? MSG_DONTWAIT : 0);
	while (n < 0 && (errno == EAGAIN || errno == EINTR));
	return n < 0 ? -errno : n;
}

static int
end_write_all(struct end *e, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = end_write(e, p, len);
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int
end_read_all(struct end *e, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = end_read(e, p, len);
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void
end_close(struct end *e)
{
	if (e->sys == SYS_QP)
		qp_close(e->qp);
	else
		close(e->fd);
}

/* Make a connected pair, fork; each process gets its own end in *e. */
static pid_t
pair_fork(const struct bench_opts *o, enum sys sys, enum mode mode, bool nodelay, struct end *e)
{
	bool busy = mode == MODE_BUSY;
	struct qp_fds pf;
	struct qp *a = NULL;
	int fd[2], r = 0;
	pid_t pid;

	if (sys == SYS_QP)
		r = qp_create(QP_SIZE_DEFAULT, QP_SIZE_DEFAULT, &a, &pf);
	else if (sys == SYS_TCP)
		r = bench_tcp_pair(fd, nodelay);
	else
		r = socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd) ? -errno : 0;
	if (r) {
		fprintf(stderr, "%s: cannot make a pair: %s\n", sys_name[sys], strerror(-r));
		exit(1);
	}
	e->sys = sys;
	e->busy = busy;
	pid = bench_fork(o);
	if (sys == SYS_QP) {
		if (pid == 0) {
			qp_detach(a); /* the parent's end */
			if (qp_attach(&pf, &e->qp))
				_exit(3);
		} else {
			close(pf.mem), close(pf.wake), close(pf.peer_wake), close(pf.alive);
			e->qp = a;
		}
		qp_set_mode(e->qp, busy ? QP_BUSY_POLL : QP_BLOCKING);
		if (mode == MODE_NOSPIN)
			qp_set_spin(e->qp, 0);
	} else {
		close(fd[pid == 0 ? 0 : 1]);
		e->fd = fd[pid == 0 ? 1 : 0];
	}
	return pid;
}

static double
stream_once(const struct bench_opts *o, enum sys sys, size_t msg, enum mode mode)
{
	static char buf[65536];
	double dur = o->quick ? 0.4 : 1.5, t0, t1, warm;
	uint64_t bytes = 0;
	struct end e;
	ssize_t n;
	pid_t pid;

	pid = pair_fork(o, sys, mode, false, &e);
	if (pid == 0) {
		memset(buf, 0x5a, sizeof(buf));
		while (end_write_all(&e, buf, msg) == 0)
			;
		_exit(0); /* the reader closed: EPIPE */
	}
	warm = bench_now() + 0.1;
	while (bench_now() < warm)
		if (end_read(&e, buf, sizeof(buf)) <= 0)
			goto broken;
	t0 = bench_now();
	do {
		n = end_read(&e, buf, sizeof(buf));
		if (n <= 0)
			goto broken;
		bytes += (uint64_t)n;
		t1 = bench_now();
	} while (t1 - t0 < dur);
	end_close(&e);
	bench_wait(pid);
	return (double)bytes * 8 / (t1 - t0) / 1e9;
broken:
	fprintf(stderr, "%s: stream broke off\n", sys_name[sys]);
	exit(1);
}

/* Round trips of 64 B; fills rtt[] with microseconds. */
static void
rr_once(const struct bench_opts *o, enum sys sys, enum mode mode, double *rtt, size_t iters)
{
	size_t warm = iters / 10;
	char buf[64] = { 1 };
	struct end e;
	pid_t pid;

	pid = pair_fork(o, sys, mode, true, &e);
	if (pid == 0) {
		while (end_read_all(&e, buf, sizeof(buf)) == 0)
			if (end_write_all(&e, buf, sizeof(buf)))
				break;
		_exit(0);
	}
	for (size_t i = 0; i < warm + iters; i++) {
		double t0 = bench_now();
		if (end_write_all(&e, buf, sizeof(buf)) || end_read_all(&e, buf, sizeof(buf))) {
			fprintf(stderr, "%s: request/response broke off\n", sys_name[sys]);
			exit(1);
		}
		if (i >= warm)
			rtt[i - warm] = (bench_now() - t0) * 1e6;
	}
	end_close(&e);
	bench_wait(pid);
}

/*
 * The machine is shared and its speed drifts: every measurement is split
 * into rounds and the systems take turns within each round, so that all of
 * them see the same conditions; the median of the rounds is reported.
 */
/* Sockets have no spin setting: their blocking_nospin is their blocking. */
static int
nsys_for(enum mode m)
{
	return m == MODE_NOSPIN ? 1 : NSYS;
}

static void
run_stream(const struct bench_opts *o)
{
	static const size_t sizes[] = { 64, 4096, 65536 };
	int rounds = o->quick ? 1 : 5;

	for (int m = 0; m < NMODE; m++) {
		for (size_t i = 0; i < 3; i++) {
			double v[NSYS][5];

			for (int r = 0; r < rounds; r++)
				for (int s = 0; s < nsys_for(m); s++)
					v[s][r] = stream_once(o, (enum sys)s, sizes[i], (enum mode)m);
			for (int s = 0; s < nsys_for(m); s++)
				bench_emit("qp_stream", sys_name[s], (long)sizes[i], mode_name[m],
					   "gbit_s", bench_percentile(v[s], (size_t)rounds, 50));
		}
	}
}

static void
run_rr(const struct bench_opts *o)
{
	int rounds = o->quick ? 2 : 8;
	size_t per = o->quick ? 2500 : 5000, n = per * (size_t)rounds;
	double *rtt[NSYS];

	for (int s = 0; s < NSYS; s++)
		rtt[s] = malloc(n * sizeof(double));
	for (int m = 0; m < NMODE; m++) {
		for (int r = 0; r < rounds; r++)
			for (int s = 0; s < nsys_for(m); s++)
				rr_once(o, (enum sys)s, (enum mode)m, rtt[s] + per * (size_t)r, per);
		for (int s = 0; s < nsys_for(m); s++) {
			bench_emit("qp_rr", sys_name[s], 64, mode_name[m], "rtt_us",
				   bench_percentile(rtt[s], n, 50));
			bench_emit("qp_rr", sys_name[s], 64, mode_name[m], "rtt_p99_us",
				   bench_percentile(rtt[s], n, 99));
		}
	}
	for (int s = 0; s < NSYS; s++)
		free(rtt[s]);
}

int
main(int argc, char **argv)
{
	struct bench_opts o;
	double qp, peer;

	bench_parse(argc, argv, &o,
		    "Queue pair vs TCP loopback and AF_UNIX: stream throughput and round trip.");
	signal(SIGPIPE, SIG_IGN);
	if (!o.only || !strncmp(o.only, "qp_stream", strlen(o.only)))
		run_stream(&o);
	if (!o.only || !strncmp(o.only, "qp_rr", strlen(o.only)))
		run_rr(&o);

	qp = bench_value("qp_stream", "vmfabric_qp", 65536, "blocking", "gbit_s");
	peer = bench_value("qp_stream", "tcp_loopback", 65536, "blocking", "gbit_s");
	bench_target("stream_64k_vs_tcp", qp / peer, ">=", 5,
		     "64 KiB stream throughput, queue pair / TCP loopback");
	qp = bench_value("qp_rr", "vmfabric_qp", 64, "busy_poll", "rtt_us");
	bench_target("rr_busy_poll_us", qp, "<=", 2, "busy-poll 64 B round trip, microseconds");
	peer = bench_value("qp_rr", "tcp_loopback", 64, "busy_poll", "rtt_us");
	bench_target("rr_busy_poll_vs_tcp", qp / peer, "<=", 0.1,
		     "busy-poll round trip, queue pair / TCP loopback busy-polling");
	peer = bench_value("qp_rr", "tcp_loopback", 64, "blocking", "rtt_us");
	bench_target("rr_busy_poll_vs_tcp_block", qp / peer, "<=", 0.1,
		     "busy-poll round trip, queue pair / TCP loopback blocking");
	qp = bench_value("qp_rr", "vmfabric_qp", 64, "blocking", "rtt_us");
	peer = bench_value("qp_rr", "af_unix", 64, "blocking", "rtt_us");
	bench_target("rr_blocking_vs_unix", qp / peer, "<=", 1,
		     "blocking round trip (default: brief spin), queue pair / AF_UNIX");
	qp = bench_value("qp_rr", "vmfabric_qp", 64, "blocking_nospin", "rtt_us");
	bench_target("rr_nospin_vs_unix", qp / peer, "<=", 1,
		     "blocking round trip, every wait a sleep, queue pair / AF_UNIX");
	return bench_report();
}
