/* SPDX-License-Identifier: MIT */
/*
 * The queue-pair demo that `make run` shows until the daemon exists: two
 * processes share one queue pair (128 KiB per direction); the child streams
 * 1 GiB to the parent, which checks every byte, then they exchange
 * request/response records; each side prints what it saw and the ring's
 * statistics (how often anyone had to sleep or be woken).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "vmfabric/qp.h"

#define TOTAL (1ull << 30)
#define CHUNK 65536

static uint8_t
pattern(uint64_t i)
{
	return (uint8_t)(i * 31 + (i >> 13));
}

static int
child(struct qp_fds *fds)
{
	static uint8_t buf[CHUNK];
	char msg[128];
	struct qp *b;
	uint64_t sent = 0;
	size_t ml;
	ssize_t n;
	int r;

	if ((r = qp_attach(fds, &b))) {
		fprintf(stderr, "child: attach: %s\n", strerror(-r));
		return 1;
	}
	while (sent < TOTAL) {
		size_t len = CHUNK;
		for (size_t i = 0; i < len; i++)
			buf[i] = pattern(sent + i);
		for (size_t off = 0; off < len; off += (size_t)n)
			if ((n = qp_write(b, buf + off, len - off, 0)) <= 0)
				return 1;
		sent += len;
	}
	/* Records: answer each request with its length. */
	while ((n = qp_msg_recv(b, msg, sizeof(msg) - 1, &ml, 0)) >= 0) {
		char reply[64];
		int k = snprintf(reply, sizeof(reply), "got %zu bytes", ml);
		if (qp_msg_send(b, reply, (size_t)k, 0) < 0)
			return 1;
	}
	qp_close(b);
	return 0;
}

int
main(void)
{
	static uint8_t buf[CHUNK];
	const char *req[] = { "hello", "", "a record is never split" };
	struct qp_stats st;
	struct qp_fds fds;
	struct qp *a;
	uint64_t got = 0;
	double t0, dt;
	pid_t pid;
	int status, r;

	printf("vmfabric: the daemon (vmfabricd) is not built yet; this is the queue-pair demo.\n");
	signal(SIGPIPE, SIG_IGN);
	if ((r = qp_create(QP_SIZE_DEFAULT, QP_SIZE_DEFAULT, &a, &fds))) {
		fprintf(stderr, "qp_create: %s\n", strerror(-r));
		return 1;
	}
	printf("queue pair: %zu KiB each way, sealed memfd, two eventfds\n", qp_tx_size(a) >> 10);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		qp_detach(a);
		_exit(child(&fds));
	}
	close(fds.mem), close(fds.wake), close(fds.peer_wake), close(fds.alive);

	t0 = ((double)clock_ns() / 1e9);
	while (got < TOTAL) {
		ssize_t n = qp_read(a, buf, sizeof(buf), 0);
		if (n <= 0) {
			fprintf(stderr, "read: %s\n", n ? strerror((int)-n) : "early EOF");
			return 1;
		}
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] != pattern(got + (uint64_t)i)) {
				fprintf(stderr, "byte %llu differs\n", (unsigned long long)got);
				return 1;
			}
		got += (uint64_t)n;
	}
	dt = ((double)clock_ns() / 1e9) - t0;
	printf("stream: 1 GiB child -> parent, every byte checked, %.2f s, %.1f Gbit/s\n", dt,
	       (double)TOTAL * 8 / dt / 1e9);

	for (size_t i = 0; i < sizeof(req) / sizeof(req[0]); i++) {
		char reply[64];
		size_t ml;
		ssize_t n;

		qp_msg_send(a, req[i], strlen(req[i]), 0);
		n = qp_msg_recv(a, reply, sizeof(reply) - 1, &ml, 0);
		if (n < 0)
			return 1;
		reply[n] = 0;
		printf("record: sent \"%s\", peer answered \"%s\"\n", req[i], reply);
	}
	qp_get_stats(a, &st);
	printf("parent endpoint: rx %llu bytes, tx %llu records, slept %llu times, woke the peer "
	       "%llu times\n",
	       (unsigned long long)st.rx_bytes, (unsigned long long)st.tx_msgs,
	       (unsigned long long)st.sleeps, (unsigned long long)st.signals);
	qp_close(a);
	waitpid(pid, &status, 0);
	printf("child exited with status %d after the parent closed its end\n",
	       WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
