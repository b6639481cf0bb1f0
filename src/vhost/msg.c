/* SPDX-License-Identifier: MIT */
/*
 * vhost-user framing: a 12-byte header and a payload of at most
 * VHU_MAX_PAYLOAD bytes over a SOCK_STREAM unix socket, descriptors by
 * SCM_RIGHTS. Because the socket is a stream, a message can arrive in any
 * number of pieces; vhu_rx_read() keeps the partial message in struct
 * vhu_rx and never reads past its end, so that descriptors sent with the
 * next message are not taken early.
 *
 * Threat model: every byte comes from the untrusted frontend. The header is
 * checked as soon as it is complete (version 1, no REPLY bit, no reserved
 * bits, size within the buffer) before any payload is read into the fixed
 * buffer; more than VHU_MAX_FDS descriptors on one message is an error and
 * every descriptor received is closed by vhu_rx_reset() unless a handler
 * took it. vhu_msg_check() then checks the request against VHU_REQUESTS:
 * exact sizes, the variable sizes against their own count fields, and the
 * descriptor count.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/fdpass.h"
#include "vhost.h"

#define HDR sizeof(struct vhu_hdr)

static const struct {
	const char *name;
	uint32_t min, max;
	int fds;
	int reply;
} requests[VHU_REQUEST_MAX] = {
#define VHU_ROW(n, h, v, lo, hi, fd, r) [v] = { #n, lo, hi, fd, r },
	VHU_REQUESTS(VHU_ROW)
#undef VHU_ROW
};

const char *
vhu_request_name(uint32_t request)
{
	if (request >= VHU_REQUEST_MAX || !requests[request].name)
		return "unknown";
	return requests[request].name;
}

int
vhu_request_has_reply(uint32_t request)
{
	if (request >= VHU_REQUEST_MAX || !requests[request].name)
		return -1;
	return requests[request].reply;
}

void
vhu_rx_init(struct vhu_rx *rx)
{
	memset(&rx->msg.hdr, 0, sizeof(rx->msg.hdr));
	rx->msg.nfds = 0;
	rx->got = 0;
}

void
vhu_rx_reset(struct vhu_rx *rx)
{
	for (int i = 0; i < rx->msg.nfds; i++)
		if (rx->msg.fds[i] >= 0)
			close(rx->msg.fds[i]);
	vhu_rx_init(rx);
}

static int
check_hdr(const struct vhu_hdr *h)
{
	if ((h->flags & VHU_VERSION_MASK) != VHU_VERSION)
		return -EPROTO;
	if (h->flags & ~(VHU_VERSION_MASK | VHU_FLAG_NEED_REPLY))
		return -EPROTO; /* REPLY set on a request, or reserved bits */
	if (h->size > VHU_MAX_PAYLOAD)
		return -EMSGSIZE;
	return 0;
}

int
vhu_rx_read(int sock, struct vhu_rx *rx)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * (VHU_MAX_FDS + 1))];
		struct cmsghdr align;
	} u;

	for (;;) {
		size_t end = rx->got < HDR ? HDR : HDR + rx->msg.hdr.size;
		struct iovec iov = { rx->got < HDR ? (uint8_t *)&rx->msg.hdr + rx->got
						   : rx->msg.payload.raw + (rx->got - HDR),
				     end - rx->got };
		struct msghdr mh = { .msg_iov = &iov,
				     .msg_iovlen = 1,
				     .msg_control = u.buf,
				     .msg_controllen = sizeof(u.buf) };
		ssize_t n;
		int err;

		if (rx->got >= HDR && rx->got == end)
			return 1;
		do
			n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
		while (n < 0 && errno == EINTR);
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
		err = fdpass_collect(&mh, rx->msg.fds, &rx->msg.nfds, VHU_MAX_FDS);
		if (err)
			return err;
		if (n == 0)
			return rx->got == 0 && rx->msg.nfds == 0 ? -ENOTCONN : -ECONNRESET;
		rx->got += (size_t)n;
		if (rx->got == HDR && (err = check_hdr(&rx->msg.hdr)))
			return err;
	}
}

/* Descriptors the message must carry, or -EBADMSG / -EINVAL. */
static int
expected_fds(const struct vhu_msg *m, int kind)
{
	uint64_t v;

	switch (kind) {
	case VHU_FDS_REGIONS:
		return (int)m->payload.mem.nregions;
	case VHU_FDS_VRING:
		v = m->payload.u64;
		if (v & ~(VHU_VRING_IDX_MASK | VHU_VRING_NOFD))
			return -EINVAL;
		return v & VHU_VRING_NOFD ? 0 : 1;
	default:
		return kind;
	}
}

int
vhu_msg_check(const struct vhu_msg *m)
{
	uint32_t req = m->hdr.request, size = m->hdr.size;
	int fds;

	if (req >= VHU_REQUEST_MAX || !requests[req].name)
		return -ENOSYS;
	if (size < requests[req].min || size > requests[req].max)
		return -EBADMSG;
	if (req == VHU_SET_MEM_TABLE &&
	    (m->payload.mem.nregions > VHU_MAX_REGIONS ||
	     size != VHU_MEM_HDR + VHU_MEM_REGION * m->payload.mem.nregions))
		return -EBADMSG;
	if ((req == VHU_GET_CONFIG || req == VHU_SET_CONFIG) &&
	    (m->payload.config.size > VHU_MAX_CONFIG ||
	     size != VHU_CONFIG_HDR + m->payload.config.size))
		return -EBADMSG;
	fds = expected_fds(m, requests[req].fds);
	if (fds < 0)
		return fds;
	if (m->nfds != fds)
		return -EBADMSG;
	return 0;
}

int
vhu_send_reply(int sock, uint32_t request, const void *payload, uint32_t size)
{
	struct vhu_hdr h = { request, VHU_VERSION | VHU_FLAG_REPLY, size };
	struct iovec iov[2] = { { &h, HDR }, { (void *)(uintptr_t)payload, size } };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = size ? 2 : 1 };
	ssize_t n;

	if (size > VHU_MAX_PAYLOAD)
		return -EMSGSIZE;
	do
		n = sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	/* Replies are small; a frontend that does not read them is failed. */
	return (size_t)n == HDR + size ? 0 : -ENOBUFS;
}
