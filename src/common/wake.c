/* SPDX-License-Identifier: MIT */
/* Wakeups that another process cannot make wait for ever (see wake.h). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "wake.h"

/*
 * The guard: a one-shot timer per thread whose signal interrupts a wakeup
 * write that blocks. The signal's handler does nothing; it is installed
 * without SA_RESTART, so the write returns EINTR.
 */
#define WAKE_GUARD_SIG (SIGRTMIN + 7)

static bool guard_on;
static pthread_key_t guard_key;
static pthread_once_t guard_once = PTHREAD_ONCE_INIT;
static __thread struct {
	bool made;
	timer_t t;
} guard;

static void
guard_nothing(int sig)
{
	(void)sig;
}

static void
guard_thread_gone(void *t)
{
	timer_delete((timer_t)t);
}

static void
guard_init(void)
{
	struct sigaction sa = { .sa_handler = guard_nothing }; /* no SA_RESTART */

	sigemptyset(&sa.sa_mask);
	guard_on = sigaction(WAKE_GUARD_SIG, &sa, NULL) == 0 &&
		   pthread_key_create(&guard_key, guard_thread_gone) == 0;
}

void
wake_guard(void)
{
	pthread_once(&guard_once, guard_init);
}

/* This thread's timer, made on first use; false if it cannot be. */
static bool
guard_timer(void)
{
	struct sigevent ev = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = WAKE_GUARD_SIG };
	sigset_t set;

	if (guard.made)
		return true;
	ev._sigev_un._tid = gettid(); /* sigev_notify_thread_id */
	sigemptyset(&set);
	sigaddset(&set, WAKE_GUARD_SIG);
	if (pthread_sigmask(SIG_UNBLOCK, &set, NULL) || timer_create(CLOCK_MONOTONIC, &ev, &guard.t))
		return false;
	pthread_setspecific(guard_key, guard.t);
	return guard.made = true;
}

int
wake_fd(int fd)
{
	/* Repeating until disarmed: a signal spent before the write starts (the thread
	 * preempted in between) must not leave the write unguarded. */
	static const struct itimerspec arm = { .it_value = { 0, WAKE_GUARD_MS * 1000000L },
					       .it_interval = { 0, WAKE_GUARD_MS * 1000000L } },
				       off;
	bool guarded;
	int fl, r, err;

	/* Non-blocking again first (one fcntl): the guard is for a peer racing it. */
	fl = fcntl(fd, F_GETFL);
	if (fl >= 0 && !(fl & O_NONBLOCK))
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	guarded = guard_on && guard_timer() && timer_settime(guard.t, 0, &arm, NULL) == 0;
	/* eventfd_write(): under ThreadSanitizer the guard's signal reaches it when it blocks, not a write() */
	r = eventfd_write(fd, 1);
	err = errno;
	if (guarded)
		timer_settime(guard.t, 0, &off, NULL);
	if (r == 0)
		return 0;
	return err == EINTR && !guarded ? -EAGAIN : -err;
}
