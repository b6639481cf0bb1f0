/* SPDX-License-Identifier: MIT */
/* Port tables: a chained hash on (space, cid, port) that doubles as it fills. */
#include <errno.h>
#include <stdlib.h>

#include "port.h"

struct vmci_port_ent {
	struct vmci_port_ent *next;
	uint64_t key;
	struct vmci_conn *owner;
};

static uint64_t
port_key(enum vmci_space sp, uint32_t cid, uint32_t port)
{
	/* cid < 2^30 in practice; the space takes the top two bits. */
	return ((uint64_t)sp << 62) ^ ((uint64_t)cid << 32) ^ port;
}

static size_t
port_hash(const struct vmci_ports *p, uint64_t key)
{
	key ^= key >> 29;
	key *= 0xbf58476d1ce4e5b9ull;
	key ^= key >> 32;
	return (size_t)key & (p->nbucket - 1);
}

int
vmci_ports_init(struct vmci_ports *p)
{
	p->nbucket = 256;
	p->n = 0;
	p->next = VMCI_PORT_PRIVILEGED + (uint32_t)(random() % 0x3fff0000);
	p->bucket = calloc(p->nbucket, sizeof(*p->bucket));
	return p->bucket ? 0 : -ENOMEM;
}

void
vmci_ports_free(struct vmci_ports *p)
{
	for (size_t i = 0; i < p->nbucket; i++) {
		struct vmci_port_ent *e = p->bucket[i], *n;
		for (; e; e = n) {
			n = e->next;
			free(e);
		}
	}
	free(p->bucket);
	p->bucket = NULL;
	p->n = p->nbucket = 0;
}

static struct vmci_port_ent *
port_lookup(const struct vmci_ports *p, uint64_t key)
{
	for (struct vmci_port_ent *e = p->bucket[port_hash(p, key)]; e; e = e->next)
		if (e->key == key)
			return e;
	return NULL;
}

static void
port_grow(struct vmci_ports *p)
{
	size_t old = p->nbucket;
	struct vmci_port_ent **ob = p->bucket, **nb = calloc(old * 2, sizeof(*nb));

	if (!nb)
		return; /* keep the longer chains */
	p->bucket = nb;
	p->nbucket = old * 2;
	for (size_t i = 0; i < old; i++) {
		struct vmci_port_ent *e = ob[i], *n;
		for (; e; e = n) {
			size_t h = port_hash(p, e->key);
			n = e->next;
			e->next = nb[h];
			nb[h] = e;
		}
	}
	free(ob);
}

int
vmci_port_bind(struct vmci_ports *p, enum vmci_space sp, uint32_t cid, uint32_t port,
	       struct vmci_conn *owner, uint32_t *out)
{
	struct vmci_port_ent *e;
	uint64_t key;
	size_t h;

	if (port == VMCI_PORT_ANY) {
		uint32_t tries = 0;

		do {
			if (++p->next == VMCI_PORT_ANY || p->next < VMCI_PORT_PRIVILEGED)
				p->next = VMCI_PORT_PRIVILEGED;
			if (++tries > 100000)
				return -EADDRNOTAVAIL;
		} while (port_lookup(p, port_key(sp, cid, p->next)));
		port = p->next;
	}
	key = port_key(sp, cid, port);
	if (port_lookup(p, key))
		return -EADDRINUSE;
	e = malloc(sizeof(*e));
	if (!e)
		return -ENOMEM;
	if (p->n >= p->nbucket)
		port_grow(p);
	h = port_hash(p, key);
	e->key = key;
	e->owner = owner;
	e->next = p->bucket[h];
	p->bucket[h] = e;
	p->n++;
	*out = port;
	return 0;
}

void
vmci_port_unbind(struct vmci_ports *p, enum vmci_space sp, uint32_t cid, uint32_t port)
{
	uint64_t key = port_key(sp, cid, port);

	for (struct vmci_port_ent **pp = &p->bucket[port_hash(p, key)]; *pp; pp = &(*pp)->next) {
		if ((*pp)->key == key) {
			struct vmci_port_ent *e = *pp;
			*pp = e->next;
			free(e);
			p->n--;
			return;
		}
	}
}

struct vmci_conn *
vmci_port_find(const struct vmci_ports *p, enum vmci_space sp, uint32_t cid, uint32_t port)
{
	struct vmci_port_ent *e = port_lookup(p, port_key(sp, cid, port));

	return e ? e->owner : NULL;
}
