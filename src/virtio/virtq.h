/* SPDX-License-Identifier: MIT */
/*
 * Split virtqueues (virtio 1.x, section 2.7) seen from the device side:
 * take descriptor chains the driver made available, hand back used ones,
 * decide whether the driver needs an interrupt (VIRTIO_RING_F_EVENT_IDX or
 * the NO_INTERRUPT flag) and ask for or suppress kicks.
 *
 * Threat model: the driver (a guest kernel) is untrusted and keeps running
 * while we read. Every field of shared memory is read once into a private
 * copy and validated before use: the available index may move at most
 * `num` ahead of what we consumed, and never back; heads and `next` fields
 * must be below `num`; a chain may not be longer than `num` descriptors
 * (direct and indirect together) nor loop (bounded walk); an indirect
 * table must be a whole number of descriptors, inside one guest memory
 * region, not nested, and only with VIRTIO_F_INDIRECT_DESC; buffers must
 * translate to host memory as a whole (a buffer that spans memory regions
 * is split into one segment per region); every device-readable segment
 * comes before every device-writable one; a chain's bytes must fit 32 bits
 * and its buffers at most VIRTQ_MAX_SEGS segments. A violation marks the queue
 * broken: virtq_pop() returns -EPROTO from then on, virtq_why() says what
 * was wrong, and the rings are not touched again (virtq_push(),
 * virtq_flush() and the kick calls do nothing; elements taken before stay
 * usable until the ring stops). Nothing here logs or aborts.
 *
 * Ordering: the driver publishes avail->idx after its ring entry and
 * descriptors and reads used->idx before our used entries, so we load
 * avail->idx with acquire and store used->idx with release; the two
 * "publish an index, then look whether the other side wants a notification"
 * sequences have a full fence on each side (see virtq.c).
 *
 * Single-threaded: one thread owns a virtq at a time.
 */
#ifndef VMFABRIC_VIRTQ_H
#define VMFABRIC_VIRTQ_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vhost/vhost.h"

/* Feature bits (virtio 1.x section 6). */
#define VIRTIO_F_INDIRECT_DESC (1ull << 28)
#define VIRTIO_F_EVENT_IDX (1ull << 29)
#define VIRTIO_F_VERSION_1 (1ull << 32)

/* Most segments of one chain handed to a device (longer chains: -EPROTO). */
#define VIRTQ_MAX_SEGS 64u

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};
#define VIRTQ_DESC_F_NEXT 1u
#define VIRTQ_DESC_F_WRITE 2u
#define VIRTQ_DESC_F_INDIRECT 4u

#define VIRTQ_AVAIL_F_NO_INTERRUPT 1u
#define VIRTQ_USED_F_NO_NOTIFY 1u

/* One available chain, translated. Readable segments first, then writable. */
struct virtq_elem {
	uint16_t head; /* what goes back into the used ring */
	uint16_t nout; /* device-readable segments: iov[0 .. nout) */
	uint16_t nin;  /* device-writable segments: iov[nout .. nout + nin) */
	uint32_t out_len, in_len; /* their total bytes */
	struct iovec iov[VIRTQ_MAX_SEGS];
};

struct virtq_stats {
	uint64_t popped, pushed, notified, suppressed;
};

struct virtq {
	/* Set by virtq_init(). */
	const struct vhu_mem *mem;
	/* Guest memory, read and written only with __atomic builtins or memcpy. */
	struct virtq_desc *desc;
	uint16_t *avail; /* flags, idx, ring[num], used_event */
	uint16_t *used;	 /* flags, idx, then {u32 id, u32 len}[num], avail_event */
	uint16_t num;
	bool event_idx, indirect;
	int call; /* eventfd for interrupts, or -1 (the device may change it) */
	/* Private state. */
	uint16_t last_avail;  /* next available entry to take */
	uint16_t avail_seen;  /* last avail->idx read and validated */
	uint16_t used_idx;    /* next used entry to fill (published by virtq_flush) */
	uint16_t signalled;   /* used->idx published by the last virtq_flush() */
	bool signalled_valid; /* false until then: the first flush interrupts */
	bool kicks_off;	      /* virtq_disable_kicks() in force */
	const char *why;      /* non-NULL once broken */
	unsigned faults_seen; /* vhu_mem_faults() when last looked at */
	struct virtq_stats st;
};

/*
 * Set up @q over a started vhost-user ring: @desc, @avail and @used are the
 * host pointers the server translated (whole areas), @num its size (a power
 * of two), @last_avail the base the frontend set. @features are the
 * negotiated virtio features (EVENT_IDX, INDIRECT_DESC). The used index
 * resumes at @last_avail (every chain taken before was given back, as at a
 * vhost-user start). Kicks are left enabled (used->flags cleared, or
 * avail_event set to @last_avail); chains may already be waiting, so poll
 * once after init. A size of 0 or not a power of two, or rings not aligned
 * for their 16-bit fields in host memory, leave @q broken.
 * Element segments point into @mem: they are valid until the ring stops.
 */
void virtq_init(struct virtq *q, const struct vhu_mem *mem, void *desc, void *avail, void *used,
		uint16_t num, uint16_t last_avail, uint64_t features, int call);

/*
 * Take the next available chain: 1 with @e filled, 0 when none is
 * available, -EPROTO when the queue is (now) broken. The chain is owned by
 * the device until virtq_push() gives it back.
 */
int virtq_pop(struct virtq *q, struct virtq_elem *e);
/* How many chains are available and not yet taken (reads avail->idx; 0 when broken). */
uint16_t virtq_avail(struct virtq *q);
/*
 * Put back the last @n chains taken and not pushed, as if never taken (a
 * device that took buffers for a frame it cannot finish). Nothing when
 * broken.
 */
void virtq_unpop(struct virtq *q, uint16_t n);
/*
 * Give back a chain's head with @written bytes put into its writable
 * segments; at most as many pushes as pops, in any order. Entries become
 * visible to the driver at virtq_flush().
 */
void virtq_push(struct virtq *q, uint16_t head, uint32_t written);
/*
 * Publish pushed entries (release store of used->idx) and interrupt the
 * driver through @call if it asked to be: EVENT_IDX's used_event, or the
 * NO_INTERRUPT flag without it. Returns whether an interrupt was due (sent
 * when @call >= 0); false when nothing was pushed since the last flush.
 */
bool virtq_flush(struct virtq *q);
/*
 * Kick suppression. virtq_disable_kicks() asks the driver not to kick
 * (while the device polls); virtq_enable_kicks() asks for kicks again and
 * returns true if chains arrived meanwhile (the caller must then poll
 * again instead of sleeping; false once broken). With EVENT_IDX a kick is asked for only at
 * the next chain, so a device loop must call virtq_enable_kicks() every
 * time before it sleeps:
 *
 *	do {
 *		virtq_disable_kicks(q);
 *		while (virtq_pop(q, &e) == 1)
 *			handle, virtq_push();
 *		virtq_flush(q);
 *	} while (virtq_enable_kicks(q));
 *	sleep on the kick eventfd
 */
void virtq_disable_kicks(struct virtq *q);
bool virtq_enable_kicks(struct virtq *q);

/*
 * Copy between a flat buffer and an element: virtq_read() from its readable
 * segments, virtq_write() into its writable ones, starting @off bytes in.
 * Return the bytes copied (short at the end of the segments).
 */
size_t virtq_read(const struct virtq_elem *e, size_t off, void *buf, size_t len);
size_t virtq_write(const struct virtq_elem *e, size_t off, const void *buf, size_t len);

/* The next available index to report in GET_VRING_BASE. */
static inline uint16_t
virtq_last_avail(const struct virtq *q)
{
	return q->last_avail;
}
static inline bool
virtq_broken(const struct virtq *q)
{
	return q->why != 0;
}
static inline const char *
virtq_why(const struct virtq *q)
{
	return q->why;
}

#endif
