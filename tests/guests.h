/* SPDX-License-Identifier: MIT */
/* End-to-end helpers for tests that boot guests (see guests.c). */
#ifndef VMFABRIC_TESTS_GUESTS_H
#define VMFABRIC_TESTS_GUESTS_H

#include <stddef.h>
#include <stdint.h>

#include "daemon.h"

struct vt {
	struct tdaemon d;
	char guest[4096];
};

/*
 * A daemon for VMs with TD_CONTEXTS and @config (more host configuration,
 * or NULL), or SKIP when QEMU or the guest image is missing.
 */
void vt_start(struct vt *t, const char *config);
/* Run the CLI; its standard output in @out (malloc'd). Returns the exit status. */
__attribute__((format(printf, 3, 4))) int vt_cli(struct vt *t, char **out, const char *fmt, ...);
/*
 * Start a VM named @name with @vmx_lines (more .vmx keys, or NULL) running
 * @cmd in the guest. Returns its CID, or -1 when the start was refused
 * (the CLI's message in @why when given).
 */
int vt_vm_start(struct vt *t, const char *name, const char *vmx_lines, const char *cmd, char *why,
		size_t whylen);
/* Wait for a console line containing @needle; a copy of it in @line. */
void vt_wait_console(struct vt *t, const char *name, const char *needle, char *line, size_t len);
/* Wait until the VM has exited (it powers off after its command). */
void vt_wait_exit(struct vt *t, const char *name);
/* key=value of a VMF-RESULT line. */
unsigned long long vt_result_u64(const char *line, const char *key);
/* Connect to a guest's port (host context), retrying while the guest is still booting. */
int vt_connect_guest(unsigned cid, unsigned port, int type);
/* Send @bytes of the pattern (vmf-pattern.h, seed 0); returns the checksum. */
uint64_t vt_write_pattern(int s, uint64_t bytes);
/* QEMU's pid for VM @name, from vm.list (-1: not listed). */
long vt_vm_pid(struct vt *t, const char *name);

#endif
