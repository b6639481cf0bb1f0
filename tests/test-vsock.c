/* SPDX-License-Identifier: MIT */
/*
 * End to end with real guests: a private vmfabricd starts QEMU guests from
 * .vmx files (`vmfabric vm start`), the guests run vmf-vsock (guest/tools)
 * over AF_VSOCK, and the host side is a libvmfabric socket in this process:
 * streams both ways checked byte for byte against the shared pattern,
 * guest to guest, seqpacket boundaries, refusals (VMCI off, a CID in use),
 * a guest killed in the middle of a stream. Skips when QEMU or the guest
 * image is missing.
 */
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "daemon.h"
#include "guests.h"
#include "../guest/tools/vmf-pattern.h"
#include "harness.h"

#define BIG (64u << 20)
#define BOOT_TIMEOUT_S 60

/* A VM with VMCI on or off, @cid its vmci0.id (0: assigned). */
static int
vm_start(struct vt *t, const char *name, bool vmci, unsigned cid, const char *cmd, char *why,
	 size_t whylen)
{
	char lines[128] = "";

	if (vmci)
		snprintf(lines, sizeof(lines), "vmci0.present = \"TRUE\"\n");
	if (cid)
		snprintf(lines + strlen(lines), sizeof(lines) - strlen(lines),
			 "vmci0.id = \"%u\"\n", cid);
	return vt_vm_start(t, name, lines, cmd, why, whylen);
}

#define cli vt_cli
#define wait_console vt_wait_console
#define wait_exit vt_wait_exit
#define result_u64 vt_result_u64
#define connect_guest vt_connect_guest
#define write_pattern vt_write_pattern
#define vm_pid vt_vm_pid

/* Accept, waiting at most as long as a guest may take to boot and connect. */
static int
accept_guest(int l, struct sockaddr_vm *peer)
{
	struct timeval tv = { .tv_sec = BOOT_TIMEOUT_S };
	int s;

	ASSERT_OK(vmci_setsockopt(l, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)));
	s = vmci_accept(l, peer, 0);
	if (s < 0)
		th_log("accept: %s", strerror(-s));
	ASSERT_GE(s, 0);
	return s;
}

/* Read a stream to EOF, checking the pattern; returns the checksum. */
static uint64_t
read_checked(int s, uint64_t expect_bytes)
{
	static uint8_t buf[1 << 16], want[1 << 16];
	struct vmf_sum sum;
	uint64_t off = 0;
	ssize_t n;

	vmf_sum_init(&sum);
	while ((n = vmci_recv(s, buf, sizeof(buf), 0)) > 0) {
		vmf_pattern_fill(0, off, want, (size_t)n);
		if (memcmp(buf, want, (size_t)n)) {
			th_log("pattern mismatch in [%llu, +%zd)", (unsigned long long)off, n);
			ASSERT(!"data corrupted");
		}
		vmf_sum_update(&sum, buf, (size_t)n);
		off += (uint64_t)n;
	}
	ASSERT_EQ(n, 0);
	ASSERT_EQ(off, expect_bytes);
	return vmf_sum_final(&sum);
}

TEST(vsock_guest_to_host)
{
	struct vt t;
	char cmd[128], line[1024];
	uint64_t sum;
	int l, s, cid;
	struct sockaddr_vm peer;

	vt_start(&t, NULL);
	l = td_listener(NULL, SOCK_STREAM, 5000);
	snprintf(cmd, sizeof(cmd), "vmf-vsock send 2 5000 %u", BIG);
	cid = vm_start(&t, "g2h", true, 0, cmd, NULL, 0);
	ASSERT_GE(cid, 3);
	s = accept_guest(l, &peer);
	ASSERT_EQ(peer.svm_cid, (unsigned)cid);
	sum = read_checked(s, BIG);
	/* The guest reads our checksum, then waits for our end of the stream. */
	ASSERT_EQ(vmci_send(s, &sum, sizeof(sum), 0), (ssize_t)sizeof(sum));
	ASSERT_OK(vmci_shutdown(s, SHUT_WR));
	wait_console(&t, "g2h", "VMF-RESULT", line, sizeof(line));
	th_log("guest: %s", line);
	ASSERT(strstr(line, " ok=1"));
	ASSERT_EQ(result_u64(line, "sum"), sum);
	ASSERT_EQ(result_u64(line, "peer_sum"), sum);
	vmci_close(s);
	vmci_close(l);
	wait_exit(&t, "g2h");
	td_stop(&t.d);
	td_cleanup(&t.d);
}

TEST(vsock_host_to_guest)
{
	struct vt t;
	char cmd[128], line[1024];
	uint64_t sum, reply = 0;
	int s, cid;

	vt_start(&t, NULL);
	snprintf(cmd, sizeof(cmd), "vmf-vsock recv 6000");
	cid = vm_start(&t, "h2g", true, 0, cmd, NULL, 0);
	ASSERT_GE(cid, 3);
	wait_console(&t, "h2g", "VMF-READY", line, sizeof(line));
	s = connect_guest((unsigned)cid, 6000, SOCK_STREAM);
	sum = write_pattern(s, BIG);
	ASSERT_OK(vmci_shutdown(s, SHUT_WR));
	ASSERT_EQ(vmci_recv(s, &reply, sizeof(reply), MSG_WAITALL), (ssize_t)sizeof(reply));
	ASSERT_EQ(reply, sum);
	ASSERT_EQ(vmci_recv(s, &reply, sizeof(reply), 0), 0); /* then its EOF */
	wait_console(&t, "h2g", "VMF-RESULT", line, sizeof(line));
	th_log("guest: %s", line);
	ASSERT(strstr(line, " ok=1"));
	ASSERT_EQ(result_u64(line, "bytes"), BIG);
	ASSERT_EQ(result_u64(line, "sum"), sum);
	vmci_close(s);
	wait_exit(&t, "h2g");
	td_stop(&t.d);
	td_cleanup(&t.d);
}

/* Sibling VMs: the kernel's vhost-vsock cannot do this; the daemon can. */
TEST(vsock_guest_to_guest)
{
	struct vt t;
	char cmd[128], line[1024], recv_line[1024];
	int a, b;

	vt_start(&t, NULL);
	b = vm_start(&t, "gb", true, 0, "vmf-vsock recv 7000", NULL, 0);
	ASSERT_GE(b, 3);
	wait_console(&t, "gb", "VMF-READY", line, sizeof(line));
	snprintf(cmd, sizeof(cmd), "vmf-vsock send %d 7000 %u", b, 16u << 20);
	a = vm_start(&t, "ga", true, 0, cmd, NULL, 0);
	ASSERT_GE(a, 3);
	ASSERT_NE(a, b);
	wait_console(&t, "ga", "VMF-RESULT", line, sizeof(line));
	wait_console(&t, "gb", "VMF-RESULT", recv_line, sizeof(recv_line));
	th_log("sender: %s", line);
	th_log("receiver: %s", recv_line);
	ASSERT(strstr(line, " ok=1"));
	ASSERT(strstr(recv_line, " ok=1"));
	ASSERT_EQ(result_u64(recv_line, "bytes"), 16u << 20);
	ASSERT_EQ(result_u64(recv_line, "sum"), result_u64(line, "sum"));
	ASSERT_EQ(result_u64(line, "peer_sum"), result_u64(line, "sum"));
	wait_exit(&t, "ga");
	wait_exit(&t, "gb");
	td_stop(&t.d);
	td_cleanup(&t.d);
}

/* The sizes vmf-vsock --seqpacket cycles through (guest/tools/vmf-vsock.c). */
static const size_t seq_sizes[] = { 1,	  7,	 8,  9,	    100,  3000, 4096,
				    4097, 65536, 1500, 65535, 13, 32768, 512 };

TEST(vsock_seqpacket)
{
	static uint8_t buf[1 << 17];
	struct vt t;
	char line[1024];
	struct sockaddr_vm peer;
	unsigned long long msgs = 0, bytes = 0;
	int l, s, cid;
	ssize_t n;

	vt_start(&t, NULL);
	/* Guest to host: every message arrives whole, in order, with its size. */
	l = td_listener(NULL, SOCK_SEQPACKET, 5001);
	cid = vm_start(&t, "seq", true, 0,
		       "vmf-vsock send 2 5001 1M --seqpacket && vmf-vsock recv 5002 --seqpacket",
		       NULL, 0);
	ASSERT_GE(cid, 3);
	s = accept_guest(l, &peer);
	while ((n = vmci_recv(s, buf, sizeof(buf), 0)) > 0) {
		ASSERT_EQ((size_t)n, seq_sizes[msgs % (sizeof(seq_sizes) / sizeof(seq_sizes[0]))]);
		if (n >= 8)
			ASSERT_EQ(vmf_le64_load(buf), (uint64_t)n << 32 | (uint32_t)msgs);
		msgs++;
		bytes += (unsigned long long)n;
	}
	ASSERT_EQ(n, 0);
	ASSERT_GE(bytes, 1u << 20);
	vmci_close(s);
	wait_console(&t, "seq", "op=send", line, sizeof(line));
	th_log("guest: %s", line);
	ASSERT(strstr(line, " ok=1"));
	ASSERT_EQ(result_u64(line, "msgs"), msgs);
	/* Host to guest: the guest checks every boundary. */
	wait_console(&t, "seq", "VMF-READY", line, sizeof(line));
	s = connect_guest((unsigned)cid, 5002, SOCK_SEQPACKET);
	bytes = 0;
	for (unsigned i = 0; bytes < (1u << 20); i++) {
		size_t len = seq_sizes[i % (sizeof(seq_sizes) / sizeof(seq_sizes[0]))];

		vmf_pattern_fill(0, bytes, buf, len);
		if (len >= 8) /* as vmf-vsock: its size and number first */
			vmf_le64_store(buf, (uint64_t)len << 32 | i);
		ASSERT_EQ(vmci_send(s, buf, len, 0), (ssize_t)len);
		bytes += len;
	}
	ASSERT_OK(vmci_shutdown(s, SHUT_WR));
	wait_console(&t, "seq", "op=recv", line, sizeof(line));
	th_log("guest: %s", line);
	ASSERT(strstr(line, " ok=1"));
	vmci_close(s);
	vmci_close(l);
	wait_exit(&t, "seq");
	td_stop(&t.d);
	td_cleanup(&t.d);
}

/*
 * SIGHUP: the daemon execs itself and takes the VM over; QEMU is not
 * restarted, the guest's old connection is reset (TRANSPORT_RESET), and
 * new connections work on the same device.
 */
TEST(vsock_daemon_restart)
{
	static uint8_t buf[1 << 16];
	struct vt t;
	char line[1024];
	uint64_t sum, reply = 0;
	long qemu;
	int s, cid;

	vt_start(&t, NULL);
	cid = vm_start(&t, "rs", true, 0, "vmf-vsock recv 6000; vmf-vsock recv 6001", NULL, 0);
	ASSERT_GE(cid, 3);
	wait_console(&t, "rs", "VMF-READY recv port=6000", line, sizeof(line));
	s = connect_guest((unsigned)cid, 6000, SOCK_STREAM);
	vmf_pattern_fill(0, 0, buf, sizeof(buf));
	ASSERT_EQ(vmci_send(s, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	qemu = vm_pid(&t, "rs");
	ASSERT_GT(qemu, 0);

	ASSERT_OK(kill(t.d.pid, SIGHUP));
	/* The old connection ends on both sides. */
	wait_console(&t, "rs", "op=recv", line, sizeof(line));
	th_log("first recv: %s", line);
	/* Reset (ok=0) or cut short (EOF, and its checksum could not go back). */
	ASSERT(strstr(line, " ok=0") || strstr(line, " replied=0"));
	for (int i = 0; i < 1000 && vmci_send(s, buf, sizeof(buf), 0) > 0; i++)
		;
	vmci_close(s);
	/* Same daemon process, same QEMU, and the device still works. */
	ASSERT_EQ(vm_pid(&t, "rs"), qemu);
	wait_console(&t, "rs", "VMF-READY recv port=6001", line, sizeof(line));
	s = connect_guest((unsigned)cid, 6001, SOCK_STREAM);
	sum = write_pattern(s, 16u << 20);
	ASSERT_OK(vmci_shutdown(s, SHUT_WR));
	ASSERT_EQ(vmci_recv(s, &reply, sizeof(reply), MSG_WAITALL), (ssize_t)sizeof(reply));
	ASSERT_EQ(reply, sum);
	vmci_close(s);
	wait_exit(&t, "rs");
	td_stop(&t.d);
	td_cleanup(&t.d);
}

/*
 * vmci0.present absent: no vsock device at all (as in VMware), so the guest
 * has no transport and host programs cannot reach its CID.
 */
TEST(vsock_vmci_off)
{
	struct vt t;
	char line[1024];
	struct sockaddr_vm a;
	int s, cid;

	vt_start(&t, NULL);
	cid = vm_start(&t, "novmci", false, 0, "vmf-vsock cid; vmf-vsock send 2 5000 1; sleep 5",
		       NULL, 0);
	ASSERT_GE(cid, 3);
	wait_console(&t, "novmci", "op=cid", line, sizeof(line));
	th_log("guest: %s", line);
	ASSERT(strstr(line, " ok=0"));
	wait_console(&t, "novmci", "op=send", line, sizeof(line));
	ASSERT(strstr(line, " ok=0"));
	s = td_socket(NULL, SOCK_STREAM);
	a = td_addr((unsigned)cid, 5000);
	ASSERT_EQ(vmci_connect(s, &a), -EACCES); /* VMCI off: refused by policy */
	vmci_close(s);
	wait_exit(&t, "novmci");
	td_stop(&t.d);
	td_cleanup(&t.d);
}

/* A CID in use (by a process context or a running VM) or reserved is refused. */
TEST(vsock_cid_refused)
{
	struct vt t;
	char why[1024];

	vt_start(&t, NULL);
	ASSERT_EQ(vm_start(&t, "dup3", true, 3, "true", why, sizeof(why)), -1);
	ASSERT(strstr(why, "CID 3 is already used by \"a\""));
	ASSERT_EQ(vm_start(&t, "first", true, 40, "sleep 20", NULL, 0), 40);
	ASSERT_EQ(vm_start(&t, "second", true, 40, "true", why, sizeof(why)), -1);
	ASSERT(strstr(why, "CID 40 is already used by \"first\""));
	ASSERT_EQ(vm_start(&t, "two", true, 2, "true", why, sizeof(why)), -1);
	ASSERT(strstr(why, "vmci0.id"));
	td_stop(&t.d); /* stops "first" too */
	td_cleanup(&t.d);
}

/* QEMU killed in the middle of a stream: the host side sees a reset, the daemon goes on. */
TEST(vsock_guest_killed)
{
	static uint8_t buf[1 << 16];
	struct vt t;
	char line[1024], *out;
	struct sockaddr_vm peer;
	int64_t t0;
	ssize_t n;
	long qemu;
	int l, s;

	vt_start(&t, NULL);
	l = td_listener(NULL, SOCK_STREAM, 5003);
	ASSERT_GE(vm_start(&t, "kill", true, 0, "vmf-vsock send 2 5003 16G", NULL, 0), 3);
	s = accept_guest(l, &peer);
	ASSERT_EQ(vmci_recv(s, buf, sizeof(buf), MSG_WAITALL), (ssize_t)sizeof(buf));
	qemu = vm_pid(&t, "kill");
	ASSERT_GT(qemu, 0);
	ASSERT_OK(kill((pid_t)qemu, SIGKILL));
	t0 = clock_ns();
	while ((n = vmci_recv(s, buf, sizeof(buf), 0)) > 0)
		;
	th_log("after the kill: %zd (%s) in %.1f ms", n, n < 0 ? strerror((int)-n) : "EOF",
	       (double)(clock_ns() - t0) / 1e6);
	ASSERT_EQ(n, -ECONNRESET);
	wait_exit(&t, "kill");
	/* The daemon is fine and the CID is free again. */
	ASSERT_EQ(cli(&t, &out, "vm list"), 0);
	free(out);
	(void)line;
	vmci_close(s);
	vmci_close(l);
	td_stop(&t.d);
	td_cleanup(&t.d);
}

/*
 * VMCI datagrams for a guest through the relay (vmf-dgram): stamped with
 * the guest's true CID and its port, both ways.
 */
TEST(vsock_dgram_relay)
{
	static uint8_t buf[2048];
	struct vt t;
	char line[1024];
	struct sockaddr_vm from, me = td_addr(VMADDR_CID_ANY, 7000);
	struct timeval tv = { .tv_sec = BOOT_TIMEOUT_S };
	unsigned guest_port;
	int s, cid;
	ssize_t n;

	vt_start(&t, NULL);
	s = td_socket(NULL, SOCK_DGRAM);
	ASSERT_OK(vmci_bind(s, &me));
	ASSERT_OK(vmci_setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)));
	cid = vm_start(&t, "dg", true, 0, "vmf-dgram send 2 7000 50 1000 && vmf-dgram echo 7001 20",
		       NULL, 0);
	ASSERT_GE(cid, 3);
	/* Guest to host: 50 datagrams, in order, from the guest's CID. */
	for (unsigned long i = 0; i < 50; i++) {
		n = vmci_recvfrom(s, buf, sizeof(buf), 0, &from);
		ASSERT_EQ(n, 1000);
		ASSERT_EQ(from.svm_cid, (unsigned)cid);
		ASSERT_EQ(memcmp(buf, &i, sizeof(i)), 0);
		ASSERT_EQ(buf[999], (uint8_t)i);
	}
	wait_console(&t, "dg", "op=dgram-send", line, sizeof(line));
	ASSERT(strstr(line, " ok=1"));
	guest_port = (unsigned)result_u64(line, "port");
	ASSERT_EQ(from.svm_port, guest_port);
	/* Host to guest and back: the guest's echo answers from its port 7001. */
	wait_console(&t, "dg", "VMF-READY echo", line, sizeof(line));
	for (unsigned i = 0; i < 20; i++) {
		struct sockaddr_vm to = td_addr((unsigned)cid, 7001);

		snprintf((char *)buf, sizeof(buf), "datagram %u", i);
		ASSERT_EQ(vmci_sendto(s, buf, 64, 0, &to), 64);
		memset(buf, 0, sizeof(buf));
		ASSERT_EQ(vmci_recvfrom(s, buf, sizeof(buf), 0, &from), 64);
		ASSERT_EQ(from.svm_cid, (unsigned)cid);
		ASSERT_EQ(from.svm_port, 7001u);
		snprintf((char *)buf + 100, 100, "datagram %u", i);
		ASSERT(!strcmp((char *)buf, (char *)buf + 100));
	}
	wait_console(&t, "dg", "op=dgram-echo", line, sizeof(line));
	th_log("guest: %s", line);
	ASSERT(strstr(line, " ok=1"));
	ASSERT_EQ(result_u64(line, "last_cid"), 2);
	ASSERT_EQ(result_u64(line, "last_port"), 7000);
	vmci_close(s);
	wait_exit(&t, "dg");
	td_stop(&t.d);
	td_cleanup(&t.d);
}

static int
unix_fd(const char *path, bool listening)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ASSERT_GE(fd, 0);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	if (listening) {
		unlink(path);
		ASSERT_OK(bind(fd, (struct sockaddr *)&a, sizeof(a)));
		ASSERT_OK(listen(fd, 1));
	} else {
		ASSERT_OK(connect(fd, (struct sockaddr *)&a, sizeof(a)));
	}
	return fd;
}

/* Firecracker's hybrid vsock: existing host tools reach the guest over a UNIX socket. */
TEST(vsock_hybrid)
{
	static uint8_t buf[1 << 16], want[1 << 16];
	struct vt t;
	char line[1024], path[256], port_path[300];
	uint64_t sum = 0, reply = 0, off = 0;
	struct vmf_sum vs;
	size_t got = 0;
	ssize_t n;
	int fd, l, c;

	vt_start(&t, NULL);
	ASSERT_GE(vm_start(&t, "hy", true, 0,
			   "vmf-vsock recv 6000 && vmf-vsock send 2 6100 4M", NULL, 0), 3);
	snprintf(path, sizeof(path), "%s/vms/hy/hybrid.sock", t.d.dir);
	snprintf(port_path, sizeof(port_path), "%s_6100", path);
	l = unix_fd(port_path, true);
	wait_console(&t, "hy", "VMF-READY", line, sizeof(line));

	/* Host to guest: CONNECT, OK, then the stream. */
	fd = unix_fd(path, false);
	ASSERT_EQ(write(fd, "CONNECT 6000\n", 13), 13);
	while (got < sizeof(line) - 1 && read(fd, line + got, 1) == 1 && line[got++] != '\n')
		;
	line[got] = 0;
	th_log("hybrid answer: %s", line);
	ASSERT(!strncmp(line, "OK ", 3));
	vmf_sum_init(&vs);
	for (off = 0; off < (4u << 20); off += sizeof(buf)) {
		vmf_pattern_fill(0, off, buf, sizeof(buf));
		vmf_sum_update(&vs, buf, sizeof(buf));
		ASSERT_EQ(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	}
	sum = vmf_sum_final(&vs);
	ASSERT_OK(shutdown(fd, SHUT_WR));
	ASSERT_EQ(read(fd, &reply, sizeof(reply)), (ssize_t)sizeof(reply));
	ASSERT_EQ(reply, sum);
	close(fd);

	/* Guest to host: CID 2 port 6100 lands on <path>_6100. */
	c = accept(l, NULL, NULL);
	ASSERT_GE(c, 0);
	vmf_sum_init(&vs);
	off = 0;
	while ((n = read(c, buf, sizeof(buf))) > 0) {
		vmf_pattern_fill(0, off, want, (size_t)n);
		ASSERT_EQ(memcmp(buf, want, (size_t)n), 0);
		vmf_sum_update(&vs, buf, (size_t)n);
		off += (uint64_t)n;
	}
	ASSERT_EQ(n, 0);
	ASSERT_EQ(off, 4u << 20);
	sum = vmf_sum_final(&vs);
	ASSERT_EQ(write(c, &sum, sizeof(sum)), (ssize_t)sizeof(sum));
	close(c);
	wait_console(&t, "hy", "op=send", line, sizeof(line));
	th_log("guest: %s", line);
	ASSERT(strstr(line, " ok=1"));
	ASSERT_EQ(result_u64(line, "peer_sum"), sum);
	close(l);
	unlink(port_path);
	wait_exit(&t, "hy");
	td_stop(&t.d);
	td_cleanup(&t.d);
}
