/* SPDX-License-Identifier: MIT */
/*
 * Test helpers: start a private vmfabricd (its own socket in a fresh
 * directory, a configuration given as text), stop, kill or pause it, and
 * make sockets acting as a given context.
 */
#ifndef VMFABRIC_TEST_DAEMON_H
#define VMFABRIC_TEST_DAEMON_H

#include <stdbool.h>
#include <sys/types.h>

#include "vmfabric/vmci.h"

struct tdaemon {
	pid_t pid;
	char dir[64];
	char sock[100];
	char conf[128];
	char log[128];
	char netns[32]; /* run in this network namespace ("": the test's) */
};

/* The contexts every integration test has (root may act as each). */
#define TD_CONTEXTS                                                              \
	"context0.name = \"a\"\ncontext0.vmci0.id = \"3\"\n"                     \
	"context0.vmci0.present = \"TRUE\"\ncontext0.uid = \"0\"\n"              \
	"context1.name = \"b\"\ncontext1.vmci0.id = \"4\"\n"                     \
	"context1.vmci0.present = \"TRUE\"\ncontext1.uid = \"0\"\n"              \
	"context2.name = \"off\"\ncontext2.vmci0.id = \"5\"\ncontext2.uid = \"0\"\n" \
	"context3.name = \"r\"\ncontext3.vmci0.id = \"6\"\n"                     \
	"context3.vmci0.present = \"TRUE\"\ncontext3.vmci0.restricted = \"TRUE\"\n" \
	"context4.name = \"u\"\ncontext4.vmci0.id = \"7\"\n"                     \
	"context4.vmci0.present = \"TRUE\"\ncontext4.uid = \"1000\"\n"

/* Start with @config (NULL: TD_CONTEXTS); points libvmfabric at it. */
void td_start(struct tdaemon *d, const char *config);
/* The same, with the daemon in network namespace @ns (it must exist). */
void td_start_ns(struct tdaemon *d, const char *config, const char *ns);
/* Start again on the same socket and configuration (after td_kill/td_stop). */
void td_restart(struct tdaemon *d);
void td_stop(struct tdaemon *d);		/* SIGTERM, wait, check it exited 0 */
void td_kill(struct tdaemon *d, int sig);	/* any signal; waits if it ends */
/*
 * kill -9 and start again on the same socket; returns once the new process
 * answers system.status (the fd keeper holds the listening socket
 * meanwhile, so that connecting alone does not tell).
 */
void td_crash(struct tdaemon *d);
void td_cleanup(struct tdaemon *d);

/* A socket acting as context @ctx ("a", "b", … or NULL for the host). */
int td_socket(const char *ctx, int type);
struct sockaddr_vm td_addr(unsigned cid, unsigned port);
/* Listen on (ctx, port) with backlog 16; returns the socket. */
int td_listener(const char *ctx, int type, unsigned port);

/* The daemon's JSON answer to a management command (malloc'd). */
char *td_mgmt(struct tdaemon *d, const char *cmd);
/* Run a shell command; its output (stdout) in @out; returns its exit status. */
int td_run(const char *cmd, char *out, size_t len);
/* Run the shell command @fmt makes (printf-style); its exit status, or -1 if it did not exit. */
__attribute__((format(printf, 1, 2))) int td_sh(const char *fmt, ...);

#endif
