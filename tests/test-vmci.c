/* SPDX-License-Identifier: MIT */
/*
 * VMCI sockets end to end: a private vmfabricd per test, processes acting
 * as contexts a (CID 3), b (4), off (5, VMCI off), r (6, host only) and
 * u (7, uid 1000); every behaviour users of sockets expect, every refusal,
 * peer death, a daemon restart under a live stream, and 6 GiB checked.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "common/clock.h"
#include "harness.h"
#include "lib/lib.h"

static void
send_all(int s, const void *buf, size_t len)
{
	ASSERT_EQ(vmci_send(s, buf, len, 0), (ssize_t)len);
}

static void
recv_all(int s, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = vmci_recv(s, p, len, 0);
		ASSERT_GT(n, 0);
		p += n;
		len -= (size_t)n;
	}
}

/*
 * A non-blocking connect is done when the socket reports POLLOUT (or an
 * error); the descriptor being readable only says "look again".
 */
static void
wait_connected(int c)
{
	int64_t deadline = clock_ns() + 2000000000LL;
	short r;

	while ((r = vmci_poll_arm(c, POLLOUT)) == 0) {
		struct pollfd p = { .fd = c, .events = POLLIN };
		ASSERT_LT(clock_ns(), deadline);
		poll(&p, 1, 100);
	}
	ASSERT_EQ(r & (POLLOUT | POLLERR), POLLOUT);
}

/* Fork a child that runs @fn(arg) and exits 0 if it returns. */
static pid_t
child(void (*fn)(void *), void *arg)
{
	pid_t pid = fork();

	ASSERT_GE(pid, 0);
	if (pid == 0) {
		fn(arg);
		_exit(0);
	}
	return pid;
}

static void
reap(pid_t pid)
{
	int status;

	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		th_fail(__FILE__, __LINE__, "child failed (status 0x%x)", status);
}

/* ---------------------------------------------------------------------- */

static void
echo_client(void *arg)
{
	int type = *(int *)arg, s = td_socket("b", type);
	struct sockaddr_vm a = td_addr(3, 5000), me, peer;
	char buf[64];

	ASSERT_OK(vmci_connect(s, &a));
	ASSERT_OK(vmci_getsockname(s, &me));
	ASSERT_OK(vmci_getpeername(s, &peer));
	ASSERT_EQ(me.svm_cid, 4);
	ASSERT_GE(me.svm_port, 1024);
	ASSERT_EQ(peer.svm_cid, 3);
	ASSERT_EQ(peer.svm_port, 5000);
	send_all(s, "hello", 5);
	recv_all(s, buf, 5);
	ASSERT(!memcmp(buf, "HELLO", 5));
	ASSERT_OK(vmci_shutdown(s, SHUT_WR));
	ASSERT_EQ(vmci_recv(s, buf, sizeof(buf), 0), 0); /* EOF after the server's shutdown */
	ASSERT_OK(vmci_close(s));
}

static void
echo_server(int type)
{
	struct tdaemon d;
	int l, s, t = type;
	struct sockaddr_vm peer;
	char buf[64];
	pid_t pid;

	td_start(&d, NULL);
	l = td_listener("a", type, 5000);
	pid = child(echo_client, &t);
	s = vmci_accept(l, &peer, 0);
	ASSERT_GE(s, 0);
	ASSERT_EQ(peer.svm_cid, 4);
	recv_all(s, buf, 5);
	for (int i = 0; i < 5; i++)
		buf[i] = (char)(buf[i] - 32);
	send_all(s, buf, 5);
	ASSERT_EQ(vmci_recv(s, buf, sizeof(buf), 0), 0); /* the client's SHUT_WR */
	ASSERT_OK(vmci_shutdown(s, SHUT_WR));
	reap(pid);
	vmci_close(s);
	vmci_close(l);
	td_stop(&d);
	td_cleanup(&d);
}

TEST(vmci_stream_basic)
{
	echo_server(SOCK_STREAM);
}

TEST(vmci_seqpacket_basic)
{
	echo_server(SOCK_SEQPACKET);
}

TEST(vmci_seqpacket_boundaries)
{
	struct tdaemon d;
	struct sockaddr_vm a = td_addr(3, 6000);
	char buf[300], big[200000];
	int l, c, s;

	td_start(&d, NULL);
	l = td_listener("a", SOCK_SEQPACKET, 6000);
	c = td_socket("b", SOCK_SEQPACKET);
	ASSERT_OK(vmci_connect(c, &a));
	s = vmci_accept(l, NULL, 0);
	ASSERT_GE(s, 0);
	ASSERT_EQ(vmci_send(c, "one", 3, 0), 3);
	ASSERT_EQ(vmci_send(c, "", 0, 0), 0);
	ASSERT_EQ(vmci_send(c, "three!", 6, 0), 6);
	ASSERT_EQ(vmci_send(c, big, sizeof(big), 0), -EMSGSIZE); /* larger than the queue */
	ASSERT_EQ(vmci_recv(s, buf, sizeof(buf), 0), 3);
	ASSERT_EQ(vmci_recv(s, buf, sizeof(buf), 0), 0);
	ASSERT_EQ(vmci_recv(s, buf, 2, MSG_TRUNC), 6); /* full length reported */
	ASSERT_EQ(vmci_recv(s, buf, sizeof(buf), MSG_DONTWAIT), -EAGAIN);
	vmci_close(c);
	ASSERT_EQ(vmci_recv(s, buf, sizeof(buf), 0), 0);
	vmci_close(s);
	vmci_close(l);
	td_stop(&d);
	td_cleanup(&d);
}

TEST(vmci_refusals)
{
	struct tdaemon d;
	struct sockaddr_vm a;
	int s, l;

	td_start(&d, NULL);
	/* Nothing listens: ECONNREFUSED. No such CID: EHOSTUNREACH. */
	s = td_socket("b", SOCK_STREAM);
	a = td_addr(3, 4444);
	ASSERT_EQ(vmci_connect(s, &a), -ECONNREFUSED);
	a = td_addr(99, 4444);
	ASSERT_EQ(vmci_connect(s, &a), -EHOSTUNREACH);
	vmci_close(s);
	/* A stream listener does not take seqpacket connections. */
	l = td_listener("a", SOCK_STREAM, 4445);
	s = td_socket("b", SOCK_SEQPACKET);
	a = td_addr(3, 4445);
	ASSERT_EQ(vmci_connect(s, &a), -ECONNREFUSED);
	vmci_close(s);
	/* VMCI off for a context: everything it tries is EACCES. */
	s = td_socket("off", SOCK_STREAM);
	ASSERT_EQ(vmci_connect(s, &a), -EACCES);
	vmci_close(s);
	s = td_socket("off", SOCK_DGRAM);
	ASSERT_EQ(vmci_sendto(s, "x", 1, 0, &a), -EACCES);
	vmci_close(s);
	/* Restricted: the host only. */
	s = td_socket("r", SOCK_STREAM);
	ASSERT_EQ(vmci_connect(s, &a), -EACCES);
	vmci_close(s);
	s = td_socket("b", SOCK_STREAM);
	a = td_addr(6, 1);
	ASSERT_EQ(vmci_connect(s, &a), -EACCES); /* toward r: refused too */
	vmci_close(s);
	int h = td_listener(NULL, SOCK_STREAM, 4446);
	s = td_socket("r", SOCK_STREAM);
	a = td_addr(VMADDR_CID_HOST, 4446);
	ASSERT_OK(vmci_connect(s, &a));
	vmci_close(s);
	vmci_close(h);
	/* An unknown context name. */
	s = td_socket("nosuch", SOCK_STREAM);
	ASSERT_EQ(vmci_listen(s, 1), -ENOENT);
	vmci_close(s);
	vmci_close(l);
	/* Every refusal was logged with both CIDs. */
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "grep -q 'refused: context 6 -> 3:4445' %s", d.log);
	ASSERT_EQ(system(cmd), 0);
	td_stop(&d);
	td_cleanup(&d);
}

static void
unprivileged(void *arg)
{
	struct sockaddr_vm a = td_addr(VMADDR_CID_ANY, 80);
	int s;

	(void)arg;
	if (setgid(1000) || setuid(1000))
		_exit(3);
	s = td_socket("u", SOCK_STREAM);
	ASSERT_EQ(vmci_bind(s, &a), -EACCES); /* below 1024 */
	a.svm_port = 5080;
	ASSERT_OK(vmci_bind(s, &a));
	vmci_close(s);
	s = td_socket("a", SOCK_STREAM); /* a belongs to uid 0 */
	ASSERT_EQ(vmci_bind(s, &a), -EACCES);
	vmci_close(s);
}

TEST(vmci_ports)
{
	struct tdaemon d;
	struct sockaddr_vm a = td_addr(VMADDR_CID_ANY, 7000), got;
	int s1, s2, s3;

	td_start(&d, NULL);
	s1 = td_socket("a", SOCK_STREAM);
	ASSERT_OK(vmci_bind(s1, &a));
	s2 = td_socket("a", SOCK_STREAM);
	ASSERT_EQ(vmci_bind(s2, &a), -EADDRINUSE);
	/* Another context has its own port space; datagrams have theirs. */
	s3 = td_socket("b", SOCK_STREAM);
	ASSERT_OK(vmci_bind(s3, &a));
	vmci_close(s3);
	s3 = td_socket("a", SOCK_DGRAM);
	ASSERT_OK(vmci_bind(s3, &a));
	vmci_close(s3);
	/* Ephemeral ports. */
	a.svm_port = VMADDR_PORT_ANY;
	ASSERT_OK(vmci_bind(s2, &a));
	ASSERT_OK(vmci_getsockname(s2, &got));
	ASSERT_GE(got.svm_port, 1024);
	ASSERT_NE(got.svm_port, VMADDR_PORT_ANY);
	ASSERT_EQ(got.svm_cid, 3);
	/* A closed socket's port is free again at once. */
	vmci_close(s1);
	s1 = td_socket("a", SOCK_STREAM);
	a.svm_port = 7000;
	ASSERT_OK(vmci_bind(s1, &a));
	vmci_close(s1);
	vmci_close(s2);
	reap(child(unprivileged, NULL));
	td_stop(&d);
	td_cleanup(&d);
}

TEST(vmci_backlog)
{
	struct tdaemon d;
	struct sockaddr_vm a = td_addr(3, 5100);
	int l, c[4], s;

	td_start(&d, NULL);
	l = td_socket("a", SOCK_STREAM);
	ASSERT_OK(vmci_bind(l, &(struct sockaddr_vm){ .svm_family = AF_VSOCK,
						      .svm_cid = VMADDR_CID_ANY, .svm_port = 5100 }));
	ASSERT_OK(vmci_listen(l, 2));
	for (int i = 0; i < 3; i++)
		c[i] = td_socket("b", SOCK_STREAM);
	ASSERT_OK(vmci_connect(c[0], &a));
	ASSERT_OK(vmci_connect(c[1], &a));
	ASSERT_EQ(vmci_connect(c[2], &a), -ECONNREFUSED); /* beyond the backlog */
	s = vmci_accept(l, NULL, 0);
	ASSERT_GE(s, 0);
	usleep(20000); /* the ACCEPTED notice reaches the daemon */
	ASSERT_OK(vmci_connect(c[2], &a));
	/* The daemon is not stalled by a full backlog: others still connect. */
	int l2 = td_listener("a", SOCK_STREAM, 5101);
	c[3] = td_socket("b", SOCK_STREAM);
	ASSERT_OK(vmci_connect(c[3], &(struct sockaddr_vm){ .svm_family = AF_VSOCK,
							    .svm_cid = 3, .svm_port = 5101 }));
	for (int i = 0; i < 4; i++)
		vmci_close(c[i]);
	vmci_close(s);
	vmci_close(l);
	vmci_close(l2);
	td_stop(&d);
	td_cleanup(&d);
}

TEST(vmci_connect_timeout)
{
	struct tdaemon d;
	struct sockaddr_vm a = td_addr(3, 5200);
	struct timeval tv = { 0, 300000 }, got;
	socklen_t len = sizeof(got);
	int64_t t0, dt;
	int l, s;

	td_start(&d, NULL);
	l = td_listener("a", SOCK_STREAM, 5200);
	s = td_socket("b", SOCK_STREAM);
	ASSERT_OK(vmci_getsockopt(s, AF_VSOCK, SO_VM_SOCKETS_CONNECT_TIMEOUT, &got, &len));
	ASSERT_EQ(got.tv_sec, 2); /* the default */
	ASSERT_OK(vmci_setsockopt(s, AF_VSOCK, SO_VM_SOCKETS_CONNECT_TIMEOUT, &tv, sizeof(tv)));
	/* Open the control connection first, so that only CONNECT waits. */
	ASSERT_OK(vmci_bind(s, &(struct sockaddr_vm){ .svm_family = AF_VSOCK,
						      .svm_cid = VMADDR_CID_ANY,
						      .svm_port = VMADDR_PORT_ANY }));
	td_kill(&d, SIGSTOP);
	t0 = clock_ns();
	ASSERT_EQ(vmci_connect(s, &a), -ETIMEDOUT);
	dt = clock_ns() - t0;
	td_kill(&d, SIGCONT);
	ASSERT_GE(dt, 290 * 1000000LL);
	ASSERT_LT(dt, 1500 * 1000000LL);
	vmci_close(s);
	vmci_close(l);
	td_stop(&d);
	td_cleanup(&d);
}

static void
connect_then_die(void *arg)
{
	int s = td_socket("b", SOCK_STREAM);
	struct sockaddr_vm a = td_addr(3, 5300);

	(void)arg;
	ASSERT_OK(vmci_connect(s, &a));
	send_all(s, "last words", 10);
	raise(SIGKILL);
}

TEST(vmci_peer_death)
{
	struct tdaemon d;
	char buf[64], *json;
	int l, s;
	pid_t pid;

	td_start(&d, NULL);
	l = td_listener("a", SOCK_STREAM, 5300);
	pid = child(connect_then_die, NULL);
	s = vmci_accept(l, NULL, 0);
	ASSERT_GE(s, 0);
	waitpid(pid, NULL, 0);
	recv_all(s, buf, 10); /* what it sent before dying */
	ASSERT(!memcmp(buf, "last words", 10));
	ASSERT_EQ(vmci_recv(s, buf, sizeof(buf), 0), -ECONNRESET);
	ASSERT_EQ(vmci_send(s, buf, 1, 0), -ECONNRESET);
	/* The daemon noticed within 100 ms and freed what the process held. */
	usleep(100000);
	json = td_mgmt(&d, "vmci.socket.list");
	th_log("%s", json);
	ASSERT(!strstr(json, "\"peer\": {\"cid\": 3, \"port\": 5300}"));
	ASSERT(strstr(json, "\"listening\""));
	free(json);
	vmci_close(s);
	vmci_close(l);
	td_stop(&d);
	td_cleanup(&d);
}

/*
 * Connections from unbound sockets go straight to the listening process
 * over a channel: they are listed with their bytes all the same; a channel
 * whose listener went is replaced, and nothing is reached through it once
 * nothing listens.
 */
static void *
late_send(void *arg)
{
	usleep(20000);
	send_all(*(int *)arg, "56789", 5);
	return NULL;
}

TEST(vmci_direct)
{
	struct tdaemon d;
	struct sockaddr_vm a = td_addr(3, 5450), me;
	char buf[64], *json;
	int l, c, s, ports[3];

	td_start(&d, NULL);
	l = td_listener("a", SOCK_STREAM, 5450);
	for (int i = 0; i < 3; i++) {
		c = td_socket("b", SOCK_STREAM);
		ASSERT_OK(vmci_connect(c, &a));
		ASSERT_OK(vmci_getsockname(c, &me));
		ASSERT_EQ(me.svm_cid, 4);
		ASSERT_GE(me.svm_port, 1024);
		ports[i] = (int)me.svm_port;
		s = vmci_accept(l, &me, 0);
		ASSERT_GE(s, 0);
		ASSERT_EQ(me.svm_cid, 4); /* the channel's context, as the daemon said */
		ASSERT_EQ(me.svm_port, (unsigned)ports[i]);
		send_all(c, "0123456789", 10);
		recv_all(s, buf, 10);
		send_all(s, "abc", 3);
		recv_all(c, buf, 3);
		if (i < 2) {
			vmci_close(c), vmci_close(s);
			continue;
		}
		json = td_mgmt(&d, "vmci.socket.list");
		th_log("%s", json);
		ASSERT(strstr(json, "\"direct\":true"));
		ASSERT(strstr(json, "\"tx_bytes\":10,"));
		ASSERT(strstr(json, "\"rx_bytes\":3,"));
		ASSERT(strstr(json, "\"channels\":1,"));
		free(json);
		vmci_close(c), vmci_close(s);
	}
	ASSERT_EQ(ports[1], ports[0]); /* a closed connection's port is the next one's */
	json = td_mgmt(&d, "vmci.socket.list");
	ASSERT(!strstr(json, "\"direct\""));
	free(json);
	/* MSG_WAITALL waits for all of it, across writes. */
	{
		pthread_t th;
		int cc = td_socket("b", SOCK_STREAM), ss;

		ASSERT_OK(vmci_connect(cc, &a));
		ss = vmci_accept(l, NULL, 0);
		ASSERT_GE(ss, 0);
		send_all(cc, "01234", 5);
		ASSERT_OK(pthread_create(&th, NULL, late_send, &cc));
		ASSERT_EQ(vmci_recv(ss, buf, 10, MSG_WAITALL), 10);
		ASSERT(!memcmp(buf, "0123456789", 10));
		pthread_join(th, NULL);
		vmci_close(cc), vmci_close(ss);
	}
	/* The listener goes: its channels close with it. */
	vmci_close(l);
	c = td_socket("b", SOCK_STREAM);
	ASSERT_EQ(vmci_connect(c, &a), -ECONNREFUSED);
	vmci_close(c);
	/* Another listener on the port: a new channel. */
	l = td_listener("a", SOCK_STREAM, 5450);
	c = td_socket("b", SOCK_STREAM);
	ASSERT_OK(vmci_connect(c, &a));
	s = vmci_accept(l, NULL, 0);
	ASSERT_GE(s, 0);
	send_all(c, "x", 1);
	recv_all(s, buf, 1);
	vmci_close(c), vmci_close(s), vmci_close(l);
	td_stop(&d);
	td_cleanup(&d);
}

/*
 * Short connections one after another between the same two processes run
 * on queue pairs parked by the ones before: whatever either side left
 * unread stays behind, each connection sees only its own bytes and its own
 * end, for streams and seqpacket alike.
 */
static void
reuse_rounds(int type, unsigned port)
{
	struct sockaddr_vm a = td_addr(3, port);
	char buf[256], want[64];
	int l = td_listener("a", type, port);
	uint64_t reused = lib_pool_reuses();

	for (int i = 0; i < 200; i++) {
		int c = td_socket("b", type), s, n;

		ASSERT_OK(vmci_connect(c, &a));
		s = vmci_accept(l, NULL, 0);
		ASSERT_GE(s, 0);
		n = snprintf(want, sizeof(want), "request %d", i);
		ASSERT_EQ(vmci_send(c, want, (size_t)n, 0), n);
		ASSERT_EQ(vmci_recv(s, buf, (size_t)n, 0), n);
		ASSERT(!memcmp(buf, want, (size_t)n));
		n = snprintf(want, sizeof(want), "response %d", i);
		ASSERT_EQ(vmci_send(s, want, (size_t)n, 0), n);
		ASSERT_EQ(vmci_recv(c, buf, (size_t)n, 0), n);
		ASSERT(!memcmp(buf, want, (size_t)n));
		/* Left unread, in turn by either side, or both. */
		if (i % 3 != 1)
			ASSERT_EQ(vmci_send(c, "stale from c", 12, 0), 12);
		if (i % 3 != 0)
			ASSERT_EQ(vmci_send(s, "stale from s", 12, 0), 12);
		if (i % 2) {
			vmci_close(s);
			ASSERT_EQ(vmci_recv(c, buf, sizeof(buf), 0), i % 3 != 0 ? 12 : 0);
			vmci_close(c);
		} else {
			vmci_close(c);
			ASSERT_EQ(vmci_recv(s, buf, sizeof(buf), 0), i % 3 != 1 ? 12 : 0);
			vmci_close(s);
		}
	}
	/* All but the first (and any that found the listener not done yet). */
	ASSERT_GE(lib_pool_reuses() - reused, 150);
	vmci_close(l);
}

TEST(vmci_direct_reuse)
{
	struct tdaemon d;

	td_start(&d, NULL);
	reuse_rounds(SOCK_STREAM, 5460);
	reuse_rounds(SOCK_SEQPACKET, 5461);
	td_stop(&d);
	td_cleanup(&d);
}

TEST(vmci_daemon_restart)
{
	struct tdaemon d;
	struct sockaddr_vm a = td_addr(3, 5400);
	char buf[4096];
	int l, c, s, c2, s2;

	td_start(&d, NULL);
	l = td_listener("a", SOCK_STREAM, 5400);
	c = td_socket("b", SOCK_STREAM);
	ASSERT_OK(vmci_connect(c, &a));
	s = vmci_accept(l, NULL, 0);
	ASSERT_GE(s, 0);
	send_all(c, "before", 6);
	td_stop(&d); /* the data path does not pass through the daemon */
	recv_all(s, buf, 6);
	for (int i = 0; i < 1000; i++) {
		send_all(c, buf, sizeof(buf));
		recv_all(s, buf, sizeof(buf));
	}
	/* No daemon: new connections cannot be made. */
	c2 = td_socket("b", SOCK_STREAM);
	ASSERT_EQ(vmci_connect(c2, &a), -ENETDOWN);
	td_restart(&d);
	/* Back: the listener registers again when it next accepts. */
	ASSERT_EQ(vmci_connect(c2, &a), -ECONNREFUSED);
	struct timeval tv = { 0, 200000 };
	ASSERT_OK(vmci_setsockopt(l, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)));
	ASSERT_EQ(vmci_accept(l, NULL, 0), -EAGAIN);
	ASSERT_OK(vmci_connect(c2, &a));
	s2 = vmci_accept(l, NULL, 0);
	ASSERT_GE(s2, 0);
	send_all(c2, "after", 5);
	recv_all(s2, buf, 5);
	send_all(s, "still", 5); /* the first stream lives on */
	recv_all(c, buf, 5);
	ASSERT(!memcmp(buf, "still", 5));
	vmci_close(c), vmci_close(s), vmci_close(c2), vmci_close(s2), vmci_close(l);
	td_stop(&d);
	td_cleanup(&d);
}

TEST(vmci_dgram)
{
	struct tdaemon d;
	struct sockaddr_vm a = td_addr(VMADDR_CID_ANY, 6000), from;
	static char big[VMCI_DGRAM_MAX + 1], buf[VMCI_DGRAM_MAX + 16];
	int r, s, x;
	ssize_t n;

	td_start(&d, NULL);
	r = td_socket("a", SOCK_DGRAM);
	ASSERT_OK(vmci_bind(r, &a));
	s = td_socket("b", SOCK_DGRAM);
	a = td_addr(3, 6000);
	ASSERT_EQ(vmci_sendto(s, "ping", 4, 0, &a), 4);
	n = vmci_recvfrom(r, buf, sizeof(buf), 0, &from);
	ASSERT_EQ(n, 4);
	ASSERT(!memcmp(buf, "ping", 4));
	ASSERT_EQ(from.svm_cid, 4); /* stamped by the daemon */
	ASSERT_GE(from.svm_port, 1024);
	/* Reply to the source. */
	ASSERT_EQ(vmci_sendto(r, "pong", 4, 0, &from), 4);
	ASSERT_EQ(vmci_recvfrom(s, buf, sizeof(buf), 0, NULL), 4);
	/* Sizes: 0, the maximum, beyond it; truncation. */
	ASSERT_EQ(vmci_sendto(s, big, 0, 0, &a), 0);
	ASSERT_EQ(vmci_recvfrom(r, buf, sizeof(buf), 0, NULL), 0);
	ASSERT_EQ(vmci_sendto(s, big, VMCI_DGRAM_MAX, 0, &a), VMCI_DGRAM_MAX);
	ASSERT_EQ(vmci_recvfrom(r, buf, sizeof(buf), 0, NULL), VMCI_DGRAM_MAX);
	ASSERT_EQ(vmci_sendto(s, big, VMCI_DGRAM_MAX + 1, 0, &a), -EMSGSIZE);
	ASSERT_EQ(vmci_sendto(s, "truncated", 9, 0, &a), 9);
	ASSERT_EQ(vmci_recvfrom(r, buf, 4, MSG_TRUNC, NULL), 9);
	ASSERT_EQ(vmci_recvfrom(r, buf, 4, MSG_DONTWAIT, NULL), -EAGAIN);
	/* Policy: not toward the restricted context. */
	a = td_addr(6, 1);
	ASSERT_EQ(vmci_sendto(s, "x", 1, 0, &a), -EACCES);
	a = td_addr(99, 1);
	ASSERT_EQ(vmci_sendto(s, "x", 1, 0, &a), -EHOSTUNREACH);
	/* A receiver that does not read: bounded queue, drops counted. */
	a = td_addr(3, 6000);
	for (int i = 0; i < 2000; i++)
		ASSERT_EQ(vmci_sendto(s, big, 1024, 0, &a), 1024);
	usleep(100000);
	char *json = td_mgmt(&d, "vmci.socket.list");
	th_log("%s", json);
	ASSERT(strstr(json, "\"drops\":"));
	free(json);
	int got = 0;
	for (int pass = 0; pass < 3; pass++) { /* held ones arrive as room appears */
		while (vmci_recvfrom(r, buf, sizeof(buf), MSG_DONTWAIT, NULL) == 1024)
			got++;
		usleep(30000);
	}
	ASSERT_GT(got, 50);
	ASSERT_LT(got, 2000);
	/* Connected datagram socket: default destination, only its peer heard. */
	x = td_socket("b", SOCK_DGRAM);
	ASSERT_OK(vmci_connect(x, &a));
	ASSERT_EQ(vmci_send(x, "c", 1, 0), 1);
	ASSERT_EQ(vmci_recvfrom(r, buf, sizeof(buf), 0, &from), 1);
	vmci_close(x), vmci_close(s), vmci_close(r);
	td_stop(&d);
	td_cleanup(&d);
}

TEST(vmci_nonblocking)
{
	struct tdaemon d;
	struct sockaddr_vm a = td_addr(3, 5500);
	struct pollfd p;
	int l, c, s, err;
	socklen_t len = sizeof(err);
	char buf[16];

	td_start(&d, NULL);
	l = td_listener("a", SOCK_STREAM | SOCK_NONBLOCK, 5500);
	ASSERT_EQ(vmci_accept(l, NULL, 0), -EAGAIN);
	c = td_socket("b", SOCK_STREAM | SOCK_NONBLOCK);
	err = vmci_connect(c, &a); /* at once when direct */
	ASSERT(err == 0 || err == -EINPROGRESS);
	wait_connected(c);
	ASSERT_OK(vmci_getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &len));
	ASSERT_EQ(err, 0);
	/* The listener's descriptor becomes readable. */
	p = (struct pollfd){ .fd = l, .events = POLLIN };
	ASSERT_EQ(poll(&p, 1, 2000), 1);
	s = vmci_accept(l, NULL, SOCK_NONBLOCK);
	ASSERT_GE(s, 0);
	ASSERT_EQ(vmci_recv(s, buf, sizeof(buf), 0), -EAGAIN);
	/* Arm, wait on the descriptor, then data. */
	ASSERT_EQ(vmci_poll_arm(s, POLLIN), 0);
	ASSERT_EQ(vmci_send(c, "x", 1, 0), 1);
	p = (struct pollfd){ .fd = s, .events = POLLIN };
	ASSERT_EQ(poll(&p, 1, 2000), 1);
	ASSERT_EQ(vmci_poll_arm(s, POLLIN | POLLOUT), POLLIN | POLLOUT);
	ASSERT_EQ(vmci_recv(s, buf, sizeof(buf), 0), 1);
	/* Non-blocking send fills the queue, then EAGAIN. */
	static char big[1 << 20];
	ssize_t n = vmci_send(c, big, sizeof(big), 0);
	ASSERT_EQ(n, 128 << 10);
	ASSERT_EQ(vmci_send(c, big, 1, 0), -EAGAIN);
	vmci_close(c), vmci_close(s), vmci_close(l);
	td_stop(&d);
	td_cleanup(&d);
}

TEST(vmci_buffer_size)
{
	struct tdaemon d;
	struct sockaddr_vm a = td_addr(3, 5600);
	uint64_t v;
	socklen_t len = sizeof(v);
	static char big[1 << 20];
	int l, c, s, err;

	td_start(&d, NULL);
	c = td_socket("b", SOCK_STREAM | SOCK_NONBLOCK);
	ASSERT_OK(vmci_getsockopt(c, AF_VSOCK, SO_VM_SOCKETS_BUFFER_SIZE, &v, &len));
	ASSERT_EQ(v, 128 << 10);
	/* The size stays within [min, max]. */
	v = 1 << 20;
	ASSERT_OK(vmci_setsockopt(c, AF_VSOCK, SO_VM_SOCKETS_BUFFER_SIZE, &v, sizeof(v)));
	ASSERT_OK(vmci_getsockopt(c, AF_VSOCK, SO_VM_SOCKETS_BUFFER_SIZE, &v, &len));
	ASSERT_EQ(v, 256 << 10);
	v = 4 << 20;
	ASSERT_OK(vmci_setsockopt(c, AF_VSOCK, SO_VM_SOCKETS_BUFFER_MAX_SIZE, &v, sizeof(v)));
	ASSERT_OK(vmci_setsockopt(c, AF_VSOCK, SO_VM_SOCKETS_BUFFER_SIZE, &v, sizeof(v)));
	ASSERT_OK(vmci_getsockopt(c, AF_VSOCK, SO_VM_SOCKETS_BUFFER_SIZE, &v, &len));
	ASSERT_EQ(v, 4 << 20);
	/* A listener whose range is smaller imposes its own size (VMCI). */
	l = td_socket("a", SOCK_STREAM);
	v = 64 << 10;
	ASSERT_OK(vmci_setsockopt(l, AF_VSOCK, SO_VM_SOCKETS_BUFFER_SIZE, &v, sizeof(v)));
	ASSERT_OK(vmci_setsockopt(l, AF_VSOCK, SO_VM_SOCKETS_BUFFER_MAX_SIZE, &v, sizeof(v)));
	ASSERT_OK(vmci_bind(l, &(struct sockaddr_vm){ .svm_family = AF_VSOCK,
						      .svm_cid = VMADDR_CID_ANY, .svm_port = 5600 }));
	ASSERT_OK(vmci_listen(l, 4));
	int cb = td_socket("b", SOCK_STREAM);
	ASSERT_OK(vmci_setsockopt(cb, AF_VSOCK, SO_VM_SOCKETS_BUFFER_MAX_SIZE, &v, sizeof(v)));
	v = 4 << 20;
	vmci_close(c);
	c = td_socket("b", SOCK_STREAM | SOCK_NONBLOCK);
	ASSERT_OK(vmci_setsockopt(c, AF_VSOCK, SO_VM_SOCKETS_BUFFER_MAX_SIZE, &v, sizeof(v)));
	ASSERT_OK(vmci_setsockopt(c, AF_VSOCK, SO_VM_SOCKETS_BUFFER_SIZE, &v, sizeof(v)));
	err = vmci_connect(c, &a); /* at once when direct */
	ASSERT(err == 0 || err == -EINPROGRESS);
	wait_connected(c);
	s = vmci_accept(l, NULL, 0);
	ASSERT_GE(s, 0);
	ASSERT_EQ(vmci_send(c, big, sizeof(big), 0), 64 << 10);
	vmci_close(cb), vmci_close(c), vmci_close(s), vmci_close(l);
	td_stop(&d);
	td_cleanup(&d);
}

/* Word-wise FNV-style checksum: fast enough for gigabytes, order-sensitive. */
static uint64_t
sum64(uint64_t h, const uint64_t *w, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ w[i]) * 0x100000001b3ull;
	return h;
}

static void
big_sender(void *arg)
{
	static uint64_t buf[8192]; /* 64 KiB */
	uint64_t total = *(uint64_t *)arg, sent = 0, h = 0xcbf29ce484222325ull, x = 7;
	struct sockaddr_vm a = td_addr(3, 5700);
	int s = td_socket("b", SOCK_STREAM);

	ASSERT_OK(vmci_connect(s, &a));
	while (sent < total) {
		for (size_t i = 0; i < 8192; i++)
			buf[i] = (x += 0x9e3779b97f4a7c15ull);
		h = sum64(h, buf, 8192);
		send_all(s, buf, sizeof(buf));
		sent += sizeof(buf);
	}
	send_all(s, &h, sizeof(h));
	vmci_close(s);
}

TEST(vmci_stream_6gib)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	uint64_t total = 1ull << 30; /* sanitizers: 1 GiB keeps the suite short */
#else
	uint64_t total = 6ull << 30; /* the largest file in the VMQ study */
#endif
	static uint64_t buf[8192];
	uint64_t got = 0, h = 0xcbf29ce484222325ull, theirs;
	struct tdaemon d;
	int64_t t0;
	int l, s;
	pid_t pid;

	td_start(&d, NULL);
	l = td_listener("a", SOCK_STREAM, 5700);
	pid = child(big_sender, &total);
	s = vmci_accept(l, NULL, 0);
	ASSERT_GE(s, 0);
	t0 = clock_ns();
	while (got < total) {
		recv_all(s, buf, sizeof(buf));
		h = sum64(h, buf, 8192);
		got += sizeof(buf);
	}
	recv_all(s, &theirs, sizeof(theirs));
	ASSERT_EQ(h, theirs);
	ASSERT_EQ(vmci_recv(s, buf, 8, 0), 0);
	th_log("%llu GiB in %.2f s, checksum %016llx", (unsigned long long)(total >> 30),
	       (double)(clock_ns() - t0) / 1e9, (unsigned long long)h);
	reap(pid);
	vmci_close(s);
	vmci_close(l);
	td_stop(&d);
	td_cleanup(&d);
}

/* Run a command, capture its output (at most @len - 1 bytes); returns its status. */

TEST(vmci_cli)
{
	struct tdaemon d;
	char cmd[512], out[8192];
	int l;

	td_start(&d, NULL);
	l = td_listener("a", SOCK_STREAM, 5800);
	snprintf(cmd, sizeof(cmd), "%s --socket %s vmci context list 2>&1", VMFABRIC_CLI_PATH,
		 d.sock);
	ASSERT_EQ(td_run(cmd, out, sizeof(out)), 0);
	th_log("%s", out);
	ASSERT(strstr(out, "CID") && strstr(out, "host-only") && strstr(out, "uid=1000"));
	snprintf(cmd, sizeof(cmd), "%s --socket %s vmci socket list --format=json 2>&1",
		 VMFABRIC_CLI_PATH, d.sock);
	ASSERT_EQ(td_run(cmd, out, sizeof(out)), 0);
	th_log("%s", out);
	ASSERT(strstr(out, "\"listening\"") && strstr(out, "\"port\": 5800"));
	snprintf(cmd, sizeof(cmd), "%s --socket %s system status 2>&1", VMFABRIC_CLI_PATH, d.sock);
	ASSERT_EQ(td_run(cmd, out, sizeof(out)), 0);
	ASSERT(strstr(out, "rss_kib"));
	ASSERT(strstr(out, "fds: ") && strstr(out, "heap_bytes: "));
	snprintf(cmd, sizeof(cmd), "%s --socket %s/nope system status 2>&1", VMFABRIC_CLI_PATH,
		 d.dir);
	ASSERT_EQ(td_run(cmd, out, sizeof(out)), 1);
	ASSERT(strstr(out, "is the daemon running"));
	snprintf(cmd, sizeof(cmd), "%s vmci frobnicate 2>&1", VMFABRIC_CLI_PATH);
	ASSERT_EQ(td_run(cmd, out, sizeof(out)), 2);
	vmci_close(l);
	td_stop(&d);
	td_cleanup(&d);
}

/* vmfabricd --check-config: errors name the file, the line and the key. */
TEST(vmci_config_errors)
{
	static const struct {
		const char *text, *want;
	} cases[] = {
		{ "context0.vmci0.id = \"2\"\n", ":1: context0.vmci0.id: CIDs 0, 1 and 2 are reserved" },
		{ "context0.vmci0.id = \"7\"\ncontext1.vmci0.id = \"7\"\n", "CID 7 is already used" },
		{ "context0.name = \"x\"\ncontext1.name = \"x\"\n", "name \"x\" is already used" },
		{ "context0.vmci0.present = \"maybe\"\n", ":1: context0.vmci0.present:" },
		{ "vmfabricd.log_level = \"loud\"\n", "vmfabricd.log_level" },
		{ "context0.vmci0.id = \"abc\"\n", ":1: context0.vmci0.id:" },
		{ "# ok\ncontext0.name = \"a\nb\"\n", ":2:" },
		/* Names are printable ASCII: they go into logs, JSON answers and tables. */
		{ "context0.name = \"a|0Ab\"\n", ":1: context0.name: a context name is 1 to 63 printable" },
		{ "context0.uid = \"0\"\ncontext0.name = \"\"\n", ":1: context0.uid: a context name" },
		{ "vswitch0.name = \"sw|FF\"\n", ":1: vswitch0.name: a switch name is 1 to 31 printable" },
		{ "portgroup0.name = \"p|1B\"\n", "a port group needs a name of 1 to 31 printable" },
		{ "uplink0.device = \"e0\"\nuplink1.device = \"e1\"\nuplink1.name = \"vmnic0\"\n",
		  ":2: uplink1.device: an uplink of that name exists already" },
		{ "uplink0.device = \"e0\"\nuplink0.name = \"u|0A\"\n", "uplinkN.name is 1 to 31" },
		{ "portgroup0.name = \"p\"\nvmk0.portgroup = \"p\"\nvmk1.portgroup = \"p\"\n"
		  "vmk1.name = \"vmk0\"\n",
		  ":3: vmk1.portgroup: a VMkernel adapter of that name exists already" },
		{ "portgroup0.name = \"p\"\nvmk0.portgroup = \"p\"\nvmk0.ip = \"10.0.0.1/\"\n",
		  ":2: vmk0.portgroup: vmkN.ip is an IPv4 address and prefix length" },
	};
	char dir[] = "/tmp/vmf-cfg-XXXXXX", path[64], cmd[256], out[2048];

	ASSERT(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/host.cfg", dir);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		FILE *f = fopen(path, "w");
		fputs(cases[i].text, f);
		fclose(f);
		snprintf(cmd, sizeof(cmd), "%s --check-config -c %s 2>&1", VMFABRICD_PATH, path);
		ASSERT_EQ(td_run(cmd, out, sizeof(out)), 1);
		th_log("case %zu: %s", i, out);
		ASSERT(strstr(out, path));
		ASSERT(strstr(out, cases[i].want));
	}
	/* A good one, with a CID left for the daemon to assign. */
	FILE *f = fopen(path, "w");
	fputs("context0.name = \"web\"\ncontext0.vmci0.present = \"TRUE\"\n"
	      "context1.vmci0.id = \"3\"\ncontext1.unknown = \"1\"\n", f);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "%s --check-config -c %s 2>&1", VMFABRICD_PATH, path);
	ASSERT_EQ(td_run(cmd, out, sizeof(out)), 0);
	th_log("%s", out);
	ASSERT(strstr(out, "context 4 \"web\" (CID assigned)"));
	ASSERT(strstr(out, "context1.unknown: unknown key"));
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ASSERT_EQ(system(cmd), 0);
}

/* Many contexts and connections at once, all cleaned up afterwards. */
TEST(vmci_many)
{
	enum { CONTEXTS = 100, STREAMS = 1000 };
	static int c[STREAMS], s[STREAMS];
	char *config, *json;
	struct tdaemon d;
	struct rlimit rl;
	size_t off = 0;
	int l;

	/* Both ends of every stream live in this process: about 11 descriptors each. */
	ASSERT_OK(getrlimit(RLIMIT_NOFILE, &rl));
	rl.rlim_cur = rl.rlim_max;
	ASSERT_OK(setrlimit(RLIMIT_NOFILE, &rl));
	if (rl.rlim_cur < STREAMS * 12 + 100)
		SKIP("needs %d descriptors, the hard limit is %llu", STREAMS * 12 + 100,
		     (unsigned long long)rl.rlim_cur);
	config = malloc(CONTEXTS * 128);
	for (int i = 0; i < CONTEXTS; i++)
		off += (size_t)snprintf(config + off, 128,
					"context%d.vmci0.present = \"TRUE\"\ncontext%d.uid = \"0\"\n",
					i, i);
	td_start(&d, config);
	free(config);
	l = td_socket("3", SOCK_STREAM);
	ASSERT_OK(vmci_bind(l, &(struct sockaddr_vm){ .svm_family = AF_VSOCK,
						      .svm_cid = VMADDR_CID_ANY, .svm_port = 5900 }));
	ASSERT_OK(vmci_listen(l, 64));
	for (int i = 0; i < STREAMS; i++) {
		char ctx[16];
		struct sockaddr_vm a = td_addr(3, 5900);

		snprintf(ctx, sizeof(ctx), "%d", 3 + i % CONTEXTS);
		c[i] = td_socket(ctx, SOCK_STREAM);
		ASSERT_OK(vmci_connect(c[i], &a));
		s[i] = vmci_accept(l, NULL, 0);
		ASSERT_GE(s[i], 0);
		ASSERT_EQ(vmci_send(c[i], &i, sizeof(i), 0), (ssize_t)sizeof(i));
	}
	for (int i = 0; i < STREAMS; i++) {
		int v;
		ASSERT_EQ(vmci_recv(s[i], &v, sizeof(v), 0), (ssize_t)sizeof(v));
		ASSERT_EQ(v, i);
		vmci_close(c[i]);
		vmci_close(s[i]);
	}
	usleep(100000);
	json = td_mgmt(&d, "vmci.socket.list");
	th_log("%s", json);
	/* Left: the listener (the process keeps its dialers' control connections). */
	ASSERT(strstr(json, "\"listening\""));
	ASSERT(!strstr(json, "\"connected\""));
	free(json);
	vmci_close(l);
	td_stop(&d);
	td_cleanup(&d);
}

/* Datagram sockets reopen their rings, on the same port, after a daemon restart. */
TEST(vmci_dgram_restart)
{
	struct tdaemon d;
	struct sockaddr_vm a = td_addr(VMADDR_CID_ANY, 6100), from;
	struct timeval tv = { 2, 0 };
	char buf[16];
	int r, s;

	td_start(&d, NULL);
	r = td_socket("a", SOCK_DGRAM);
	ASSERT_OK(vmci_bind(r, &a));
	ASSERT_OK(vmci_setsockopt(r, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)));
	s = td_socket("b", SOCK_DGRAM);
	a = td_addr(3, 6100);
	ASSERT_EQ(vmci_sendto(s, "one", 3, 0, &a), 3);
	ASSERT_EQ(vmci_recvfrom(r, buf, sizeof(buf), 0, NULL), 3);
	td_stop(&d);
	ASSERT_EQ(vmci_sendto(s, "lost", 4, 0, &a), -ENETDOWN);
	td_restart(&d);
	/* The receiver notices first (it re-registers port 6100), then the sender. */
	ASSERT_EQ(vmci_recvfrom(r, buf, sizeof(buf), MSG_DONTWAIT, NULL), -EAGAIN);
	ASSERT_EQ(vmci_sendto(s, "two", 3, 0, &a), 3);
	ASSERT_EQ(vmci_recvfrom(r, buf, sizeof(buf), 0, &from), 3);
	ASSERT(!memcmp(buf, "two", 3));
	ASSERT_EQ(from.svm_cid, 4);
	vmci_close(s);
	vmci_close(r);
	td_stop(&d);
	td_cleanup(&d);
}
