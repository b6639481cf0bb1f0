/* SPDX-License-Identifier: MIT */
/*
 * Control-protocol framing: one message per SOCK_SEQPACKET datagram, a
 * fixed header and a fixed body per type, descriptors by SCM_RIGHTS.
 * wire_recv() is the parser of untrusted input here: it accepts a message
 * only when its length is exactly the header plus its type's body and it
 * carries exactly the descriptors its type allows; anything else is
 * -EPROTO with every received descriptor closed.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fdpass.h"
#include "wire.h"
#include "wire_io.h"

size_t
wire_body_size(unsigned type)
{
	switch (type) {
#define WIRE_SIZE(n, v, s, fq, fr) \
	case v:                     \
		return sizeof(struct s);
		WIRE_MESSAGES(WIRE_SIZE)
#undef WIRE_SIZE
	}
	return 0;
}

int
wire_fds(unsigned type, int reply)
{
	switch (type) {
#define WIRE_FDS(n, v, s, fq, fr) \
	case v:                    \
		return reply ? fr : fq;
		WIRE_MESSAGES(WIRE_FDS)
#undef WIRE_FDS
	}
	return 0;
}

const char *
wire_name(unsigned type)
{
	switch (type) {
#define WIRE_NAME_CASE(n, v, s, fq, fr) \
	case v:                          \
		return #n;
		WIRE_MESSAGES(WIRE_NAME_CASE)
#undef WIRE_NAME_CASE
	}
	return "unknown";
}

ssize_t
wire_send_iov(int sock, const struct iovec *iov, int iovcnt, const int *fds, int nfds)
{
	if (nfds > WIRE_MAX_FDS)
		return -EINVAL;
	return fdpass_send(sock, iov, iovcnt, fds, nfds, MSG_DONTWAIT);
}

ssize_t
wire_send(int sock, const struct wire_hdr *h, const void *body, const int *fds, int nfds)
{
	struct iovec iov[2] = { { (void *)(uintptr_t)h, sizeof(*h) },
				{ (void *)(uintptr_t)body, h->len } };

	return wire_send_iov(sock, iov, h->len ? 2 : 1, fds, nfds);
}

static void
close_all(int *fds, int n)
{
	for (int i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

int
wire_validate(const struct wire_hdr *h, size_t got, int nfds)
{
	size_t body = wire_body_size(h->type);
	int reply = !!(h->flags & WIRE_F_REPLY), want;

	if (got < sizeof(*h) || body == 0 || h->len != body || got != sizeof(*h) + body)
		return -EPROTO;
	if (h->flags & ~WIRE_F_REPLY)
		return -EPROTO;
	/* A failed reply carries no descriptors; a count below 0 is "1 to -count". */
	want = reply && h->status ? 0 : wire_fds(h->type, reply);
	if (want < 0 ? nfds < 1 || nfds > -want : nfds != want)
		return -EPROTO;
	return 0;
}

ssize_t
wire_recv(int sock, struct wire_msg *msg, int flags)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * (WIRE_MAX_FDS + 1))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { &msg->hdr, sizeof(msg->hdr) + sizeof(msg->body) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			    .msg_controllen = sizeof(u.buf) };
	ssize_t n;
	int err;

	do
		n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC | flags);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	msg->nfds = 0;
	err = fdpass_collect(&m, msg->fds, &msg->nfds, WIRE_MAX_FDS);
	if (n == 0 && msg->nfds == 0)
		return 0; /* orderly close */
	if (!err && (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)))
		err = -EPROTO;
	if (!err)
		err = wire_validate(&msg->hdr, (size_t)n, msg->nfds);
	if (err) {
		close_all(msg->fds, msg->nfds);
		msg->nfds = 0;
		return err;
	}
	return n;
}

void
wire_msg_close_fds(struct wire_msg *msg)
{
	close_all(msg->fds, msg->nfds);
	msg->nfds = 0;
}
