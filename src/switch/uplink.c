/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "uplink.h"
#include "xsk.h"

#define UL_FRAME 16384u /* one slot: the largest frame (9018 B) with its header */
#define UL_RX_FRAMES 512u
#define UL_TX_FRAMES 256u
#define UL_BLOCK (UL_FRAME * 4)
#define UL_DATA (TPACKET2_HDRLEN - sizeof(struct sockaddr_ll)) /* TX: where the frame goes */

static struct tpacket2_hdr *
slot(uint8_t *ring, unsigned i)
{
	return (struct tpacket2_hdr *)(ring + (size_t)i * UL_FRAME);
}

static int
ul_enqueue(struct vsw_port *p, const struct iovec *iov, int iovcnt, size_t len)
{
	struct uplink_port *u = (struct uplink_port *)p;
	struct tpacket2_hdr *h = slot(u->tx, u->tx_next);
	uint8_t *d = (uint8_t *)h + UL_DATA;

	if (len > UL_FRAME - UL_DATA ||
	    __atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE) != TP_STATUS_AVAILABLE)
		return -ENOBUFS;
	for (int i = 0; i < iovcnt; i++) {
		memcpy(d, iov[i].iov_base, iov[i].iov_len);
		d += iov[i].iov_len;
	}
	h->tp_len = (uint32_t)len;
	__atomic_store_n(&h->tp_status, TP_STATUS_SEND_REQUEST, __ATOMIC_RELEASE);
	u->tx_next = (u->tx_next + 1) % UL_TX_FRAMES;
	u->tx_queued++;
	return 0;
}

static const struct vsw_port_ops ul_ops = { .enqueue = ul_enqueue };

int
uplink_open(struct uplink_port *u)
{
	struct tpacket_req rx = { UL_BLOCK, UL_RX_FRAMES * UL_FRAME / UL_BLOCK, UL_FRAME, UL_RX_FRAMES };
	struct tpacket_req tx = { UL_BLOCK, UL_TX_FRAMES * UL_FRAME / UL_BLOCK, UL_FRAME, UL_TX_FRAMES };
	struct sockaddr_ll a = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL) };
	struct packet_mreq promisc = { .mr_type = PACKET_MR_PROMISC };
	int ver = TPACKET_V2, one = 1, err;
	size_t rx_len = (size_t)UL_RX_FRAMES * UL_FRAME, tx_len = (size_t)UL_TX_FRAMES * UL_FRAME;
	uint8_t *map;

	/* First whether it exists: -ENODEV says so, with or without privilege. */
	a.sll_ifindex = (int)if_nametoindex(u->device);
	promisc.mr_ifindex = a.sll_ifindex;
	if (!a.sll_ifindex)
		return -ENODEV;
	u->fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ETH_P_ALL));
	if (u->fd < 0)
		return -errno;
	if (setsockopt(u->fd, SOL_PACKET, PACKET_VERSION, &ver, sizeof(ver)) < 0 ||
	    setsockopt(u->fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one)) < 0 ||
	    setsockopt(u->fd, SOL_PACKET, PACKET_RX_RING, &rx, sizeof(rx)) < 0 ||
	    setsockopt(u->fd, SOL_PACKET, PACKET_TX_RING, &tx, sizeof(tx)) < 0 ||
	    setsockopt(u->fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &promisc, sizeof(promisc)) < 0)
		goto fail_errno;
	/* One mapping: the receive ring, then the transmit ring. */
	map = mmap(NULL, rx_len + tx_len, PROT_READ | PROT_WRITE, MAP_SHARED, u->fd, 0);
	if (map == MAP_FAILED)
		goto fail_errno;
	u->rx = map;
	u->tx = map + rx_len;
	if (bind(u->fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		err = -errno;
		munmap(map, rx_len + tx_len);
		goto fail;
	}
	u->rx_next = u->tx_next = u->tx_queued = 0;
	u->p.kind = VSW_PORT_UPLINK;
	u->p.vlan = VLAN_TRUNK;
	u->p.ops = &ul_ops;
	u->p.up = true;
	return 0;
fail_errno:
	err = -errno;
fail:
	close(u->fd);
	u->fd = -1;
	return err;
}

void
uplink_close(struct uplink_port *u)
{
	xsk_close(u->xsk); /* the program off the device */
	u->xsk = NULL;
	u->nslots = 0;
	if (u->fd < 0)
		return;
	munmap(u->rx, (size_t)(UL_RX_FRAMES + UL_TX_FRAMES) * UL_FRAME);
	close(u->fd);
	u->fd = -1;
}

int
uplink_drain(struct uplink_port *u, struct vsw *sw, int max, int64_t now)
{
	int n;

	for (n = 0; n < max; n++) {
		struct tpacket2_hdr *h = slot(u->rx, u->rx_next);
		struct iovec v;

		if (!(__atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER))
			break;
		/* The kernel's numbers, checked against the slot all the same. */
		if (h->tp_mac < sizeof(*h) || h->tp_snaplen > UL_FRAME - h->tp_mac ||
		    h->tp_snaplen != h->tp_len) {
			vsw_port_drop(&u->p, VSW_DROP_RUNT);
		} else if (h->tp_status & TP_STATUS_VLAN_VALID) {
			/*
			 * The kernel took the tag out of the frame (VLAN
			 * offload: the NIC's, or veth's) into the slot's header:
			 * it goes back between the addresses and the rest.
			 */
			uint8_t *f = (uint8_t *)h + h->tp_mac, tag[4];
			uint16_t tpid = (h->tp_status & TP_STATUS_VLAN_TPID_VALID) ? h->tp_vlan_tpid
										   : ETH_P_8021Q;
			struct iovec tv[3] = { { f, 12 }, { tag, 4 }, { f + 12, h->tp_snaplen - 12 } };

			if (h->tp_snaplen < 12) {
				vsw_port_drop(&u->p, VSW_DROP_RUNT);
			} else {
				tag[0] = (uint8_t)(tpid >> 8), tag[1] = (uint8_t)tpid;
				tag[2] = (uint8_t)(h->tp_vlan_tci >> 8), tag[3] = (uint8_t)h->tp_vlan_tci;
				vsw_input(sw, &u->p, tv, 3, h->tp_snaplen + 4u, now);
			}
		} else {
			v = (struct iovec){ (uint8_t *)h + h->tp_mac, h->tp_snaplen };
			vsw_input(sw, &u->p, &v, 1, h->tp_snaplen, now);
		}
		__atomic_store_n(&h->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
		u->rx_next = (u->rx_next + 1) % UL_RX_FRAMES;
	}
	return n;
}

int
uplink_vmq_open(struct uplink_port *u)
{
	struct xsk_info i;
	int err = xsk_open(u->device, &u->xsk);

	if (err) {
		u->xsk = NULL;
		log_warn("uplink %s: no VMQ at the NIC (XDP on %s: %s): every frame takes the "
			 "default queue",
			 u->p.name, u->device, strerror(-err));
		return err;
	}
	xsk_get_info(u->xsk, &i);
	log_info("uplink %s: VMQ at the NIC: XDP in %s mode on %s, %s sockets", u->p.name,
		 i.native ? "driver" : "generic", u->device, i.zerocopy ? "zero-copy" : "copy-mode");
	return 0;
}

void
uplink_vmq_clear(struct uplink_port *u, int ep)
{
	while (u->nslots) {
		int s = u->slot[--u->nslots];

		epoll_ctl(ep, EPOLL_CTL_DEL, xsk_slot_fd(u->xsk, s), NULL);
		xsk_slot_destroy(u->xsk, s); /* its filters go with it */
	}
}

int
uplink_vmq_add(struct uplink_port *u, int ep, const uint8_t *mac, uint16_t vlan)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	int s, err;

	if (!u->xsk)
		return 0;
	if (u->nslots == sizeof(u->slot) / sizeof(u->slot[0]))
		return -ENOSPC; /* the rest share the default queue */
	if ((s = xsk_slot_create(u->xsk)) < 0)
		return s;
	if ((err = xsk_filter_set(u->xsk, mac, vlan, s)) ||
	    (epoll_ctl(ep, EPOLL_CTL_ADD, xsk_slot_fd(u->xsk, s), &ev) < 0 && (err = -errno))) {
		xsk_slot_destroy(u->xsk, s);
		return err;
	}
	u->slot[u->nslots++] = s;
	return 0;
}

struct vmq_ctx {
	struct uplink_port *u;
	struct vsw *sw;
	int64_t now;
};

static void
vmq_frame(void *ctx, const struct iovec *frame)
{
	struct vmq_ctx *c = ctx;

	/* Checked and learned from like any frame; its destination's queue is one lookup away. */
	vsw_input(c->sw, &c->u->p, frame, 1, frame->iov_len, c->now);
}

int
uplink_vmq_drain(struct uplink_port *u, struct vsw *sw, int max, int64_t now)
{
	struct vmq_ctx c = { u, sw, now };
	int n = 0;

	for (unsigned i = 0; i < u->nslots; i++) {
		int k = xsk_recv(u->xsk, u->slot[i], max, vmq_frame, &c);

		n += k > 0 ? k : 0;
	}
	return n;
}

void
uplink_kick(struct uplink_port *u)
{
	if (!u->tx_queued)
		return;
	u->tx_queued = 0;
	(void)send(u->fd, NULL, 0, MSG_DONTWAIT);
}

int
uplink_info(const struct uplink_port *u, struct uplink_info *i)
{
	struct ifreq ifr = { 0 };
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), err = 0;

	if (s < 0)
		return -errno;
	memcpy(ifr.ifr_name, u->device, sizeof(u->device) < sizeof(ifr.ifr_name)
						? sizeof(u->device) : sizeof(ifr.ifr_name));
	ifr.ifr_name[sizeof(ifr.ifr_name) - 1] = 0;
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
		err = -errno;
		goto out;
	}
	i->admin_up = ifr.ifr_flags & IFF_UP;
	i->link_up = ifr.ifr_flags & IFF_RUNNING;
	if (ioctl(s, SIOCGIFMTU, &ifr) < 0) {
		err = -errno;
		goto out;
	}
	i->mtu = (unsigned)ifr.ifr_mtu;
	if (ioctl(s, SIOCGIFHWADDR, &ifr) < 0) {
		err = -errno;
		goto out;
	}
	memcpy(i->mac, ifr.ifr_hwaddr.sa_data, sizeof(i->mac));
	i->vmq_nic = "off";
	i->vmq_hit = i->vmq_pass = 0;
	if (u->xsk) {
		struct xsk_info x;
		struct xsk_counters c;

		xsk_get_info(u->xsk, &x);
		i->vmq_nic = x.native ? "native" : "generic";
		if (!xsk_get_counters(u->xsk, &c))
			i->vmq_hit = c.hit, i->vmq_pass = c.pass;
	}
out:
	close(s);
	return err;
}
