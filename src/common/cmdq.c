/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <semaphore.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "cmdq.h"

struct cmdq_item {
	struct cmdq_item *next;
	cmdq_fn *fn;
	void *arg;
	sem_t *done; /* NULL: nobody waits */
	int *result;
};

int
cmdq_init(struct cmdq *q)
{
	q->head = q->tail = NULL;
	atomic_init(&q->posted, 0);
	q->ev = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (q->ev < 0)
		return -errno;
	pthread_mutex_init(&q->lock, NULL);
	return 0;
}

void
cmdq_fini(struct cmdq *q)
{
	while (q->head) { /* posted ones only: nobody waits once the thread is gone */
		struct cmdq_item *c = q->head;
		q->head = c->next;
		if (!c->done)
			free(c);
	}
	close(q->ev);
	pthread_mutex_destroy(&q->lock);
}

/* Queue @c (malloc'd when nobody waits for it, else the waiter's) and wake the thread. */
static void
post(struct cmdq *q, struct cmdq_item *c)
{
	pthread_mutex_lock(&q->lock);
	if (q->tail)
		q->tail->next = c;
	else
		q->head = c;
	q->tail = c;
	atomic_fetch_add_explicit(&q->posted, 1, memory_order_release);
	pthread_mutex_unlock(&q->lock);
	(void)eventfd_write(q->ev, 1);
}

int
cmdq_post(struct cmdq *q, cmdq_fn *fn, void *arg)
{
	struct cmdq_item *c = malloc(sizeof(*c));

	/*
	 * Without memory for the item, wait for the thread instead (the
	 * item on this stack): what is posted is often a removal, which
	 * must not be lost.
	 */
	if (!c) {
		int r = cmdq_call(q, fn, arg);

		return r > 0 ? 0 : r;
	}
	*c = (struct cmdq_item){ NULL, fn, arg, NULL, NULL };
	post(q, c);
	return 0;
}

int
cmdq_call(struct cmdq *q, cmdq_fn *fn, void *arg)
{
	sem_t done;
	int result = -EIO;
	struct cmdq_item c = { NULL, fn, arg, &done, &result };

	if (sem_init(&done, 0, 0) < 0)
		return -errno;
	post(q, &c);
	while (sem_wait(&done) < 0 && errno == EINTR)
		;
	sem_destroy(&done);
	return result;
}

void
cmdq_run(struct cmdq *q, void *ctx)
{
	struct cmdq_item *c, *next;
	eventfd_t v;

	if (!atomic_load_explicit(&q->posted, memory_order_acquire))
		return;
	(void)eventfd_read(q->ev, &v);
	pthread_mutex_lock(&q->lock);
	c = q->head;
	q->head = q->tail = NULL;
	atomic_store_explicit(&q->posted, 0, memory_order_relaxed);
	pthread_mutex_unlock(&q->lock);
	for (; c; c = next) {
		int r;

		next = c->next;
		r = c->fn(ctx, c->arg);
		if (c->done) { /* the waiter's item: gone once it is woken */
			*c->result = r;
			sem_post(c->done);
		} else {
			free(c);
		}
	}
}
