/* SPDX-License-Identifier: MIT */
/*
 * vmf-vsock: the AF_VSOCK test program of the vmfabric test guest. One static
 * binary with subcommands (send, recv, echo, rr, cid) that the end-to-end
 * tests and the VM benchmark run through the guest's kernel command line;
 * it runs on any Linux with AF_VSOCK, the host included. Built with
 * VMF_LIBVMFABRIC it is vmf-vsock-host, the same tool over libvmfabric's VMCI
 * sockets; built with VMF_INET it is vmf-tcp, the same tool over TCP/IPv4,
 * with an IPv4 address where the others take a CID, no --seqpacket, and
 * "addr" (the local IPv4 addresses) instead of "cid" (vmf-sock-ops.h holds
 * the calls and addresses of the three builds).
 *
 * Every command prints exactly one "VMF-RESULT key=value ..." line on stdout
 * (listeners print "VMF-READY ..." first, once they listen) and exits 0 when
 * ok=1, 1 when ok=0, 2 on a usage error. Data is the pattern of
 * vmf-pattern.h, checked byte for byte, with its checksum. Nothing blocks
 * forever: connect has a timeout, and an alarm ends every command after
 * --timeout seconds (for echo: seconds without any activity); SIGTERM and
 * SIGINT end it too, still with its result line.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#ifdef VMF_INET
#include <ifaddrs.h>
#include <net/if.h>
#endif

#include "vmf-pattern.h"
#include "vmf-sock-ops.h"

#define CHUNK_DEFAULT 65536u
#define CHUNK_MAX (16u << 20)
#define TIMEOUT_DEFAULT 60u
#define CONNECT_TIMEOUT_DEFAULT 10u
#define RR_SIZE_DEFAULT 64u
#define RR_COUNT_DEFAULT 1000
#define RR_COUNT_MAX 10000000
#define BACKLOG 16

/*
 * Message sizes of --seqpacket, in this order, round and round. A message
 * of 8 bytes or more starts with its sequence number and its length (two
 * little-endian 32-bit words); the rest of it, and all of a shorter one, is
 * the pattern at the message's stream offset.
 */
static const uint32_t seq_sizes[] = {
	1, 7, 8, 9, 100, 3000, 4096, 4097, 65536, 1500, 65535, 13, 32768, 512,
};
#define SEQ_NSIZES (sizeof(seq_sizes) / sizeof(seq_sizes[0]))
#define SEQ_MAX 65536u
#define SEQ_HEADER 8u

/* The command line, parsed. */
struct opts {
	const struct command *cmd;
	uint32_t host; /* a CID, or an IPv4 address in host byte order (VMF_INET) */
	uint32_t port;
	uint64_t bytes;
	uint32_t seed;
	size_t chunk;
	int type;	 /* SOCK_STREAM or SOCK_SEQPACKET */
	long long count; /* echo: connections (-1: no limit); rr: round trips */
	size_t size;
	unsigned timeout;
	unsigned connect_timeout;
	int progress;
};

/* The one result line, built field by field. */
struct result {
	char line[1024];
	size_t len;
};

struct command {
	const char *name;
	int (*run)(struct opts *o, struct result *r);
	const char *args; /* positional arguments, space-separated */
	unsigned options; /* OPT_* bits it accepts */
};

enum {
	OPT_SEED = 1u << 0,
	OPT_CHUNK = 1u << 1,
	OPT_SEQPACKET = 1u << 2,
	OPT_ONCE = 1u << 3,
	OPT_COUNT = 1u << 4,
	OPT_SIZE = 1u << 5,
	OPT_TIMEOUT = 1u << 6,
	OPT_CONNECT_TIMEOUT = 1u << 7,
	OPT_PROGRESS = 1u << 8,
};

static const struct {
	const char *name;
	unsigned bit;
	int takes_value;
} option_names[] = {
	{ "seed", OPT_SEED, 1 },
	{ "chunk", OPT_CHUNK, 1 },
	{ "seqpacket", OPT_SEQPACKET, 0 },
	{ "once", OPT_ONCE, 0 },
	{ "count", OPT_COUNT, 1 },
	{ "size", OPT_SIZE, 1 },
	{ "timeout", OPT_TIMEOUT, 1 },
	{ "connect-timeout", OPT_CONNECT_TIMEOUT, 1 },
	{ "progress", OPT_PROGRESS, 0 },
};

/* The parts of the usage that differ between the builds. */
#ifdef VMF_INET
#define USAGE_HOST_PAD ""
#define USAGE_SEQPACKET ""
#define USAGE_LOCAL \
	"  addr                 the IPv4 addresses of this machine's interfaces that\n" \
	"                       are up (getifaddrs)\n"
#define USAGE_SEQPACKET_OPTION \
	"  --seqpacket          refused (a usage error): TCP has no SOCK_SEQPACKET\n"
#define USAGE_CONNECT_TIMEOUT \
	"  --connect-timeout S  connect timeout (default 10; 0: the kernel's SYN\n" \
	"                       retries, about 2 minutes)\n"
#define USAGE_ADDRESSES \
	"ADDR: an IPv4 address, e.g. 10.0.0.2. PORT: a number up to 65535; \"any\" for\n" \
	"recv and echo binds a free port (VMF-READY names it). recv and echo listen on\n" \
	"0.0.0.0; echo and rr set TCP_NODELAY. Sizes take K, M, G (KiB, MiB, GiB),\n" \
	"e.g. 64M.\n"
#else
#define USAGE_HOST_PAD " "
#define USAGE_SEQPACKET " [--seqpacket]"
#define USAGE_LOCAL "  cid                  " SK_CID_HELP "\n"
#define USAGE_SEQPACKET_OPTION \
	"  --seqpacket          SOCK_SEQPACKET: send and recv exchange messages whose\n" \
	"                       sizes cycle through 1, 7, 8, 9, 100, 3000, 4096, 4097,\n" \
	"                       65536, 1500, 65535, 13, 32768, 512 (whole messages until\n" \
	"                       at least BYTES); recv checks every boundary\n"
#define USAGE_CONNECT_TIMEOUT \
	"  --connect-timeout S  connect timeout (default 10; 0: the kernel's, 2 s)\n"
#define USAGE_ADDRESSES \
	"CID: a number, \"host\" (2) or \"local\" (1). PORT: a number; \"any\" for recv\n" \
	"and echo binds a free port (VMF-READY names it). Sizes take K, M, G (KiB,\n" \
	"MiB, GiB), e.g. 64M.\n"
#endif

static const char usage_text[] =
	"usage: " VMF_PROG " COMMAND ARGS [OPTIONS]\n"
	"\n"
	"  send " SK_HOST_ARG " PORT BYTES " USAGE_HOST_PAD "connect to " SK_HOST_ARG
	":PORT, send BYTES bytes of the pattern,\n"
	"                       shut down writing, wait for the peer to close; an\n"
	"                       8-byte little-endian reply is the peer's checksum\n"
	"       [--seed S] [--chunk N]" USAGE_SEQPACKET " [--connect-timeout S]\n"
	"  recv PORT            listen on PORT, accept one connection, read to EOF\n"
	"                       checking the pattern, reply with the 8-byte checksum\n"
	"       [--seed S] [--chunk N]" USAGE_SEQPACKET " [--once]\n"
	"  echo PORT            accept connections one after the other and send back\n"
	"                       everything each one sends, until its EOF\n"
	"       [--count N] [--chunk N]" USAGE_SEQPACKET "\n"
	"  rr " SK_HOST_ARG " PORT         " USAGE_HOST_PAD
	"round trips of --size bytes against an echo server;\n"
	"                       mean, p50 and p99 latency in microseconds\n"
	"       [--size B] [--count N] [--seed S]" USAGE_SEQPACKET " [--connect-timeout S]\n"
	USAGE_LOCAL
	"\n"
	"options:\n"
	"  --seed S             pattern seed, 32 bits (default 0)\n"
	"  --chunk N            bytes per write/read (default 65536)\n"
	USAGE_SEQPACKET_OPTION
	"  --once               recv: one connection (the default; accepted for clarity)\n"
	"  --count N            echo: connections to serve (default: no limit);\n"
	"                       rr: round trips (default 1000)\n"
	"  --size B             rr: bytes per round trip (default 64)\n"
	"  --timeout S          give up after S seconds, 0: never (default 60); for\n"
	"                       echo, S seconds without a connection or data\n"
	USAGE_CONNECT_TIMEOUT
	"  --progress           a progress line on stderr every second\n"
	"\n"
	USAGE_ADDRESSES
	"\n"
	"Output: recv and echo print \"VMF-READY <command> port=PORT\" once they\n"
	"listen; every command ends with one line\n"
	"  VMF-RESULT op=COMMAND key=value ... ok=1\n"
	"  VMF-RESULT op=COMMAND ... ok=0 err=\"what failed: why\"\n"
	"SIGTERM and SIGINT end a command with its result line (ok=0).\n"
	"Exit status: 0 ok=1, 1 ok=0, 2 usage error.\n";

/*
 * The signal that ends the command: SIGALRM (--timeout), SIGTERM or SIGINT.
 * Blocking calls then fail with EINTR and the command prints its result.
 */
static volatile sig_atomic_t stop_signal;
static unsigned alarm_seconds;

static void
on_signal(int sig)
{
	if (!stop_signal) /* the first one names the reason */
		stop_signal = sig;
	/* A call that blocks after the flag was checked is interrupted again. */
	alarm(1);
}

static void
timer_start(unsigned seconds)
{
	static const int sigs[] = { SIGALRM, SIGTERM, SIGINT };
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal; /* no SA_RESTART: blocking calls return EINTR */
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
	alarm_seconds = seconds;
	alarm(seconds);
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the result line ---------------------------------------------------- */

static void result_add(struct result *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Appends " key=value" (FMT gives both); a field that does not fit is dropped. */
static void
result_add(struct result *r, const char *fmt, ...)
{
	size_t room = sizeof(r->line) - r->len;
	va_list ap;
	int n;

	if (room < 2)
		return;
	va_start(ap, fmt);
	n = vsnprintf(r->line + r->len + 1, room - 1, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= room - 1)
		return;
	r->line[r->len] = ' ';
	r->len += (size_t)n + 1;
}

static void
result_print(struct result *r)
{
	alarm(0);
	printf("VMF-RESULT%.*s\n", (int)r->len, r->line);
	fflush(stdout);
}

static int
result_ok(struct result *r)
{
	result_add(r, "ok=1");
	result_print(r);
	return 0;
}

static int result_fail(struct result *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Ends the line with ok=0 err="..." (no double quote inside); returns 1. */
static int
result_fail(struct result *r, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	for (char *c = msg; *c; c++)
		if (*c == '"' || *c == '\n')
			*c = '\'';
	result_add(r, "ok=0");
	result_add(r, "err=\"%s\"", msg);
	result_print(r);
	return 1;
}

/* A failed system call: ERR (positive errno), or the signal that ended it. */
static int
result_errno(struct result *r, const char *what, int err)
{
	if (stop_signal == SIGALRM)
		return result_fail(r, "%s: timed out after %u s (--timeout)", what, alarm_seconds);
	if (stop_signal)
		return result_fail(r, "%s: stopped by %s", what,
				   stop_signal == SIGTERM ? "SIGTERM" : "SIGINT");
	return result_fail(r, "%s: %s", what, strerror(err));
}

static void
result_throughput(struct result *r, uint64_t bytes, double secs)
{
	result_add(r, "bytes=%llu", (unsigned long long)bytes);
	result_add(r, "secs=%.3f", secs);
	result_add(r, "gbit_s=%.3f", secs > 0 ? (double)bytes * 8 / secs / 1e9 : 0.0);
}

static void
result_peer(struct result *r, const sk_addr_t *sa)
{
	char host[SK_HOST_STRLEN];

	sk_host_format(sk_addr_host(sa), host);
	result_add(r, "peer_" SK_HOST_KEY "=%s", host);
	result_add(r, "peer_port=%u", sk_addr_port(sa));
}

static const char *
type_name(int type)
{
	return type == SOCK_SEQPACKET ? "seqpacket" : "stream";
}

/* ---- progress on stderr --------------------------------------------------- */

struct progress {
	const char *op;
	int on;
	double start, next;
};

static void
progress_init(struct progress *p, const char *op, int on)
{
	p->op = op;
	p->on = on;
	p->start = now_s();
	p->next = p->start + 1;
}

static void
progress_tick(struct progress *p, uint64_t bytes)
{
	double t;

	if (!p->on)
		return;
	t = now_s();
	if (t < p->next)
		return;
	p->next = t + 1;
	fprintf(stderr, VMF_PROG ": %s: %llu bytes in %.1f s, %.3f Gbit/s\n", p->op,
		(unsigned long long)bytes, t - p->start, (double)bytes * 8 / (t - p->start) / 1e9);
}

/* ---- sockets -------------------------------------------------------------- */

/*
 * Writes all of BUF; 0 or -errno (-EINTR only once a signal ended the
 * command: checked before every call, since a call that moves data is not
 * interrupted, and data may flow until the peer gives up).
 */
static int
send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n;

		if (stop_signal)
			return -EINTR;
		n = sk_send(fd, p, len);
		if (n == -EINTR)
			continue;
		if (n < 0)
			return (int)n;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* One read: bytes (0 at EOF) or -errno, as send_all; MSG_TRUNC in *FLAGS. */
static ssize_t
recv_some(int fd, void *buf, size_t len, int *flags)
{
	int f = 0;

	for (;;) {
		ssize_t n;

		if (stop_signal)
			return -EINTR;
		n = sk_recv(fd, buf, len, &f);
		if (n >= 0) {
			if (flags)
				*flags = f;
			return n;
		}
		if (n != -EINTR || stop_signal)
			return n;
	}
}

/* Connects to o->host:o->port; the socket or -1 with the result line printed. */
static int
vs_connect(const struct opts *o, struct result *r)
{
	struct timeval tv = { .tv_sec = o->connect_timeout };
	char what[64], host[SK_HOST_STRLEN];
	sk_addr_t sa;
	int fd, err;

	sk_addr_set(&sa, o->host, o->port);
	fd = sk_socket(o->type, 0);
	if (fd < 0) {
		result_errno(r, SK_SOCKET_CALL, -fd);
		return -1;
	}
	if (o->connect_timeout && (err = sk_set_connect_timeout(fd, &tv)) < 0) {
		sk_close(fd);
		result_errno(r, SK_CONNECT_TIMEOUT_CALL, -err);
		return -1;
	}
	err = sk_connect(fd, &sa);
	if (err < 0) {
		sk_close(fd);
		sk_host_format(o->host, host);
		snprintf(what, sizeof(what), "connect %s:%u", host, o->port);
		result_errno(r, what, -err);
		return -1;
	}
	return fd;
}

/*
 * Binds o->port on every address (VMADDR_CID_ANY, or 0.0.0.0), listens,
 * prints VMF-READY; as vs_connect.
 */
static int
vs_listen(const struct opts *o, struct result *r)
{
	const char *what = SK_SOCKET_CALL;
	sk_addr_t sa;
	int fd, err;

	sk_addr_set(&sa, SK_HOST_ANY, o->port);
	fd = sk_socket(o->type, 1);
	if (fd < 0) {
		err = fd;
		goto fail;
	}
	what = "bind";
	if ((err = sk_bind(fd, &sa)) < 0)
		goto fail;
	what = "listen";
	if ((err = sk_listen(fd, BACKLOG)) < 0)
		goto fail;
	what = "getsockname";
	if ((err = sk_getsockname(fd, &sa)) < 0)
		goto fail;
	printf("VMF-READY %s port=%u\n", o->cmd->name, sk_addr_port(&sa));
	fflush(stdout);
	return fd;
fail:
	if (fd >= 0)
		sk_close(fd);
	result_errno(r, what, -err);
	return -1;
}

/* Accepts one connection into *PEER; the socket or -errno. */
static int
vs_accept(int lfd, sk_addr_t *peer)
{
	for (;;) {
		int fd = sk_accept(lfd, peer);
		if (fd != -EINTR || stop_signal)
			return fd;
	}
}

/* ---- send ------------------------------------------------------------------ */

struct xfer {
	uint64_t bytes; /* moved so far */
	uint64_t msgs;	/* messages (--seqpacket) or reads that returned data */
	struct vmf_sum sum;
	struct progress progress;
};

/* Message number SEQ of the --seqpacket stream, at stream offset OFF, into BUF. */
static uint32_t
seq_message(const struct opts *o, uint64_t seq, uint64_t off, unsigned char *buf)
{
	uint32_t size = seq_sizes[seq % SEQ_NSIZES];

	vmf_pattern_fill(o->seed, off, buf, size);
	if (size >= SEQ_HEADER) {
		uint64_t h = (uint64_t)size << 32 | (uint32_t)seq;
		vmf_le64_store(buf, h);
	}
	return size;
}

/* Sends the pattern (or the --seqpacket messages) until o->bytes; 0 or -errno. */
static int
send_data(const struct opts *o, int fd, unsigned char *buf, struct xfer *x)
{
	while (x->bytes < o->bytes) {
		uint64_t left = o->bytes - x->bytes;
		size_t n;
		int err;

		if (o->type == SOCK_SEQPACKET) {
			n = seq_message(o, x->msgs, x->bytes, buf);
		} else {
			n = left < o->chunk ? (size_t)left : o->chunk;
			vmf_pattern_fill(o->seed, x->bytes, buf, n);
		}
		err = send_all(fd, buf, n);
		if (err)
			return err;
		vmf_sum_update(&x->sum, buf, n);
		x->bytes += n;
		x->msgs++;
		progress_tick(&x->progress, x->bytes);
	}
	return 0;
}

/*
 * Reads what the peer sends after our shutdown, until its EOF: nothing, or
 * its 8-byte checksum. *GOT is the byte count; 0 or -errno.
 */
static int
send_wait_peer(int fd, unsigned char reply[8], size_t *got)
{
	unsigned char buf[64];

	*got = 0;
	for (;;) {
		ssize_t n = recv_some(fd, buf, sizeof(buf), NULL);
		if (n < 0)
			return (int)n;
		if (n == 0)
			return 0;
		for (ssize_t i = 0; i < n; i++, (*got)++)
			if (*got < 8)
				reply[*got] = buf[i];
	}
}

static int
cmd_send(struct opts *o, struct result *r)
{
	unsigned char reply[8];
	struct xfer x = { 0 };
	unsigned char *buf;
	uint64_t sum;
	double t0;
	size_t got = 0;
	int fd, err;

	result_add(r, "type=%s", type_name(o->type));
	buf = malloc(o->type == SOCK_SEQPACKET ? SEQ_MAX : o->chunk);
	if (!buf)
		return result_fail(r, "out of memory");
	fd = vs_connect(o, r);
	if (fd < 0) {
		free(buf);
		return 1;
	}
	vmf_sum_init(&x.sum);
	progress_init(&x.progress, "send", o->progress);
	t0 = now_s();
	err = send_data(o, fd, buf, &x);
	free(buf);
	if (!err)
		err = sk_shutdown(fd, SHUT_WR);
	if (!err)
		err = send_wait_peer(fd, reply, &got);
	result_throughput(r, x.bytes, now_s() - t0);
	sk_close(fd);
	sum = vmf_sum_final(&x.sum);
	result_add(r, "sum=0x%016llx", (unsigned long long)sum);
	if (o->type == SOCK_SEQPACKET)
		result_add(r, "msgs=%llu", (unsigned long long)x.msgs);
	if (err)
		return result_errno(r, x.bytes < o->bytes ? "send" : "waiting for the peer", -err);
	if (got == 8)
		result_add(r, "peer_sum=0x%016llx", (unsigned long long)vmf_le64_load(reply));
	if (got != 0 && got != 8)
		return result_fail(r, "peer sent %zu bytes back, expected 0 or 8", got);
	if (got == 8 && vmf_le64_load(reply) != sum)
		return result_fail(r, "the peer's checksum differs");
	return result_ok(r);
}

/* ---- recv ------------------------------------------------------------------ */

/* What recv found wrong; the first of each kind is kept. */
struct verdict {
	long long mismatch; /* stream offset of the first wrong byte, or -1 */
	long long bad_msg;  /* first message with a wrong size or header, or -1 */
	char why[128];	    /* about bad_msg */
};

static void
verdict_bad_msg(struct verdict *v, uint64_t seq, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
verdict_bad_msg(struct verdict *v, uint64_t seq, const char *fmt, ...)
{
	va_list ap;

	if (v->bad_msg >= 0)
		return;
	v->bad_msg = (long long)seq;
	va_start(ap, fmt);
	vsnprintf(v->why, sizeof(v->why), fmt, ap);
	va_end(ap);
}

/* Checks LEN bytes at stream offset OFF against the pattern. */
static void
check_pattern(const struct opts *o, struct verdict *v, uint64_t off, const unsigned char *p,
	      size_t len)
{
	size_t i;

	if (v->mismatch >= 0)
		return;
	i = vmf_pattern_find_diff(o->seed, off, p, len);
	if (i < len)
		v->mismatch = (long long)(off + i);
}

/* Checks one received --seqpacket message of N bytes (FLAGS from recvmsg). */
static void
check_message(const struct opts *o, struct verdict *v, const struct xfer *x,
	      const unsigned char *p, size_t n, int flags)
{
	uint32_t want = seq_sizes[x->msgs % SEQ_NSIZES];
	size_t body = 0;

	if (flags & MSG_TRUNC)
		verdict_bad_msg(v, x->msgs, "message %llu larger than %u bytes (truncated)",
				(unsigned long long)x->msgs, SEQ_MAX);
	else if (n != want)
		verdict_bad_msg(v, x->msgs, "message %llu has %zu bytes, expected %u",
				(unsigned long long)x->msgs, n, want);
	if (n >= SEQ_HEADER) {
		uint64_t h = vmf_le64_load(p);
		if ((uint32_t)h != (uint32_t)x->msgs || h >> 32 != n)
			verdict_bad_msg(v, x->msgs, "message %llu has header seq=%u len=%u",
					(unsigned long long)x->msgs, (uint32_t)h,
					(uint32_t)(h >> 32));
		body = SEQ_HEADER;
	}
	check_pattern(o, v, x->bytes + body, p + body, n - body);
}

/* Reads connection FD to EOF, checking everything; 0 or -errno. */
static int
recv_data(const struct opts *o, int fd, unsigned char *buf, size_t size, struct xfer *x,
	  struct verdict *v)
{
	for (;;) {
		int flags = 0;
		ssize_t n = recv_some(fd, buf, size, &flags);
		if (n <= 0)
			return (int)n;
		if (o->type == SOCK_SEQPACKET)
			check_message(o, v, x, buf, (size_t)n, flags);
		else
			check_pattern(o, v, x->bytes, buf, (size_t)n);
		vmf_sum_update(&x->sum, buf, (size_t)n);
		x->bytes += (uint64_t)n;
		x->msgs++;
		progress_tick(&x->progress, x->bytes);
	}
}

/* The recv result line, once the connection is done; REPLIED -1: not tried. */
static int
recv_report(struct result *r, const struct xfer *x, const struct verdict *v, double secs,
	    int replied, int err)
{
	result_throughput(r, x->bytes, secs);
	result_add(r, "sum=0x%016llx", (unsigned long long)vmf_sum_final(&x->sum));
	result_add(r, "mismatch=%lld", v->mismatch);
	result_add(r, "msgs=%llu", (unsigned long long)x->msgs);
	result_add(r, "bad_msg=%lld", v->bad_msg);
	if (replied >= 0)
		result_add(r, "replied=%d", replied);
	if (err)
		return result_errno(r, "recv", -err);
	if (v->bad_msg >= 0)
		return result_fail(r, "%s", v->why);
	if (v->mismatch >= 0)
		return result_fail(r, "data differs from the pattern at offset %lld", v->mismatch);
	return result_ok(r);
}

static int
cmd_recv(struct opts *o, struct result *r)
{
	struct verdict v = { .mismatch = -1, .bad_msg = -1 };
	size_t size = o->type == SOCK_SEQPACKET ? SEQ_MAX + 4096 : o->chunk;
	unsigned char reply[8];
	sk_addr_t peer;
	struct xfer x = { 0 };
	int lfd, fd, err, replied = -1;
	unsigned char *buf;
	double t0, secs;

	result_add(r, "type=%s", type_name(o->type));
	buf = malloc(size);
	if (!buf)
		return result_fail(r, "out of memory");
	lfd = vs_listen(o, r);
	if (lfd < 0) {
		free(buf);
		return 1;
	}
	fd = vs_accept(lfd, &peer);
	sk_close(lfd);
	if (fd < 0) {
		free(buf);
		return result_errno(r, "accept", -fd);
	}
	result_peer(r, &peer);
	vmf_sum_init(&x.sum);
	progress_init(&x.progress, "recv", o->progress);
	t0 = now_s();
	err = recv_data(o, fd, buf, size, &x, &v);
	secs = now_s() - t0;
	free(buf);
	if (!err) {
		/*
		 * A sender that only shut down writing waits for our checksum;
		 * one that closed cannot take it, which says nothing of the data.
		 */
		vmf_le64_store(reply, vmf_sum_final(&x.sum));
		replied = send_all(fd, reply, sizeof(reply)) == 0;
	}
	sk_close(fd);
	return recv_report(r, &x, &v, secs, replied, err);
}

/* ---- echo ------------------------------------------------------------------ */

/* Re-arms the idle timeout, at most once a second. */
static void
echo_alive(double *last)
{
	double t;

	if (!alarm_seconds)
		return;
	t = now_s();
	if (t - *last >= 1) {
		*last = t;
		alarm(alarm_seconds);
	}
}

/* Sends back everything FD sends until its EOF; bytes echoed or -errno. */
static int
echo_conn(int fd, unsigned char *buf, size_t size, uint64_t *bytes)
{
	double last = 0;

	for (;;) {
		ssize_t n = recv_some(fd, buf, size, NULL);
		int err;

		if (n <= 0)
			return (int)n;
		err = send_all(fd, buf, (size_t)n);
		if (err)
			return err;
		*bytes += (uint64_t)n;
		echo_alive(&last);
	}
}

static int
cmd_echo(struct opts *o, struct result *r)
{
	size_t size = o->type == SOCK_SEQPACKET ? SEQ_MAX + 4096 : o->chunk;
	sk_addr_t peer;
	uint64_t bytes = 0;
	long long conns = 0;
	unsigned char *buf;
	int lfd, fd, err = 0;
	const char *what = "accept";

	result_add(r, "type=%s", type_name(o->type));
	buf = malloc(size);
	if (!buf)
		return result_fail(r, "out of memory");
	lfd = vs_listen(o, r);
	if (lfd < 0) {
		free(buf);
		return 1;
	}
	while (o->count < 0 || conns < o->count) {
		fd = vs_accept(lfd, &peer);
		if (fd < 0) {
			err = fd;
			break;
		}
		/* The peer is usually rr: its round trips must not wait for Nagle. */
		err = sk_nodelay(fd);
		if (err) {
			sk_close(fd);
			what = "setsockopt(TCP_NODELAY)";
			break;
		}
		if (alarm_seconds)
			alarm(alarm_seconds);
		err = echo_conn(fd, buf, size, &bytes);
		sk_close(fd);
		conns++;
		if (alarm_seconds && !stop_signal)
			alarm(alarm_seconds);
		/* A peer that resets its connection does not end the server. */
		if (err && err != -ECONNRESET) {
			what = "echo";
			break;
		}
		err = 0;
	}
	sk_close(lfd);
	free(buf);
	result_add(r, "conns=%lld", conns);
	result_add(r, "bytes=%llu", (unsigned long long)bytes);
	if (err) {
		if (stop_signal == SIGALRM)
			return result_fail(r, "%s: nothing happened for %u s (--timeout)", what,
					   alarm_seconds);
		return result_errno(r, what, -err);
	}
	return result_ok(r);
}

/* ---- rr -------------------------------------------------------------------- */

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* Reads exactly LEN bytes (stream) or one message of LEN bytes; 0 or -errno. */
static int
rr_read(const struct opts *o, int fd, unsigned char *buf, size_t len)
{
	int seqpacket = o->type == SOCK_SEQPACKET;
	size_t got = 0;

	while (got < len) {
		int flags = 0;
		ssize_t n = recv_some(fd, buf + got, seqpacket ? len + 1 : len - got, &flags);
		if (n < 0)
			return (int)n;
		if (n == 0)
			return -ECONNRESET; /* EOF in the middle of a round trip */
		if (seqpacket && ((size_t)n != len || (flags & MSG_TRUNC)))
			return -EMSGSIZE;
		got += (size_t)n;
	}
	return 0;
}

/* The nearest-rank percentile P of the sorted LAT[N], in microseconds. */
static double
percentile_us(const uint64_t *lat, long long n, unsigned p)
{
	long long rank = (n * p + 99) / 100;

	return (double)lat[rank > 0 ? rank - 1 : 0] / 1e3;
}

static void
rr_report(struct result *r, uint64_t *lat, long long n, double secs)
{
	uint64_t total = 0;

	qsort(lat, (size_t)n, sizeof(*lat), cmp_u64);
	for (long long i = 0; i < n; i++)
		total += lat[i];
	result_add(r, "secs=%.3f", secs);
	result_add(r, "mean_us=%.2f", (double)total / (double)n / 1e3);
	result_add(r, "p50_us=%.2f", percentile_us(lat, n, 50));
	result_add(r, "p99_us=%.2f", percentile_us(lat, n, 99));
	result_add(r, "min_us=%.2f", (double)lat[0] / 1e3);
	result_add(r, "max_us=%.2f", (double)lat[n - 1] / 1e3);
}

/* The round trips; the number done in *DONE; 0, -errno or -EBADMSG. */
static int
rr_loop(const struct opts *o, int fd, unsigned char *out, unsigned char *in, uint64_t *lat,
	long long *done)
{
	for (*done = 0; *done < o->count; (*done)++) {
		uint64_t t0 = now_ns();
		int err;

		if (o->size >= 8) /* every round trip carries other bytes */
			vmf_le64_store(out, (uint64_t)*done);
		err = send_all(fd, out, o->size);
		if (!err)
			err = rr_read(o, fd, in, o->size);
		if (err)
			return err;
		lat[*done] = now_ns() - t0;
		if (memcmp(in, out, o->size) != 0)
			return -EBADMSG;
	}
	return 0;
}

/* Connects and runs the round trips with buffers OUT, IN and LAT; as cmd_rr. */
static int
rr_run(const struct opts *o, struct result *r, unsigned char *out, unsigned char *in,
       uint64_t *lat)
{
	long long done = 0;
	int fd, err;
	double t0;

	fd = vs_connect(o, r);
	if (fd < 0)
		return 1;
	err = sk_nodelay(fd);
	if (err) {
		sk_close(fd);
		return result_errno(r, "setsockopt(TCP_NODELAY)", -err);
	}
	vmf_pattern_fill(o->seed, 0, out, o->size);
	t0 = now_s();
	err = rr_loop(o, fd, out, in, lat, &done);
	sk_close(fd);
	result_add(r, "count=%lld", done);
	if (!err && done > 0)
		rr_report(r, lat, done, now_s() - t0);
	if (err == -EBADMSG)
		return result_fail(r, "round trip %lld came back with other bytes", done);
	if (err == -EMSGSIZE)
		return result_fail(r, "round trip %lld came back as a message of another size",
				   done);
	if (err)
		return result_errno(r, "round trip", -err);
	return result_ok(r);
}

static int
cmd_rr(struct opts *o, struct result *r)
{
	unsigned char *out, *in;
	uint64_t *lat;
	int ret;

	result_add(r, "type=%s", type_name(o->type));
	result_add(r, "size=%zu", o->size);
	out = malloc(o->size);
	in = malloc(o->size + 1); /* + 1: a longer message shows as one */
	lat = malloc((size_t)o->count * sizeof(*lat));
	if (out && in && lat)
		ret = rr_run(o, r, out, in, lat);
	else
		ret = result_fail(r, "out of memory");
	free(out);
	free(in);
	free(lat);
	return ret;
}

#ifdef VMF_INET

/* ---- addr ------------------------------------------------------------------ */

/* addrs=IF:ADDR,...: every IPv4 address of every interface that is up. */
static int
cmd_addr(struct opts *o, struct result *r)
{
	char list[512], host[SK_HOST_STRLEN];
	struct ifaddrs *all, *i;
	size_t len = 0;

	(void)o;
	if (getifaddrs(&all) < 0)
		return result_errno(r, "getifaddrs", errno);
	list[0] = '\0';
	for (i = all; i; i = i->ifa_next) {
		int n;

		if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !(i->ifa_flags & IFF_UP))
			continue;
		sk_host_format(sk_addr_host((const sk_addr_t *)i->ifa_addr), host);
		n = snprintf(list + len, sizeof(list) - len, "%s%s:%s", len ? "," : "",
			     i->ifa_name, host);
		if (n < 0 || (size_t)n >= sizeof(list) - len) {
			list[len] = '\0'; /* the ones that fit */
			break;
		}
		len += (size_t)n;
	}
	freeifaddrs(all);
	if (!len)
		return result_fail(r, "no interface that is up has an IPv4 address");
	result_add(r, "addrs=%s", list);
	return result_ok(r);
}

#else /* vsock */

/* ---- cid ------------------------------------------------------------------- */

static int
cmd_cid(struct opts *o, struct result *r)
{
	uint32_t cid = VMADDR_CID_ANY;
	const char *what = "";
	int err;

	(void)o;
	err = sk_local_cid(&cid, &what);
	if (err < 0)
		return result_errno(r, what, -err);
	if (cid == VMADDR_CID_ANY)
		return result_fail(r, "no vsock transport has a CID (no virtio-vsock device?)");
	result_add(r, "cid=%u", cid);
	return result_ok(r);
}

#endif /* VMF_INET */

/* ---- the command line ------------------------------------------------------ */

static const struct command commands[] = {
	{ "send", cmd_send, SK_HOST_ARG " PORT BYTES",
	  OPT_SEED | OPT_CHUNK | OPT_SEQPACKET | OPT_CONNECT_TIMEOUT },
	{ "recv", cmd_recv, "PORT", OPT_SEED | OPT_CHUNK | OPT_SEQPACKET | OPT_ONCE },
	{ "echo", cmd_echo, "PORT", OPT_COUNT | OPT_CHUNK | OPT_SEQPACKET },
	{ "rr", cmd_rr, SK_HOST_ARG " PORT",
	  OPT_SEED | OPT_SIZE | OPT_COUNT | OPT_SEQPACKET | OPT_CONNECT_TIMEOUT },
#ifdef VMF_INET
	{ "addr", cmd_addr, "", 0 },
#else
	{ "cid", cmd_cid, "", 0 },
#endif
};
#define COMMON_OPTIONS (OPT_TIMEOUT | OPT_PROGRESS)

/* A number with an optional K, M or G (binary) suffix; 0 or -1. */
static int
parse_size(const char *s, uint64_t max, uint64_t *out)
{
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno)
		return -1;
	if (*end && strchr("kK", *end))
		shift = 10;
	else if (*end && strchr("mM", *end))
		shift = 20;
	else if (*end && strchr("gG", *end))
		shift = 30;
	if (shift)
		end++;
	if (*end || v > (max >> shift))
		return -1;
	*out = (uint64_t)v << shift;
	return 0;
}

/* PORT: a number or "any"; 0 or -1. */
static int
parse_port(const char *s, uint32_t *out)
{
	if (strcmp(s, "any") == 0) {
		*out = SK_PORT_ANY;
		return 0;
	}
	return sk_parse_u32(s, SK_PORT_MAX, out);
}

static int usage_error(struct result *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* A usage error: said on stderr and in the result line; returns 2. */
static int
usage_error(struct result *r, const char *fmt, ...)
{
	char msg[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, VMF_PROG ": %s (" VMF_PROG " --help)\n", msg);
	result_fail(r, "usage: %s", msg);
	return 2;
}

/* The largest value of each option that takes one (the smallest is 1, or 0). */
static uint64_t
option_max(unsigned bit)
{
	switch (bit) {
	case OPT_SEED:
		return UINT32_MAX;
	case OPT_CHUNK:
	case OPT_SIZE:
		return CHUNK_MAX;
	case OPT_TIMEOUT:
	case OPT_CONNECT_TIMEOUT:
		return 86400u * 365;
	default:
		return INT64_MAX;
	}
}

/* Option BIT with VALUE (NULL for a flag) into O; 0, or -1 if VALUE is bad. */
static int
set_option(struct opts *o, unsigned bit, const char *value)
{
	int zero_ok = bit == OPT_SEED || bit == OPT_TIMEOUT || bit == OPT_CONNECT_TIMEOUT;
	uint64_t v = 0;

	if (value && (parse_size(value, option_max(bit), &v) < 0 || (v == 0 && !zero_ok)))
		return -1;
	if (bit == OPT_SEED)
		o->seed = (uint32_t)v;
	else if (bit == OPT_CHUNK)
		o->chunk = (size_t)v;
	else if (bit == OPT_SEQPACKET)
		o->type = SOCK_SEQPACKET;
	else if (bit == OPT_COUNT)
		o->count = (long long)v;
	else if (bit == OPT_SIZE)
		o->size = (size_t)v;
	else if (bit == OPT_TIMEOUT)
		o->timeout = (unsigned)v;
	else if (bit == OPT_CONNECT_TIMEOUT)
		o->connect_timeout = (unsigned)v;
	else if (bit == OPT_PROGRESS)
		o->progress = 1;
	return 0; /* OPT_ONCE: recv serves one connection anyway */
}

/* "--name", "--name=value" or "--name value" at ARGV[*I]; 0 or a usage error. */
static int
parse_option(struct opts *o, struct result *r, char **argv, int argc, int *i)
{
	const char *arg = argv[*i] + 2, *eq = strchr(arg, '='), *value = NULL;
	size_t len = eq ? (size_t)(eq - arg) : strlen(arg);

	for (size_t k = 0; k < sizeof(option_names) / sizeof(option_names[0]); k++) {
		unsigned bit = option_names[k].bit;
		if (strlen(option_names[k].name) != len || strncmp(option_names[k].name, arg, len))
			continue;
#ifdef VMF_INET
		if (bit == OPT_SEQPACKET)
			return usage_error(r, "--seqpacket: TCP has no SOCK_SEQPACKET");
#endif
		if (!((o->cmd->options | COMMON_OPTIONS) & bit))
			return usage_error(r, "%s does not take --%s", o->cmd->name,
					   option_names[k].name);
		if (option_names[k].takes_value) {
			value = eq ? eq + 1 : (*i + 1 < argc ? argv[++*i] : NULL);
			if (!value)
				return usage_error(r, "--%s needs a value", option_names[k].name);
		} else if (eq) {
			return usage_error(r, "--%s takes no value", option_names[k].name);
		}
		if (set_option(o, bit, value) < 0)
			return usage_error(r, "bad value for --%s: %s", option_names[k].name,
					   value);
		return 0;
	}
	return usage_error(r, "unknown option %s", argv[*i]);
}

/* The positional argument NAME (SK_HOST_ARG, "PORT" or "BYTES") into O. */
static int
set_positional(struct opts *o, struct result *r, const char *name, const char *arg)
{
	if (strcmp(name, SK_HOST_ARG) == 0 && sk_host_parse(arg, &o->host) == 0)
		return 0;
	if (strcmp(name, "PORT") == 0 && parse_port(arg, &o->port) == 0)
		return 0;
	if (strcmp(name, "BYTES") == 0 && parse_size(arg, UINT64_MAX >> 1, &o->bytes) == 0)
		return 0;
	return usage_error(r, "bad %s: %s", name, arg);
}

/* Everything after the command name; 0 or 2 (usage error, line printed). */
static int
parse_args(struct opts *o, struct result *r, int argc, char **argv)
{
	char names[64], *save = NULL, *name;
	int err;

	snprintf(names, sizeof(names), "%s", o->cmd->args);
	name = strtok_r(names, " ", &save);
	for (int i = 0; i < argc; i++) {
		if (strncmp(argv[i], "--", 2) == 0 && argv[i][2]) {
			err = parse_option(o, r, argv, argc, &i);
		} else if (name) {
			err = set_positional(o, r, name, argv[i]);
			name = strtok_r(NULL, " ", &save);
		} else {
			err = usage_error(r, "unexpected argument %s", argv[i]);
		}
		if (err)
			return err;
	}
	if (name)
		return usage_error(r, "%s needs %s", o->cmd->name, o->cmd->args);
	if (strcmp(o->cmd->name, "rr") == 0 && o->count < 0)
		o->count = RR_COUNT_DEFAULT;
	if (strcmp(o->cmd->name, "rr") == 0 && o->count > RR_COUNT_MAX)
		return usage_error(r, "rr: at most %d round trips", RR_COUNT_MAX);
	if (strcmp(o->cmd->name, "rr") == 0 && o->type == SOCK_SEQPACKET && o->size > SEQ_MAX)
		return usage_error(r, "rr --seqpacket: --size at most %u", SEQ_MAX);
	return 0;
}

static int
wants_help(const char *arg)
{
	return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0 || strcmp(arg, "help") == 0;
}

int
main(int argc, char **argv)
{
	struct opts o = {
		.type = SOCK_STREAM, .chunk = CHUNK_DEFAULT, .count = -1, .size = RR_SIZE_DEFAULT,
		.timeout = TIMEOUT_DEFAULT, .connect_timeout = CONNECT_TIMEOUT_DEFAULT,
	};
	struct result r = { .len = 0 };
	int err;

	/* Lines reach the serial console (or a pipe) as they are printed. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	for (int i = 1; i < argc; i++) {
		if (wants_help(argv[i])) {
			fputs(usage_text, stdout);
			return 0;
		}
	}
	if (argc < 2) {
		fputs(usage_text, stderr);
		return usage_error(&r, "no command");
	}
	for (size_t k = 0; k < sizeof(commands) / sizeof(commands[0]); k++)
		if (strcmp(argv[1], commands[k].name) == 0)
			o.cmd = &commands[k];
	if (!o.cmd)
		return usage_error(&r, "unknown command %s", argv[1]);
	result_add(&r, "op=%s", o.cmd->name);
	err = parse_args(&o, &r, argc - 2, argv + 2);
	if (err)
		return err;
	timer_start(o.timeout);
	return o.cmd->run(&o, &r);
}
