/* SPDX-License-Identifier: MIT */
/*
 * The daemon killed with SIGKILL and started again, under load: the fd
 * keeper (src/daemon/keeper.c) holds the control socket and the VMs'
 * devices meanwhile. Process streams must complete with every byte checked,
 * listeners and datagram sockets come back, a running VM keeps its vsock
 * device and its NIC without QEMU being restarted, and descriptors are
 * given back (the keeper's and the daemon's counts). Each scenario logs one
 * "figure: {...}" line for the table in docs/SECURITY.md.
 */
#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../guest/tools/vmf-pattern.h"
#include "common/clock.h"
#include "common/loop.h"
#include "common/proc.h"
#include "daemon.h"
#include "daemon/keeper.h"
#include "guests.h"
#include "harness.h"
#include "vmfabric/vnic.h"

/* ---------------------------------------------------------------------- */
/* The keeper's protocol, without a daemon */

#define MANY 600 /* descriptors: three SCM_RIGHTS messages' worth */

struct many {
	struct keeper k;
	int fd[MANY];
};

static json_t *
many_snapshot(struct keeper *k)
{
	struct many *m = (struct many *)k;
	json_t *a = json_array();

	for (int i = 0; i < MANY; i++)
		json_array_append_new(a, json_pack("{s:i, s:i}", "i", i, "fd", m->fd[i]));
	return json_pack("{s:i, s:i, s:o}", "version", 1, "listen", -1, "vms", a);
}

/*
 * 600 descriptors go to a keeper in chunks and come back renumbered to the
 * next "daemon", which finds the keeper by its socket's path only; another
 * path finds nothing; a clean close ends the keeper and gives back
 * everything.
 */
TEST(crash_keeper_protocol)
{
	static struct many m;
	struct keeper k2, k3;
	struct loop loop;
	char dir[] = "/tmp/vmf-keep-XXXXXX", path[64], other[80];
	json_t *saved = NULL, *vms, *o;
	int fds0 = th_count_fds(), fds_held;
	size_t i;

	ASSERT(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/vmfabricd.sock", dir);
	snprintf(other, sizeof(other), "%s/other.sock", dir);
	ASSERT_OK(loop_init(&loop));
	for (int j = 0; j < MANY; j++)
		ASSERT_GE(m.fd[j] = eventfd((unsigned)j, EFD_CLOEXEC | EFD_NONBLOCK), 0);
	m.k.snapshot = many_snapshot;
	ASSERT_OK(keeper_open(&m.k, &loop, VMFABRICD_PATH, path, &saved));
	ASSERT(saved == NULL); /* a new keeper holds nothing */
	ASSERT_GT(m.k.pid, 0);
	keeper_update(&m.k);
	ASSERT_EQ(m.k.sent, 1);
	/* It holds its copies (plus its own few descriptors) until told otherwise. */
	for (int t = 0; t < 100 && (fds_held = (int)proc_fd_count_of(m.k.pid)) < MANY; t++)
		usleep(10000);
	th_log("keeper (pid %d) holds %d descriptors", (int)m.k.pid, fds_held);
	ASSERT_GT(fds_held, MANY);
	keeper_close(&m.k, false); /* as a crash would leave it */

	/* A daemon of another socket does not find it, and makes its own. */
	ASSERT_OK(keeper_open(&k3, &loop, VMFABRICD_PATH, other, &saved));
	ASSERT(saved == NULL);
	ASSERT_NE(k3.pid, m.k.pid);
	keeper_close(&k3, true);

	/* The next daemon of the same socket takes the copy. */
	ASSERT_OK(keeper_open(&k2, &loop, VMFABRICD_PATH, path, &saved));
	ASSERT(saved != NULL);
	ASSERT(k2.inherited);
	vms = json_object_get(saved, "vms");
	ASSERT_EQ(json_array_size(vms), MANY);
	ASSERT(!json_object_get(saved, "fds")); /* the table is consumed */
	json_array_foreach(vms, i, o) {
		int fd = (int)json_integer_value(json_object_get(o, "fd"));
		uint64_t v = 0;

		ASSERT_GE(fd, 0);
		/* The same eventfd as ours: its counter is the value it was made with. */
		ASSERT_EQ(read(fd, &v, sizeof(v)), i ? (ssize_t)sizeof(v) : -1);
		ASSERT_EQ(v, i);
		if (i)
			ASSERT_EQ(write(m.fd[i], &v, sizeof(v)), (ssize_t)sizeof(v));
		ASSERT_EQ(read(fd, &v, sizeof(v)), i ? (ssize_t)sizeof(v) : -1);
		close(fd);
	}
	json_decref(saved);
	keeper_close(&k2, true); /* BYE: it ends, its descriptors with it */
	for (int j = 0; j < MANY; j++)
		close(m.fd[j]);
	loop_free(&loop);
	ASSERT_EQ(th_count_fds(), fds0);
	th_log("figure: {\"scenario\": \"keeper_protocol\", \"descriptors\": %d, \"handovers\": 1}",
	       MANY);
	rmdir(dir);
}

/* ---------------------------------------------------------------------- */
/* Helpers */

/* system.status as JSON. */
static json_t *
status(struct tdaemon *d)
{
	char *s = td_mgmt(d, "system.status");
	json_t *j = json_loads(s, 0, NULL);

	free(s);
	ASSERT(j);
	return j;
}

static long long
status_int(struct tdaemon *d, const char *key, const char *sub)
{
	json_t *j = status(d), *o = json_object_get(j, key);
	long long v;

	if (sub)
		o = json_object_get(o, sub);
	ASSERT(json_is_integer(o));
	v = json_integer_value(o);
	json_decref(j);
	return v;
}

/*
 * The daemon's descriptors besides its clients' control connections (this
 * process's come and go with its sockets), or with @keeper the keeper's,
 * once they stop changing or are @want (closes are asynchronous, and the
 * keeper takes its snapshots from its socket in its own time).
 */
static long long
fds_settled(struct tdaemon *d, bool keeper, long long want)
{
	long long n = -1, prev = -2;

	for (int i = 0; i < 100; i++) {
		json_t *j = status(d);

		n = keeper ? json_integer_value(json_object_get(json_object_get(j, "keeper"), "fds"))
			   : json_integer_value(json_object_get(j, "fds")) -
				     json_integer_value(json_object_get(j, "connections"));
		json_decref(j);
		if (n == want || (n == prev && want < 0))
			break;
		prev = n;
		usleep(50000);
	}
	return n;
}

static void
write_all(int fd, const void *p, size_t n)
{
	ASSERT_EQ(write(fd, p, n), (ssize_t)n);
}

/* ---------------------------------------------------------------------- */
/* Process streams, a listener and datagrams across kills */

#define STREAM_BYTES (48ull << 20)
#define KILLS 3

struct result {
	uint64_t bytes, sum;
	int ok;
};

/* Child: listen on a:5500, read one stream to EOF checking every byte, send the sum back. */
__attribute__((noreturn)) static void
reader(int ready, int report)
{
	static uint8_t buf[1 << 16], want[1 << 16];
	struct result r = { 0 };
	struct vmf_sum sum;
	int l = td_listener("a", SOCK_STREAM, 5500), s;
	ssize_t n;

	write_all(ready, "r", 1);
	s = vmci_accept(l, NULL, 0);
	ASSERT_GE(s, 0);
	vmf_sum_init(&sum);
	r.ok = 1;
	while ((n = vmci_recv(s, buf, sizeof(buf), 0)) > 0) {
		vmf_pattern_fill(0, r.bytes, want, (size_t)n);
		if (memcmp(buf, want, (size_t)n))
			r.ok = 0;
		vmf_sum_update(&sum, buf, (size_t)n);
		r.bytes += (uint64_t)n;
	}
	r.ok = r.ok && n == 0;
	r.sum = vmf_sum_final(&sum);
	ASSERT_EQ(vmci_send(s, &r.sum, sizeof(r.sum), 0), (ssize_t)sizeof(r.sum));
	vmci_close(s);
	vmci_close(l);
	write_all(report, &r, sizeof(r));
	_exit(0);
}

/* Child: connect to a:5500 and send the pattern, paced to last across the kills. */
__attribute__((noreturn)) static void
writer(int report)
{
	static uint8_t buf[1 << 16];
	struct sockaddr_vm a = td_addr(3, 5500);
	struct result r = { 0 };
	struct vmf_sum sum;
	uint64_t reply = 0;
	int s = td_socket("b", SOCK_STREAM);

	ASSERT_OK(vmci_connect(s, &a));
	vmf_sum_init(&sum);
	while (r.bytes < STREAM_BYTES) {
		ssize_t w;

		vmf_pattern_fill(0, r.bytes, buf, sizeof(buf));
		w = vmci_send(s, buf, sizeof(buf), 0);
		ASSERT_GT(w, 0);
		vmf_sum_update(&sum, buf, (size_t)w);
		r.bytes += (uint64_t)w;
		if (!(r.bytes & ((1u << 20) - 1)))
			usleep(60000); /* 48 MiB in about 3 s */
	}
	ASSERT_OK(vmci_shutdown(s, SHUT_WR));
	r.sum = vmf_sum_final(&sum);
	r.ok = vmci_recv(s, &reply, sizeof(reply), MSG_WAITALL) == (ssize_t)sizeof(reply) &&
	       reply == r.sum;
	vmci_close(s);
	write_all(report, &r, sizeof(r));
	_exit(0);
}

static void
collect(pid_t pid, int fd, struct result *r)
{
	int st;

	ASSERT_EQ(read(fd, r, sizeof(*r)), (ssize_t)sizeof(*r));
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	close(fd);
}

/* A listener of this process takes a new connection (it registers again if it must). */
static void
listener_works(int l, unsigned port)
{
	struct sockaddr_vm a = td_addr(3, port);
	struct timeval tv = { 0, 100000 };
	char buf[8];
	int64_t deadline = clock_ns() + 10 * 1000000000ll;
	int c, s, err;

	ASSERT_OK(vmci_setsockopt(l, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)));
	for (;;) {
		c = td_socket("b", SOCK_STREAM);
		if (!(err = vmci_connect(c, &a)))
			break;
		vmci_close(c);
		ASSERT(clock_ns() < deadline);
		/* Refused until the listener notices the new daemon at its next accept. */
		ASSERT_LT(vmci_accept(l, NULL, 0), 0);
	}
	s = vmci_accept(l, NULL, 0);
	ASSERT_GE(s, 0);
	ASSERT_EQ(vmci_send(c, "hello", 5, 0), 5);
	ASSERT_EQ(vmci_recv(s, buf, 5, MSG_WAITALL), 5);
	ASSERT(!memcmp(buf, "hello", 5));
	vmci_close(c);
	vmci_close(s);
}

/* A datagram from @s reaches @r (bound to a:@port); both reopen after a restart. */
static void
dgrams_work(int s, int r, unsigned port)
{
	struct sockaddr_vm a = td_addr(3, port), from;
	int64_t deadline = clock_ns() + 10 * 1000000000ll;
	char buf[16];

	for (;;) {
		ssize_t n = vmci_recvfrom(r, buf, sizeof(buf), MSG_DONTWAIT, &from);

		if (n == 4 && !memcmp(buf, "ping", 4)) {
			ASSERT_EQ(from.svm_cid, 4);
			return;
		}
		if (clock_ns() > deadline) {
			th_log("datagrams: recvfrom %zd, sendto %zd", n,
			       vmci_sendto(s, "ping", 4, 0, &a));
			ASSERT(!"datagrams did not flow again");
		}
		vmci_sendto(s, "ping", 4, 0, &a); /* -ENETDOWN while the daemon is away */
		usleep(20000);
	}
}

/*
 * Two processes stream 48 MiB of the pattern while the daemon is killed
 * (SIGKILL) and started again three times: every byte arrives and checks.
 * After each restart a listener takes a new connection and datagrams flow
 * again; the keeper is the same process throughout.
 */
TEST(crash_vmci_streams)
{
	struct tdaemon d;
	struct result rr, wr;
	int ready[2], rep_r[2], rep_w[2], l, dr, ds;
	struct sockaddr_vm a = td_addr(VMADDR_CID_ANY, 6300);
	long long keeper;
	pid_t rpid, wpid;
	char c;

	td_start(&d, NULL);
	keeper = status_int(&d, "keeper", "pid");
	ASSERT_GT(keeper, 0);
	l = td_listener("a", SOCK_STREAM, 5501);
	dr = td_socket("a", SOCK_DGRAM);
	ASSERT_OK(vmci_bind(dr, &a));
	ds = td_socket("b", SOCK_DGRAM);
	dgrams_work(ds, dr, 6300);
	ASSERT_OK(pipe(ready));
	ASSERT_OK(pipe(rep_r));
	ASSERT_OK(pipe(rep_w));
	if ((rpid = fork()) == 0)
		reader(ready[1], rep_r[1]);
	ASSERT_EQ(read(ready[0], &c, 1), 1);
	if ((wpid = fork()) == 0)
		writer(rep_w[1]);
	close(ready[0]), close(ready[1]), close(rep_r[1]), close(rep_w[1]);

	for (int k = 0; k < KILLS; k++) {
		usleep(300000); /* mid-transfer */
		td_crash(&d);
		ASSERT_EQ(status_int(&d, "keeper", "pid"), keeper);
		listener_works(l, 5501);
		dgrams_work(ds, dr, 6300);
	}
	collect(wpid, rep_w[0], &wr);
	collect(rpid, rep_r[0], &rr);
	th_log("writer: %llu bytes ok=%d; reader: %llu bytes ok=%d", (unsigned long long)wr.bytes,
	       wr.ok, (unsigned long long)rr.bytes, rr.ok);
	ASSERT_EQ(wr.bytes, STREAM_BYTES);
	ASSERT_EQ(rr.bytes, STREAM_BYTES);
	ASSERT_EQ(rr.sum, wr.sum);
	ASSERT(rr.ok && wr.ok);
	th_log("figure: {\"scenario\": \"crash_vmci_streams\", \"kills\": %d, \"bytes_verified\": "
	       "%llu, \"bytes_lost\": %llu, \"listener_reconnects\": %d, \"dgram_recoveries\": %d}",
	       KILLS, (unsigned long long)rr.bytes, (unsigned long long)(STREAM_BYTES - rr.bytes),
	       KILLS, KILLS);
	vmci_close(l), vmci_close(dr), vmci_close(ds);
	td_stop(&d);
	/* A clean stop ends the keeper too. */
	for (int i = 0; i < 100 && kill((pid_t)keeper, 0) == 0; i++)
		usleep(20000);
	ASSERT_EQ(kill((pid_t)keeper, 0), -1);
	td_cleanup(&d);
}

/*
 * The keeper killed: the daemon starts another and gives it the state; a
 * crash after that is survived as before (a vNIC that only sends is told
 * -EPIPE and opens again), and so is one after a SIGHUP restart, which
 * keeps the keeper.
 */
TEST(crash_keeper_replaced)
{
	struct tdaemon d;
	struct vmf_vnic *n;
	uint8_t frame[60] = { 0 };
	long long k1, k2;
	ssize_t r = 0;
	int l;

	td_start(&d, NULL);
	k1 = status_int(&d, "keeper", "pid");
	l = td_listener("a", SOCK_STREAM, 5600);
	usleep(1100000); /* not a keeper dying right after its start */
	ASSERT_OK(kill((pid_t)k1, SIGKILL));
	for (int i = 0; i < 200; i++) {
		k2 = status_int(&d, "keeper", "pid");
		if (k2 != k1 && status_int(&d, "keeper", "snapshots") > 0)
			break;
		usleep(20000);
	}
	ASSERT_NE(k2, k1);
	ASSERT_EQ(status_int(&d, "keeper", "started"), 2);
	ASSERT_OK(vmf_vnic_open("VM Network", NULL, &n));
	td_crash(&d);
	ASSERT_EQ(status_int(&d, "keeper", "pid"), k2);
	listener_works(l, 5600);
	/* A vNIC that only sends learns that its port went with the daemon, and opens again. */
	memset(frame, 0xff, 6);
	for (int i = 0; i < 100 && (r = vmf_vnic_send(n, frame, sizeof(frame), 0)) > 0; i++)
		usleep(10000);
	ASSERT_EQ(r, -EPIPE);
	vmf_vnic_close(n);
	ASSERT_OK(vmf_vnic_open("VM Network", NULL, &n));
	ASSERT_EQ(vmf_vnic_send(n, frame, sizeof(frame), 0), (ssize_t)sizeof(frame));
	vmf_vnic_close(n);
	/* A restart by exec (SIGHUP) keeps the keeper: its connection goes across. */
	ASSERT_OK(kill(d.pid, SIGHUP));
	for (int i = 0; i < 250 && td_sh("grep -q 'kept across the restart' %s", d.log); i++)
		usleep(20000);
	ASSERT_EQ(td_sh("grep -q 'kept across the restart' %s", d.log), 0);
	ASSERT_EQ(status_int(&d, "keeper", "pid"), k2);
	ASSERT_EQ(status_int(&d, "keeper", "started"), 0); /* found after the crash, not started */
	td_crash(&d);
	ASSERT_EQ(status_int(&d, "keeper", "pid"), k2);
	listener_works(l, 5600);
	vmci_close(l);
	td_stop(&d);
	td_cleanup(&d);
}

/* ---------------------------------------------------------------------- */
/* A running VM across kills */

#define NIC_VIRTIO                                                                      \
	"ethernet0.present = \"TRUE\"\nethernet0.virtualDev = \"virtio\"\n"             \
	"ethernet0.networkName = \"VM Network\"\n"
#define NIC_VMXNET3                                                                     \
	"ethernet0.present = \"TRUE\"\nethernet0.virtualDev = \"vmxnet3\"\n"             \
	"ethernet0.networkName = \"VM Network\"\n"
#define UP(ip) "ip addr add " ip "/24 dev eth0; ip link set eth0 up; "
#define VSOCK_BYTES (8ull << 20)

/*
 * The highest i of the console lines "@what i" of VM @name (-1: none yet).
 * The guest's own echo of its command starts otherwise, so it never counts.
 */
static int
console_last(struct vt *t, const char *name, const char *what)
{
	char path[256], buf[512];
	size_t n = strlen(what);
	int last = -1;
	FILE *f;

	snprintf(path, sizeof(path), "%s/vms/%s/console.log", t->d.dir, name);
	if (!(f = fopen(path, "r")))
		return -1;
	while (fgets(buf, sizeof(buf), f))
		if (!strncmp(buf, what, n) && strchr(buf, '\n') && atoi(buf + n) > last)
			last = atoi(buf + n);
	fclose(f);
	return last;
}

/* A new host-to-guest stream of the pattern to @port; the guest's checksum must match. */
static uint64_t
to_guest(unsigned cid, unsigned port)
{
	uint64_t sum, reply = 0;
	int s = vt_connect_guest(cid, port, SOCK_STREAM);

	sum = vt_write_pattern(s, VSOCK_BYTES);
	ASSERT_OK(vmci_shutdown(s, SHUT_WR));
	ASSERT_EQ(vmci_recv(s, &reply, sizeof(reply), MSG_WAITALL), (ssize_t)sizeof(reply));
	ASSERT_EQ(reply, sum);
	vmci_close(s);
	return VSOCK_BYTES;
}

/*
 * A child process streaming the pattern to the guest's @port until the
 * stream fails; returns once it has sent 4 MiB, so that the rings are busy.
 */
static pid_t
streaming(unsigned cid, unsigned port)
{
	static uint8_t buf[1 << 16];
	int p[2];
	pid_t pid;
	char c;

	vmf_pattern_fill(0, 0, buf, sizeof(buf));
	ASSERT_OK(pipe(p));
	if ((pid = fork()) == 0) {
		int s = vt_connect_guest(cid, port, SOCK_STREAM);
		uint64_t n = 0;
		ssize_t w;

		close(p[0]);
		while ((w = vmci_send(s, buf, sizeof(buf), 0)) > 0)
			if ((n += (uint64_t)w) >= (4u << 20) && p[1] >= 0) {
				write_all(p[1], "s", 1);
				close(p[1]);
				p[1] = -1;
			}
		_exit(w < 0 ? 0 : 1); /* ended by an error, as it must */
	}
	close(p[1]);
	ASSERT_EQ(read(p[0], &c, 1), 1);
	close(p[0]);
	return pid;
}

/* The stream in flight when the daemon was killed ends with an error (reset), soon. */
static void
stream_reset(pid_t pid)
{
	int64_t deadline = clock_ns() + 20 * 1000000000ll;
	int st;

	while (waitpid(pid, &st, WNOHANG) == 0) {
		ASSERT(clock_ns() < deadline);
		usleep(20000);
	}
	ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* Wait until VM @name's ping loop had a reply to a ping sent after number @after. */
static void
ping_after(struct vt *t, const char *name, int after)
{
	int64_t deadline = clock_ns() + 30 * 1000000000ll;

	while (console_last(t, name, "PING-OK ") <= after) {
		if (clock_ns() > deadline) {
			th_log("no ping reply after #%d (last sent #%d)", after,
			       console_last(t, name, "PING-"));
			ASSERT(!"the switch did not come back for the guests");
		}
		usleep(100000);
	}
}

/*
 * Two guests: "cv" with its vsock device and a virtio-net NIC, "cp" with an
 * emulated NIC (vmxnet3) pinging cv across the switch. The daemon is
 * killed twice, the first time while a stream to cv is in flight (its
 * rings busy: that stream is reset, as after SIGHUP); each time, the same
 * QEMU processes go on, a new host-to-guest stream reaches cv's device
 * (checked by the guest's checksum), and cp's pings are answered again (QEMU reconnects cv's
 * virtio-net netdev by itself; cp's stream netdev was kept by the fd
 * keeper). The keeper's and the daemon's descriptors come back to their
 * counts.
 */
TEST(crash_vm)
{
	struct vt t;
	char line[1024], *out;
	long long kfds0, kfds1, dfds0, dfds1;
	uint64_t bytes = 0;
	long qv, qp;
	int cid, kills = 0;

	vt_start(&t, NULL);
	kfds0 = fds_settled(&t.d, true, -1);
	dfds0 = fds_settled(&t.d, false, -1);
	cid = vt_vm_start(&t, "cv", "vmci0.present = \"TRUE\"\n" NIC_VIRTIO,
			  UP("10.0.0.1") "vmf-vsock recv 6000; vmf-vsock recv 6100 & "
					 "vmf-vsock recv 6001; vmf-vsock recv 6002; sleep 600",
			  NULL, 0);
	ASSERT_GE(cid, 3);
	ASSERT_GE(vt_vm_start(&t, "cp", NIC_VMXNET3,
			      UP("10.0.0.2") "for i in $(seq 1 3000); do if ping -c 1 -W 1 10.0.0.1 "
					     ">/dev/null; then echo PING-OK $i; else echo "
					     "PING-NO $i; fi; sleep 0.2; done",
			      NULL, 0),
		  3);
	vt_wait_console(&t, "cv", "VMF-READY recv port=6000", line, sizeof(line));
	bytes += to_guest((unsigned)cid, 6000);
	ping_after(&t, "cp", 0);
	qv = vt_vm_pid(&t, "cv");
	qp = vt_vm_pid(&t, "cp");
	ASSERT_GT(qv, 0);
	ASSERT_GT(qp, 0);
	dfds1 = fds_settled(&t.d, false, -1);
	kfds1 = fds_settled(&t.d, true, -1);
	th_log("descriptors: daemon %lld without VMs, %lld with; keeper %lld, %lld", dfds0, dfds1,
	       kfds0, kfds1);

	for (unsigned port = 6001; port <= 6002; port++) {
		pid_t w = port == 6001 ? streaming((unsigned)cid, 6100) : 0;
		int sent;

		td_crash(&t.d); /* the first time, a stream to the guest is in flight */
		if (w)
			stream_reset(w);
		kills++;
		sent = console_last(&t, "cp", "PING-"); /* pings from here on find the new daemon */
		ASSERT_EQ(vt_vm_pid(&t, "cv"), qv);
		ASSERT_EQ(vt_vm_pid(&t, "cp"), qp);
		vt_wait_console(&t, "cv", port == 6001 ? "VMF-READY recv port=6001"
						       : "VMF-READY recv port=6002",
				line, sizeof(line));
		bytes += to_guest((unsigned)cid, port);
		ping_after(&t, "cp", sent);
		/* The NICs reconnected: as many descriptors as before the crash. */
		ASSERT_EQ(fds_settled(&t.d, false, dfds1), dfds1);
		ASSERT_EQ(fds_settled(&t.d, true, kfds1), kfds1);
	}
	ASSERT_EQ(vt_cli(&t, &out, "vm stop cv"), 0);
	free(out);
	ASSERT_EQ(vt_cli(&t, &out, "vm stop cp"), 0);
	free(out);
	/* Everything the VMs held is given back, in the keeper and in the daemon. */
	ASSERT_EQ(fds_settled(&t.d, true, kfds0), kfds0);
	if (fds_settled(&t.d, false, dfds0) != dfds0)
		td_sh("ls -l /proc/%d/fd >&2; ss -xap | grep pid=%d, >&2", (int)t.d.pid, (int)t.d.pid);
	ASSERT_EQ(fds_settled(&t.d, false, dfds0), dfds0);
	th_log("figure: {\"scenario\": \"crash_vm\", \"kills\": %d, \"qemu_restarts\": 0, "
	       "\"vsock_bytes_verified\": %llu, \"bytes_lost\": 0, \"streams_in_flight_reset\": 1, "
	       "\"ping_recoveries\": %d, "
	       "\"daemon_fds\": [%lld, %lld], \"keeper_fds\": [%lld, %lld]}",
	       kills, (unsigned long long)bytes, kills, dfds0, dfds1, kfds0, kfds1);
	td_stop(&t.d);
	td_cleanup(&t.d);
}

/* ---------------------------------------------------------------------- */
/* The host's side of the switch across a kill */

#define HN_HOST "vmfk-host"
#define HN_PEER "vmfk-peer"

/* Run @fn in a child process in network namespace @ns; its exit status. */
static int
in_netns(const char *ns, int (*fn)(void))
{
	char path[128];
	pid_t pid;
	int st, fd;

	snprintf(path, sizeof(path), "/run/netns/%s", ns);
	if ((pid = fork()) == 0) {
		fd = open(path, O_RDONLY | O_CLOEXEC);
		_exit(fd >= 0 && setns(fd, CLONE_NEWNET) == 0 ? fn() : 99);
	}
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* In the host namespace: a TCP listener on the VMkernel adapter's port 7777, for ever. */
static int
serve_tcp(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(7777) };
	int one = 1, s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s, 16) < 0)
		return 1;
	for (;;) {
		int c = accept(s, NULL, NULL);

		if (c >= 0)
			close(c);
	}
}

/* In the peer namespace: 0 if a TCP connection to 10.215.0.1:7777 is made within 1 s. */
static int
connect_tcp(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(7777) };
	struct timeval tv = { 1, 0 };
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	inet_pton(AF_INET, "10.215.0.1", &a.sin_addr);
	setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)); /* bounds connect() */
	return s >= 0 && connect(s, (struct sockaddr *)&a, sizeof(a)) == 0 ? 0 : 1;
}

/*
 * Whole checksums on the frames the switch carries between the two stacks
 * (the uplink and the TAP take them as they are), once the switch is set up.
 */
static void
whole_checksums(struct tdaemon *d)
{
	free(td_mgmt(d, "network.port.list")); /* answered once the switches are up */
	ASSERT_EQ(td_sh("ip netns exec " HN_HOST " ethtool -K vk-up tx off >/dev/null && "
			"ip netns exec " HN_HOST " ethtool -K vk-vmk tx off >/dev/null"),
		  0);
}

/* The peer namespace reaches the VMkernel adapter's address through the uplink, within 10 s. */
static void
reach_vmk(void)
{
	int64_t deadline = clock_ns() + 10 * 1000000000ll;

	while (in_netns(HN_PEER, connect_tcp)) {
		ASSERT(clock_ns() < deadline);
		usleep(100000);
	}
}

/*
 * An uplink (a veth into another namespace) and a VMkernel adapter (TAP):
 * neither is kept by the keeper; the restarted daemon makes them again
 * from the configuration (the old TAP went with the killed process, and so
 * did the XDP link on the uplink), and a TCP connection from the other
 * namespace through the uplink, the switch and the TAP is made again.
 */
TEST(crash_host_net)
{
	struct tdaemon d;
	pid_t server;

	if (geteuid() != 0)
		SKIP("needs root (network namespaces, a veth pair, a TAP interface)");
	if (td_sh("command -v ip >/dev/null 2>&1") || access("/dev/net/tun", R_OK | W_OK))
		SKIP("no ip command (iproute2) or no /dev/net/tun");
	if (td_sh("command -v ethtool >/dev/null 2>&1"))
		SKIP("no ethtool (tools/setup-deps check)");
	(void)td_sh("ip netns del " HN_HOST " 2>/dev/null; ip netns del " HN_PEER " 2>/dev/null");
	if (td_sh("ip netns add " HN_HOST))
		SKIP("ip netns does not work here (no network namespaces)");
	ASSERT_EQ(td_sh("ip netns add " HN_PEER " && "
			"ip -n " HN_HOST " link add vk-up type veth peer name vk-peer netns " HN_PEER
			" && ip -n " HN_HOST " link set dev vk-up up && "
			"ip -n " HN_PEER " addr add 10.215.0.2/24 dev vk-peer && "
			"ip -n " HN_PEER " link set dev vk-peer up"),
		  0);
	td_start_ns(&d,
		    TD_CONTEXTS "uplink0.device = \"vk-up\"\nvmk0.name = \"vk-vmk\"\n"
				"vmk0.portgroup = \"VM Network\"\nvmk0.ip = \"10.215.0.1/24\"\n",
		    HN_HOST);
	ASSERT_EQ(td_sh("ip netns exec " HN_PEER " ethtool -K vk-peer tx off >/dev/null"), 0);
	whole_checksums(&d);
	if ((server = fork()) == 0)
		_exit(in_netns(HN_HOST, serve_tcp));
	reach_vmk();
	for (int k = 0; k < 2; k++) {
		td_crash(&d);
		whole_checksums(&d);
		reach_vmk();
	}
	kill(server, SIGKILL);
	waitpid(server, NULL, 0);
	ASSERT_EQ(td_sh("ip -n " HN_HOST " -br link show vk-vmk | grep -q UP"), 0);
	th_log("figure: {\"scenario\": \"crash_host_net\", \"kills\": 2, \"uplink_and_vmk_recoveries\": 2}");
	td_stop(&d);
	td_cleanup(&d);
	(void)td_sh("ip netns del " HN_HOST "; ip netns del " HN_PEER);
}
