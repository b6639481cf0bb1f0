/* SPDX-License-Identifier: MIT */
/*
 * make run, VMCI datagrams: the host end of the guests' vmf-dgram, over
 * libvmfabric's datagram sockets (VMFABRIC_CONTEXT chooses the context, the
 * host's CID 2 by default).
 *
 *   dgram-host recv PORT COUNT          bind PORT, take up to COUNT datagrams
 *                                       in the form vmf-dgram send makes them
 *                                       (datagram i: i in its first 8 bytes,
 *                                       every other byte i & 0xff), until the
 *                                       last one or 2 s without any
 *   dgram-host ping CID PORT COUNT SIZE send COUNT datagrams of SIZE bytes
 *                                       to an echo (vmf-dgram echo), each
 *                                       one back before the next (sent again
 *                                       after 500 ms without its reply)
 *
 * Datagrams may be dropped by design (a receiver's ring that stays full):
 * each one that arrives must be intact and later than the one before; the
 * ones that never came are counted (lost=, resent=). Prints "VMF-READY
 * ..." once bound (recv), then one "VMF-RESULT op=... ok=1|0" line, as the
 * guests' tools do. Gives up after 60 s.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "vmfabric/vmci.h"

static unsigned char buf[VMCI_DGRAM_MAX], want[VMCI_DGRAM_MAX];

static double
now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int
fail(const char *op, const char *what, int err)
{
	printf("VMF-RESULT op=%s ok=0 err=\"%s: %s\"\n", op, what, strerror(-err));
	return 1;
}

/* Datagram @i of @size bytes as vmf-dgram send makes it. */
static void
fill(unsigned char *b, uint64_t i, size_t size)
{
	memset(b, (int)(i & 0xff), size);
	memcpy(b, &i, size < sizeof(i) ? size : sizeof(i));
}

static int
open_sock(unsigned port)
{
	struct sockaddr_vm me = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
				  .svm_port = port };
	struct timeval tv = { .tv_sec = 60 };
	int s = vmci_socket(SOCK_DGRAM), err;

	if (s < 0)
		return s;
	if ((err = vmci_bind(s, &me)) < 0 ||
	    (err = vmci_setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv))) < 0) {
		vmci_close(s);
		return err;
	}
	return s;
}

static int
set_timeout(int s, long ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

	return vmci_setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

static int
cmd_recv(unsigned port, unsigned long count)
{
	struct sockaddr_vm from = { 0 };
	uint64_t bytes = 0, got = 0, next = 0;
	double t0 = 0;
	int s = open_sock(port);

	if (s < 0)
		return fail("dgram-recv", "socket", s);
	printf("VMF-READY dgram-recv port=%u\n", port);
	fflush(stdout);
	while (next < count) {
		ssize_t n = vmci_recvfrom(s, buf, sizeof(buf), 0, &from);
		uint64_t i = 0;

		if (n == -EAGAIN && got)
			break; /* 2 s without a datagram: the rest was dropped */
		if (n < 0)
			return fail("dgram-recv", "recvfrom", (int)n);
		if (!got++) {
			t0 = now();
			set_timeout(s, 2000);
		}
		memcpy(&i, buf, (size_t)n < sizeof(i) ? (size_t)n : sizeof(i));
		fill(want, i, (size_t)n);
		if (i < next || i >= count || memcmp(buf, want, (size_t)n)) {
			printf("VMF-RESULT op=dgram-recv count=%" PRIu64 " ok=0 err=\"datagram %" PRIu64
			       " is corrupted or out of order\"\n",
			       got, got - 1);
			return 1;
		}
		next = i + 1;
		bytes += (uint64_t)n;
	}
	printf("VMF-RESULT op=dgram-recv port=%u count=%" PRIu64 " lost=%" PRIu64 " bytes=%" PRIu64
	       " secs=%.3f from_cid=%u from_port=%u ok=1\n",
	       port, got, count - got, bytes, got ? now() - t0 : 0.0, from.svm_cid, from.svm_port);
	vmci_close(s);
	return 0;
}

static int
cmd_ping(unsigned cid, unsigned port, unsigned long count, size_t size)
{
	struct sockaddr_vm to = { .svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port };
	struct sockaddr_vm from;
	unsigned long resent = 0;
	double t0 = now();
	int s = open_sock(VMADDR_PORT_ANY);

	if (s < 0)
		return fail("dgram-ping", "socket", s);
	set_timeout(s, 500);
	for (unsigned long i = 0; i < count; i++) {
		ssize_t n;
		int tries = 0;

		fill(want, i, size);
	again:
		if ((n = vmci_sendto(s, want, size, 0, &to)) != (ssize_t)size)
			return fail("dgram-ping", "sendto", n < 0 ? (int)n : -EIO);
		for (;;) {
			uint64_t j = 0;

			n = vmci_recvfrom(s, buf, sizeof(buf), 0, &from);
			if (n == -EAGAIN && ++tries < 20) {
				resent++; /* the datagram or its echo was dropped */
				goto again;
			}
			if (n < 0)
				return fail("dgram-ping", "recvfrom", (int)n);
			memcpy(&j, buf, (size_t)n < sizeof(j) ? (size_t)n : sizeof(j));
			if ((size_t)n == size && j < i && from.svm_cid == cid)
				continue; /* the late echo of one sent again */
			break;
		}
		if ((size_t)n != size || memcmp(buf, want, size) || from.svm_cid != cid ||
		    from.svm_port != port) {
			printf("VMF-RESULT op=dgram-ping count=%lu ok=0 err=\"reply %lu is not "
			       "datagram %lu from %u:%u\"\n",
			       i, i, i, cid, port);
			return 1;
		}
	}
	printf("VMF-RESULT op=dgram-ping cid=%u port=%u count=%lu size=%zu bytes=%" PRIu64
	       " resent=%lu secs=%.3f ok=1\n",
	       cid, port, count, size, (uint64_t)count * size * 2, resent, now() - t0);
	vmci_close(s);
	return 0;
}

int
main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	alarm(60);
	if (argc == 4 && !strcmp(argv[1], "recv"))
		return cmd_recv((unsigned)strtoul(argv[2], NULL, 0), strtoul(argv[3], NULL, 0));
	if (argc == 6 && !strcmp(argv[1], "ping")) {
		size_t size = strtoul(argv[5], NULL, 0);

		if (size < 1 || size > VMCI_DGRAM_MAX)
			size = 64;
		return cmd_ping((unsigned)strtoul(argv[2], NULL, 0),
				(unsigned)strtoul(argv[3], NULL, 0), strtoul(argv[4], NULL, 0),
				size);
	}
	fprintf(stderr, "usage: dgram-host recv PORT COUNT | ping CID PORT COUNT SIZE\n");
	return 2;
}
