/* SPDX-License-Identifier: MIT */
/* Wakeups that another process cannot make wait for ever (see wake.h). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "wake.h"

static atomic_int guard_on;

/* Each thread's timer, made at its first guarded wakeup (1 made, -1 none to be had). */
static _Thread_local timer_t guard_timer;
static _Thread_local int guard_state;

static int
guard_signal(void)
{
	return SIGRTMIN + 4;
}

static void
on_guard(int sig)
{
	(void)sig; /* its only work: interrupting the write (no SA_RESTART) */
}

int
wake_guard(void)
{
	struct sigaction sa = { .sa_handler = on_guard };

	sigemptyset(&sa.sa_mask);
	if (sigaction(guard_signal(), &sa, NULL) < 0)
		return -errno;
	atomic_store(&guard_on, 1);
	return 0;
}

static bool
thread_timer(void)
{
	if (!guard_state) {
		struct sigevent ev = { .sigev_notify = SIGEV_THREAD_ID,
				       .sigev_signo = guard_signal() };

		ev._sigev_un._tid = gettid(); /* sigev_notify_thread_id */
		guard_state = timer_create(CLOCK_MONOTONIC, &ev, &guard_timer) == 0 ? 1 : -1;
	}
	return guard_state > 0;
}

int
wake_fd(int fd)
{
	uint64_t one = 1;
	ssize_t n;
	int fl, err;

	if (atomic_load_explicit(&guard_on, memory_order_relaxed) && thread_timer()) {
		struct itimerspec arm = { .it_value = { 0, WAKE_GUARD_MS * 1000000L } }, off = { 0 };

		if (timer_settime(guard_timer, 0, &arm, NULL) == 0) {
			n = write(fd, &one, sizeof(one));
			err = errno;
			timer_settime(guard_timer, 0, &off, NULL);
			return n == sizeof(one) ? 0 : -err;
		}
	}
	fl = fcntl(fd, F_GETFL);
	if (fl >= 0 && !(fl & O_NONBLOCK))
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	n = write(fd, &one, sizeof(one));
	return n == sizeof(one) ? 0 : -errno;
}
