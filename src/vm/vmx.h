/* SPDX-License-Identifier: MIT */
/*
 * A VM's configuration from its .vmx file: the subset of VMware's keys that
 * a QEMU guest served by vmfabric can honour (displayName, memsize,
 * numvcpus, guestOS, vmci0.*, ethernetN.*), and vmfabric's own keys for
 * direct kernel boot and the accelerator (vmfabric.*). Keys are matched in
 * any case, as VMware does (common/conf.c). Every other key is reported to
 * the caller as unknown and ignored, so that VMware's boilerplate
 * (config.version, virtualHW.version, .encoding, ...) is tolerated.
 *
 * Threat model: the file is written by a VM's owner, not by the host's
 * administrator. Every value is checked (ranges, MAC form, names of devices)
 * and refused with the file, line and key; every string kept here is
 * printable ASCII of bounded length, so it can be logged, put in a QEMU
 * option or a JSON answer without more checks. Nothing here prints.
 */
#ifndef VMFABRIC_VM_VMX_H
#define VMFABRIC_VM_VMX_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/conf.h"
#include "vmci/ctx.h"

#define VM_MAX_NICS   10 /* ethernet0 .. ethernet9 */
#define VM_MEM_MIN    32u
#define VM_MEM_MAX    65536u
#define VM_MEM_DEF    256u
#define VM_VCPUS_MAX  64u
#define VM_CID_MIN    3u	  /* 0 hypervisor, 1 local, 2 host */
#define VM_CID_MAX    0xfffffffeu /* 0xffffffff is VMADDR_CID_ANY */
#define VM_APPEND_MAX 1024

struct vm_nic {
	bool present;	      /* ethernetN.present (default FALSE) */
	char virtual_dev[32]; /* "vmxnet3", "e1000" (default), "e1000e" or "virtio" */
	char network[64];     /* ethernetN.networkName; "" when absent */
	uint8_t mac[6];	      /* valid when has_mac: unicast, not all zero */
	bool has_mac;	      /* .address (addressType static) or .generatedAddress */
};

struct vm_config {
	char name[64];	      /* displayName, else the file's base name without ".vmx" */
	uint64_t mem_mib;     /* memsize: VM_MEM_MIN..VM_MEM_MAX, default VM_MEM_DEF */
	unsigned vcpus;	      /* numvcpus: 1..VM_VCPUS_MAX, default 1 */
	bool vmci;	      /* vmci0.present (default FALSE: no vsock device at all) */
	bool vmci_restricted; /* vmci0.restricted: talk to the host only */
	uint32_t cid;	      /* vmci0.id: 3..VM_CID_MAX; 0 = the daemon assigns one */
	/* vmfabric.limit.<name>: the VM context's quotas; the daemon's defaults otherwise. */
	uint64_t limit[VMCI_LIM_N];
	uint32_t limit_set; /* bit per limit given */
	struct vm_nic nic[VM_MAX_NICS];
	/* vmfabric.kernel (required), .initrd, .append; paths made absolute
	 * against the directory of the .vmx file when it is known. */
	char kernel[PATH_MAX], initrd[PATH_MAX], append[VM_APPEND_MAX];
	char accel[8];	    /* vmfabric.accel: "auto" (default), "kvm" or "tcg" */
	char guest_os[64];  /* guestOS, for display only; "" when absent */
	unsigned n_unknown; /* keys reported through the unknown callback */
};

/*
 * Called once per key that vm_config_parse() does not use, in file order,
 * with the key as written and its line. Not an error.
 */
typedef void vm_unknown_fn(void *ctx, const char *key, unsigned line);

/*
 * vm_config_parse() - a VM configuration from @len bytes of .vmx text.
 * @name: the file name for messages; its base name without ".vmx" is the
 *        VM's name when displayName is absent (may be NULL, then
 *        displayName is required)
 * @vmx_dir: directory that relative vmfabric.kernel/initrd paths are
 *           resolved against (NULL: kept relative)
 * @err: filled on failure (may be NULL); names the file, line and key
 * @unknown: called for every key not used (may be NULL)
 *
 * Returns 0 and fills *@out; -EINVAL for a syntax error or a bad value,
 * -EFBIG, -ENOMEM (as conf_parse()), -ENAMETOOLONG for a path that does not
 * fit in PATH_MAX once resolved.
 */
int vm_config_parse(const char *name, const char *text, size_t len, const char *vmx_dir,
		    struct vm_config *out, struct conf_error *err, vm_unknown_fn *unknown,
		    void *ctx);

/*
 * vm_config_load() - read and parse the .vmx file at @path; relative paths
 * in it are resolved against the file's directory, made absolute (so that
 * the result does not depend on the working directory). As
 * vm_config_parse(), plus the errors of conf_load() and realpath().
 */
int vm_config_load(const char *path, struct vm_config *out, struct conf_error *err,
		   vm_unknown_fn *unknown, void *ctx);

/* "00:50:56:0a:0b:0c" into @buf (18 bytes at least). Returns @buf. */
char *vm_mac_str(const uint8_t mac[6], char *buf);

/*
 * The MAC of NIC @index when the file gives none: stable for a VM name and
 * index, locally administered (02:xx:...), unicast.
 */
void vm_nic_default_mac(const char *vm_name, unsigned index, uint8_t mac[6]);

#endif
