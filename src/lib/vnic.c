/* SPDX-License-Identifier: MIT */
/* Process vNICs (include/vmfabric/vnic.h): a control connection and a queue pair of frames. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "lib.h"
#include "vmfabric/vnic.h"

struct vmf_vnic {
	struct vsk ctl; /* the port lives as long as this connection */
	struct qp *qp;
	uint8_t mac[6];
	char name[32];
	int64_t alive_ns; /* the daemon's end last seen alive (lib_daemon_gone) */
};

int
vmf_vnic_open(const char *portgroup, const uint8_t mac[6], struct vmf_vnic **out)
{
	struct wire_vnic w = { 0 };
	struct vmf_vnic *n;
	struct wire_msg rep;
	struct qp_fds f;
	int err;

	if (!portgroup || strlen(portgroup) >= sizeof(w.portgroup))
		return -EINVAL;
	if (!(n = calloc(1, sizeof(*n))))
		return -ENOMEM;
	n->ctl.fd = -1;
	n->ctl.ctrl = -1;
	n->ctl.type = SOCK_DGRAM;
	lib_identity(&n->ctl.want_cid, n->ctl.want_name);
	strcpy(w.portgroup, portgroup);
	if (mac)
		memcpy(w.mac, mac, sizeof(w.mac));
	err = ctl_rpc(&n->ctl, WIRE_VNIC_OPEN, &w, NULL, 0, &rep, -1);
	if (err)
		goto fail;
	f = (struct qp_fds){ rep.fds[0], rep.fds[1], rep.fds[2], rep.fds[3] };
	if ((err = qp_attach(&f, &n->qp))) {
		wire_msg_close_fds(&rep);
		goto fail;
	}
	memcpy(n->mac, w.out_mac, sizeof(n->mac));
	w.out_name[sizeof(w.out_name) - 1] = 0;
	strcpy(n->name, w.out_name);
	*out = n;
	return 0;
fail:
	ctl_drop(&n->ctl);
	free(n);
	return err;
}

ssize_t
vmf_vnic_send(struct vmf_vnic *n, const void *frame, size_t len, int flags)
{
	if (lib_daemon_gone(n->qp, &n->alive_ns))
		return -EPIPE; /* the port went with the daemon: open the vNIC again */
	return qp_msg_send(n->qp, frame, len, (flags & MSG_DONTWAIT) ? QP_DONTWAIT : 0);
}

ssize_t
vmf_vnic_recv(struct vmf_vnic *n, void *buf, size_t len, int flags)
{
	size_t full;
	ssize_t r = qp_msg_recv(n->qp, buf, len, &full, (flags & MSG_DONTWAIT) ? QP_DONTWAIT : 0);

	return r < 0 ? r : (ssize_t)full;
}

int
vmf_vnic_send_batch(struct vmf_vnic *n, const struct iovec *frames, int count)
{
	int i;

	if (count > 0 && lib_daemon_gone(n->qp, &n->alive_ns))
		return -EPIPE;
	for (i = 0; i < count; i++) {
		ssize_t r = qp_msg_sendv(n->qp, &frames[i], 1, QP_DONTWAIT | QP_MORE);

		if (r < 0) {
			if (r != -EAGAIN && !i)
				return (int)r;
			break;
		}
	}
	qp_flush(n->qp);
	return i;
}

int
vmf_vnic_recv_batch(struct vmf_vnic *n, const struct iovec *bufs, size_t *lens, int count)
{
	struct iovec v[2];
	int i;

	for (i = 0; i < count; i++) {
		ssize_t r = qp_msg_peek(n->qp, v);
		size_t k, want;

		if (r < 0) {
			if (r != -EAGAIN && !i) {
				qp_msg_consume(n->qp);
				return (int)r;
			}
			break;
		}
		want = (size_t)r < bufs[i].iov_len ? (size_t)r : bufs[i].iov_len;
		k = want < v[0].iov_len ? want : v[0].iov_len;
		memcpy(bufs[i].iov_base, v[0].iov_base, k);
		memcpy((char *)bufs[i].iov_base + k, v[1].iov_base, want - k);
		lens[i] = want;
	}
	qp_msg_consume(n->qp);
	return i;
}

void
vmf_vnic_mac(const struct vmf_vnic *n, uint8_t mac[6])
{
	memcpy(mac, n->mac, 6);
}

const char *
vmf_vnic_name(const struct vmf_vnic *n)
{
	return n->name;
}

void
vmf_vnic_close(struct vmf_vnic *n)
{
	if (!n)
		return;
	qp_close(n->qp);
	ctl_drop(&n->ctl);
	free(n);
}
