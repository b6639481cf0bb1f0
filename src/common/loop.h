/* SPDX-License-Identifier: MIT */
/*
 * A small epoll event loop for the daemon's control plane. Each source is a
 * descriptor and a callback; the loop polls briefly (LOOP_SPIN_NS) after a
 * burst of events before it sleeps, because a client waiting for a reply
 * usually sends its next request within microseconds, and a sleep/wakeup of
 * the daemon costs tens of microseconds on a virtual machine.
 */
#ifndef VMFABRIC_LOOP_H
#define VMFABRIC_LOOP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

#define LOOP_SPIN_NS 20000

struct loop_src;
typedef void loop_fn(struct loop_src *s, uint32_t events);

struct loop_src {
	int fd;
	loop_fn *fn;
};

#define LOOP_BATCH 64

struct loop {
	int ep;
	bool stop;
	uint32_t spin_ns;
	/* The batch being dispatched: loop_del() drops a source's pending event. */
	struct epoll_event ev[LOOP_BATCH];
	int nev, next;
	/*
	 * State worth keeping across a daemon crash changed (a VM, its vsock
	 * device's vhost-user setup): on_dirty, when set, runs once after the
	 * round in which callbacks marked it, however many did.
	 */
	bool dirty;
	void (*on_dirty)(struct loop *l);
};

static inline void
loop_mark_dirty(struct loop *l)
{
	l->dirty = true;
}

int loop_init(struct loop *l);
void loop_free(struct loop *l);
int loop_add(struct loop *l, struct loop_src *s, uint32_t events);
int loop_mod(struct loop *l, struct loop_src *s, uint32_t events);
int loop_del(struct loop *l, struct loop_src *s);
/* Run until l->stop is set by a callback. Returns 0 or -errno. */
int loop_run(struct loop *l);
/* One round: wait up to @timeout_ms (-1: forever), dispatch. Returns events or -errno. */
int loop_once(struct loop *l, int timeout_ms);

#endif
