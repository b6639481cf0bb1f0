/* SPDX-License-Identifier: MIT */
/* epoll loop with a short adaptive spin; see loop.h. */
#include <errno.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "loop.h"
#include "clock.h"

int
loop_init(struct loop *l)
{
	l->ep = epoll_create1(EPOLL_CLOEXEC);
	l->stop = false;
	l->spin_ns = LOOP_SPIN_NS;
	l->nev = l->next = 0;
	l->dirty = false;
	l->on_dirty = NULL;
	return l->ep < 0 ? -errno : 0;
}

void
loop_free(struct loop *l)
{
	if (l->ep >= 0)
		close(l->ep);
	l->ep = -1;
}

int
loop_add(struct loop *l, struct loop_src *s, uint32_t events)
{
	struct epoll_event e = { .events = events, .data.ptr = s };

	return epoll_ctl(l->ep, EPOLL_CTL_ADD, s->fd, &e) < 0 ? -errno : 0;
}

int
loop_mod(struct loop *l, struct loop_src *s, uint32_t events)
{
	struct epoll_event e = { .events = events, .data.ptr = s };

	return epoll_ctl(l->ep, EPOLL_CTL_MOD, s->fd, &e) < 0 ? -errno : 0;
}

int
loop_del(struct loop *l, struct loop_src *s)
{
	/*
	 * A source removed by a callback may have an event later in the batch
	 * being dispatched, and its memory may be freed right after: forget
	 * that event.
	 */
	for (int i = l->next; i < l->nev; i++)
		if (l->ev[i].data.ptr == s)
			l->ev[i].data.ptr = NULL;
	return epoll_ctl(l->ep, EPOLL_CTL_DEL, s->fd, NULL) < 0 ? -errno : 0;
}

int
loop_once(struct loop *l, int timeout_ms)
{
	int n = epoll_wait(l->ep, l->ev, LOOP_BATCH, timeout_ms);

	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	l->nev = n;
	for (l->next = 0; l->next < n && !l->stop;) {
		struct epoll_event *e = &l->ev[l->next++];
		struct loop_src *s = e->data.ptr;

		if (s)
			s->fn(s, e->events);
	}
	l->nev = l->next = 0;
	if (l->dirty && l->on_dirty && !l->stop) {
		l->dirty = false;
		l->on_dirty(l);
	}
	return n;
}

int
loop_run(struct loop *l)
{
	int64_t spin_until = 0;

	while (!l->stop) {
		/*
		 * Poll without sleeping while recently busy, then block; not while
		 * on_dirty marked the loop dirty again (it wants another round).
		 */
		int n = loop_once(l, l->dirty || clock_ns() < spin_until ? 0 : -1);

		if (n < 0)
			return n;
		if (n > 0)
			spin_until = clock_ns() + l->spin_ns;
	}
	return 0;
}
