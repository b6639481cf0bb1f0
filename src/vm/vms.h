/* SPDX-License-Identifier: MIT */
/*
 * Running VMs: `vmfabric vm start X.vmx` ends here. A VM is a context in
 * the VMCI registry (its CID from vmci0.id, or assigned), a virtio-vsock
 * device when vmci0.present is TRUE (none otherwise, as in VMware), a
 * runtime directory with the device's vhost-user socket and the serial
 * console log, and a QEMU process watched through a pidfd: when it exits,
 * everything it held is freed.
 */
#ifndef VMFABRIC_VM_VMS_H
#define VMFABRIC_VM_VMS_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/loop.h"

struct vmci_broker;
struct vm;

struct vms {
	struct loop *loop;
	struct vmci_broker *b;
	char rundir[112]; /* per-VM directories live here */
	char accel[8];	  /* "auto" (probe once), "kvm" or "tcg" */
	/*
	 * The KVM probe (a short boot) runs on its own thread, so that the
	 * daemon goes on serving while it takes its seconds; VMs started
	 * meanwhile wait for it. probed/probe_why are written by the thread
	 * and read only after it signalled probe_done.
	 */
	char probed[8]; /* the probe's answer, "" until probed */
	char probe_why[160];
	char probe_out[8], probe_out_why[160]; /* the thread's, copied when done */
	char probe_kernel[4096], probe_initrd[4096];
	pthread_t probe_thread;
	bool probing;
	struct loop_src probe_done; /* eventfd */
	const char *qemu; /* binary; NULL: qemu-system-x86_64 */
	struct vm *list;
	unsigned n;
};

/* @rundir: where VM directories go (made if missing); @accel: auto|kvm|tcg. */
int vms_init(struct vms *m, struct loop *loop, struct vmci_broker *b, const char *rundir,
	     const char *accel);
/* Stop every VM (QEMU gets SIGTERM, then SIGKILL) and free everything. */
void vms_fini(struct vms *m);

/*
 * Start the VM described by the .vmx text @text (@path names it in errors
 * and is where relative kernel paths are resolved from). On failure @why
 * says what was wrong (file:line: key: problem, a CID in use …).
 */
int vms_start(struct vms *m, const char *text, size_t len, const char *path, char *why,
	      size_t whylen);
/* Stop the VM named @name (or with that CID): 0, -ENOENT. */
int vms_stop(struct vms *m, const char *name);

/*
 * Restart by exec. vms_save() describes every running VM (QEMU's pidfd, the
 * device's sockets, the vhost-user state) as JSON and clears close-on-exec
 * on each descriptor it names; vms_restore() rebuilds the VMs from that in
 * the new process. QEMU keeps running throughout; the guests' vsock
 * connections are reset (TRANSPORT_RESET), their devices keep working.
 * vms_save_undo() puts close-on-exec back (the exec failed, or the state
 * went to the fd keeper instead). @crashed: the state is the fd keeper's
 * copy from a daemon that died, whose rings' indices may be stale (see
 * struct vhu_saved's resync).
 */
json_t *vms_save(struct vms *m);
void vms_save_undo(struct vms *m);
int vms_restore(struct vms *m, json_t *saved, bool crashed);

/*
 * Management (the broker's mgmt_ext): "vm.start" (MGMT_FD: the .vmx file,
 * arg: its path), "vm.stop" (arg: name or CID), "vm.list", "vm.console"
 * (arg: name or CID: the last 64 KiB of the serial console). Starting and
 * stopping need root. A refused start is an answer {"error": why, "errno"}.
 * -EOPNOTSUPP for other commands.
 */
struct broker_mgmt_req;
int vms_mgmt(void *ctx, const struct broker_mgmt_req *r, json_t **out);

#endif
