/* SPDX-License-Identifier: MIT */
/*
 * The vhost-user protocol server core (backend side), as QEMU's
 * docs/interop/vhost-user.rst describes it: framing over a SOCK_STREAM unix
 * socket, the request table, the guest memory table and per-ring state. A
 * device (virtio-vsock, virtio-net) plugs in through struct vhu_device_ops.
 *
 * Threat model: the frontend (QEMU, or whatever connects to the socket) is
 * untrusted. Every header, size, index, address and descriptor count is
 * checked against the table in VHU_REQUESTS before use; every received
 * descriptor is either kept (and later closed) or closed at once; guest
 * addresses are only dereferenced through vhu_mem_gpa()/vhu_mem_uva(), which
 * check that the whole range lies inside one mapped region. The frontend
 * can still shrink a memory fd after it was mapped (SIGBUS on access): the
 * daemon must sigbus-guard ring accesses or require sealed memfds (not done
 * here). Nothing here prints; errors are returned as -errno.
 */
#ifndef VMFABRIC_VHOST_H
#define VMFABRIC_VHOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VHU_MAX_PAYLOAD 4096u
#define VHU_MAX_FDS 8
#define VHU_MAX_REGIONS 8u
#define VHU_MAX_QUEUES 32u
#define VHU_MAX_CONFIG 256u
#define VHU_RING_MAX 32768u

/* Header flags. */
#define VHU_VERSION 0x1u
#define VHU_VERSION_MASK 0x3u
#define VHU_FLAG_REPLY 0x4u
#define VHU_FLAG_NEED_REPLY 0x8u

/* Feature bits. */
#define VHU_F_PROTOCOL_FEATURES (1ull << 30)
#define VHU_PROTO_F_MQ (1ull << 0)
#define VHU_PROTO_F_REPLY_ACK (1ull << 3)
#define VHU_PROTO_F_CONFIG (1ull << 9)
#define VHU_PROTO_OFFERED (VHU_PROTO_F_MQ | VHU_PROTO_F_REPLY_ACK | VHU_PROTO_F_CONFIG)

/* SET_VRING_KICK / CALL / ERR payload. */
#define VHU_VRING_IDX_MASK 0xffull
#define VHU_VRING_NOFD (1ull << 8)

/* Descriptor counts in the table that depend on the payload. */
#define VHU_FDS_REGIONS (-1) /* one per memory region */
#define VHU_FDS_VRING (-2)   /* 0 with VHU_VRING_NOFD, else 1 */

/* Payload sizes of the variable messages. */
#define VHU_MEM_HDR 8u
#define VHU_MEM_REGION 32u
#define VHU_CONFIG_HDR 12u

/*
 * X(NAME, handler, number, min payload, max payload, fds, natural reply)
 * The framing checks (vhu_msg_check) and the server's dispatch table are
 * both built from this list.
 */
#define VHU_REQUESTS(X)                                                                      \
	X(GET_FEATURES, get_features, 1, 0, 0, 0, 1)                                         \
	X(SET_FEATURES, set_features, 2, 8, 8, 0, 0)                                         \
	X(SET_OWNER, set_owner, 3, 0, 0, 0, 0)                                               \
	X(RESET_OWNER, reset_owner, 4, 0, 0, 0, 0)                                           \
	X(SET_MEM_TABLE, set_mem_table, 5, VHU_MEM_HDR,                                      \
	  VHU_MEM_HDR + VHU_MEM_REGION * VHU_MAX_REGIONS, VHU_FDS_REGIONS, 0)                \
	X(SET_VRING_NUM, set_vring_num, 8, 8, 8, 0, 0)                                       \
	X(SET_VRING_ADDR, set_vring_addr, 9, 40, 40, 0, 0)                                   \
	X(SET_VRING_BASE, set_vring_base, 10, 8, 8, 0, 0)                                    \
	X(GET_VRING_BASE, get_vring_base, 11, 8, 8, 0, 1)                                    \
	X(SET_VRING_KICK, set_vring_kick, 12, 8, 8, VHU_FDS_VRING, 0)                        \
	X(SET_VRING_CALL, set_vring_call, 13, 8, 8, VHU_FDS_VRING, 0)                        \
	X(SET_VRING_ERR, set_vring_err, 14, 8, 8, VHU_FDS_VRING, 0)                          \
	X(GET_PROTOCOL_FEATURES, get_protocol_features, 15, 0, 0, 0, 1)                      \
	X(SET_PROTOCOL_FEATURES, set_protocol_features, 16, 8, 8, 0, 0)                      \
	X(GET_QUEUE_NUM, get_queue_num, 17, 0, 0, 0, 1)                                      \
	X(SET_VRING_ENABLE, set_vring_enable, 18, 8, 8, 0, 0)                                \
	X(GET_CONFIG, get_config, 24, VHU_CONFIG_HDR, VHU_CONFIG_HDR + VHU_MAX_CONFIG, 0, 1) \
	X(SET_CONFIG, set_config, 25, VHU_CONFIG_HDR, VHU_CONFIG_HDR + VHU_MAX_CONFIG, 0, 0)

enum vhu_request {
#define VHU_ENUM(n, h, v, lo, hi, fd, r) VHU_##n = v,
	VHU_REQUESTS(VHU_ENUM)
#undef VHU_ENUM
	VHU_REQUEST_MAX
};

/* Wire layouts (little-endian hosts only, as vhost-user itself). */
struct vhu_hdr {
	uint32_t request;
	uint32_t flags;
	uint32_t size; /* payload bytes after the header */
};
_Static_assert(sizeof(struct vhu_hdr) == 12, "vhu_hdr layout");

struct vhu_vring_state {
	uint32_t index;
	uint32_t num;
};
_Static_assert(sizeof(struct vhu_vring_state) == 8, "vhu_vring_state layout");

struct vhu_vring_addr {
	uint32_t index;
	uint32_t flags; /* bit 0: VHOST_VRING_F_LOG (not offered) */
	uint64_t desc_user_addr;
	uint64_t used_user_addr;
	uint64_t avail_user_addr;
	uint64_t log_guest_addr;
};
_Static_assert(sizeof(struct vhu_vring_addr) == 40, "vhu_vring_addr layout");

struct vhu_mem_region {
	uint64_t guest_phys_addr;
	uint64_t memory_size;
	uint64_t userspace_addr;
	uint64_t mmap_offset;
};
_Static_assert(sizeof(struct vhu_mem_region) == VHU_MEM_REGION, "vhu_mem_region layout");

struct vhu_mem_table {
	uint32_t nregions;
	uint32_t padding;
	struct vhu_mem_region regions[VHU_MAX_REGIONS];
};
_Static_assert(offsetof(struct vhu_mem_table, regions) == VHU_MEM_HDR, "vhu_mem_table layout");

struct vhu_config {
	uint32_t offset;
	uint32_t size;
	uint32_t flags;
	uint8_t data[VHU_MAX_CONFIG];
};
_Static_assert(offsetof(struct vhu_config, data) == VHU_CONFIG_HDR, "vhu_config layout");

/* One message (vhu_rx_read() fills the header, then the payload). */
struct vhu_msg {
	struct vhu_hdr hdr;
	union {
		uint64_t u64;
		struct vhu_vring_state state;
		struct vhu_vring_addr addr;
		struct vhu_mem_table mem;
		struct vhu_config config;
		uint8_t raw[VHU_MAX_PAYLOAD];
	} payload;
	int fds[VHU_MAX_FDS];
	int nfds;
};

/* Receive state of a connection: a message may arrive in pieces. */
struct vhu_rx {
	struct vhu_msg msg;
	size_t got; /* bytes of header + payload so far */
};

/* ---- msg.c: framing ---- */

void vhu_rx_init(struct vhu_rx *rx);
/*
 * Read what is available of one message from a non-blocking stream socket.
 * Returns 1 when rx->msg is complete (its header checked: version, flags,
 * size), 0 when more bytes are needed (-EAGAIN underneath), -ENOTCONN on an
 * orderly close between messages, -ECONNRESET on a close inside one,
 * -EPROTO / -EMSGSIZE for a malformed header or too many descriptors.
 */
int vhu_rx_read(int sock, struct vhu_rx *rx);
/* Close the descriptors the message still holds and start the next one. */
void vhu_rx_reset(struct vhu_rx *rx);
/*
 * Check a complete message against VHU_REQUESTS: -ENOSYS for an unknown
 * request, -EBADMSG for a wrong size or descriptor count, -EINVAL for
 * reserved bits set.
 */
int vhu_msg_check(const struct vhu_msg *m);
/* Whether a request has a reply of its own (GET_*); -1 if unknown. */
int vhu_request_has_reply(uint32_t request);
const char *vhu_request_name(uint32_t request);
/* Send a reply (REPLY flag set, no descriptors): 0 or -errno. */
int vhu_send_reply(int sock, uint32_t request, const void *payload, uint32_t size);

/* ---- mem.c: the guest memory table ---- */

struct vhu_region {
	uint64_t gpa, size, uaddr, mmap_offset;
	void *map;	/* the mapping (from mmap_offset rounded down to a page) */
	size_t map_len;
	uint8_t *host; /* host address of gpa / uaddr */
	int fd;	       /* a duplicate of the region's descriptor (for a restart) */
	int guard;     /* its slot in the SIGBUS guard (mem.c), or -1 */
};

struct vhu_mem {
	uint32_t n;
	struct vhu_region r[VHU_MAX_REGIONS];
};

void vhu_mem_init(struct vhu_mem *m);
/*
 * Replace the table with @n regions backed by @fds (one per region). On
 * success the old mappings are gone; on failure the old table stays.
 * Descriptors stay the caller's (mappings do not need them).
 */
int vhu_mem_set(struct vhu_mem *m, const struct vhu_mem_region *w, uint32_t n, const int *fds);
void vhu_mem_clear(struct vhu_mem *m);
/* Host pointer of [addr, addr + len) if it lies inside one region; else NULL. */
void *vhu_mem_gpa(const struct vhu_mem *m, uint64_t gpa, uint64_t len);
void *vhu_mem_uva(const struct vhu_mem *m, uint64_t uva, uint64_t len);
/*
 * Host pointer of guest-physical @gpa and, in *@len, how many bytes from
 * there lie in the same region (at least 1); NULL (and 0) if no region
 * holds @gpa. For buffers that may span regions: translate piece by piece.
 */
void *vhu_mem_gpa_span(const struct vhu_mem *m, uint64_t gpa, uint64_t *len);
/*
 * Guest memory the frontend truncated under us: how many mappings were lost
 * so far in this process (a cheap check: compare with the last value seen),
 * and whether one of @m's was. A lost mapping reads as zeros (see mem.c).
 */
unsigned vhu_mem_faults(void);
bool vhu_mem_lost(const struct vhu_mem *m);

/* ---- server.c: connections ---- */

struct vhu_ring {
	uint32_t num; /* 0: not set */
	uint16_t last_avail;
	bool have_addr, have_kick, enabled, started;
	struct vhu_vring_addr addr; /* QEMU user addresses */
	void *desc, *avail, *used;  /* host pointers while started */
	int kick, call, err;	    /* -1 when absent */
};

struct vhu_conn;

struct vhu_device_ops {
	uint64_t features; /* device bits offered (VIRTIO_F_VERSION_1 included by the device) */
	uint32_t queues;   /* rings, at most VHU_MAX_QUEUES */
	/* Fill @len bytes of config space at @off: 0 or -errno. Optional. */
	int (*get_config)(void *dev, uint32_t off, void *buf, uint32_t len);
	/* Optional; without it SET_CONFIG is refused. */
	int (*set_config)(void *dev, uint32_t off, const void *buf, uint32_t len);
	/*
	 * A ring's pointers and kick descriptor are valid from started to
	 * stopped. Its call descriptor may be replaced while it runs (QEMU
	 * sends SET_VRING_CALL after the kick for a netdev): a device reads
	 * it from vhu_conn_ring() each time it signals.
	 * ring_stopped() stores the next available index the device would
	 * have taken into *@last_avail (what GET_VRING_BASE reports and a
	 * restart resumes from); left alone, the base stays as it was set.
	 */
	void (*ring_started)(void *dev, struct vhu_conn *c, uint32_t index);
	void (*ring_stopped)(void *dev, struct vhu_conn *c, uint32_t index, uint16_t *last_avail);
	/*
	 * Optional: a started ring's call descriptor was replaced (the old one
	 * is closed when this returns). For a device whose rings another
	 * thread serves with a copy of the descriptor.
	 */
	void (*ring_call)(void *dev, struct vhu_conn *c, uint32_t index);
};

/*
 * A connection's state for a restart of the daemon by exec: the frontend's
 * socket and every descriptor it gave (memory regions, kick, call, err)
 * are kept open across exec; this says what they are. A device stores its
 * rings' current available indices into rings[i].last_avail.
 */
struct vhu_saved_ring {
	uint32_t num;
	uint16_t last_avail;
	bool have_addr, have_kick, enabled;
	struct vhu_vring_addr addr;
	int kick, call, err;
};

struct vhu_saved {
	int sock;
	uint64_t features, protocol;
	bool owner;
	/*
	 * The process that saved this died afterwards (a crash, the state from
	 * the fd keeper): rings[i].last_avail may be stale. Each ring resumes
	 * from its used ring's index in guest memory instead, which is right
	 * for a device that uses every chain it takes, in order, before going
	 * back to its loop, and the guest is signalled once in case the dead
	 * process published entries without telling it.
	 */
	bool resync;
	uint32_t nregions;
	struct vhu_mem_region regions[VHU_MAX_REGIONS];
	int region_fds[VHU_MAX_REGIONS];
	uint32_t nrings;
	struct vhu_saved_ring rings[VHU_MAX_QUEUES];
};

/* Fill @s; the descriptors stay the connection's. */
void vhu_conn_save(const struct vhu_conn *c, struct vhu_saved *s);
/*
 * A connection from a saved state, with its rings started (ring_started()
 * is called for each, *@out already set): takes every descriptor in @s on
 * success, closes none on failure (-EINVAL for a state that does not hold
 * together).
 */
int vhu_conn_restore(const struct vhu_saved *s, const struct vhu_device_ops *ops, void *dev,
		     struct vhu_conn **out);

/* Takes @sock (made non-blocking) on success; -errno otherwise. */
int vhu_conn_new(int sock, const struct vhu_device_ops *ops, void *dev, struct vhu_conn **out);
/*
 * Read and handle every complete message available. 0 when the socket is
 * drained; otherwise the connection has failed (-ENOTCONN: peer closed)
 * and the caller frees it.
 */
int vhu_conn_process(struct vhu_conn *c);
/* Stops the rings, closes every descriptor, unmaps memory. */
void vhu_conn_free(struct vhu_conn *c);

int vhu_conn_fd(const struct vhu_conn *c);
const struct vhu_ring *vhu_conn_ring(const struct vhu_conn *c, uint32_t index);
const struct vhu_mem *vhu_conn_mem(const struct vhu_conn *c);
uint64_t vhu_conn_features(const struct vhu_conn *c);
uint64_t vhu_conn_protocol_features(const struct vhu_conn *c);

#endif
