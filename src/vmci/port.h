/* SPDX-License-Identifier: MIT */
/*
 * Port namespaces: each context has two (connection-oriented sockets, i.e.
 * stream and seqpacket, and datagrams), as AF_VSOCK does. A bound port maps
 * to the control connection that owns it. Ephemeral ports are handed out
 * from a moving cursor above 1023.
 */
#ifndef VMFABRIC_VMCI_PORT_H
#define VMFABRIC_VMCI_PORT_H

#include <stddef.h>
#include <stdint.h>

#define VMCI_PORT_ANY 0xffffffffu
#define VMCI_PORT_PRIVILEGED 1024u /* ports below need the privilege */

/* The RDMA connection manager's ports are a third space (vrdma_listen()). */
enum vmci_space { VMCI_SPACE_CONN, VMCI_SPACE_DGRAM, VMCI_SPACE_RDMA };

struct vmci_conn;
struct vmci_port_ent;

struct vmci_ports {
	struct vmci_port_ent **bucket;
	size_t nbucket, n;
	uint32_t next; /* ephemeral cursor */
};

int vmci_ports_init(struct vmci_ports *p);
void vmci_ports_free(struct vmci_ports *p);
/*
 * Bind (space, cid, port) to @owner. VMCI_PORT_ANY picks a free ephemeral
 * port. Returns 0 with the port in *@out, -EADDRINUSE, -EADDRNOTAVAIL (no
 * ephemeral port left), -ENOMEM.
 */
int vmci_port_bind(struct vmci_ports *p, enum vmci_space sp, uint32_t cid, uint32_t port,
		   struct vmci_conn *owner, uint32_t *out);
void vmci_port_unbind(struct vmci_ports *p, enum vmci_space sp, uint32_t cid, uint32_t port);
struct vmci_conn *vmci_port_find(const struct vmci_ports *p, enum vmci_space sp, uint32_t cid,
				 uint32_t port);

#endif
