/* SPDX-License-Identifier: MIT */
/*
 * make run, part three: two process vNICs on vSwitch0's "VM Network"
 * (the built-in configuration). A broadcast from one reaches the other,
 * the answer teaches the switch both addresses, then a million 64-byte
 * frames go one way in batches, each checked for its sequence number. The
 * vNICs stay open until a line arrives on stdin, so that the ports can be
 * listed meanwhile.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "vmfabric/vmci.h"
#include "vmfabric/vnic.h"

#define FRAMES 1000000
#define BATCH 256 /* frames per call */

static double
now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void
frame(uint8_t *f, const uint8_t *dst, const uint8_t *src, uint32_t seq)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	f[12] = 0x88, f[13] = 0xb5; /* local experimental EtherType */
	memcpy(f + 14, &seq, sizeof(seq));
	memset(f + 18, 0x5a, 64 - 18);
}

static void
fail(const char *what, int err)
{
	fprintf(stderr, "vnic-demo: %s: %s\n", what, strerror(-err));
	exit(1);
}

int
main(void)
{
	static uint8_t out[BATCH][64], in[BATCH][128];
	static struct iovec ov[BATCH], iv[BATCH];
	static size_t lens[BATCH];
	struct vmf_vnic *a = NULL, *b = NULL;
	uint8_t ma[6], mb[6], bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff }, f[128];
	uint32_t next = 0, sent = 0, bad = 0;
	ssize_t r;
	double t0;
	char line[8];
	int err;

	vmci_set_context("demo-a");
	if ((err = vmf_vnic_open("VM Network", NULL, &a)) ||
	    (err = vmf_vnic_open("VM Network", NULL, &b)))
		fail("vmf_vnic_open(\"VM Network\")", err);
	vmf_vnic_mac(a, ma);
	vmf_vnic_mac(b, mb);
	printf("%s %02x:%02x:%02x:%02x:%02x:%02x and %s %02x:%02x:%02x:%02x:%02x:%02x on \"VM "
	       "Network\" (vSwitch0)\n",
	       vmf_vnic_name(a), ma[0], ma[1], ma[2], ma[3], ma[4], ma[5], vmf_vnic_name(b), mb[0],
	       mb[1], mb[2], mb[3], mb[4], mb[5]);
	frame(f, bcast, ma, 0);
	vmf_vnic_send(a, f, 64, 0);
	if ((r = vmf_vnic_recv(b, f, sizeof(f), 0)) != 64)
		fail("broadcast", (int)r);
	printf("broadcast from %s reached %s; ", vmf_vnic_name(a), vmf_vnic_name(b));
	frame(f, ma, mb, 0);
	vmf_vnic_send(b, f, 64, 0);
	if ((r = vmf_vnic_recv(a, f, sizeof(f), 0)) != 64)
		fail("answer", (int)r);
	printf("the answer came back: the switch knows both addresses\n");
	for (int i = 0; i < BATCH; i++)
		iv[i] = (struct iovec){ in[i], sizeof(in[i]) };
	t0 = now();
	while (next < FRAMES) {
		int n = 0, k;

		/* At most a window in flight: the receiving port's ring (1 MiB) never fills. */
		while (sent + (uint32_t)n < FRAMES && n < BATCH && sent + (uint32_t)n - next < 8192) {
			frame(out[n], mb, ma, sent + (uint32_t)n);
			ov[n] = (struct iovec){ out[n], 64 };
			n++;
		}
		k = n ? vmf_vnic_send_batch(a, ov, n) : 0;
		if (k < 0)
			fail("send", k);
		sent += (uint32_t)k;
		k = vmf_vnic_recv_batch(b, iv, lens, BATCH);
		if (k < 0)
			fail("receive", k);
		for (int i = 0; i < k; i++) {
			uint32_t seq;
			memcpy(&seq, in[i] + 14, sizeof(seq));
			bad += seq != next++ || lens[i] != 64;
		}
		if (now() - t0 > 30)
			fail("a million frames", -ETIMEDOUT);
	}
	printf("frames: %d of 64 B %s -> %s in %.2f s (%.1f Mpps), %u out of order or damaged\n",
	       FRAMES, vmf_vnic_name(a), vmf_vnic_name(b), now() - t0, FRAMES / (now() - t0) / 1e6,
	       bad);
	printf("the vNICs stay open\n");
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin)) {
	}
	vmf_vnic_close(a);
	vmf_vnic_close(b);
	return bad ? 1 : 0;
}
