/* SPDX-License-Identifier: MIT */
/*
 * End-to-end helpers for tests that boot guests: a private vmfabricd for
 * VMs (skipping when QEMU or the guest image is missing), the CLI, .vmx
 * files written and started, the guests' serial consoles read.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../guest/tools/vmf-pattern.h"
#include "common/clock.h"
#include "guests.h"
#include "harness.h"

#define BOOT_TIMEOUT_S 60


static bool
have_qemu(void)
{
	return system("command -v qemu-system-x86_64 >/dev/null 2>&1") == 0;
}

void
vt_start(struct vt *t, const char *config)
{
	const char *dir = getenv("VMFABRIC_GUEST_DIR");
	const char *accel = getenv("VMF_ACCEL");
	char conf[8192], path[4200];
	struct stat st;

	if (!have_qemu())
		SKIP("qemu-system-x86_64 not found (tools/setup-deps vm)");
	snprintf(t->guest, sizeof(t->guest), "%s", dir && *dir ? dir : VMFABRIC_SRC_DIR "/build/guest");
	snprintf(path, sizeof(path), "%s/initramfs.cpio.gz", t->guest);
	if (stat(path, &st) < 0)
		SKIP("no guest image at %s (guest/build-image)", t->guest);
	snprintf(conf, sizeof(conf), "%svmfabricd.accel = \"%s\"\n%s", TD_CONTEXTS,
		 accel && *accel ? accel : "auto", config ? config : "");
	td_start(&t->d, conf);
}

int
vt_cli(struct vt *t, char **out, const char *fmt, ...)
{
	char args[1024], cmd[2048];
	va_list ap;
	FILE *p;
	size_t n = 0, cap = 1 << 16;
	int st;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd), "%s --socket %s %s", VMFABRIC_CLI_PATH, t->d.sock, args);
	p = popen(cmd, "r");
	ASSERT(p);
	*out = malloc(cap);
	ASSERT(*out);
	while (n < cap - 1 && !feof(p))
		n += fread(*out + n, 1, cap - 1 - n, p);
	(*out)[n] = 0;
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int
vt_vm_start(struct vt *t, const char *name, const char *vmx_lines, const char *cmd, char *why,
	    size_t whylen)
{
	char vmx[256], *out, *p;
	FILE *f;
	int st;
	long v;

	snprintf(vmx, sizeof(vmx), "%s/%s.vmx", t->d.dir, name);
	f = fopen(vmx, "w");
	ASSERT(f);
	fprintf(f, "displayName = \"%s\"\nmemsize = \"256\"\n%s", name, vmx_lines ? vmx_lines : "");
	fprintf(f, "vmfabric.kernel = \"%s/vmlinuz\"\nvmfabric.initrd = \"%s/initramfs.cpio.gz\"\n",
		t->guest, t->guest);
	/* |22 is a double quote in .vmx values. */
	fprintf(f, "vmfabric.append = \"panic=-1 vmf.cmd=|22%s|22\"\n", cmd);
	fclose(f);
	st = vt_cli(t, &out, "vm start --format=json %s 2>&1", vmx);
	if (st != 0) {
		th_log("vm start %s: %s", name, out);
		if (why)
			snprintf(why, whylen, "%s", out);
		free(out);
		return -1;
	}
	p = strstr(out, "\"cid\"");
	ASSERT(p);
	v = strtol(p + 6, NULL, 10);
	free(out);
	return (int)v;
}

static void
console_path(struct vt *t, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/vms/%s/console.log", t->d.dir, name);
}

void
vt_wait_console(struct vt *t, const char *name, const char *needle, char *line, size_t len)
{
	int64_t deadline = clock_ns() + BOOT_TIMEOUT_S * 1000000000LL;
	char path[256], buf[1024];

	console_path(t, name, path, sizeof(path));
	while (clock_ns() < deadline) {
		FILE *f = fopen(path, "r");

		while (f && fgets(buf, sizeof(buf), f)) {
			if (strstr(buf, "vmf-guest: powering off"))
				deadline = 0; /* it will not come any more */
			/* Whole lines only: the guest may be in the middle of one. */
			if (strstr(buf, needle) && !strstr(buf, "vmf.cmd") && strchr(buf, '\n')) {
				snprintf(line, len, "%s", buf);
				fclose(f);
				return;
			}
		}
		if (f)
			fclose(f);
		usleep(50000);
	}
	th_log("console of %s (%s): waited for \"%s\"", name, path, needle);
	snprintf(buf, sizeof(buf), "tail -n 20 %s >&2", path);
	if (system(buf) < 0)
		th_log("(cannot show it)");
	ASSERT(!"the guest never printed what was awaited");
}

void
vt_wait_exit(struct vt *t, const char *name)
{
	int64_t deadline = clock_ns() + BOOT_TIMEOUT_S * 1000000000LL;
	char pat[128];

	snprintf(pat, sizeof(pat), "\"name\":\"%s\"", name);
	while (clock_ns() < deadline) {
		char *j = td_mgmt(&t->d, "vm.list");
		bool running = strstr(j, pat) != NULL;

		free(j);
		if (!running)
			return;
		usleep(100000);
	}
	ASSERT(!"the VM did not power off");
}

unsigned long long
vt_result_u64(const char *line, const char *key)
{
	char k[64];
	const char *p;

	snprintf(k, sizeof(k), " %s=", key);
	p = strstr(line, k);
	ASSERT(p);
	return strtoull(p + strlen(k), NULL, 0);
}


int
vt_connect_guest(unsigned cid, unsigned port, int type)
{
	struct sockaddr_vm a = td_addr(cid, port);
	int64_t deadline = clock_ns() + 10 * 1000000000LL;

	for (;;) {
		int s = td_socket(NULL, type);
		int err = vmci_connect(s, &a);

		if (!err)
			return s;
		vmci_close(s);
		if (clock_ns() > deadline) {
			th_log("connect to %u:%u: %s", cid, port, strerror(-err));
			ASSERT(!"cannot connect to the guest");
		}
		usleep(50000);
	}
}

uint64_t
vt_write_pattern(int s, uint64_t bytes)
{
	static uint8_t buf[1 << 16];
	struct vmf_sum sum;
	uint64_t off = 0;

	vmf_sum_init(&sum);
	while (off < bytes) {
		size_t n = bytes - off < sizeof(buf) ? (size_t)(bytes - off) : sizeof(buf);
		ssize_t w;

		vmf_pattern_fill(0, off, buf, n);
		w = vmci_send(s, buf, n, 0);
		ASSERT_GT(w, 0);
		vmf_sum_update(&sum, buf, (size_t)w);
		off += (uint64_t)w;
	}
	return vmf_sum_final(&sum);
}

long
vt_vm_pid(struct vt *t, const char *name)
{
	char *j = td_mgmt(&t->d, "vm.list"), pat[128], *p;
	long pid = -1;

	snprintf(pat, sizeof(pat), "\"name\":\"%s\"", name);
	p = strstr(j, pat);
	if (p && (p = strstr(p, "\"pid\":")))
		pid = strtol(p + 6, NULL, 10);
	free(j);
	return pid;
}
