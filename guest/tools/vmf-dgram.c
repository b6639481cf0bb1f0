/* SPDX-License-Identifier: MIT */
/*
 * vmf-dgram: VMCI datagrams from a guest through vmfabric's relay
 * (vmf-dgram.h), for the tests and the demo.
 *
 *   vmf-dgram send CID PORT COUNT [SIZE]   COUNT datagrams of SIZE bytes
 *   vmf-dgram echo PORT COUNT              bind PORT, send COUNT datagrams
 *                                          back to where they came from
 *
 * Each command prints one "VMF-RESULT op=... ok=1|0 ..." line (as vmf-vsock
 * does); echo prints "VMF-READY echo port=P" once bound.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmf-dgram.h"

static unsigned char buf[VMF_DGRAM_MAX];

static int
fail(const char *op, const char *what)
{
	printf("VMF-RESULT op=%s ok=0 err=\"%s: %s\"\n", op, what, strerror(errno));
	return 1;
}

static int
cmd_send(unsigned cid, unsigned port, unsigned long count, size_t size)
{
	unsigned me;
	int fd = vmf_dgram_open(VMADDR_PORT_ANY);

	if (fd < 0 || vmf_dgram_port(fd, &me) < 0)
		return fail("dgram-send", "opening the relay");
	for (unsigned long i = 0; i < count; i++) {
		memset(buf, (int)(i & 0xff), size);
		if (size >= 8)
			memcpy(buf, &i, sizeof(i) < size ? sizeof(i) : size);
		if (vmf_dgram_sendto(fd, buf, size, cid, port) != (ssize_t)size)
			return fail("dgram-send", "sendto");
	}
	printf("VMF-RESULT op=dgram-send port=%u count=%lu size=%zu ok=1\n", me, count, size);
	close(fd);
	return 0;
}

static int
cmd_echo(unsigned port, unsigned long count)
{
	unsigned cid = 0, from = 0;
	unsigned long n = 0;
	ssize_t r;
	int fd = vmf_dgram_open(port);

	if (fd < 0)
		return fail("dgram-echo", "opening the relay");
	printf("VMF-READY echo port=%u\n", port);
	fflush(stdout);
	for (; n < count; n++) {
		r = vmf_dgram_recvfrom(fd, buf, sizeof(buf), &cid, &from);
		if (r <= 0)
			return fail("dgram-echo", r == 0 ? "the relay closed" : "recvfrom");
		if (vmf_dgram_sendto(fd, buf, (size_t)r, cid, from) != r)
			return fail("dgram-echo", "sendto");
	}
	printf("VMF-RESULT op=dgram-echo port=%u count=%lu last_cid=%u last_port=%u ok=1\n", port,
	       n, cid, from);
	close(fd);
	return 0;
}

int
main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	alarm(60); /* nothing here may hang a test */
	if (argc >= 5 && !strcmp(argv[1], "send"))
		return cmd_send((unsigned)strtoul(argv[2], NULL, 0),
				(unsigned)strtoul(argv[3], NULL, 0), strtoul(argv[4], NULL, 0),
				argc > 5 ? strtoul(argv[5], NULL, 0) : 64);
	if (argc == 4 && !strcmp(argv[1], "echo"))
		return cmd_echo((unsigned)strtoul(argv[2], NULL, 0), strtoul(argv[3], NULL, 0));
	fprintf(stderr, "usage: vmf-dgram send CID PORT COUNT [SIZE] | echo PORT COUNT\n");
	return 2;
}
