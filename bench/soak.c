/* SPDX-License-Identifier: MIT */
/*
 * make soak: everything at once on one private vmfabricd, for minutes, with
 * every byte checked and the daemon's resources watched.
 *
 * Four workloads, each a pair of processes in two contexts (a and b), run
 * until the end, each in rounds that set up and tear down what they use so
 * that the daemon's setup paths are soaked as much as its data paths:
 *   stream  a connects to b's listener, sends 1..32 MiB of 64-bit words
 *           counting up from a per-connection seed, closes; b checks them.
 *   dgram   a sends datagrams of 64..8192 bytes, each a sequence number and
 *           a pattern derived from it; b checks each and counts the gaps
 *           (datagrams the router dropped because b's ring stayed full).
 *   switch  two vNICs on "VM Network"; a sends full-size frames to b's MAC
 *           with a sequence number and a pattern; b checks them. Every
 *           200,000 frames both close their vNICs and open new ones.
 *   rdma    b opens vmrdma0, registers 8 MiB and accepts a connection; a
 *           connects, RDMA-WRITEs a pattern for the round, READs it back and
 *           checks it; both tear everything down; next round.
 * Every --interval seconds a line: throughput of each, and the daemon's open
 * descriptors, heap bytes and resident memory (system.status). At the end
 * the workloads stop and the daemon's descriptors and heap are compared with
 * what they were before any started: a leak shows as a difference.
 *
 * Results: one JSON line per interval and per total (--out FILE appends), a
 * human table, and the checks as targets (bytes corrupted 0, descriptors
 * leaked 0, heap within 1 MiB of the start).
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "vmfabric/vmci.h"
#include "vmfabric/vnic.h"
#include "vmfabric/vrdma.h"
#include "../tools/vend.h"

#define STREAM_PORT 5000
#define DGRAM_PORT  6000
#define RDMA_PORT   18515
#define RDMA_LEN    (8u << 20)
#define FRAME_LEN   1514
#define ETH_SOAK    0x88b5 /* IEEE local experimental ethertype */
#define NWORK	    4

enum { W_STREAM, W_DGRAM, W_SWITCH, W_RDMA };
static const char *const wname[NWORK] = { "stream", "dgram", "switch", "rdma" };

/* Shared by every process of the run (MAP_SHARED). */
struct stats {
	_Atomic uint64_t bytes[NWORK];	   /* checked at the receiving end */
	_Atomic uint64_t units[NWORK];	   /* connections, datagrams, frames, rounds */
	_Atomic uint64_t bad[NWORK];	   /* corrupted: wrong bytes received */
	_Atomic uint64_t dropped[NWORK];   /* datagrams or frames never seen (by design) */
	_Atomic uint64_t errors[NWORK];	   /* calls that failed */
	_Atomic uint64_t cycles[NWORK];	   /* setups and teardowns */
	_Atomic int stop;
	uint32_t cid_b;
	uint8_t mac_b[6];
	_Atomic int mac_ready;
};

static struct stats *st;

static void
fail(int w, const char *what, long err)
{
	atomic_fetch_add(&st->errors[w], 1);
	if (atomic_load(&st->errors[w]) <= 5)
		fprintf(stderr, "soak: %s: %s: %s\n", wname[w], what, strerror((int)-err));
	usleep(10000);
}

static uint64_t
rng(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* ---------------------------------------------------------------------- */
/* stream */

static void
stream_b(void)
{
	static uint64_t buf[8192];
	int l = vmci_socket(SOCK_STREAM);
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
				 .svm_port = STREAM_PORT };

	if (l < 0 || vmci_bind(l, &a) < 0 || vmci_listen(l, 16) < 0) {
		fail(W_STREAM, "listen", l < 0 ? l : -EADDRINUSE);
		return;
	}
	while (!atomic_load(&st->stop)) {
		uint64_t next = 0;
		size_t carry = 0;
		bool seeded = false;
		int c = vmci_accept(l, NULL, 0);

		if (c < 0) {
			fail(W_STREAM, "accept", c);
			continue;
		}
		for (;;) {
			ssize_t n = vmci_recv(c, (char *)buf + carry, sizeof(buf) - carry, 0);
			size_t words;

			if (n <= 0) {
				if (n < 0)
					fail(W_STREAM, "recv", n);
				break;
			}
			n += (ssize_t)carry;
			words = (size_t)n / 8;
			for (size_t i = 0; i < words; i++) {
				if (!seeded)
					next = buf[i], seeded = true;
				if (buf[i] != next++)
					atomic_fetch_add(&st->bad[W_STREAM], 8);
			}
			carry = (size_t)n % 8;
			memmove(buf, (char *)buf + words * 8, carry);
			atomic_fetch_add(&st->bytes[W_STREAM], words * 8);
		}
		if (carry) /* the sender sends whole words */
			atomic_fetch_add(&st->bad[W_STREAM], carry);
		vmci_close(c);
		atomic_fetch_add(&st->units[W_STREAM], 1);
	}
	vmci_close(l);
}

static void
stream_a(void)
{
	static uint64_t buf[8192];
	uint64_t seed = 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
	struct sockaddr_vm to = { .svm_family = AF_VSOCK, .svm_port = STREAM_PORT };

	to.svm_cid = st->cid_b;
	while (!atomic_load(&st->stop)) {
		uint64_t word = rng(&seed), left = (1 + rng(&seed) % 32) << 20;
		int s = vmci_socket(SOCK_STREAM), err;

		if (s < 0 || (err = vmci_connect(s, &to)) < 0) {
			fail(W_STREAM, "connect", s < 0 ? s : err);
			if (s >= 0)
				vmci_close(s);
			continue;
		}
		atomic_fetch_add(&st->cycles[W_STREAM], 1);
		while (left && !atomic_load(&st->stop)) {
			size_t n = left < sizeof(buf) ? (size_t)left : sizeof(buf);
			ssize_t w;

			for (size_t i = 0; i < n / 8; i++)
				buf[i] = word++;
			for (size_t off = 0; off < n; off += (size_t)w)
				if ((w = vmci_send(s, (char *)buf + off, n - off, 0)) < 0) {
					fail(W_STREAM, "send", w);
					left = n; /* end this connection */
					break;
				}
			left -= n;
		}
		vmci_close(s);
	}
}

/* ---------------------------------------------------------------------- */
/* datagrams */

static void
fill(uint8_t *p, size_t len, uint64_t seq)
{
	for (size_t i = 8; i < len; i++)
		p[i] = (uint8_t)(seq * 131 + i * 7);
	memcpy(p, &seq, 8);
}

static bool
check_fill(const uint8_t *p, size_t len, uint64_t *seq)
{
	memcpy(seq, p, 8);
	for (size_t i = 8; i < len; i++)
		if (p[i] != (uint8_t)(*seq * 131 + i * 7))
			return false;
	return true;
}

static void
dgram_b(void)
{
	static uint8_t buf[8192];
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
				 .svm_port = DGRAM_PORT };
	int s = vmci_socket(SOCK_DGRAM | SOCK_NONBLOCK);
	uint64_t expect = 0;

	if (s < 0 || vmci_bind(s, &a) < 0) {
		fail(W_DGRAM, "bind", s < 0 ? s : -EADDRINUSE);
		return;
	}
	while (!atomic_load(&st->stop)) {
		ssize_t n = vmci_recvfrom(s, buf, sizeof(buf), 0, NULL);
		uint64_t seq;

		if (n == -EAGAIN) {
			usleep(100);
			continue;
		}
		if (n < 8) {
			fail(W_DGRAM, "recvfrom", n < 0 ? n : -EBADMSG);
			continue;
		}
		if (!check_fill(buf, (size_t)n, &seq) || seq < expect) {
			atomic_fetch_add(&st->bad[W_DGRAM], (uint64_t)n);
			continue;
		}
		atomic_fetch_add(&st->dropped[W_DGRAM], seq - expect);
		expect = seq + 1;
		atomic_fetch_add(&st->bytes[W_DGRAM], (uint64_t)n);
		atomic_fetch_add(&st->units[W_DGRAM], 1);
	}
	vmci_close(s);
}

static void
dgram_a(void)
{
	static uint8_t buf[8192];
	struct sockaddr_vm to = { .svm_family = AF_VSOCK, .svm_port = DGRAM_PORT };
	uint64_t seed = 88172645463325252ull, seq = 0;
	int s = vmci_socket(SOCK_DGRAM);

	to.svm_cid = st->cid_b;
	if (s < 0) {
		fail(W_DGRAM, "socket", s);
		return;
	}
	atomic_fetch_add(&st->cycles[W_DGRAM], 1);
	while (!atomic_load(&st->stop)) {
		size_t len = 64 + rng(&seed) % (sizeof(buf) - 64);
		ssize_t n;

		fill(buf, len, seq);
		if ((n = vmci_sendto(s, buf, len, 0, &to)) < 0) {
			fail(W_DGRAM, "sendto", n);
			continue;
		}
		seq++;
	}
	vmci_close(s);
}

/* ---------------------------------------------------------------------- */
/* switch */

#define SWITCH_ROUND 200000

static void
switch_b(void)
{
	static uint8_t buf[2048];
	uint64_t expect = 0;

	while (!atomic_load(&st->stop)) {
		struct vmf_vnic *n;
		int err = vmf_vnic_open("VM Network", NULL, &n);
		uint64_t seen = 0;

		if (err) {
			fail(W_SWITCH, "vnic open (b)", err);
			continue;
		}
		atomic_fetch_add(&st->cycles[W_SWITCH], 1);
		vmf_vnic_mac(n, st->mac_b);
		atomic_store(&st->mac_ready, 1);
		while (seen < SWITCH_ROUND && !atomic_load(&st->stop)) {
			ssize_t len = vmf_vnic_recv(n, buf, sizeof(buf), MSG_DONTWAIT);
			uint64_t seq;

			if (len == -EAGAIN) {
				usleep(50);
				continue;
			}
			if (len < 0) {
				fail(W_SWITCH, "recv", len);
				break;
			}
			/* Only the soak's own frames: the switch floods others too. */
			if (len < 22 || buf[12] != ETH_SOAK >> 8 || buf[13] != (ETH_SOAK & 0xff))
				continue;
			if (!check_fill(buf + 14, (size_t)len - 14, &seq)) {
				atomic_fetch_add(&st->bad[W_SWITCH], (uint64_t)len);
				continue;
			}
			if (seq >= expect)
				atomic_fetch_add(&st->dropped[W_SWITCH], seq - expect);
			expect = seq + 1;
			seen++;
			atomic_fetch_add(&st->bytes[W_SWITCH], (uint64_t)len);
			atomic_fetch_add(&st->units[W_SWITCH], 1);
		}
		atomic_store(&st->mac_ready, 0);
		vmf_vnic_close(n);
	}
}

static void
switch_a(void)
{
	static uint8_t frame[FRAME_LEN];
	uint64_t seq = 0;

	while (!atomic_load(&st->stop)) {
		struct vmf_vnic *n;
		int err = vmf_vnic_open("VM Network", NULL, &n);

		if (err) {
			fail(W_SWITCH, "vnic open (a)", err);
			continue;
		}
		vmf_vnic_mac(n, frame + 6);
		for (uint64_t i = 0; i < SWITCH_ROUND && !atomic_load(&st->stop); i++) {
			ssize_t w;

			while (!atomic_load(&st->mac_ready) && !atomic_load(&st->stop))
				usleep(1000);
			memcpy(frame, st->mac_b, 6);
			frame[12] = ETH_SOAK >> 8, frame[13] = ETH_SOAK & 0xff;
			fill(frame + 14, sizeof(frame) - 14, seq);
			w = vmf_vnic_send(n, frame, sizeof(frame), MSG_DONTWAIT);
			if (w == -EAGAIN || w == -ENOBUFS) {
				usleep(20);
				continue;
			}
			if (w < 0) {
				fail(W_SWITCH, "send", w);
				break;
			}
			seq++;
		}
		vmf_vnic_close(n);
	}
}

/* ---------------------------------------------------------------------- */
/* rdma */

struct remote {
	uint64_t addr;
	uint32_t rkey, round;
};

/* This round's end: the buffer readable and writable by the peer. */
static int
rside_open(struct vend *s)
{
	const char *what;

	return vend_open(s, RDMA_LEN,
			 VRDMA_ACCESS_LOCAL_WRITE | VRDMA_ACCESS_REMOTE_WRITE |
				 VRDMA_ACCESS_REMOTE_READ,
			 &what);
}

/* b: one round per connection; a's byte on @done ends the round. */
static void
rdma_b(int done)
{
	while (!atomic_load(&st->stop)) {
		struct vend s;
		struct vrdma_listener *l = NULL;
		struct vrdma_conn_req req;
		struct remote r;
		struct vrdma_conn_param p = { .private_data = &r, .private_data_len = sizeof(r) };
		int err;
		char c;

		if ((err = rside_open(&s)) || (err = vrdma_listen(s.ctx, RDMA_PORT, &l))) {
			fail(W_RDMA, "open/listen (b)", err);
			vend_close(&s);
			continue;
		}
		err = vrdma_get_request(l, &req, 1000);
		r = (struct remote){ (uintptr_t)s.buf, s.mr->rkey, 0 };
		if (!err && (err = vrdma_accept(l, &req, s.qp, &p)) == 0) {
			if (read(done, &c, 1) != 1)
				atomic_store(&st->stop, 1);
		} else if (err != -ETIMEDOUT)
			fail(W_RDMA, "accept", err);
		vrdma_listener_close(l);
		vend_close(&s);
		atomic_fetch_add(&st->cycles[W_RDMA], 1);
	}
}

static int
rdma_wait(struct vend *s)
{
	struct vrdma_wc wc;
	int n;

	while (!(n = vrdma_poll_cq(s->cq, 1, &wc)))
		;
	return n < 0 ? n : wc.status == VRDMA_WC_SUCCESS ? 0 : -EIO;
}

static int
rdma_move(struct vend *s, const struct remote *r, enum vrdma_wr_opcode op)
{
	const uint32_t chunk = 1u << 20;

	for (uint32_t off = 0; off < RDMA_LEN; off += chunk) {
		struct vrdma_sge sge = { (uintptr_t)s->buf + off, chunk, s->mr->lkey };
		struct vrdma_send_wr wr = { .sg_list = &sge, .num_sge = 1, .opcode = op,
					    .send_flags = VRDMA_SEND_SIGNALED };
		struct vrdma_send_wr *bad;
		int err;

		wr.wr.rdma.remote_addr = r->addr + off;
		wr.wr.rdma.rkey = r->rkey;
		if ((err = vrdma_post_send(s->qp, &wr, &bad)) || (err = rdma_wait(s)))
			return err;
	}
	return 0;
}

static void
rdma_a(int done)
{
	for (uint32_t round = 0; !atomic_load(&st->stop); round++) {
		struct vend s;
		struct remote r;
		int err;

		if ((err = rside_open(&s)) ||
		    (err = vrdma_connect(s.qp, st->cid_b, RDMA_PORT, NULL, &r, 2000))) {
			if (err != -ECONNREFUSED)
				fail(W_RDMA, "connect", err);
			vend_close(&s);
			usleep(2000);
			continue;
		}
		for (uint32_t i = 0; i < RDMA_LEN; i++)
			s.buf[i] = (uint8_t)(i * 31 + round);
		err = rdma_move(&s, &r, VRDMA_WR_RDMA_WRITE);
		if (!err) {
			memset(s.buf, 0, RDMA_LEN);
			err = rdma_move(&s, &r, VRDMA_WR_RDMA_READ);
		}
		if (err)
			fail(W_RDMA, "write/read", err);
		else {
			uint64_t wrong = 0;

			for (uint32_t i = 0; i < RDMA_LEN; i++)
				wrong += s.buf[i] != (uint8_t)(i * 31 + round);
			atomic_fetch_add(&st->bad[W_RDMA], wrong);
			atomic_fetch_add(&st->bytes[W_RDMA], 2ull * RDMA_LEN);
			atomic_fetch_add(&st->units[W_RDMA], 1);
		}
		vend_close(&s);
		if (write(done, "x", 1) != 1)
			break;
	}
}

/* ---------------------------------------------------------------------- */

static void (*const receivers[NWORK])(void) = { stream_b, dgram_b, switch_b, NULL };
static void (*const senders[NWORK])(void) = { stream_a, dgram_a, switch_a, NULL };

struct daemon_view {
	long long fds, heap, rss;
};

/* The daemon's own account of itself, through the CLI. */
static int
daemon_view(struct daemon_view *v)
{
	char cmd[256], out[8192];
	json_error_t e;
	json_t *doc;
	FILE *p;
	size_t n;
	int err;

	snprintf(cmd, sizeof(cmd), "%s --format=json system status", VMFABRIC_CLI_PATH);
	if (!(p = popen(cmd, "r")))
		return -errno;
	n = fread(out, 1, sizeof(out) - 1, p);
	pclose(p);
	out[n] = 0;
	if (!(doc = json_loads(out, 0, &e)))
		return -EBADMSG;
	err = json_unpack(doc, "{s:I, s:I, s:I}", "fds", &v->fds, "heap_bytes", &v->heap,
			  "rss_kib", &v->rss)
		      ? -EBADMSG
		      : 0;
	json_decref(doc);
	return err;
}

static pid_t
spawn(const char *context, void (*fn)(void), void (*fn_fd)(int), int fd)
{
	pid_t pid = fork();

	if (pid == 0) {
		signal(SIGTERM, SIG_DFL);
		if (vmci_set_context(context) < 0)
			_exit(1);
		if (fn)
			fn();
		else
			fn_fd(fd);
		_exit(0);
	}
	return pid;
}

static void
emit_interval(double t, const uint64_t *bytes, const uint64_t *units, double dt,
	      const struct daemon_view *v, FILE *out)
{
	char line[1024];
	int k = snprintf(line, sizeof(line), "{\"bench\":\"soak\",\"t_s\":%.0f", t);

	for (int w = 0; w < NWORK; w++)
		k += snprintf(line + k, sizeof(line) - (size_t)k,
			      ",\"%s_gbit_s\":%.3f,\"%s_per_s\":%.0f", wname[w],
			      (double)bytes[w] * 8 / dt / 1e9, wname[w], (double)units[w] / dt);
	snprintf(line + k, sizeof(line) - (size_t)k,
		 ",\"daemon_fds\":%lld,\"daemon_heap_bytes\":%lld,\"daemon_rss_kib\":%lld}", v->fds,
		 v->heap, v->rss);
	puts(line);
	if (out)
		fprintf(out, "%s\n", line);
	fprintf(stderr, "%6.0f s  stream %6.2f Gbit/s  dgram %8.0f/s  switch %8.0f frames/s  "
			"rdma %6.2f Gbit/s  | daemon fds %lld heap %lld KiB rss %lld KiB\n",
		t, (double)bytes[W_STREAM] * 8 / dt / 1e9, (double)units[W_DGRAM] / dt,
		(double)units[W_SWITCH] / dt, (double)bytes[W_RDMA] * 8 / dt / 1e9, v->fds,
		v->heap >> 10, v->rss);
}

int
main(int argc, char **argv)
{
	static const char usage[] =
		"usage: vmf-soak [--seconds N] [--interval S] [--only W,...] [--out FILE]\n"
		"Streams, datagrams, switch traffic and RDMA at once on a private vmfabricd\n"
		"for N seconds (default 300), every byte checked; a line every S seconds\n"
		"(default 10) with throughput and the daemon's descriptors and memory; at\n"
		"the end, what the daemon kept that it had not before (leaks). --only runs\n"
		"some of the workloads: stream, dgram, switch, rdma.\n";
	static const struct option opts[] = { { "seconds", required_argument, NULL, 's' },
					      { "interval", required_argument, NULL, 'i' },
					      { "out", required_argument, NULL, 'o' },
					      { "only", required_argument, NULL, 'O' },
					      { "help", no_argument, NULL, 'h' },
					      { NULL, 0, NULL, 0 } };
	struct bench_daemon d;
	struct daemon_view base, warm, lastv, end;
	double seconds = 300, interval = 10, t0, last, t_warm = 0;
	uint64_t prev_bytes[NWORK] = { 0 }, prev_units[NWORK] = { 0 };
	const char *outp = NULL, *only = NULL;
	double growth;
	pid_t pids[8];
	int np = 0, o, rdma_pipe[2];
	char conf[1024];
	FILE *out = NULL;

	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (o == 's')
			seconds = atof(optarg);
		else if (o == 'i')
			interval = atof(optarg);
		else if (o == 'o')
			outp = optarg;
		else if (o == 'O')
			only = optarg;
		else {
			fputs(usage, o == 'h' ? stdout : stderr);
			return o == 'h' ? 0 : 2;
		}
	}
	if (seconds <= 0 || interval <= 0) {
		fputs(usage, stderr);
		return 2;
	}
	if (outp)
		out = bench_open_out(outp);
	st = mmap(NULL, sizeof(*st), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (st == MAP_FAILED)
		return 1;
	snprintf(conf, sizeof(conf),
		 "context0.name = \"a\"\ncontext0.uid = \"%u\"\ncontext0.vmci0.present = \"TRUE\"\n"
		 "context0.vmci0.id = \"3\"\n"
		 "context1.name = \"b\"\ncontext1.uid = \"%u\"\ncontext1.vmci0.present = \"TRUE\"\n"
		 "context1.vmci0.id = \"4\"\n"
		 "vswitch0.name = \"vSwitch0\"\nvswitch0.vmq = \"TRUE\"\n"
		 "portgroup0.name = \"VM Network\"\nportgroup0.vswitch = \"vSwitch0\"\n",
		 (unsigned)getuid(), (unsigned)getuid());
	/* No per-thread allocator caches in the daemon: its heap_bytes are then exact. */
	setenv("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0", 1);
	bench_daemon_start(&d, VMFABRICD_PATH, conf);
	unsetenv("GLIBC_TUNABLES");
	st->cid_b = 4;
	if (daemon_view(&base)) {
		fprintf(stderr, "soak: system status did not answer\n");
		return 1;
	}
	fprintf(stderr, "soak: %.0f s, a line every %.0f s; daemon at start: %lld fds, %lld KiB "
			"heap, %lld KiB resident\n",
		seconds, interval, base.fds, base.heap >> 10, base.rss);
	if (pipe(rdma_pipe))
		return 1;
	for (int w = 0; w < NWORK; w++)
		if (!only || strstr(only, wname[w]))
			pids[np++] = w == W_RDMA ? spawn("b", NULL, rdma_b, rdma_pipe[0])
						 : spawn("b", receivers[w], NULL, 0);
	usleep(200000); /* the listeners bound */
	for (int w = 0; w < NWORK; w++)
		if (!only || strstr(only, wname[w]))
			pids[np++] = w == W_RDMA ? spawn("a", NULL, rdma_a, rdma_pipe[1])
						 : spawn("a", senders[w], NULL, 0);
	if (!np) {
		fputs(usage, stderr);
		return 2;
	}
	close(rdma_pipe[0]);
	close(rdma_pipe[1]);
	t0 = last = bench_now();
	warm = lastv = base;
	while (bench_now() - t0 < seconds) {
		uint64_t bytes[NWORK], units[NWORK];
		struct daemon_view v = { -1, -1, -1 };
		double now;

		usleep((useconds_t)(interval * 1e6));
		now = bench_now();
		for (int w = 0; w < NWORK; w++) {
			uint64_t b = atomic_load(&st->bytes[w]), u = atomic_load(&st->units[w]);

			bytes[w] = b - prev_bytes[w], units[w] = u - prev_units[w];
			prev_bytes[w] = b, prev_units[w] = u;
		}
		if (daemon_view(&v))
			fprintf(stderr, "soak: system status did not answer\n");
		if (last == t0)
			warm = v, t_warm = now;
		lastv = v;
		emit_interval(now - t0, bytes, units, now - last, &v, out);
		last = now;
	}
	atomic_store(&st->stop, 1);
	usleep(300000);
	for (int i = 0; i < np; i++) {
		kill(pids[i], SIGTERM); /* those blocked in accept or recv */
		waitpid(pids[i], NULL, 0);
	}
	usleep(500000); /* the daemon sees the processes go */
	if (daemon_view(&end)) {
		fprintf(stderr, "soak: system status did not answer at the end\n");
		return 1;
	}
	for (int w = 0; w < NWORK; w++) {
		char m[32];

		snprintf(m, sizeof(m), "%s", wname[w]);
		bench_emit(m, "soak", 0, "total", "bytes_checked", (double)st->bytes[w]);
		bench_emit(m, "soak", 0, "total", "units", (double)st->units[w]);
		bench_emit(m, "soak", 0, "total", "bytes_corrupted", (double)st->bad[w]);
		bench_emit(m, "soak", 0, "total", "dropped", (double)st->dropped[w]);
		bench_emit(m, "soak", 0, "total", "errors", (double)st->errors[w]);
		bench_emit(m, "soak", 0, "total", "setups", (double)st->cycles[w]);
	}
	bench_emit("daemon", "soak", 0, "end-start", "fds", (double)(end.fds - base.fds));
	bench_emit("daemon", "soak", 0, "end-start", "heap_bytes", (double)(end.heap - base.heap));
	bench_emit("daemon", "soak", 0, "end-first", "rss_kib", (double)(end.rss - warm.rss));
	/* Between the first and the last interval, everything running: what a leak would add. */
	growth = last > t_warm ? (double)(lastv.heap - warm.heap) / 1024.0 / (last - t_warm) * 3600.0
			       : 0;
	bench_emit("daemon", "soak", 0, "running", "heap_kib_per_h", growth);
	bench_note("soak: %.0f s; daemon %lld fds and %lld heap bytes at the start, %lld and %lld "
		   "after every workload ended", seconds, base.fds, base.heap, end.fds, end.heap);
	bench_note("dropped: datagrams and frames the daemon dropped by design (the receiver's "
		   "ring stayed full); errors: calls that failed (the first five printed above)");
	{
		uint64_t bad = 0, errors = 0;

		for (int w = 0; w < NWORK; w++)
			bad += st->bad[w], errors += st->errors[w];
		bench_target("bytes corrupted", (double)bad, "<=", 0, "every workload");
		bench_target("failed calls", (double)errors, "<=", 0, "every workload");
	}
	bench_target("descriptors leaked", (double)(end.fds - base.fds), "<=", 0,
		     "daemon, after every workload ended");
	bench_target("heap kept (MiB)", (double)(end.heap - base.heap) / 1048576.0, "<=", 1,
		     "daemon, after every workload ended");
	if (last > t_warm)
		bench_target("heap growth (KiB/h)", growth, "<=", 1024,
			     "daemon, first to last interval, all running");
	bench_daemon_stop(&d);
	return bench_report();
}
