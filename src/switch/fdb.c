/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>

#include "fdb.h"
#include "frame.h"

#define USED (1ull << 63)

static uint64_t
key_of(const uint8_t *mac, uint16_t vlan)
{
	return USED | eth_mac64(mac) << 12 | (vlan & 0xfffu);
}

static size_t
home(const struct fdb *f, uint64_t key)
{
	/* Fibonacci hashing: the low bits of a MAC are the ones that vary. */
	return (size_t)((key * 0x9e3779b97f4a7c15ull) >> 32) & f->mask;
}

int
fdb_init(struct fdb *f, size_t max_entries, int64_t age_ns)
{
	size_t slots = 16;

	while (slots / 4 * 3 < max_entries)
		slots *= 2;
	*f = (struct fdb){ .mask = slots - 1, .max = max_entries, .age_ns = age_ns };
	f->slot = calloc(slots, sizeof(*f->slot));
	return f->slot ? 0 : -ENOMEM;
}

void
fdb_free(struct fdb *f)
{
	free(f->slot);
	f->slot = NULL;
}

static struct fdb_ent *
find(struct fdb *f, uint64_t key)
{
	for (size_t i = home(f, key);; i = (i + 1) & f->mask) {
		struct fdb_ent *e = &f->slot[i];

		if (!e->key)
			return NULL;
		if (e->key == key)
			return e;
	}
}

/* Backward-shift deletion: later entries of the probe run move up. */
static void
remove_at(struct fdb *f, size_t i)
{
	size_t j = i;

	for (;;) {
		j = (j + 1) & f->mask;
		if (!f->slot[j].key)
			break;
		size_t h = home(f, f->slot[j].key);
		/* Can the entry at j move to i? Only if its home is not in (i, j]. */
		if ((j > i && (h <= i || h > j)) || (j < i && h <= i && h > j)) {
			f->slot[i] = f->slot[j];
			i = j;
		}
	}
	f->slot[i] = (struct fdb_ent){ 0 };
	f->n--;
}

static bool
expired(const struct fdb *f, const struct fdb_ent *e, int64_t now)
{
	return !e->fixed && now - e->seen_ns > f->age_ns;
}

uint16_t
fdb_lookup(struct fdb *f, const uint8_t *mac, uint16_t vlan, int64_t now)
{
	struct fdb_ent *e = find(f, key_of(mac, vlan));

	if (!e || expired(f, e, now))
		return FDB_NO_PORT;
	return e->port;
}

static struct fdb_ent *
insert(struct fdb *f, uint64_t key)
{
	size_t i = home(f, key);

	if (f->n >= f->max) {
		f->full++;
		return NULL;
	}
	while (f->slot[i].key)
		i = (i + 1) & f->mask;
	f->slot[i].key = key;
	f->n++;
	return &f->slot[i];
}

int
fdb_learn(struct fdb *f, const uint8_t *mac, uint16_t vlan, uint16_t port, int64_t now)
{
	uint64_t key = key_of(mac, vlan);
	struct fdb_ent *e = find(f, key);

	if (e) {
		if (e->fixed) /* a configured address is not taken over by a frame */
			return e->port == port ? 0 : -EPERM;
		if (e->port != port) {
			e->port = port;
			f->moved++;
		}
		e->seen_ns = now;
		return 0;
	}
	if (!(e = insert(f, key)))
		return 0;
	e->port = port;
	e->seen_ns = now;
	e->fixed = false;
	f->learned++;
	return 0;
}

int
fdb_add_fixed(struct fdb *f, const uint8_t *mac, uint16_t vlan, uint16_t port)
{
	uint64_t key = key_of(mac, vlan);
	struct fdb_ent *e = find(f, key);

	if (e && e->fixed && e->port != port)
		return -EEXIST;
	if (!e && !(e = insert(f, key)))
		return -ENOSPC;
	e->port = port;
	e->fixed = true;
	return 0;
}

void
fdb_del(struct fdb *f, const uint8_t *mac, uint16_t vlan)
{
	struct fdb_ent *e = find(f, key_of(mac, vlan));

	if (e)
		remove_at(f, (size_t)(e - f->slot));
}

/* Remove every entry @drop says so of; a removal shifts a later entry into i. */
static size_t
sweep(struct fdb *f, bool (*drop)(const struct fdb *, const struct fdb_ent *, uint64_t),
      uint64_t arg)
{
	size_t gone = 0;

	for (size_t i = 0; i <= f->mask;) {
		if (f->slot[i].key && drop(f, &f->slot[i], arg)) {
			remove_at(f, i);
			gone++;
			continue; /* look at what moved into i */
		}
		i++;
	}
	return gone;
}

static bool
of_port(const struct fdb *f, const struct fdb_ent *e, uint64_t port)
{
	(void)f;
	return e->port == port;
}

static bool
too_old(const struct fdb *f, const struct fdb_ent *e, uint64_t now)
{
	return expired(f, e, (int64_t)now);
}

void
fdb_flush_port(struct fdb *f, uint16_t port)
{
	sweep(f, of_port, port);
}

size_t
fdb_age(struct fdb *f, int64_t now)
{
	return sweep(f, too_old, (uint64_t)now);
}
