/* SPDX-License-Identifier: MIT */
/*
 * VMQ at the NIC (switch/xsk.c): the XDP filter on the host end of a veth
 * pair whose other end is in a network namespace. Frames are sent from the
 * namespace through an AF_PACKET socket; those the filter knows must arrive
 * in their slot and nowhere else, the rest on an AF_PACKET socket on the
 * host end. Then the owners: a live one keeps the interface, a crashed one
 * leaves nothing behind, a stale program of ours is replaced and anyone
 * else's is left alone. Root only.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_link.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "daemon.h"
#include "harness.h"
#include "switch/xsk.h"

#define ETYPE 0x88b5 /* IEEE local experimental: nothing else sends it */
#define FLEN  64

struct net {
	const char *ns, *host, *peer;
	int tx;	     /* AF_PACKET in the namespace, on the peer end */
	int host_rx; /* AF_PACKET on the host end: the default queue */
};

static void
need_root(void)
{
	int fd;

	if (geteuid() != 0)
		SKIP("needs root (XDP, AF_XDP, a network namespace and a veth pair)");
	if (td_sh("command -v ip >/dev/null 2>&1"))
		SKIP("no ip command (iproute2)");
	fd = socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0);
	if (fd < 0 && (errno == EAFNOSUPPORT || errno == EPROTONOSUPPORT))
		SKIP("no AF_XDP in this kernel");
	if (fd >= 0)
		close(fd);
}

/* Whether `ip link show` lists an XDP program on @dev, waiting up to 1 s for @want. */
static bool
has_xdp(const char *dev, bool want)
{
	bool has = !want;

	for (int i = 0; i < 100 && has != want; i++) {
		if (i)
			usleep(10000);
		has = td_sh("ip link show dev %s | grep -q xdp", dev) == 0;
	}
	return has;
}

/* A raw socket on @ifname of the current namespace; @proto 0: send only. */
static int
packet_socket(const char *ifname, uint16_t proto)
{
	struct sockaddr_ll a = { .sll_family = AF_PACKET, .sll_protocol = htons(proto) };
	int one = 1, fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(proto));

	ASSERT(fd >= 0);
	a.sll_ifindex = (int)if_nametoindex(ifname);
	ASSERT(a.sll_ifindex > 0);
	if (proto)
		ASSERT_OK(setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one)));
	ASSERT_OK(bind(fd, (struct sockaddr *)&a, sizeof(a)));
	return fd;
}

static void
net_up(struct net *n, const char *ns, const char *host, const char *peer)
{
	char path[64];
	int self, there;

	n->ns = ns, n->host = host, n->peer = peer;
	(void)td_sh("ip netns del %s 2>/dev/null; ip link del %s 2>/dev/null", ns, host);
	/* One queue each way: the sockets serve queue 0 (veth has one per CPU by default). */
	ASSERT_EQ(td_sh("ip netns add %s && ip link add %s numtxqueues 1 numrxqueues 1 type veth "
		     "peer name %s numtxqueues 1 numrxqueues 1 netns %s",
		     ns, host, peer, ns),
		  0);
	/* No IPv6 on the sending end: no router solicitations among the frames counted. */
	(void)td_sh("ip netns exec %s sh -c 'echo 1 > /proc/sys/net/ipv6/conf/%s/disable_ipv6' "
		 "2>/dev/null",
		 ns, peer);
	ASSERT_EQ(td_sh("ip link set dev %s up && ip -n %s link set dev %s up", host, ns, peer), 0);
	snprintf(path, sizeof(path), "/run/netns/%s", ns);
	self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	there = open(path, O_RDONLY | O_CLOEXEC);
	ASSERT(self >= 0 && there >= 0);
	ASSERT_OK(setns(there, CLONE_NEWNET));
	n->tx = packet_socket(peer, 0);
	ASSERT_OK(setns(self, CLONE_NEWNET));
	close(self);
	close(there);
	n->host_rx = packet_socket(host, ETH_P_ALL);
}

static void
net_down(struct net *n)
{
	close(n->tx);
	close(n->host_rx);
	(void)td_sh("ip netns del %s; ip link del %s 2>/dev/null", n->ns, n->host);
}

static const uint8_t SRC[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x99 };
static const uint8_t MAC1[6] = { 0x02, 0x56, 0x4d, 0x00, 0x00, 0x01 };
static const uint8_t MAC2[6] = { 0x02, 0x56, 0x4d, 0x00, 0x00, 0x02 };
static const uint8_t MAC3[6] = { 0x02, 0x56, 0x4d, 0x00, 0x00, 0x03 };
static const uint8_t UNKNOWN[6] = { 0x02, 0x56, 0x4d, 0x00, 0x00, 0x77 };
static const uint8_t BCAST[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
static const uint8_t MCAST[6] = { 0x01, 0x00, 0x5e, 0x00, 0x00, 0x01 };

/*
 * A frame of @len bytes to @dst: untagged (@tpid 0) or with a tag
 * @tpid/@tci, EtherType ETYPE, and @id in its last four bytes (where it
 * stays when the stack takes the tag off).
 */
static size_t
frame_len(uint8_t *f, size_t len, const uint8_t *dst, uint16_t tpid, uint16_t tci, uint32_t id)
{
	size_t h = 12;

	memset(f, 0, len);
	memcpy(f, dst, 6);
	memcpy(f + 6, SRC, 6);
	if (tpid) {
		f[h] = (uint8_t)(tpid >> 8), f[h + 1] = (uint8_t)tpid;
		f[h + 2] = (uint8_t)(tci >> 8), f[h + 3] = (uint8_t)tci;
		h += 4;
	}
	f[h] = ETYPE >> 8, f[h + 1] = ETYPE & 0xff;
	memcpy(f + len - 4, &id, 4);
	return len;
}

static size_t
frame(uint8_t *f, const uint8_t *dst, uint16_t tpid, uint16_t tci, uint32_t id)
{
	return frame_len(f, FLEN, dst, tpid, tci, id);
}

static void
send_raw(struct net *n, const uint8_t *f, size_t len)
{
	for (int i = 0; i < 1000; i++) {
		ssize_t r = send(n->tx, f, len, 0);

		if (r == (ssize_t)len)
			return;
		ASSERT(r < 0 && (errno == EAGAIN || errno == ENOBUFS));
		usleep(1000);
	}
	ASSERT(!"send kept failing");
}

/* Frames received from a slot: the first ones kept (their first FLEN bytes), all counted. */
struct got {
	uint8_t f[16][FLEN];
	size_t len[16];
	uint32_t id[16];
	int n;
	uint32_t next_id; /* the bulk phase: ids must come in order */
	bool bulk;
	int out_of_order;
};

static void
got_frame(void *ctx, const struct iovec *v)
{
	struct got *g = ctx;
	uint32_t id;

	if (g->bulk) {
		ASSERT_EQ(v->iov_len, FLEN);
		memcpy(&id, (uint8_t *)v->iov_base + FLEN - 4, 4);
		if (id != g->next_id)
			g->out_of_order++;
		g->next_id = id + 1;
		g->n++;
		return;
	}
	ASSERT_LT(g->n, 16);
	ASSERT_GE(v->iov_len, 4);
	ASSERT_LE(v->iov_len, VMQ_FRAME_MAX);
	memcpy(g->f[g->n], v->iov_base, v->iov_len < FLEN ? v->iov_len : FLEN);
	memcpy(&g->id[g->n], (uint8_t *)v->iov_base + v->iov_len - 4, 4);
	g->len[g->n++] = v->iov_len;
}

/* Ids (and lengths) seen on the host end's AF_PACKET socket (frames of ETYPE only). */
struct seen {
	uint32_t id[64];
	size_t len[64];
	int n;
};

static void
host_drain(struct net *n, struct seen *s)
{
	static uint8_t b[16384];
	ssize_t r;

	while ((r = recv(n->host_rx, b, sizeof(b), 0)) > 0) {
		uint32_t id;

		if (r < 18 || (b[12] << 8 | b[13]) != ETYPE)
			continue; /* the stack took any tag off */
		memcpy(&id, b + r - 4, 4);
		ASSERT_LT(s->n, 64);
		s->len[s->n] = (size_t)r;
		s->id[s->n++] = id;
	}
}

static bool
seen_has(const struct seen *s, uint32_t id)
{
	for (int i = 0; i < s->n; i++)
		if (s->id[i] == id)
			return true;
	return false;
}

/* Collect until the slots and the host have what is expected, then 50 ms more. */
static void
collect(struct net *n, struct xsk_dev *x, int *slot, struct got *g, int nslots, struct seen *s,
	int want_host, const int *want_slot)
{
	bool done = false;

	for (int t = 0; t < 2000; t++) {
		done = s->n >= want_host;
		host_drain(n, s);
		for (int i = 0; i < nslots; i++) {
			ASSERT_GE(xsk_recv(x, slot[i], 64, got_frame, &g[i]), 0);
			done = done && g[i].n >= want_slot[i];
		}
		if (done)
			break;
		usleep(1000);
	}
	usleep(50000);
	host_drain(n, s);
	for (int i = 0; i < nslots; i++)
		ASSERT_GE(xsk_recv(x, slot[i], 64, got_frame, &g[i]), 0);
}

static void
expect_counters(struct xsk_dev *x, uint64_t hit, uint64_t pass)
{
	struct xsk_counters c;

	ASSERT_OK(xsk_get_counters(x, &c));
	ASSERT_EQ(c.hit, hit);
	ASSERT_EQ(c.pass, pass);
	ASSERT_EQ(c.redirect_failed, 0);
}

TEST(xsk_filter)
{
	struct net n;
	struct xsk_dev *x, *y;
	struct xsk_info info;
	struct xsk_slot_counters sc;
	struct got g[2];
	struct seen s = { 0 };
	uint8_t f[FLEN];
	int slot[2], fds, want[2];

	need_root();
	net_up(&n, "vmft-xsk1", "vmft-xa0", "vmft-xa1");
	fds = th_count_fds();
	ASSERT_OK(xsk_open("vmft-xa0", &x));
	xsk_get_info(x, &info);
	th_log("attached in %s mode (driver mode: %s), %s, program %u",
	       info.native ? "native" : "generic", info.native ? "ok" : strerror(-info.native_err),
	       info.zerocopy ? "zero-copy" : "copy mode", info.prog_id);
	ASSERT_EQ(info.frame_max, VMQ_FRAME_MAX);
	ASSERT(has_xdp("vmft-xa0", true));
	/* A live owner keeps the interface. */
	ASSERT_EQ(xsk_open("vmft-xa0", &y), -EBUSY);
	ASSERT_EQ(xsk_open("vmft-nonesuch", &y), -ENODEV);

	slot[0] = xsk_slot_create(x);
	slot[1] = xsk_slot_create(x);
	ASSERT_EQ(slot[0], 0);
	ASSERT_EQ(slot[1], 1);
	ASSERT(xsk_slot_fd(x, slot[0]) >= 0);
	ASSERT_EQ(xsk_slot_fd(x, 7), -EINVAL);
	ASSERT_OK(xsk_filter_set(x, MAC1, 10, slot[0]));
	ASSERT_OK(xsk_filter_set(x, MAC3, 0, slot[0]));
	ASSERT_OK(xsk_filter_set(x, MAC2, 20, slot[1]));
	ASSERT_EQ(xsk_filter_set(x, BCAST, 10, slot[0]), -EINVAL);
	ASSERT_EQ(xsk_filter_set(x, MCAST, 0, slot[0]), -EINVAL);
	ASSERT_EQ(xsk_filter_set(x, MAC1, 4095, slot[0]), -EINVAL);
	ASSERT_EQ(xsk_filter_set(x, MAC1, 10, 7), -EINVAL);
	ASSERT_EQ(xsk_filter_set(x, MAC1, 10, -1), -EINVAL);
	ASSERT_EQ(xsk_recv(x, 7, 64, got_frame, &g[0]), -EINVAL);

	/* Ids: 1xx for slot 0, 2xx for slot 1, 9xx for the default queue. */
	memset(g, 0, sizeof(g));
	send_raw(&n, f, frame(f, MAC1, 0x8100, 10, 100));	   /* (MAC1, 10) */
	send_raw(&n, f, frame(f, MAC2, 0x8100, 20, 200));	   /* (MAC2, 20) */
	send_raw(&n, f, frame(f, MAC1, 0x8100, 0xa000 | 10, 101)); /* priority bits: still 10 */
	send_raw(&n, f, frame(f, MAC3, 0, 0, 102));		   /* (MAC3, untagged) */
	send_raw(&n, f, frame(f, MAC3, 0x8100, 0x6000, 103));	   /* priority-tagged: VLAN 0 */
	send_raw(&n, f, frame(f, MAC1, 0x8100, 20, 900));	   /* right MAC, wrong VLAN */
	send_raw(&n, f, frame(f, MAC2, 0, 0, 901));		   /* untagged */
	send_raw(&n, f, frame(f, BCAST, 0x8100, 10, 902));
	send_raw(&n, f, frame(f, UNKNOWN, 0x8100, 10, 903));
	send_raw(&n, f, frame(f, MCAST, 0, 0, 904));
	send_raw(&n, f, frame(f, MAC1, 0x8100, 0xfff, 905)); /* VID 4095 */
	send_raw(&n, f, frame(f, MAC1, 0x88a8, 10, 906));    /* 802.1ad */
	/* Too short for its tag: passed; the stack drops it before any socket. */
	frame(f, MAC1, 0x8100, 10, 0);
	send_raw(&n, f, 16);
	want[0] = 4, want[1] = 1;
	collect(&n, x, slot, g, 2, &s, 7, want);

	ASSERT_EQ(g[0].n, 4);
	ASSERT_EQ(g[1].n, 1);
	{
		static const struct {
			int slot, i;
			const uint8_t *dst;
			uint16_t tpid, tci;
			uint32_t id;
		} in[] = {
			{ 0, 0, MAC1, 0x8100, 10, 100 }, { 0, 1, MAC1, 0x8100, 0xa000 | 10, 101 },
			{ 0, 2, MAC3, 0, 0, 102 },	 { 0, 3, MAC3, 0x8100, 0x6000, 103 },
			{ 1, 0, MAC2, 0x8100, 20, 200 },
		};
		/* Whole, tag included, in order. */
		for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
			size_t len = frame(f, in[i].dst, in[i].tpid, in[i].tci, in[i].id);

			ASSERT_EQ(g[in[i].slot].len[in[i].i], len);
			ASSERT_MEM_EQ(g[in[i].slot].f[in[i].i], f, len);
		}
	}
	ASSERT_EQ(s.n, 7);
	for (uint32_t id = 900; id <= 906; id++)
		ASSERT(seen_has(&s, id));
	expect_counters(x, 5, 8);
	ASSERT_OK(xsk_get_slot_counters(x, slot[0], &sc));
	ASSERT_EQ(sc.rx_frames, 4);
	ASSERT_EQ(sc.rx_bytes, 4 * FLEN);
	ASSERT_EQ(sc.bad_desc, 0);
	ASSERT_EQ(sc.rx_dropped, 0);
	ASSERT_EQ(sc.rx_ring_full, 0);
	ASSERT_EQ(sc.rx_invalid, 0);

	/* An entry removed: its frames pass. */
	ASSERT_OK(xsk_filter_del(x, MAC1, 10));
	ASSERT_EQ(xsk_filter_del(x, MAC1, 10), -ENOENT);
	memset(g, 0, sizeof(g));
	s.n = 0;
	send_raw(&n, f, frame(f, MAC1, 0x8100, 10, 907));
	want[0] = 0, want[1] = 0;
	collect(&n, x, slot, g, 2, &s, 1, want);
	ASSERT_EQ(s.n, 1);
	ASSERT_EQ(s.id[0], 907);
	ASSERT_EQ(g[0].n, 0);
	expect_counters(x, 5, 9);

	/*
	 * Many frames through one slot, received in batches: more than the
	 * UMEM has frames, so every frame goes back to the fill ring.
	 */
	memset(g, 0, sizeof(g));
	g[1].bulk = true;
	g[1].next_id = 1000;
	for (uint32_t round = 0; round < 50; round++) {
		for (uint32_t i = 0; i < 128; i++)
			send_raw(&n, f, frame(f, MAC2, 0x8100, 20, 1000 + round * 128 + i));
		want[0] = 0, want[1] = (int)((round + 1) * 128);
		collect(&n, x, slot, g, 2, &s, 1, want);
	}
	ASSERT_EQ(g[1].n, 50 * 128);
	ASSERT_EQ(g[1].out_of_order, 0);
	ASSERT_EQ(g[0].n, 0);
	ASSERT_EQ(s.n, 1); /* nothing more on the default queue */
	expect_counters(x, 5 + 50 * 128, 9);
	ASSERT_OK(xsk_get_slot_counters(x, slot[1], &sc));
	ASSERT_EQ(sc.rx_frames, 1 + 50 * 128);
	ASSERT_EQ(sc.rx_dropped, 0);
	ASSERT_EQ(sc.fill_ring_empty, 0);

	/*
	 * A slot destroyed with frames waiting: its entries go (their frames
	 * pass), the frames are dropped, and the slot made next in its place
	 * starts empty.
	 */
	for (uint32_t i = 0; i < 10; i++)
		send_raw(&n, f, frame(f, MAC2, 0x8100, 20, 300 + i));
	{
		struct pollfd p = { .fd = xsk_slot_fd(x, slot[1]), .events = POLLIN };

		ASSERT_EQ(poll(&p, 1, 2000), 1);
		usleep(20000); /* all ten */
	}
	xsk_slot_destroy(x, slot[1]);
	ASSERT_EQ(xsk_slot_fd(x, slot[1]), -EINVAL);
	ASSERT_EQ(xsk_filter_del(x, MAC2, 20), -ENOENT);
	ASSERT_EQ(xsk_slot_create(x), slot[1]);
	memset(g, 0, sizeof(g));
	s.n = 0;
	send_raw(&n, f, frame(f, MAC2, 0x8100, 20, 908));
	want[0] = 0, want[1] = 0;
	collect(&n, x, slot, g, 2, &s, 1, want);
	ASSERT_EQ(g[1].n, 0);
	ASSERT_EQ(s.n, 1);
	ASSERT_EQ(s.id[0], 908);
	ASSERT_OK(xsk_filter_set(x, MAC2, 20, slot[1]));
	send_raw(&n, f, frame(f, MAC2, 0x8100, 20, 201));
	want[1] = 1;
	collect(&n, x, slot, g, 2, &s, 1, want);
	ASSERT_EQ(g[1].n, 1);
	ASSERT_EQ(g[0].n, 0);
	ASSERT_OK(xsk_get_slot_counters(x, slot[1], &sc));
	ASSERT_EQ(sc.rx_frames, 1);
	expect_counters(x, 5 + 50 * 128 + 10 + 1, 10);

	/* Detached: nothing left on the interface, nothing leaked. */
	xsk_close(x);
	ASSERT(!has_xdp("vmft-xa0", false));
	ASSERT_EQ(th_count_fds(), fds);
	net_down(&n);
}

/* Load the embedded program ourselves and attach it the old way (netlink), as if left behind. */
static void
attach_stale(const char *dev)
{
	LIBBPF_OPTS(bpf_object_open_opts, o, .object_name = "stale");
	struct bpf_object *obj = bpf_object__open_mem(vmq_bpf_obj, vmq_bpf_obj_len, &o);
	struct bpf_program *p;

	ASSERT(obj);
	ASSERT_OK(bpf_object__load(obj));
	p = bpf_object__find_program_by_name(obj, VMQ_PROG_NAME);
	ASSERT(p);
	ASSERT_OK(
	    bpf_xdp_attach((int)if_nametoindex(dev), bpf_program__fd(p), XDP_FLAGS_SKB_MODE, NULL));
	bpf_object__close(obj); /* the interface keeps the program */
}

TEST(xsk_owners)
{
	struct net n;
	struct xsk_dev *x;
	struct seen s = { 0 };
	struct got g[1];
	uint8_t f[FLEN];
	int slot, status, want[1] = { 1 }, fds;
	pid_t pid;

	need_root();
	net_up(&n, "vmft-xsk2", "vmft-xb0", "vmft-xb1");
	fds = th_count_fds();

	/* A crashed owner: the kernel takes its program off with its link. */
	pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		if (xsk_open("vmft-xb0", &x) || (slot = xsk_slot_create(x)) < 0 ||
		    xsk_filter_set(x, MAC1, 0, slot))
			_exit(1);
		kill(getpid(), SIGKILL);
		_exit(2);
	}
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	ASSERT(!has_xdp("vmft-xb0", false));

	/* A program of ours attached without a link and left: replaced. */
	attach_stale("vmft-xb0");
	ASSERT(has_xdp("vmft-xb0", true));
	ASSERT_OK(xsk_open("vmft-xb0", &x));
	slot = xsk_slot_create(x);
	ASSERT_GE(slot, 0);
	ASSERT_OK(xsk_filter_set(x, MAC1, 0, slot));
	memset(g, 0, sizeof(g));
	send_raw(&n, f, frame(f, MAC1, 0, 0, 100));
	collect(&n, x, &slot, g, 1, &s, 0, want);
	ASSERT_EQ(g[0].n, 1);
	ASSERT_EQ(s.n, 0);
	expect_counters(x, 1, 0); /* ours, not the stale one's maps */
	xsk_close(x);
	ASSERT(!has_xdp("vmft-xb0", false));

	/* Someone else's program is left alone. */
	{
		struct bpf_insn pass[2];
		int ifindex = (int)if_nametoindex("vmft-xb0"), prog;

		memset(pass, 0, sizeof(pass));
		pass[0].code = BPF_ALU64 | BPF_MOV | BPF_K; /* r0 = XDP_PASS */
		pass[0].dst_reg = BPF_REG_0;
		pass[0].imm = XDP_PASS;
		pass[1].code = BPF_JMP | BPF_EXIT;
		prog = bpf_prog_load(BPF_PROG_TYPE_XDP, "other", "MIT", pass, 2, NULL);
		ASSERT_GE(prog, 0);
		ASSERT_OK(bpf_xdp_attach(ifindex, prog, XDP_FLAGS_SKB_MODE, NULL));
		ASSERT_EQ(xsk_open("vmft-xb0", &x), -EBUSY);
		ASSERT(has_xdp("vmft-xb0", true));
		ASSERT_OK(bpf_xdp_detach(ifindex, XDP_FLAGS_SKB_MODE, NULL));
		close(prog);
	}
	ASSERT(!has_xdp("vmft-xb0", false));
	ASSERT_EQ(th_count_fds(), fds);
	net_down(&n);
}

/*
 * Generic (skb) mode, which veth falls back to when its peer's MTU is too
 * large for driver-mode XDP; and the longest frame a UMEM frame holds: one
 * byte more and the frame takes the default queue.
 */
TEST(xsk_generic_mode)
{
	static uint8_t f[9000];
	struct net n;
	struct xsk_dev *x;
	struct xsk_info info;
	struct seen s = { 0 };
	struct got g[1];
	int slot, want[1] = { 3 };

	need_root();
	net_up(&n, "vmft-xsk3", "vmft-xc0", "vmft-xc1");
	ASSERT_EQ(td_sh("ip link set dev vmft-xc0 mtu 9000 && ip -n vmft-xsk3 link set dev vmft-xc1 "
		     "mtu 9000"),
		  0);
	ASSERT_OK(xsk_open("vmft-xc0", &x));
	xsk_get_info(x, &info);
	th_log("attached in %s mode (driver mode: %s), %s", info.native ? "native" : "generic",
	       info.native ? "ok" : strerror(-info.native_err),
	       info.zerocopy ? "zero-copy" : "copy mode");
	ASSERT(!info.native);
	ASSERT_LT(info.native_err, 0);
	ASSERT(!info.zerocopy);
	ASSERT_EQ(td_sh("ip link show dev vmft-xc0 | grep -q xdpgeneric"), 0);
	slot = xsk_slot_create(x);
	ASSERT_GE(slot, 0);
	ASSERT_OK(xsk_filter_set(x, MAC1, 0, slot));
	ASSERT_OK(xsk_filter_set(x, MAC2, 30, slot));
	memset(g, 0, sizeof(g));
	send_raw(&n, f, frame(f, MAC1, 0, 0, 1));
	send_raw(&n, f, frame_len(f, VMQ_FRAME_MAX, MAC1, 0, 0, 2));
	send_raw(&n, f, frame_len(f, VMQ_FRAME_MAX, MAC2, 0x8100, 30, 3));
	send_raw(&n, f, frame_len(f, VMQ_FRAME_MAX + 1, MAC1, 0, 0, 901));
	send_raw(&n, f, frame_len(f, 9000, MAC2, 0x8100, 30, 902));
	collect(&n, x, &slot, g, 1, &s, 2, want);
	ASSERT_EQ(g[0].n, 3);
	ASSERT_EQ(g[0].id[0], 1);
	ASSERT_EQ(g[0].len[0], FLEN);
	ASSERT_EQ(g[0].id[1], 2);
	ASSERT_EQ(g[0].len[1], VMQ_FRAME_MAX);
	ASSERT_EQ(g[0].id[2], 3);
	ASSERT_EQ(g[0].len[2], VMQ_FRAME_MAX);
	ASSERT_EQ(s.n, 2);
	ASSERT_EQ(s.id[0], 901);
	ASSERT_EQ(s.len[0], VMQ_FRAME_MAX + 1);
	ASSERT_EQ(s.id[1], 902);
	ASSERT_EQ(s.len[1], 9000 - 4); /* the stack took the tag off */
	expect_counters(x, 3, 2);
	xsk_close(x);
	ASSERT(!has_xdp("vmft-xc0", false));
	net_down(&n);
}
