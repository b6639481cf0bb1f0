/* SPDX-License-Identifier: MIT */
/*
 * The RDMA connection manager between hosts, the daemon's side: a TCP
 * service on port 4791 of the address of every VMkernel adapter an RDMA
 * device is bound to, and the outgoing exchanges of this host's
 * connectors (rdma/cm_wire.h has the messages). It runs on the broker's
 * loop, never blocks, and answers the libraries' CM_CONNECT and
 * CM_ACCEPT late, as the one-host connection manager does
 * (broker_rdma.c), once the other host has answered.
 */
#ifndef VMFABRIC_VMCI_RDMA_CM_NET_H
#define VMFABRIC_VMCI_RDMA_CM_NET_H

#include <stdbool.h>

struct vmci_broker;
struct vmci_conn;
struct wire_msg;

/*
 * Start (b->rdma.net): listen on the devices' adapters' addresses now, and
 * follow them (bindings, addresses, uplinks) once a second. A device that
 * cannot take connections is logged with the reason. 0 or -errno.
 */
int cmnet_start(struct vmci_broker *b);
void cmnet_stop(struct vmci_broker *b);

/*
 * CM_CONNECT with an address (family != 0) from @c, whose QP is on device
 * @dev (NULL: a QP of no device of this host's configuration): connect to
 * the peer's daemon and answer @c when it has answered. Returns 0 (answered
 * later) or -errno to answer now: -EACCES (the context may not),
 * -ENETUNREACH (the device cannot carry RoCE v2: logged),
 * -EHOSTUNREACH, -EINVAL, -ENOBUFS (too many exchanges at once).
 */
int cmnet_connect(struct vmci_conn *c, struct wire_msg *m, const char *dev);

/*
 * CM_ACCEPT or CM_REJECT from listener @c of a request from another host
 * (family != 0); @qp_ok: the accepting QP is @c's process's. Returns 0
 * (ACCEPT: answered once the connector's daemon confirms) or -errno:
 * -ECONNABORTED (the requester gave up or went away), -EINVAL.
 */
int cmnet_answer(struct vmci_conn *c, struct wire_msg *m, bool qp_ok);

/* Control connection @c is closing: its exchanges end (a listener's requests are refused). */
void cmnet_conn_closed(struct vmci_conn *c);

/*
 * Seam for the fuzz target: take the connected stream socket @fd as if it
 * had been accepted from @peer_ip (IPv4) on an adapter's address whose
 * device's path MTU is @path_mtu bytes. 0 or -errno (the socket is closed
 * then).
 */
int cmnet__adopt(struct vmci_broker *b, int fd, const unsigned char peer_ip[4], unsigned path_mtu);

#endif
