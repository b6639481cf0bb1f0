/* SPDX-License-Identifier: MIT */
/*
 * The guest image boots: runs guest/boot-smoke on the image that
 * guest/build-image made (build/guest of the source tree, or
 * $VMFABRIC_GUEST_DIR), which boots it under QEMU and checks the guest's
 * readiness marker and that QEMU powers off by itself. Skips when QEMU or
 * the image is missing; building the image is make check's preparation.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#ifndef VMFABRIC_SRC_DIR
#error "VMFABRIC_SRC_DIR must name the source tree (tests/meson.build)"
#endif

/* Whether an executable NAME is on $PATH. */
static int
in_path(const char *name)
{
	const char *path = getenv("PATH");
	char dir[4096];

	if (!path)
		path = "/usr/bin:/bin";
	while (*path) {
		size_t n = strcspn(path, ":");
		if (n > 0 && n < sizeof(dir) - 1) {
			char full[4200];
			memcpy(dir, path, n);
			dir[n] = '\0';
			snprintf(full, sizeof(full), "%s/%s", dir, name);
			if (access(full, X_OK) == 0)
				return 1;
		}
		path += n;
		if (*path == ':')
			path++;
	}
	return 0;
}

TEST(guest_boot)
{
	const char *dir = getenv("VMFABRIC_GUEST_DIR");
	const char *script = VMFABRIC_SRC_DIR "/guest/boot-smoke";
	char kernel[4200], initrd[4200];
	struct stat st;
	int status;
	pid_t pid;

	if (!dir || !*dir)
		dir = VMFABRIC_SRC_DIR "/build/guest";
	snprintf(kernel, sizeof(kernel), "%s/vmlinuz", dir);
	snprintf(initrd, sizeof(initrd), "%s/initramfs.cpio.gz", dir);
	if (!in_path("qemu-system-x86_64"))
		SKIP("qemu-system-x86_64 not found (tools/setup-deps vm)");
	if (stat(kernel, &st) != 0 || stat(initrd, &st) != 0)
		SKIP("no guest image in %s (guest/build-image)", dir);
	ASSERT_OK(access(script, X_OK) ? -errno : 0);

	th_log("running %s %s", script, dir);
	fflush(NULL);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		execl(script, script, dir, (char *)NULL);
		perror(script);
		_exit(127);
	}
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT(WIFEXITED(status));
	if (WEXITSTATUS(status) == TH_EXIT_SKIP)
		SKIP("guest/boot-smoke: a prerequisite is missing (see its output)");
	ASSERT_EQ(WEXITSTATUS(status), 0);
}
