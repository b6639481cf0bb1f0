/* SPDX-License-Identifier: MIT */
/*
 * The fd keeper: a small process (vmfabricd-keep) that vmfabricd starts and
 * that outlives it when it is killed. It holds a copy of what a restart
 * needs and the daemon alone cannot get back: the control socket's
 * listening descriptor and, per VM, QEMU's pidfd, the vsock device's
 * sockets and its vhost-user setup (memory regions, rings' kick, call and
 * err eventfds) -- QEMU 7.2 does not set a vhost-user-vsock device up again
 * after a reconnect -- and the emulated NICs' sockets. The daemon sends it
 * the same JSON a restart by exec carries (vms_save()) with its descriptors
 * whenever that state changes, once per loop round. A daemon started on the
 * same control socket finds the keeper on the socket next to it
 * ("<control socket>.keep", mode 0600; an abstract name, a hash of the path,
 * when that would not fit), takes the copy and restores from it, as
 * --restore does.
 *
 * Trust: the keeper and the daemon authenticate each other by SO_PEERCRED
 * (the same user) and by the control socket's path, which the keeper checks
 * in full. Nothing else may talk to it.
 *
 * Lifetime: a clean stop (SIGTERM, SIGINT) ends the keeper too (BYE). A
 * SIGHUP restart keeps it: its connection and pidfd go across exec. A
 * keeper that dies is replaced, and the daemon says so in its log.
 */
#ifndef VMFABRIC_DAEMON_KEEPER_H
#define VMFABRIC_DAEMON_KEEPER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/loop.h"

#define KEEPER_NAME "vmfabricd-keep"

struct keeper {
	struct loop *loop;
	struct loop_src conn; /* SOCK_SEQPACKET to the keeper; -1: none */
	struct loop_src proc; /* its pidfd */
	pid_t pid;
	bool child;	  /* we started it (ours to reap) */
	bool inherited;	  /* it held a crashed daemon's state when we came */
	bool given_up;	  /* it kept dying: running without one */
	uint32_t seq;	  /* snapshots sent */
	uint64_t sent;	  /* snapshots sent (for status) */
	unsigned started; /* keepers this daemon started */
	int64_t last_start_ns;
	const char *self; /* the executable */
	char path[108];	  /* the control socket, absolute */
	/* Makes the snapshot (an object whose descriptors stay open). */
	json_t *(*snapshot)(struct keeper *k);
	void (*snapshot_done)(struct keeper *k); /* after it was sent */
};

/*
 * Find the keeper of control socket @path or start one. With @saved
 * non-NULL, take what the keeper holds from a daemon that died: *@saved is
 * its JSON with the descriptors renumbered to ours, or NULL if it held
 * nothing. A keeper of another socket or user is never used. 0, or -errno
 * when the daemon runs without a keeper (logged).
 */
int keeper_open(struct keeper *k, struct loop *loop, const char *self, const char *path,
		json_t **saved);
/* After a restart by exec: the keeper the previous process had (@o, from keeper_save()). */
int keeper_adopt(struct keeper *k, struct loop *loop, const char *self, const char *path,
		 json_t *o);
/* For a restart by exec: the connection and pidfd, kept open across it. */
json_t *keeper_save(struct keeper *k);
void keeper_save_undo(struct keeper *k);
/* Send k->snapshot() now (the loop's on_dirty calls this). */
void keeper_update(struct keeper *k);
/*
 * Done with the keeper: @bye ends it (clean stop); otherwise it keeps what
 * it holds for the next daemon.
 */
void keeper_close(struct keeper *k, bool bye);
/* {"pid", "fds", "started", "snapshots"} for system.status; NULL without one. */
json_t *keeper_status(const struct keeper *k);

/* The keeper process (vmfabricd --keeper=CONN,LISTEN -s PATH): never returns. */
__attribute__((noreturn)) void keeper_main(int conn, int lfd, const char *path);

#endif
