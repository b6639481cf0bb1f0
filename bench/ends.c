/* SPDX-License-Identifier: MIT */
/*
 * Endpoints and shared measurements; see ends.h. Every side writes its
 * whole message (partial writes are continued), as a socket application
 * would; the receiver of a stream reads up to 64 KiB per call whatever the
 * system.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ends.h"
#include "vmfabric/qp.h"
#include "vmfabric/vmci.h"

const char *const bsys_name[BSYS_N] = { "vmfabric_qp", "vmfabric_vmci", "tcp_loopback",
					"af_unix" };
const char *const bmode_name[BMODE_N] = { "blocking", "blocking_nospin", "busy_poll" };

ssize_t
bend_write(struct bend *e, const void *buf, size_t len)
{
	ssize_t n;

	if (e->sys == BSYS_QP)
		return qp_write(e->qp, buf, len, 0);
	if (e->sys == BSYS_VMCI)
		return vmci_send(e->fd, buf, len, 0);
	do
		n = send(e->fd, buf, len, e->busy ? MSG_DONTWAIT : 0);
	while (n < 0 && (errno == EAGAIN || errno == EINTR));
	return n < 0 ? -errno : n;
}

ssize_t
bend_read(struct bend *e, void *buf, size_t len)
{
	ssize_t n;

	if (e->sys == BSYS_QP)
		return qp_read(e->qp, buf, len, 0);
	if (e->sys == BSYS_VMCI)
		return vmci_recv(e->fd, buf, len, 0);
	do
		n = recv(e->fd, buf, len, e->busy ? MSG_DONTWAIT : 0);
	while (n < 0 && (errno == EAGAIN || errno == EINTR));
	return n < 0 ? -errno : n;
}

int
bend_write_all(struct bend *e, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = bend_write(e, p, len);
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int
bend_read_all(struct bend *e, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = bend_read(e, p, len);
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

void
bend_close(struct bend *e)
{
	if (e->sys == BSYS_QP)
		qp_close(e->qp);
	else if (e->sys == BSYS_VMCI)
		vmci_close(e->fd);
	else
		close(e->fd);
}

static void
fail(const char *what, int err)
{
	fprintf(stderr, "bench: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

/* VMCI: the parent listens as context "a", the child connects as "b". */
static pid_t
vmci_pair(const struct bench_opts *o, enum bmode mode, struct bend *e)
{
	static unsigned port = 20000;
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
				 .svm_port = ++port };
	int busy = 4000000, l, s, err;
	pid_t pid;

	vmci_set_context("a");
	l = vmci_socket(SOCK_STREAM);
	if (l < 0 || (err = vmci_bind(l, &a)) || (err = vmci_listen(l, 4)))
		fail("vmci listen", l < 0 ? l : err);
	pid = bench_fork(o);
	if (pid == 0) {
		vmci_set_context("b");
		s = vmci_socket(SOCK_STREAM);
		a.svm_cid = 3;
		if (s < 0 || (err = vmci_connect(s, &a)))
			fail("vmci connect", s < 0 ? s : err);
	} else {
		s = vmci_accept(l, NULL, 0);
		if (s < 0)
			fail("vmci accept", s);
	}
	vmci_close(l);
	if (mode == BMODE_BUSY)
		vmci_setsockopt(s, SOL_SOCKET, SO_BUSY_POLL, &busy, sizeof(busy));
	else if (mode == BMODE_NOSPIN)
		vmci_setsockopt(s, SOL_SOCKET, SO_BUSY_POLL, &(int){ 0 }, sizeof(int));
	e->fd = s;
	return pid;
}

pid_t
bend_pair(const struct bench_opts *o, enum bsys sys, enum bmode mode, bool nodelay,
	  struct bend *e)
{
	struct qp_fds pf;
	struct qp *a = NULL;
	int fd[2], r = 0;
	pid_t pid;

	e->sys = sys;
	e->busy = mode == BMODE_BUSY;
	if (sys == BSYS_VMCI)
		return vmci_pair(o, mode, e);
	if (sys == BSYS_QP)
		r = qp_create(QP_SIZE_DEFAULT, QP_SIZE_DEFAULT, &a, &pf);
	else if (sys == BSYS_TCP)
		r = bench_tcp_pair(fd, nodelay);
	else
		r = socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd) ? -errno : 0;
	if (r)
		fail(bsys_name[sys], r);
	pid = bench_fork(o);
	if (sys == BSYS_QP) {
		if (pid == 0) {
			qp_detach(a); /* the parent's end */
			if (qp_attach(&pf, &e->qp))
				_exit(3);
		} else {
			close(pf.mem), close(pf.wake), close(pf.peer_wake), close(pf.alive);
			e->qp = a;
		}
		qp_set_mode(e->qp, e->busy ? QP_BUSY_POLL : QP_BLOCKING);
		if (mode == BMODE_NOSPIN)
			qp_set_spin(e->qp, 0);
	} else {
		close(fd[pid == 0 ? 0 : 1]);
		e->fd = fd[pid == 0 ? 1 : 0];
	}
	return pid;
}

double
bench_stream_once(const struct bench_opts *o, enum bsys sys, size_t msg, enum bmode m)
{
	static char buf[65536];
	double dur = o->quick ? 0.4 : 1.5, t0, t1, warm;
	uint64_t bytes = 0;
	struct bend e;
	ssize_t n;
	pid_t pid;

	pid = bend_pair(o, sys, m, false, &e);
	if (pid == 0) {
		memset(buf, 0x5a, sizeof(buf));
		while (bend_write_all(&e, buf, msg) == 0)
			;
		_exit(0); /* the reader closed: EPIPE */
	}
	warm = bench_now() + 0.1;
	while (bench_now() < warm)
		if (bend_read(&e, buf, sizeof(buf)) <= 0)
			fail("stream broke off", EPIPE);
	t0 = t1 = bench_now();
	do {
		n = bend_read(&e, buf, sizeof(buf));
		if (n <= 0)
			fail("stream broke off", EPIPE);
		bytes += (uint64_t)n;
		t1 = bench_now();
	} while (t1 - t0 < dur);
	bend_close(&e);
	bench_wait(pid);
	return (double)bytes * 8 / (t1 - t0) / 1e9;
}

void
bench_rr_once(const struct bench_opts *o, enum bsys sys, enum bmode m, size_t msg, double *rtt,
	      size_t iters)
{
	size_t warm = iters / 10;
	char buf[65536] = { 1 };
	struct bend e;
	pid_t pid;

	pid = bend_pair(o, sys, m, true, &e);
	if (pid == 0) {
		while (bend_read_all(&e, buf, msg) == 0)
			if (bend_write_all(&e, buf, msg))
				break;
		_exit(0);
	}
	for (size_t i = 0; i < warm + iters; i++) {
		double t0 = bench_now();
		if (bend_write_all(&e, buf, msg) || bend_read_all(&e, buf, msg))
			fail("request/response broke off", EPIPE);
		if (i >= warm)
			rtt[i - warm] = (bench_now() - t0) * 1e6;
	}
	bend_close(&e);
	bench_wait(pid);
}

/* Sockets have no spin setting: their blocking_nospin is their blocking. */
static bool
measured(unsigned systems, unsigned modes, int s, int m)
{
	if (!(systems & (1u << s)) || !(modes & (1u << m)))
		return false;
	return m != BMODE_NOSPIN || s == BSYS_QP || s == BSYS_VMCI;
}

void
bench_run_stream(const struct bench_opts *o, const char *prefix, unsigned systems,
		 unsigned modes)
{
	static const size_t sizes[] = { 64, 4096, 65536 };
	int rounds = o->quick ? 1 : 5;
	char name[32];

	snprintf(name, sizeof(name), "%s_stream", prefix);
	for (int m = 0; m < BMODE_N; m++) {
		for (size_t i = 0; i < 3; i++) {
			double v[BSYS_N][5];

			for (int r = 0; r < rounds; r++)
				for (int s = 0; s < BSYS_N; s++)
					if (measured(systems, modes, s, m))
						v[s][r] = bench_stream_once(o, (enum bsys)s,
									    sizes[i], (enum bmode)m);
			for (int s = 0; s < BSYS_N; s++)
				if (measured(systems, modes, s, m))
					bench_emit(name, bsys_name[s], (long)sizes[i], bmode_name[m],
						   "gbit_s",
						   bench_percentile(v[s], (size_t)rounds, 50));
		}
	}
}

void
bench_run_rr(const struct bench_opts *o, const char *prefix, unsigned systems, unsigned modes)
{
	int rounds = o->quick ? 2 : 8;
	size_t per = o->quick ? 2500 : 5000, n = per * (size_t)rounds;
	double *rtt[BSYS_N];
	char name[32];

	snprintf(name, sizeof(name), "%s_rr", prefix);
	for (int s = 0; s < BSYS_N; s++)
		rtt[s] = malloc(n * sizeof(double));
	for (int m = 0; m < BMODE_N; m++) {
		for (int r = 0; r < rounds; r++)
			for (int s = 0; s < BSYS_N; s++)
				if (measured(systems, modes, s, m))
					bench_rr_once(o, (enum bsys)s, (enum bmode)m, 64,
						      rtt[s] + per * (size_t)r, per);
		for (int s = 0; s < BSYS_N; s++) {
			if (!measured(systems, modes, s, m))
				continue;
			bench_emit(name, bsys_name[s], 64, bmode_name[m], "rtt_us",
				   bench_percentile(rtt[s], n, 50));
			bench_emit(name, bsys_name[s], 64, bmode_name[m], "rtt_p99_us",
				   bench_percentile(rtt[s], n, 99));
		}
	}
	for (int s = 0; s < BSYS_N; s++)
		free(rtt[s]);
}
