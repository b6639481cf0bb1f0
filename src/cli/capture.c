/* SPDX-License-Identifier: MIT */
/*
 * vmfabric network capture: a copy of a port's frames from vmfabricd (a
 * queue pair of struct wire_captured records, see common/wire.h) written
 * with libpcap, so that the file is what tcpdump and Wireshark expect.
 */
#include <errno.h>
#include <pcap/pcap.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "cli.h"
#include "lib/lib.h"

#define CAPTURE_SNAPLEN 65535u

static volatile sig_atomic_t stop;

static void
on_sigint(int sig)
{
	(void)sig;
	stop = 1;
}

static long
opt_long(const struct cli_ctx *cx, enum cli_opt o)
{
	char *end;
	long v;

	if (!cx->opt[o])
		return 0;
	v = strtol(cx->opt[o], &end, 10);
	return *end || v < 0 ? -1 : v;
}

int
cmd_capture(const struct cli_ctx *cx, const struct cli_cmd *cmd)
{
	static uint8_t buf[sizeof(struct wire_captured) + CAPTURE_SNAPLEN];
	struct wire_capture w = { .snaplen = CAPTURE_SNAPLEN };
	struct vsk v = { .fd = -1, .ctrl = -1, .type = SOCK_DGRAM };
	long count = opt_long(cx, OPT_COUNT), secs = opt_long(cx, OPT_SECONDS), n = 0;
	uint64_t missed = 0;
	struct wire_msg rep;
	pcap_dumper_t *out;
	struct qp_fds f;
	struct qp *q;
	pcap_t *pd;
	time_t end;
	int err;

	(void)cmd;
	if (!cx->opt[OPT_PORT] || !cx->opt[OPT_OUTPUT]) {
		cli_error(cx, "needs --port and --output");
		return -EINVAL;
	}
	if (count < 0 || secs < 0) {
		cli_error(cx, "--count and --seconds are whole numbers");
		return -EINVAL;
	}
	if (strlen(cx->opt[OPT_PORT]) >= sizeof(w.port)) {
		cli_error(cx, "no port is called %s", cx->opt[OPT_PORT]);
		return -ENOENT;
	}
	strcpy(w.port, cx->opt[OPT_PORT]);
	vmci_set_daemon(cx->socket);
	lib_identity(&v.want_cid, v.want_name);
	err = ctl_rpc(&v, WIRE_CAPTURE_OPEN, &w, NULL, 0, &rep, -1);
	if (err) {
		cli_error(cx, "%s: %s", cx->opt[OPT_PORT],
			  err == -ENOENT ? "no such port (see network port list)"
			  : err == -EBUSY ? "it is being captured already"
			  : err == -EPERM ? "capturing needs root"
					  : strerror(-err));
		ctl_drop(&v);
		return err;
	}
	f = (struct qp_fds){ rep.fds[0], rep.fds[1], rep.fds[2], rep.fds[3] };
	if ((err = qp_attach(&f, &q))) {
		wire_msg_close_fds(&rep);
		ctl_drop(&v);
		cli_error(cx, "the capture ring: %s", strerror(-err));
		return err;
	}
	pd = pcap_open_dead(DLT_EN10MB, (int)CAPTURE_SNAPLEN);
	out = pd ? pcap_dump_open(pd, cx->opt[OPT_OUTPUT]) : NULL;
	if (!out) {
		cli_error(cx, "%s: %s", cx->opt[OPT_OUTPUT], pd ? pcap_geterr(pd) : "libpcap");
		err = -EIO;
		goto done;
	}
	signal(SIGINT, on_sigint);
	qp_set_timeout(q, 200 * 1000000LL);
	end = secs ? time(NULL) + secs : 0;
	while (!stop && (!count || n < count) && (!end || time(NULL) < end)) {
		struct wire_captured h;
		struct pcap_pkthdr ph;
		size_t len;
		ssize_t r = qp_msg_recv(q, buf, sizeof(buf), &len, 0);

		if (r == -ETIMEDOUT || r == -EINTR)
			continue;
		if (r < 0)
			break; /* -ESHUTDOWN: the port went; anything else: the daemon */
		if ((size_t)r < sizeof(h))
			continue;
		memcpy(&h, buf, sizeof(h));
		missed = h.missed;
		ph.ts.tv_sec = (time_t)(h.ts_ns / 1000000000u);
		ph.ts.tv_usec = (suseconds_t)(h.ts_ns % 1000000000u / 1000);
		ph.caplen = (bpf_u_int32)((size_t)r - sizeof(h));
		ph.len = h.len;
		pcap_dump((u_char *)out, &ph, buf + sizeof(h));
		n++;
	}
	pcap_dump_close(out);
	printf("%ld frames captured from %s to %s", n, cx->opt[OPT_PORT], cx->opt[OPT_OUTPUT]);
	if (missed)
		printf(" (%llu not copied: the capture ring was full)", (unsigned long long)missed);
	printf("\n");
done:
	if (pd)
		pcap_close(pd);
	qp_close(q);
	ctl_drop(&v);
	return err;
}
