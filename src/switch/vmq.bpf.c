/* SPDX-License-Identifier: MIT */
/*
 * VMQ at the NIC: the uplink's receive filter. For each frame the interface
 * receives, one lookup of (destination MAC, VLAN ID) in vmq_filter; a hit
 * names a slot, and the frame is redirected into that slot's AF_XDP socket
 * (vmq_xsks). Everything else goes on to the kernel's stack, where the
 * uplink's AF_PACKET socket (the default queue) sees it: broadcast and
 * multicast, unknown destinations, frames too short for their Ethernet
 * header or too long for a UMEM frame, VID 4095 and stacked tags (the
 * switch drops and counts those), and frames on another receive queue.
 *
 * Frames are untrusted: every read is bounds-checked (the verifier refuses
 * the program otherwise). Compiled with clang -target bpf, loaded by xsk.c.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "vmq.h"

#define ETH_HLEN     14
#define VLAN_HLEN    4
#define ETH_P_8021Q  0x8100
#define ETH_P_8021AD 0x88a8

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VMQ_MAX_FILTERS);
	__type(key, struct vmq_key);
	__type(value, __u32); /* the slot: an index into vmq_xsks */
} vmq_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, VMQ_MAX_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} vmq_xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VMQ_NCOUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} vmq_stats SEC(".maps");

static __always_inline int
count(__u32 which, int action)
{
	__u64 *c = bpf_map_lookup_elem(&vmq_stats, &which);

	if (c)
		*c += 1; /* this CPU's own copy: no atomic needed */
	return action;
}

SEC("xdp")
int
vmf_vmq(struct xdp_md *ctx)
{
	const __u8 *data = (const __u8 *)(long)ctx->data;
	const __u8 *end = (const __u8 *)(long)ctx->data_end;
	struct vmq_key key = { 0 };
	__u16 type;
	__u32 *slot;

	if (ctx->rx_queue_index != VMQ_QUEUE)
		return count(VMQ_PASS, XDP_PASS);
	if (data + ETH_HLEN > end || data + VMQ_FRAME_MAX < end)
		return count(VMQ_PASS, XDP_PASS);
	if (data[0] & 1) /* broadcast or multicast */
		return count(VMQ_PASS, XDP_PASS);
	type = (__u16)(data[12] << 8 | data[13]);
	if (type == ETH_P_8021Q) {
		__u16 tci, inner;

		if (data + ETH_HLEN + VLAN_HLEN > end)
			return count(VMQ_PASS, XDP_PASS);
		tci = (__u16)(data[14] << 8 | data[15]);
		inner = (__u16)(data[16] << 8 | data[17]);
		if ((tci & 0xfff) == 0xfff || inner == ETH_P_8021Q || inner == ETH_P_8021AD)
			return count(VMQ_PASS, XDP_PASS);
		key.vlan = tci & 0xfff; /* 0: priority-tagged, the untagged VLAN */
	} else if (type == ETH_P_8021AD) {
		return count(VMQ_PASS, XDP_PASS);
	}
	__builtin_memcpy(key.mac, data, sizeof(key.mac));
	slot = bpf_map_lookup_elem(&vmq_filter, &key);
	if (!slot)
		return count(VMQ_PASS, XDP_PASS);
	/* An empty XSKMAP entry returns the flags' action: XDP_PASS. */
	if (bpf_redirect_map(&vmq_xsks, *slot, XDP_PASS) != XDP_REDIRECT)
		return count(VMQ_REDIRECT_FAILED, XDP_PASS);
	return count(VMQ_HIT, XDP_REDIRECT);
}

char LICENSE[] SEC("license") = "MIT";
