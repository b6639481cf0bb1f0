/* SPDX-License-Identifier: MIT */
/*
 * The switch's filter table: (MAC, VLAN) -> port, one lookup per frame.
 * Entries come from configuration (a VM's ethernetN.address, a vNIC's MAC:
 * static, never aged, never moved by a frame from elsewhere) and from
 * learning (source addresses; aged out). Open addressing with linear
 * probing and backward-shift deletion: no tombstones, a lookup touches one
 * or two cache lines. Fixed capacity: when full, nothing more is learned
 * (frames to unknown addresses are flooded, as before) and it is counted.
 * One thread (the dataplane's) owns it.
 */
#ifndef VMFABRIC_SWITCH_FDB_H
#define VMFABRIC_SWITCH_FDB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FDB_NO_PORT 0xffffu

struct fdb_ent {
	uint64_t key;	 /* MAC << 12 | VLAN, plus 1 << 63 when used */
	int64_t seen_ns; /* last frame from it (learned entries) */
	uint16_t port;
	bool fixed;	 /* configured: never aged, never moved */
};

struct fdb {
	struct fdb_ent *slot;
	size_t mask;	    /* slots - 1 */
	size_t n, max;	    /* entries, and the most allowed (3/4 of slots) */
	int64_t age_ns;	    /* learned entries older than this are gone */
	uint64_t learned, moved, full; /* counters */
};

int fdb_init(struct fdb *f, size_t max_entries, int64_t age_ns);
void fdb_free(struct fdb *f);
/* The port for (mac, vlan), or FDB_NO_PORT (absent or aged out at @now). */
uint16_t fdb_lookup(struct fdb *f, const uint8_t *mac, uint16_t vlan, int64_t now);
/*
 * A frame from @mac on @vlan came in on @port: learn or refresh it.
 * -EPERM when the address is configured on another port (a spoof).
 */
int fdb_learn(struct fdb *f, const uint8_t *mac, uint16_t vlan, uint16_t port, int64_t now);
/* A configured entry. -ENOSPC when full, -EEXIST when another port holds it fixed. */
int fdb_add_fixed(struct fdb *f, const uint8_t *mac, uint16_t vlan, uint16_t port);
void fdb_del(struct fdb *f, const uint8_t *mac, uint16_t vlan);
/* Forget every entry of @port (it went away). */
void fdb_flush_port(struct fdb *f, uint16_t port);
/* Drop learned entries not seen since @now - age. Returns how many went. */
size_t fdb_age(struct fdb *f, int64_t now);

#endif
