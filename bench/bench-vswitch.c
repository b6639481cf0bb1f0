/* SPDX-License-Identifier: MIT */
/*
 * bench/run vswitch: frames between two ports of a virtual switch, in the
 * same run against the Linux bridge.
 *   vswitch_vnic  two process vNICs on vmfabricd's vSwitch0 (VMQ on), and
 *                 two veth ports of a Linux bridge in network namespaces
 *                 driven by AF_PACKET with mmap rings on both sides; 64 B
 *                 and 1500 B frames (mpps, gbit_s, and the switch's CPU
 *                 seconds per million frames: the daemon's, or the
 *                 kernel's time in the generator's system calls)
 *   vswitch_vmq   the vNIC pair on vSwitch0 (VMQ on) and on vSwitch1 (VMQ
 *                 off: every frame through the default queue)
 *   vswitch_filecopy  the VMQ study's file copy: three senders in a
 *                 "clients" namespace behind an uplink (a veth pair) copy
 *                 files over TCP to three receivers in a namespace behind a
 *                 VMkernel adapter (a TAP port), with vSwitch0's VMQ on and
 *                 then off; seconds per copy of the three, throughput, and
 *                 the host's CPU seconds per GB (every CPU's non-idle time,
 *                 /proc/stat: senders, receivers, kernel and switch alike;
 *                 the daemon's own beside it). VMQ on is VMQ at the NIC:
 *                 the uplink's XDP program puts the receivers' frames into
 *                 the VMkernel adapter's own AF_XDP socket; off, every
 *                 frame takes the AF_PACKET ring and the default queue.
 *   vswitch_testpmd  DPDK's testpmd with two net_virtio_user ports in io
 *                 forwarding on one lcore, looped through two vhost-user
 *                 ports of vSwitch0 (the daemon's dataplane pinned to the
 *                 other CPU), against the same testpmd looped through a
 *                 second testpmd with two net_vhost ports (DPDK's own
 *                 vhost): bench/testpmd.sh fwd and loop
 * The generator and the sink are one thread (a batch out, then whatever
 * arrived in), so that with the switch's own thread no more than two
 * threads spin on these two CPUs.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <math.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/times.h>
#include <unistd.h>

#include "bench.h"
#include "vmfabric/vmci.h"
#include "vmfabric/vnic.h"

#define BATCH 256

static void
die(const char *what, int err)
{
	fprintf(stderr, "bench vswitch: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

/* CPU seconds (user + system) of process @pid so far. */
static double
cpu_of(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut, st;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (!(f = fopen(path, "r")))
		return 0;
	p = fgets(buf, sizeof(buf), f);
	fclose(f);
	if (!p || !(p = strrchr(buf, ')')))
		return 0;
	/* After ")": state, ppid, pgrp, session, tty, tpgid, flags, minflt, cminflt, majflt, cmajflt, utime, stime */
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return 0;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

struct result {
	double mpps, gbit_s, cpu_s_per_mpkt;
};

/* Every thread of @pid (the daemon: its dataplane) onto CPU @cpu, away from the generator. */
static void
pin_all(const struct bench_opts *o, pid_t pid, int cpu)
{
	char path[64];
	cpu_set_t set;
	struct dirent *e;
	DIR *dir;

	if (!o->pin)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu % (int)sysconf(_SC_NPROCESSORS_ONLN), &set);
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	if (!(dir = opendir(path)))
		return;
	while ((e = readdir(dir)))
		if (e->d_name[0] != '.')
			sched_setaffinity(atoi(e->d_name), sizeof(set), &set);
	closedir(dir);
}

static void
fill(uint8_t *f, size_t len, const uint8_t *dst, const uint8_t *src)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	/*
	 * IEEE's local experimental EtherType: the bytes after it are no IP
	 * header, and a bridge with netfilter on (br_netfilter) would drop
	 * them as such.
	 */
	f[12] = 0x88, f[13] = 0xb5;
	for (size_t i = 14; i < len; i++)
		f[i] = (uint8_t)i;
}

/* ---------------------------------------------------------------------- */
/* vmfabric: two vNICs */

static struct result
run_vnic(const struct bench_opts *o, pid_t daemon, const char *pg, size_t len)
{
	static uint8_t frame[2048], buf[2048], rbuf[BATCH][2048];
	static struct iovec out[BATCH], in[BATCH];
	static size_t lens[BATCH];
	double dur = o->quick ? 0.5 : 1.5, t0, t1, c0, c1;
	struct vmf_vnic *a = NULL, *b = NULL;
	uint8_t ma[6], mb[6];
	uint64_t got = 0;
	int err;

	if ((err = vmf_vnic_open(pg, NULL, &a)) || (err = vmf_vnic_open(pg, NULL, &b)))
		die("vnic open", err);
	vmf_vnic_mac(a, ma);
	vmf_vnic_mac(b, mb);
	/* Each side speaks once so that the switch knows both. */
	fill(frame, 60, ma, mb);
	vmf_vnic_send(b, frame, 60, 0);
	fill(frame, len, mb, ma);
	vmf_vnic_send(a, frame, len, 0);
	usleep(20000);
	while (vmf_vnic_recv(a, buf, sizeof(buf), MSG_DONTWAIT) > 0 ||
	       vmf_vnic_recv(b, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
	t0 = bench_now();
	c0 = cpu_of(daemon);
	for (int i = 0; i < BATCH; i++) {
		out[i] = (struct iovec){ frame, len };
		in[i] = (struct iovec){ rbuf[i], sizeof(rbuf[i]) };
	}
	do {
		(void)vmf_vnic_send_batch(a, out, BATCH);
		for (int k = 0, r = BATCH; k < 4 && r == BATCH; k++) {
			r = vmf_vnic_recv_batch(b, in, lens, BATCH);
			if (r > 0)
				got += (uint64_t)r;
		}
		t1 = bench_now();
	} while (t1 - t0 < dur);
	c1 = cpu_of(daemon);
	vmf_vnic_close(a);
	vmf_vnic_close(b);
	return (struct result){ got / (t1 - t0) / 1e6, got * len * 8 / (t1 - t0) / 1e9,
				got ? (c1 - c0) / (got / 1e6) : 0 };
}

/* ---------------------------------------------------------------------- */
/* The Linux bridge: veth ports in namespaces, AF_PACKET with mmap rings */

#define RING_FRAME 2048u
#define TX_FRAMES 256u
#define RX_FRAMES 4096u

static bool bridge_up;

static int
sh(const char *cmd)
{
	int r = system(cmd);

	return r == 0 ? 0 : -1;
}

static void
bridge_down(void)
{
	if (bridge_up)
		(void)sh("ip netns del vmfb-a 2>/dev/null; ip netns del vmfb-b 2>/dev/null; "
			 "ip netns del vmfb-br 2>/dev/null");
	bridge_up = false;
}

/* vmfb-a:va <-> va-br [br0 in vmfb-br] vb-br <-> vb:vmfb-b. Why not, in @why. */
static int
bridge_setup(char *why, size_t len)
{
	if (geteuid() != 0) {
		snprintf(why, len, "needs root (network namespaces)");
		return -1;
	}
	if (sh("command -v ip >/dev/null 2>&1")) {
		snprintf(why, len, "no ip command (iproute2)");
		return -1;
	}
	bridge_down();
	bridge_up = true;
	atexit(bridge_down);
	if (sh("ip netns add vmfb-a && ip netns add vmfb-b && ip netns add vmfb-br && "
	       "ip -n vmfb-br link add br0 type bridge && "
	       "ip -n vmfb-br link add va-br type veth peer name va netns vmfb-a && "
	       "ip -n vmfb-br link add vb-br type veth peer name vb netns vmfb-b && "
	       "ip -n vmfb-br link set dev va-br master br0 && ip -n vmfb-br link set dev vb-br master br0 && "
	       "ip -n vmfb-br link set dev br0 up && ip -n vmfb-br link set dev va-br up && "
	       "ip -n vmfb-br link set dev vb-br up && ip -n vmfb-a link set dev va up && "
	       "ip -n vmfb-b link set dev vb up")) {
		snprintf(why, len, "could not make the namespaces, veth pairs and bridge");
		bridge_down();
		return -1;
	}
	return 0;
}

struct ring {
	int fd;
	uint8_t *map;
	unsigned frames, next;
};

/* An AF_PACKET socket on @ifname in namespace @ns with a TX or RX ring. */
static void
ring_open(struct ring *r, const char *ns, const char *ifname, bool tx)
{
	char path[64];
	int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC), nsfd, ver = TPACKET_V2;
	struct tpacket_req req = { .tp_block_size = RING_FRAME * 16, .tp_frame_size = RING_FRAME };
	struct sockaddr_ll a = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL) };
	struct ifreq ifr = { 0 };

	snprintf(path, sizeof(path), "/var/run/netns/%s", ns);
	nsfd = open(path, O_RDONLY | O_CLOEXEC);
	if (self < 0 || nsfd < 0 || setns(nsfd, CLONE_NEWNET) < 0)
		die("setns", errno);
	r->fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, tx ? 0 : htons(ETH_P_ALL));
	if (r->fd < 0)
		die("AF_PACKET socket", errno);
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(r->fd, SIOCGIFINDEX, &ifr) < 0)
		die(ifname, errno);
	a.sll_ifindex = ifr.ifr_ifindex;
	r->frames = tx ? TX_FRAMES : RX_FRAMES;
	req.tp_frame_nr = r->frames;
	req.tp_block_nr = r->frames / 16;
	if (setsockopt(r->fd, SOL_PACKET, PACKET_VERSION, &ver, sizeof(ver)) < 0 ||
	    setsockopt(r->fd, SOL_PACKET, tx ? PACKET_TX_RING : PACKET_RX_RING, &req, sizeof(req)) <
		    0)
		die("packet ring", errno);
	r->map = mmap(NULL, (size_t)r->frames * RING_FRAME, PROT_READ | PROT_WRITE, MAP_SHARED,
		      r->fd, 0);
	if (r->map == MAP_FAILED)
		die("packet ring mmap", errno);
	if (bind(r->fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("packet bind", errno);
	r->next = 0;
	if (setns(self, CLONE_NEWNET) < 0)
		die("setns back", errno);
	close(self);
	close(nsfd);
}

static void
ring_close(struct ring *r)
{
	munmap(r->map, (size_t)r->frames * RING_FRAME);
	close(r->fd);
}

static struct tpacket2_hdr *
slot(struct ring *r, unsigned i)
{
	return (struct tpacket2_hdr *)(r->map + (size_t)i * RING_FRAME);
}

/* Queue what fits of a batch on the TX ring and kick it once. */
static void
tx_batch(struct ring *r, const uint8_t *frame, size_t len)
{
	for (int i = 0; i < BATCH; i++) {
		struct tpacket2_hdr *h = slot(r, r->next);

		if (__atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE) != TP_STATUS_AVAILABLE)
			break;
		memcpy((uint8_t *)h + TPACKET2_HDRLEN - sizeof(struct sockaddr_ll), frame, len);
		h->tp_len = (unsigned)len;
		__atomic_store_n(&h->tp_status, TP_STATUS_SEND_REQUEST, __ATOMIC_RELEASE);
		r->next = (r->next + 1) % r->frames;
	}
	(void)send(r->fd, NULL, 0, MSG_DONTWAIT);
}

static uint64_t
rx_drain(struct ring *r)
{
	uint64_t n = 0;

	for (;;) {
		struct tpacket2_hdr *h = slot(r, r->next);

		if (!(__atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER))
			break;
		n++;
		__atomic_store_n(&h->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
		r->next = (r->next + 1) % r->frames;
	}
	return n;
}

static struct result
run_bridge(const struct bench_opts *o, size_t len)
{
	static uint8_t frame[2048];
	double dur = o->quick ? 0.5 : 1.5, t0, t1;
	struct ring tx, rx;
	struct tms c0, c1;
	uint64_t got = 0;

	static const uint8_t ma[6] = { 0x02, 0x00, 0x5e, 0, 0, 1 }, mb[6] = { 0x02, 0x00, 0x5e, 0, 0, 2 },
			     bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

	ring_open(&tx, "vmfb-a", "va", true);
	ring_open(&rx, "vmfb-b", "vb", false);
	/* The sink speaks once, so that the bridge forwards to it as a known address. */
	fill(frame, 60, bcast, mb);
	if (send(rx.fd, frame, 60, 0) != 60)
		die("bridge: first frame", errno);
	fill(frame, len, mb, ma);
	tx_batch(&tx, frame, len);
	usleep(20000);
	rx_drain(&rx);
	t0 = bench_now();
	times(&c0);
	do {
		tx_batch(&tx, frame, len);
		got += rx_drain(&rx);
		t1 = bench_now();
	} while (t1 - t0 < dur);
	times(&c1);
	ring_close(&tx);
	ring_close(&rx);
	/* The bridge forwards in the generator's system calls (and softirqs): its kernel time. */
	double cpu = (double)(c1.tms_stime - c0.tms_stime) / (double)sysconf(_SC_CLK_TCK);
	return (struct result){ got / (t1 - t0) / 1e6, got * len * 8 / (t1 - t0) / 1e9,
				got ? cpu / (got / 1e6) : 0 };
}

/* ---------------------------------------------------------------------- */
/* File copies through the uplink (VMQ on and off) */

#define FC_STREAMS 3

/* Non-idle CPU seconds of the whole host so far (/proc/stat, every CPU). */
static double
host_cpu(void)
{
	unsigned long long v[8] = { 0 };
	FILE *f = fopen("/proc/stat", "r");
	int n = f ? fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
			   &v[3], &v[4], &v[5], &v[6], &v[7])
		  : 0;

	if (f)
		fclose(f);
	if (n < 8)
		return 0;
	/* user nice system idle iowait irq softirq steal: all but idle and iowait */
	return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

static void
filecopy_down(void)
{
	(void)sh("ip netns del vmfb-cl 2>/dev/null; ip netns del vmfb-rx 2>/dev/null; "
		 "ip link del vmfb-cu 2>/dev/null");
}

/*
 * The clients' namespace behind veth vmfb-cu (the uplink's device), with
 * 10.78.0.11 on its end and offloads off (a wire delivers neither 64 KiB
 * segments nor missing checksums); the receivers' namespace is made here,
 * the VMkernel adapter moved into it once the daemon made it.
 */
static int
filecopy_setup(char *why, size_t len)
{
	if (geteuid() != 0 || sh("command -v ip >/dev/null 2>&1 && command -v ethtool >/dev/null 2>&1")) {
		snprintf(why, len, "needs root, iproute2 and ethtool (tools/setup-deps bench)");
		return -1;
	}
	filecopy_down();
	atexit(filecopy_down);
	if (sh("ip netns add vmfb-cl && ip netns add vmfb-rx && "
	       "ip link add vmfb-cu type veth peer name cl0 netns vmfb-cl && "
	       "ip link set dev vmfb-cu up && ip -n vmfb-cl link set dev lo up && "
	       "ip -n vmfb-cl addr add 10.78.0.11/24 dev cl0 && "
	       "ip -n vmfb-cl link set dev cl0 up && "
	       "ip netns exec vmfb-cl ethtool -K cl0 tx off tso off gso off >/dev/null")) {
		snprintf(why, len, "could not make the namespaces and the veth pair");
		return -1;
	}
	return 0;
}

static const char fc_config[] =
	"vswitch0.name = \"vSwitch0\"\nvswitch0.vmq = \"TRUE\"\n"
	"portgroup0.name = \"VM Network\"\nportgroup0.vswitch = \"vSwitch0\"\n"
	"uplink0.name = \"vmnic1\"\nuplink0.device = \"vmfb-cu\"\nuplink0.vswitch = \"vSwitch0\"\n"
	"vmk0.name = \"vmfb-vmk\"\nvmk0.portgroup = \"VM Network\"\n";

/* The VMF-RESULT line a popen'ed vmf-tcp prints (after VMF-READY for recv), or "". */
static void
read_result(FILE *p, const char *want, char *line, size_t len)
{
	line[0] = 0;
	while (fgets(line, (int)len, p))
		if (strstr(line, want))
			return;
	line[0] = 0;
}

struct fc_result {
	double seconds, gbit_s, cpu_s_per_gb, daemon_cpu_s_per_gb;
	bool ok;
};

/* One round: three receivers, then three senders at once; wall time until all are done. */
static struct fc_result
filecopy_round(pid_t daemon, unsigned long long bytes, unsigned timeout)
{
	FILE *rx[FC_STREAMS], *tx[FC_STREAMS];
	char cmd[512], line[512];
	struct fc_result r = { .ok = true };
	double t0, c0, d0;

	for (int i = 0; i < FC_STREAMS; i++) {
		snprintf(cmd, sizeof(cmd),
			 "ip netns exec vmfb-rx " VMF_TCP_PATH " recv %d --timeout %u 2>&1", 7300 + i,
			 timeout);
		if (!(rx[i] = popen(cmd, "r")))
			die("popen", errno);
		read_result(rx[i], "VMF-READY", line, sizeof(line));
		if (!line[0])
			die("vmf-tcp recv did not start", EIO);
	}
	t0 = bench_now();
	c0 = host_cpu();
	d0 = cpu_of(daemon);
	for (int i = 0; i < FC_STREAMS; i++) {
		snprintf(cmd, sizeof(cmd),
			 "ip netns exec vmfb-cl " VMF_TCP_PATH " send 10.78.0.1 %d %llu --timeout %u "
			 "--connect-timeout 10 2>&1",
			 7300 + i, bytes, timeout);
		if (!(tx[i] = popen(cmd, "r")))
			die("popen", errno);
	}
	for (int i = 0; i < FC_STREAMS; i++) {
		read_result(tx[i], "VMF-RESULT", line, sizeof(line));
		if (!strstr(line, " ok=1")) {
			fprintf(stderr, "bench vswitch: file copy: sender %d: %s\n", i,
				line[0] ? line : "no result");
			r.ok = false;
		}
		pclose(tx[i]);
	}
	r.seconds = bench_now() - t0;
	for (int i = 0; i < FC_STREAMS; i++) {
		read_result(rx[i], "VMF-RESULT", line, sizeof(line));
		r.ok &= strstr(line, " ok=1") != NULL;
		pclose(rx[i]);
	}
	double gb = (double)bytes * FC_STREAMS / 1e9;
	r.gbit_s = gb * 8 / r.seconds;
	r.cpu_s_per_gb = (host_cpu() - c0) / gb;
	r.daemon_cpu_s_per_gb = (cpu_of(daemon) - d0) / gb;
	return r;
}

static void
set_vmq(const struct bench_daemon *d, bool on)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd),
		 VMFABRIC_CLI_PATH " --socket %s network vswitch standard set --vswitch-name vSwitch0 "
				   "--vmq %s >/dev/null",
		 d->sock, on ? "on" : "off");
	if (sh(cmd))
		die("network vswitch standard set --vmq", EIO);
}

static void
run_filecopy(const struct bench_opts *o)
{
	static const unsigned long long quick[] = { 4096, 1ull << 20, 64ull << 20, 256ull << 20 };
	static const unsigned long long full[] = { 4096, 1ull << 20, 64ull << 20, 1ull << 30,
						   6ull << 30 };
	const unsigned long long *sizes = o->quick ? quick : full;
	size_t nsizes = o->quick ? 4 : 5;
	struct bench_daemon d;
	char why[160];
	double ratio_sum = 0;
	int nratio = 0;

	if (filecopy_setup(why, sizeof(why))) {
		bench_note("vswitch_filecopy skipped: %s", why);
		return;
	}
	bench_daemon_start(&d, VMFABRICD_PATH, fc_config);
	{
		char cmd[256];

		snprintf(cmd, sizeof(cmd),
			 VMFABRIC_CLI_PATH " --socket %s network port list >/dev/null", d.sock);
		if (sh(cmd) || sh("ip link set dev vmfb-vmk netns vmfb-rx && "
				  "ip -n vmfb-rx addr add 10.78.0.1/24 dev vmfb-vmk && "
				  "ip -n vmfb-rx link set dev vmfb-vmk up && "
				  "ip -n vmfb-rx link set dev lo up"))
			die("the receivers' VMkernel adapter", EIO);
	}
	for (size_t k = 0; k < nsizes; k++) {
		unsigned long long b = sizes[k];
		unsigned timeout = 60 + (unsigned)(b * FC_STREAMS / (20u << 20)); /* >= 20 MiB/s */
		struct fc_result v[2];
		int rounds = b <= (64ull << 20) ? 3 : 1;

		for (int on = 1; on >= 0; on--) {
			double best = 1e300;

			set_vmq(&d, on);
			/* Small copies are noisy: the fastest of a few rounds. */
			for (int r = 0; r < rounds; r++) {
				struct fc_result x = filecopy_round(d.pid, b, timeout);

				if (!x.ok)
					die("a file copy failed", EIO);
				if (x.seconds < best) {
					best = x.seconds;
					v[on] = x;
				}
			}
			char fields[128];

			snprintf(fields, sizeof(fields),
				 "\"vmq\":\"%s\",\"file_bytes\":%llu,\"streams\":%d,"
				 "\"daemon_cpu_s_per_gb\":%.3f",
				 on ? "on" : "off", b, FC_STREAMS, v[on].daemon_cpu_s_per_gb);
			bench_emit_fields("vswitch_filecopy", on ? "vmfabric" : "vmfabric_vmq_off",
					  (long)b, "blocking", fields, "seconds", v[on].seconds);
			bench_emit_fields("vswitch_filecopy", on ? "vmfabric" : "vmfabric_vmq_off",
					  (long)b, "blocking", fields, "gbit_s", v[on].gbit_s);
			bench_emit_fields("vswitch_filecopy", on ? "vmfabric" : "vmfabric_vmq_off",
					  (long)b, "blocking", fields, "cpu_s_per_gb",
					  v[on].cpu_s_per_gb);
		}
		bench_note("vswitch_filecopy %llu B x %d: VMQ on/off throughput %.2fx, copy time "
			   "%+.0f%% (the study: -60%%), host CPU s/GB %.2f on, %.2f off",
			   b, FC_STREAMS, v[1].gbit_s / v[0].gbit_s,
			   100 * (v[1].seconds / v[0].seconds - 1), v[1].cpu_s_per_gb,
			   v[0].cpu_s_per_gb);
		if (b >= (64ull << 20)) {
			ratio_sum += v[1].gbit_s / v[0].gbit_s;
			nratio++;
		}
	}
	bench_daemon_stop(&d);
	filecopy_down();
	if (nratio)
		bench_target("filecopy_vmq_ratio", ratio_sum / nratio, ">=", 2,
			     "file copy throughput, VMQ on / off (64 MiB and up; the study: 2x)");
}

/* ---------------------------------------------------------------------- */
/* DPDK testpmd through the switch and through DPDK's vhost */

/* The "mpps" of the JSON line bench/testpmd.sh @args prints, or NAN. */
static double
testpmd_mpps(const char *args)
{
	char cmd[1024], line[1024];
	double v = NAN;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "timeout 120 " VMFABRIC_SRC_DIR "/bench/testpmd.sh %s 2>&1", args);
	if (!(p = popen(cmd, "r")))
		return NAN;
	while (fgets(line, sizeof(line), p)) {
		const char *m = strstr(line, "\"mpps\":");

		if (!strncmp(line, "{\"bench\":\"vswitch_testpmd\",", 27) && m)
			v = strtod(m + 7, NULL);
		else if (strstr(line, "testpmd.sh:"))
			fprintf(stderr, "bench vswitch: %s", line);
	}
	pclose(p);
	return v;
}

static void
run_testpmd(const struct bench_opts *o)
{
	char dir[] = "/tmp/vmfb-tp-XXXXXX", conf[512], args[512];
	const char *secs = o->quick ? "4" : "8";
	struct bench_daemon d;
	double vm, dp, t0, c0, cpu;

	if (geteuid() != 0 || sh("command -v dpdk-testpmd >/dev/null 2>&1")) {
		bench_note("vswitch_testpmd skipped: needs root and dpdk-testpmd (tools/setup-deps dpdk)");
		return;
	}
	if (!mkdtemp(dir))
		die("mkdtemp", errno);
	snprintf(conf, sizeof(conf),
		 "vhostuser0.path = \"%s/p0.sock\"\nvhostuser0.portgroup = \"VM Network\"\n"
		 "vhostuser1.path = \"%s/p1.sock\"\nvhostuser1.portgroup = \"VM Network\"\n",
		 dir, dir);
	bench_daemon_start(&d, VMFABRICD_PATH, conf);
	pin_all(o, d.pid, 1);
	snprintf(args, sizeof(args), "fwd %s/p0.sock %s/p1.sock -s %s --cpu 0 --burst 256", dir, dir,
		 secs);
	t0 = bench_now();
	c0 = cpu_of(d.pid);
	vm = testpmd_mpps(args);
	/* The daemon's CPU over the whole run, testpmd's start and warm-up included: an upper bound. */
	cpu = (cpu_of(d.pid) - c0) / ((bench_now() - t0) * vm);
	bench_daemon_stop(&d);
	rmdir(dir);
	snprintf(args, sizeof(args), "loop -s %s --burst 256", secs);
	dp = testpmd_mpps(args);
	if (!isnan(vm)) {
		bench_emit_fields("vswitch_testpmd", "vmfabric", 64, "io_loop", "\"burst\":256", "mpps", vm);
		bench_emit_fields("vswitch_testpmd", "vmfabric", 64, "io_loop", "\"burst\":256",
				  "cpu_s_per_mpkt", cpu);
	}
	if (!isnan(dp))
		bench_emit_fields("vswitch_testpmd", "dpdk_vhost", 64, "io_loop", "\"burst\":256", "mpps",
				  dp);
	if (!isnan(vm) && !isnan(dp))
		bench_target("testpmd_vs_dpdk_vhost", vm / dp, ">=", 1,
			     "testpmd's loop through vmfabric's switch / through DPDK's vhost, Mpps");
}

/* ---------------------------------------------------------------------- */

static const char config[] =
	"context0.name = \"a\"\ncontext0.vmci0.id = \"3\"\ncontext0.vmci0.present = \"TRUE\"\n"
	"context0.uid = \"0\"\n"
	"vswitch0.name = \"vSwitch0\"\nvswitch0.vmq = \"TRUE\"\n"
	"vswitch1.name = \"vSwitch1\"\nvswitch1.vmq = \"FALSE\"\n"
	"portgroup0.name = \"VM Network\"\nportgroup0.vswitch = \"vSwitch0\"\n"
	"portgroup1.name = \"No VMQ\"\nportgroup1.vswitch = \"vSwitch1\"\n";

static void
emit(const char *bench, const char *system, size_t len, const char *fields, struct result r)
{
	bench_emit_fields(bench, system, (long)len, "blocking", fields, "mpps", r.mpps);
	bench_emit_fields(bench, system, (long)len, "blocking", fields, "gbit_s", r.gbit_s);
	bench_emit_fields(bench, system, (long)len, "blocking", fields, "cpu_s_per_mpkt",
			  r.cpu_s_per_mpkt);
}

static int
by_mpps(const void *a, const void *b)
{
	double x = ((const struct result *)a)->mpps, y = ((const struct result *)b)->mpps;

	return (x > y) - (x < y);
}

int
main(int argc, char **argv)
{
	static const size_t sizes[] = { 64, 1500 };
	struct bench_opts o;
	struct bench_daemon d;
	char why[128];
	bool bridge = false;
	int rounds;

	bench_parse(argc, argv, &o, "frames between two ports of vmfabricd's switch vs the Linux bridge");
	rounds = o.quick ? 1 : 3;
	bench_pin(&o, 0);
	if (o.only && strncmp("vswitch_vnic", o.only, strlen(o.only)) &&
	    strncmp("vswitch_vmq", o.only, strlen(o.only)))
		goto rest;
	bench_daemon_start(&d, VMFABRICD_PATH, config);
	pin_all(&o, d.pid, 1);
	vmci_set_context("a");
	bridge = bridge_setup(why, sizeof(why)) == 0;
	if (!bridge)
		bench_note("linux_bridge skipped: %s", why);
	for (size_t s = 0; s < 2; s++) {
		struct result v[3][3]; /* vmfabric, bridge, vmq off */

		for (int r = 0; r < rounds; r++) {
			v[0][r] = run_vnic(&o, d.pid, "VM Network", sizes[s]);
			v[2][r] = run_vnic(&o, d.pid, "No VMQ", sizes[s]);
			if (bridge)
				v[1][r] = run_bridge(&o, sizes[s]);
		}
		for (int k = 0; k < 3; k++)
			qsort(v[k], (size_t)rounds, sizeof(v[k][0]), by_mpps);
		emit("vswitch_vnic", "vmfabric", sizes[s], NULL, v[0][rounds / 2]);
		if (bridge)
			emit("vswitch_vnic", "linux_bridge", sizes[s], NULL, v[1][rounds / 2]);
		emit("vswitch_vmq", "vmfabric", sizes[s], "\"vmq\":\"on\"", v[0][rounds / 2]);
		emit("vswitch_vmq", "vmfabric_vmq_off", sizes[s], "\"vmq\":\"off\"",
		     v[2][rounds / 2]);
	}
	bench_daemon_stop(&d);
	bridge_down();
rest:
	if (!o.only || !strncmp("vswitch_testpmd", o.only, strlen(o.only)))
		run_testpmd(&o);
	if (!o.only || !strncmp("vswitch_filecopy", o.only, strlen(o.only)))
		run_filecopy(&o);
	double x = bench_value("vswitch_vnic", "vmfabric", 64, "blocking", "mpps");
	bench_target("vnic_64_mpps", x, ">=", 15, "64 B frames between vNICs, Mpps (one dataplane thread)");
	if (bridge)
		bench_target("vnic_vs_bridge_64", x / bench_value("vswitch_vnic", "linux_bridge", 64,
								 "blocking", "mpps"),
			     ">=", 10, "64 B frame rate, vmfabric / Linux bridge");
	bench_target("vmq_on_vs_off_64",
		     x / bench_value("vswitch_vmq", "vmfabric_vmq_off", 64, "blocking", "mpps"), ">=",
		     2, "64 B frame rate, VMQ on / off");
	bench_target("vmq_on_vs_off_1500",
		     bench_value("vswitch_vmq", "vmfabric", 1500, "blocking", "mpps") /
			     bench_value("vswitch_vmq", "vmfabric_vmq_off", 1500, "blocking", "mpps"),
		     ">=", 2, "1500 B frame rate, VMQ on / off");
	bench_note("cpu_s_per_mpkt: the switch's CPU seconds per million frames (vmfabric: the "
		   "daemon's; linux_bridge: kernel time of the generator, where the bridge runs)");
	return bench_report();
}
