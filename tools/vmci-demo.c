/* SPDX-License-Identifier: MIT */
/*
 * What `make run` shows once vmfabricd is running with its built-in
 * configuration: two process contexts, demo-a and demo-b, exchange a
 * 1 GiB stream (every byte checked) and 100,000 datagrams over VMCI
 * sockets, print what they saw, and keep their sockets open until told to
 * finish (so that `vmfabric vmci socket list` has something to show).
 *
 *   vmci-demo            run the exchange, then wait for a line on stdin
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "vmfabric/vmci.h"

#define STREAM_BYTES (1ull << 30)
#define DGRAMS 100000
#define PORT 5000

static int
check(const char *what, long r)
{
	if (r < 0) {
		fprintf(stderr, "vmci-demo: %s: %s\n", what, strerror((int)-r));
		exit(1);
	}
	return (int)r;
}

/* demo-b: connect, stream, send datagrams; hold the sockets until killed. */
static void
peer_b(uint32_t cid_a, int ready)
{
	static char buf[65536];
	struct sockaddr_vm to = { .svm_family = AF_VSOCK, .svm_cid = cid_a, .svm_port = PORT };
	uint64_t sent = 0;
	int s, d;

	vmci_set_context("demo-b");
	s = check("socket", vmci_socket(SOCK_STREAM));
	check("connect demo-a", vmci_connect(s, &to));
	while (sent < STREAM_BYTES) {
		for (size_t i = 0; i < sizeof(buf); i++)
			buf[i] = (char)((sent + i) * 7);
		check("send", vmci_send(s, buf, sizeof(buf), 0));
		sent += sizeof(buf);
	}
	d = check("socket", vmci_socket(SOCK_DGRAM));
	to.svm_port = PORT + 1;
	for (int i = 0; i < DGRAMS; i++)
		check("sendto", vmci_sendto(d, &i, sizeof(i), 0, &to));
	check("ready", write(ready, "x", 1));
	pause();
}

int
main(void)
{
	static char buf[65536];
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
				 .svm_port = PORT }, from;
	uint32_t cid_a, cid_b = 0;
	uint64_t got = 0;
	int l, s, d, p[2], n = 0, expect = 0, order_ok = 1;
	char line[8];
	double t0, t1;
	pid_t pid;

	vmci_set_context("demo-a");
	check("local CID of demo-a", vmci_get_local_cid(&cid_a));
	l = check("socket", vmci_socket(SOCK_STREAM));
	check("bind", vmci_bind(l, &a));
	check("listen", vmci_listen(l, 4));
	d = check("socket", vmci_socket(SOCK_DGRAM));
	a.svm_port = PORT + 1;
	check("bind", vmci_bind(d, &a));
	printf("demo-a (CID %u) listens on stream port %d and datagram port %d\n", cid_a, PORT,
	       PORT + 1);
	fflush(stdout);
	if (pipe(p) < 0)
		return 1;
	pid = fork();
	if (pid == 0) {
		peer_b(cid_a, p[1]);
		_exit(0);
	}
	s = check("accept", vmci_accept(l, &from, 0));
	cid_b = from.svm_cid;
	printf("demo-a accepted a stream from demo-b (CID %u, port %u)\n", from.svm_cid,
	       from.svm_port);
	t0 = ((double)clock_ns() / 1e9);
	while (got < STREAM_BYTES) {
		ssize_t k = check("recv", vmci_recv(s, buf, sizeof(buf), 0));
		if (k == 0)
			break;
		for (ssize_t i = 0; i < k; i++)
			if (buf[i] != (char)((got + (uint64_t)i) * 7)) {
				fprintf(stderr, "vmci-demo: stream byte %llu differs\n",
					(unsigned long long)(got + (uint64_t)i));
				return 1;
			}
		got += (uint64_t)k;
	}
	t1 = ((double)clock_ns() / 1e9);
	printf("stream: 1 GiB demo-b -> demo-a, every byte checked, %.2f s, %.1f Gbit/s\n",
	       t1 - t0, (double)got * 8 / (t1 - t0) / 1e9);
	struct timeval tv = { 1, 0 };
	vmci_setsockopt(d, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (n < DGRAMS) {
		int v;
		if (vmci_recvfrom(d, &v, sizeof(v), 0, &from) != sizeof(v))
			break;
		if (from.svm_cid != cid_b)
			order_ok = 0;
		/* In order; one missing is a drop the daemon counted (its receiver fell behind). */
		order_ok &= v >= expect;
		expect = v + 1;
		n++;
	}
	printf("datagrams: %d of %d received from CID %u (source stamped by the daemon), %s\n", n,
	       DGRAMS, cid_b, order_ok ? "in order" : "OUT OF ORDER");
	if (n < DGRAMS)
		printf("datagrams: %d dropped by the daemon after waiting 1 ms for room (as UDP, "
		       "datagrams are not retransmitted; see dgram.drops below)\n",
		       DGRAMS - n);
	if (read(p[0], line, 1) != 1)
		return 1;
	printf("sockets stay open: press Enter (or close stdin) to finish\n");
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin)) {
	}
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	vmci_close(s);
	vmci_close(d);
	vmci_close(l);
	/* A loaded machine may drop a few; more than 1 % is a fault. */
	return n >= DGRAMS - DGRAMS / 100 && order_ok ? 0 : 1;
}
