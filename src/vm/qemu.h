/* SPDX-License-Identifier: MIT */
/*
 * Launching a VM's QEMU: the command line for a struct vm_config (with the
 * QEMU 7.2 options vhost-user needs, docs/VMX.md), spawning it detached
 * from any terminal with a pidfd to watch, stopping it, and the probe that
 * tells whether KVM can boot a guest on this host or TCG must be used.
 *
 * Ownership: argv arrays are malloc'd (vm_qemu_argv_free()); a pidfd is the
 * caller's to close, after the process has been reaped (vm_qemu_reap() or
 * vm_qemu_stop()). The caller must not reap children with waitpid(-1, ...)
 * (a SIGCHLD handler that does so would take QEMU's exit status from the
 * pidfd). Nothing here prints.
 */
#ifndef VMFABRIC_VM_QEMU_H
#define VMFABRIC_VM_QEMU_H

#include <stddef.h>
#include <sys/types.h>

#include "vmx.h"

#define VM_QEMU_DEFAULT	    "qemu-system-x86_64"
#define VM_PROBE_TIMEOUT_MS 8000
/* The descriptor number an emulated NIC's stream has in QEMU. */
#define VM_QEMU_NIC_FD(i) (3 + (int)(i))

struct vm_launch {
	const char *qemu;  /* binary, looked up in $PATH; NULL: VM_QEMU_DEFAULT */
	const char *accel; /* "kvm" or "tcg" (resolved: never "auto") */
	/* vhost-user socket of the vsock device (QEMU connects to it); NULL
	 * exactly when VMCI is off (then there is no vsock device). */
	const char *vsock_sock;
	/* vhost-user socket per NIC; NULL leaves the NIC out. Only "virtio"
	 * NICs can be served over vhost-user (virtio-net-pci). */
	const char *nic_sock[VM_MAX_NICS];
	/* Emulated NICs (e1000, e1000e, vmxnet3): true puts the NIC on QEMU's
	 * stream netdev over descriptor VM_QEMU_NIC_FD(i), which the caller
	 * hands to vm_qemu_spawn_fds() in keep[i]. */
	bool nic_stream[VM_MAX_NICS];
	const char *serial_log; /* file of the serial console (required) */
	const char *qemu_log;	/* QEMU's stdout and stderr (vm_qemu_spawn()); NULL: none */
	const char *qmp_sock;	/* QMP socket QEMU listens on, or NULL */
	const char *pidfile;	/* or NULL */
};

/*
 * vm_qemu_argv() - QEMU's command line for @c launched as @l, as a
 * malloc'd NULL-terminated array in *@argv_out (vm_qemu_argv_free()).
 * Returns 0, or -EINVAL (no name or kernel, memory or vCPUs out of range,
 * no serial log, accel not kvm/tcg,
 * vsock_sock given without VMCI or missing with it, a socket or stream for
 * a NIC that is not present, both for one NIC), -EOPNOTSUPP (a vhost-user
 * socket for an emulated NIC, a stream for a virtio one), -ENOMEM.
 */
int vm_qemu_argv(const struct vm_config *c, const struct vm_launch *l, char ***argv_out);
void vm_qemu_argv_free(char **argv);

/*
 * vm_qemu_spawn() - start @argv (argv[0] looked up in $PATH) in a new
 * session (a terminal's signals do not reach it), stdin /dev/null, stdout
 * and stderr into @qemu_log (created or truncated, mode 0640; NULL:
 * /dev/null), every other descriptor closed, signal mask empty and the
 * standard signals' dispositions back to default.
 * Returns 0 with *@pid and *@pidfd (readable once the process has
 * exited: put it in an epoll set), or -errno (-ENOENT: no such program,
 * -EACCES, errors opening @qemu_log...).
 */
int vm_qemu_spawn(char **argv, const char *qemu_log, int *pidfd, pid_t *pid);
/*
 * The same, with descriptors handed on: @keep[i] >= 0 becomes descriptor
 * VM_QEMU_NIC_FD(i) in QEMU (for @nkeep <= VM_MAX_NICS entries).
 */
int vm_qemu_spawn_fds(char **argv, const char *qemu_log, const int *keep, unsigned nkeep,
		      int *pidfd, pid_t *pid);

/*
 * vm_qemu_reap() - collect the exit of the process behind @pidfd without
 * waiting. 0 with *@wstatus (may be NULL) in waitpid()'s form (WIFEXITED...),
 * -EAGAIN while it runs, -ECHILD if it was reaped already or is not this
 * process's child (QEMU of a daemon that crashed: the pidfd still says when
 * it exits and takes signals, init reaps it).
 */
int vm_qemu_reap(int pidfd, int *wstatus);

/*
 * vm_qemu_stop() - SIGTERM, wait up to @timeout_ms for the exit, then
 * SIGKILL; reaps the process. Returns 0 when it ended within the timeout
 * (or had ended already, or is not our child: reaped by init), 1 when it
 * had to be killed, -ESRCH when it was reaped already, -ETIMEDOUT if it survives SIGKILL for 5 s. @pid is
 * only checked to be positive: signals go through @pidfd, never to a
 * recycled pid. @pidfd stays open.
 */
int vm_qemu_stop(pid_t pid, int pidfd, int timeout_ms);

/*
 * vm_accel_try() - boot @kernel (+ @initrd, may be NULL) with "-accel
 * @accel" and console=ttyS0, and wait up to @timeout_ms for the kernel's
 * banner ("Linux version") on the serial console; QEMU is then killed.
 * Works in a private directory under $TMPDIR (or /tmp), removed after.
 * Returns 0 when the banner came, -ETIMEDOUT when it did not, -ECHILD when
 * QEMU exited first, or an error of vm_qemu_spawn(); @why says what
 * happened (with QEMU's last message when it exited).
 */
int vm_accel_try(const char *qemu, const char *accel, const char *kernel, const char *initrd,
		 int timeout_ms, char *why, size_t whylen);

/*
 * vm_accel_probe() - "kvm" into @accel_out (8 bytes) if /dev/kvm is
 * readable and writable and a guest boots with it (vm_accel_try(),
 * @timeout_ms <= 0: VM_PROBE_TIMEOUT_MS), else "tcg"; @why gives the
 * reason either way. Returns 0, or -EINVAL without a kernel, or the error
 * of vm_qemu_spawn() (QEMU missing), with "tcg" and @why filled.
 */
int vm_accel_probe(const char *qemu, const char *kernel, const char *initrd, int timeout_ms,
		   char *accel_out, char *why, size_t whylen);

#endif
