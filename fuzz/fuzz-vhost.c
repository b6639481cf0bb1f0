/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the vhost-user server core. A connection with a fake
 * vsock-like device (3 rings, 8 bytes of config) is served over a real
 * SOCK_STREAM socket pair; the input is cut into writes (a length, a
 * descriptor count, the bytes, a kind per descriptor) that the frontend's
 * end sends with real descriptors (memfds of 64 KiB that memory tables can
 * map, eventfds, /dev/null). After each write the server handles what
 * arrived and the replies are drained; once it fails the connection, the
 * input ends. ASan/UBSan and the server's own checks must hold whatever
 * the bytes say, and freeing the connection must close every descriptor.
 *
 * Input: repeated { u16 len, u8 nfds, len bytes, nfds kind bytes }.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/fdpass.h"
#include "fuzz.h"
#include "vhost/vhost.h"

#define FZ_MEMFD_SIZE 0x10000

static int
fz_get_config(void *dev, uint32_t off, void *buf, uint32_t len)
{
	static const uint64_t cid = 3;

	(void)dev;
	if (off > sizeof(cid) || len > sizeof(cid) - off)
		return -EINVAL;
	memcpy(buf, (const uint8_t *)&cid + off, len);
	return 0;
}

/* Touch the ring areas the way a device would: they must be mapped. */
static void
fz_started(void *dev, struct vhu_conn *c, uint32_t i)
{
	const struct vhu_ring *r = vhu_conn_ring(c, i);
	volatile uint8_t sink;

	(void)dev;
	if (!r || !r->started)
		abort();
	sink = ((uint8_t *)r->desc)[16 * r->num - 1];
	sink = ((uint8_t *)r->avail)[6 + 2 * r->num - 1];
	sink = ((uint8_t *)r->used)[6 + 8 * r->num - 1];
	(void)sink;
}

static const struct vhu_device_ops ops = {
	.features = (1ull << 32) | (1ull << 1),
	.queues = 3,
	.get_config = fz_get_config,
	.ring_started = fz_started,
};

static int
make_fd(unsigned kind)
{
	int fd;

	switch (kind % 4) {
	case 0:
	case 1:
		fd = memfd_create("fz-vhost", MFD_CLOEXEC);
		if (fd >= 0 && ftruncate(fd, FZ_MEMFD_SIZE) < 0) {
			close(fd);
			fd = -1;
		}
		return fd;
	case 2:
		return eventfd(0, EFD_CLOEXEC);
	default:
		return open("/dev/null", O_RDWR | O_CLOEXEC);
	}
}

static void
send_piece(int sock, const uint8_t *buf, size_t len, const int *fds, int nfds)
{
	struct iovec iov = { (void *)(uintptr_t)buf, len };

	/* Descriptors need at least one byte to ride on. */
	(void)fdpass_send(sock, &iov, 1, fds, len ? nfds : 0, MSG_DONTWAIT);
}


static void
drain(int sock)
{
	uint8_t b[512];

	while (recv(sock, b, sizeof(b), MSG_DONTWAIT) > 0)
		;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f = { data, size };
	struct vhu_conn *c;
	int sp[2], r = 0, fds_before = fz_count_fds();

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
		abort();
	if (vhu_conn_new(sp[0], &ops, NULL, &c))
		abort();
	for (int steps = 0; f.n && steps < 128 && r == 0; steps++) {
		uint8_t buf[600];
		size_t len = (size_t)fz_take(&f, 2) % sizeof(buf);
		int nfds = (int)(fz_take(&f, 1) % (VHU_MAX_FDS + 2)), fds[VHU_MAX_FDS + 2];

		for (size_t i = 0; i < len; i++)
			buf[i] = (uint8_t)fz_take(&f, 1);
		for (int i = 0; i < nfds; i++)
			fds[i] = make_fd((unsigned)fz_take(&f, 1));
		for (int i = 0; i < nfds; i++)
			if (fds[i] < 0)
				abort();
		send_piece(sp[1], buf, len, fds, nfds);
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
		r = vhu_conn_process(c);
		if (r > 0)
			abort();
		drain(sp[1]);
	}
	vhu_conn_free(c);
	close(sp[1]);
	if (fz_count_fds() != fds_before)
		abort(); /* a descriptor leaked */
	return 0;
}
