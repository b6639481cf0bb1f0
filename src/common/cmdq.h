/* SPDX-License-Identifier: MIT */
/*
 * Commands from the control plane to a dataplane thread: the control plane
 * posts a function to run on the thread (and may wait for its result); the
 * thread runs what was posted, in order, between batches, so that it never
 * shares its structures and never waits for the control plane. The eventfd
 * goes into the thread's epoll set to wake it.
 */
#ifndef VMFABRIC_CMDQ_H
#define VMFABRIC_CMDQ_H

#include <pthread.h>
#include <stdatomic.h>

typedef int cmdq_fn(void *ctx, void *arg);

struct cmdq_item;

struct cmdq {
	int ev; /* readable while commands wait */
	_Atomic unsigned posted; /* so that an empty queue costs the thread no system call */
	pthread_mutex_t lock;
	struct cmdq_item *head, *tail;
};

int cmdq_init(struct cmdq *q);
void cmdq_fini(struct cmdq *q);
/* Run @fn(ctx, @arg) on the thread and return its result (allocates nothing). */
int cmdq_call(struct cmdq *q, cmdq_fn *fn, void *arg);
/*
 * The same without waiting; when there is no memory for that, waiting
 * (so that a command is never lost). 0, or what @fn returned then if < 0.
 */
int cmdq_post(struct cmdq *q, cmdq_fn *fn, void *arg);
/* The thread: run everything posted so far (a load and nothing more when nothing was). */
void cmdq_run(struct cmdq *q, void *ctx);

#endif
