/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: a VM's .vmx file (src/vm/vmx.c), which the VM's owner
 * writes, read into a VM configuration, and that configuration made into
 * QEMU's command line (src/vm/qemu.c). fuzz-conf covers the key = value
 * syntax; this one the meaning of the keys.
 *
 * Checked: a refused file leaves a printable message with its key and a
 * line within the file; an accepted one keeps the promises of vmx.h (every
 * number in its range, every string printable ASCII that fits, MACs
 * unicast and not zero, known NIC models, paths absolute when a directory
 * was given, unknown keys reported once each in file order); and QEMU's
 * command line for it is made, printable, with the VM's name one option
 * value in -name (its commas doubled).
 *
 * Input: { u8 options } then the file's text.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf_check.h"
#include "vm/qemu.h"
#include "vm/vmx.h"

struct unknown {
	unsigned n, last_line;
};

static void
on_unknown(void *ctx, const char *key, unsigned line)
{
	struct unknown *u = ctx;

	FZ_CHECK(key && key[0] && line > u->last_line);
	u->n++;
	u->last_line = line;
}

/* A string field: terminated within its array, printable. */
#define FZ_STR_OK(f) FZ_CHECK(memchr((f), 0, sizeof(f)) && conf_text(f))

static void
check_refused(int r, const struct conf_error *e, const uint8_t *text, size_t len)
{
	FZ_CHECK(r == -EINVAL || r == -EFBIG || r == -ENOMEM || r == -ENAMETOOLONG);
	fz_check_conf_error(e, text, len);
}

static void
check_nic(const struct vm_nic *n)
{
	static const char *const devs[] = { "vmxnet3", "e1000", "e1000e", "virtio" };
	bool known = false;

	for (size_t i = 0; i < sizeof(devs) / sizeof(devs[0]); i++)
		known |= !strcmp(n->virtual_dev, devs[i]);
	FZ_CHECK(known);
	FZ_STR_OK(n->network);
	if (n->has_mac) {
		static const uint8_t zero[6];

		FZ_CHECK(!(n->mac[0] & 1) && memcmp(n->mac, zero, 6));
	}
}

static void
check_config(const struct vm_config *c, const char *dir)
{
	FZ_STR_OK(c->name);
	FZ_CHECK(c->name[0] && !strchr(c->name, ','));
	FZ_CHECK(c->mem_mib >= VM_MEM_MIN && c->mem_mib <= VM_MEM_MAX);
	FZ_CHECK(c->vcpus >= 1 && c->vcpus <= VM_VCPUS_MAX);
	FZ_CHECK(c->cid == 0 || c->cid >= VM_CID_MIN);
	for (unsigned i = 0; i < VM_MAX_NICS; i++)
		check_nic(&c->nic[i]);
	FZ_STR_OK(c->kernel);
	FZ_STR_OK(c->initrd);
	FZ_STR_OK(c->append);
	FZ_STR_OK(c->guest_os);
	FZ_CHECK(c->kernel[0]);
	if (dir)
		FZ_CHECK(c->kernel[0] == '/' && (!c->initrd[0] || c->initrd[0] == '/'));
	FZ_CHECK(!strcmp(c->accel, "auto") || !strcmp(c->accel, "kvm") || !strcmp(c->accel, "tcg"));
}

/* QEMU's value of "guest=" in -name's argument: commas come doubled. */
static void
check_name_arg(const char *arg, const char *name)
{
	char back[2 * sizeof(((struct vm_config *)0)->name)];
	size_t n = 0;
	const char *p;

	FZ_CHECK(!strncmp(arg, "guest=", 6));
	for (p = arg + 6; *p && n + 1 < sizeof(back); p++) {
		if (*p == ',' && p[1] != ',')
			break; /* the option ends */
		if (*p == ',')
			p++;
		back[n++] = *p;
	}
	back[n] = 0;
	FZ_CHECK(!strcmp(back, name) && !strcmp(p, ",debug-threads=on"));
}

static void
check_argv(const struct vm_config *c, unsigned opt)
{
	struct vm_launch l = { .accel = opt & 8 ? "kvm" : "tcg",
			       .serial_log = "serial.log",
			       .qmp_sock = opt & 16 ? "qmp,0.sock" : NULL,
			       .vsock_sock = c->vmci ? "vsock.sock" : NULL };
	char **argv;
	int r, n;

	for (unsigned i = 0; i < VM_MAX_NICS; i++) {
		if (!c->nic[i].present || (opt & 32 && i % 2))
			continue;
		if (!strcmp(c->nic[i].virtual_dev, "virtio"))
			l.nic_sock[i] = "net.sock";
		else
			l.nic_stream[i] = true;
	}
	r = vm_qemu_argv(c, &l, &argv);
	FZ_CHECK(r == 0 || r == -ENOMEM);
	if (r)
		return;
	for (n = 0; argv[n]; n++)
		FZ_CHECK(conf_text(argv[n]));
	FZ_CHECK(n > 3 && !strcmp(argv[1], "-name"));
	check_name_arg(argv[2], c->name);
	vm_qemu_argv_free(argv);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[] = { "guest.vmx", NULL, "vms/Web Server (2).VMX", ",.vmx" };
	struct fz f = { data, size };
	unsigned opt = (unsigned)fz_take(&f, 1);
	const char *name = names[opt % 4];
	const char *dir = opt & 4 ? "/srv/vms/a" : NULL;
	struct unknown u = { 0 };
	struct vm_config *c = malloc(sizeof(*c));
	struct conf_error e;
	int r;

	FZ_CHECK(c != NULL);
	memset(&e, 0, sizeof(e));
	r = vm_config_parse(name, (const char *)f.p, f.n, dir, c, opt & 64 ? NULL : &e,
			    opt & 128 ? NULL : on_unknown, &u);
	if (r < 0) {
		if (!(opt & 64))
			check_refused(r, &e, f.p, f.n);
	} else {
		FZ_CHECK(r == 0);
		check_config(c, dir);
		FZ_CHECK(opt & 128 || u.n == c->n_unknown);
		check_argv(c, opt);
	}
	free(c);
	return 0;
}
