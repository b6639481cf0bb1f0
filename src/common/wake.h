/* SPDX-License-Identifier: MIT */
/*
 * Wakeups through an eventfd whose file description another process
 * shares: a queue pair's peer, a vhost-user frontend's call descriptor.
 * That process can make the description blocking and fill the counter,
 * so that a plain write() would wait for ever (a daemon thread stuck for
 * everyone). With the guard on (wake_guard(), the daemon at start), a
 * write that waits is interrupted by a one-shot timer of the writing
 * thread after WAKE_GUARD_MS: the caller learns that the other side holds
 * the descriptor (-EINTR) and can cut it off. Either way the descriptor is
 * made non-blocking again before each write (which, without the guard, the
 * other side can still undo in between: applications, whose peer is the
 * daemon).
 */
#ifndef VMFABRIC_WAKE_H
#define VMFABRIC_WAKE_H

#define WAKE_GUARD_MS 20 /* a wakeup write takes microseconds */

/* Guard every later wake_fd() of this process (installs its signal's handler; once). */
void wake_guard(void);
/*
 * Add 1 to eventfd @fd: 0; -EAGAIN when its counter is full (a wakeup is
 * pending anyway); -EINTR when it would have blocked (guarded); -errno.
 */
int wake_fd(int fd);

#endif
