/* SPDX-License-Identifier: MIT */
/*
 * What `make install` installs, installed into a scratch DESTDIR from this
 * build: the programs, the library with its headers and pkg-config file
 * (a program is compiled against them with pkg-config and run), the
 * preload library, the systemd unit naming the installed daemon, and man
 * pages groff reads without a warning. And the CLI reference in
 * docs/CLI.md is what tools/gen-cli-ref makes from the CLI's --help now.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "harness.h"

TEST(install_tree)
{
	char dir[] = "/tmp/vmf-install-XXXXXX";

	if (td_sh("command -v pkg-config >/dev/null && command -v cc >/dev/null && "
		  "command -v groff >/dev/null"))
		SKIP("pkg-config, cc or groff is missing");
	ASSERT(mkdtemp(dir) != NULL);
	ASSERT_OK(td_sh("meson install -C %s --no-rebuild --quiet --destdir %s/root >%s/log 2>&1 "
			"|| { cat %s/log; exit 1; }",
			VMFABRIC_BUILD_DIR, dir, dir, dir));
	ASSERT_OK(td_sh("cd %s/root && for f in bin/vmfabric sbin/vmfabricd include/vmfabric/vmci.h "
			"include/vmfabric/vrdma.h share/man/man8/vmfabric.8 share/man/man8/vmfabricd.8 "
			"lib/systemd/system/vmfabricd.service; do "
			"test -n \"$(find . -path \"*/$f\")\" || { echo missing $f; exit 1; }; done; "
			"find . -name 'libvmfabric.so*' | grep -q . && "
			"find . -name libvmfabric-vsock.so | grep -q . || "
			"{ echo libraries missing; exit 1; }",
			dir));
	/* The unit starts the daemon where it was installed. */
	ASSERT_OK(td_sh("cd %s/root && s=$(find . -path '*/sbin/vmfabricd' | sed 's|^\\.||') && "
			"grep -q \"^ExecStart=$s \" $(find . -name vmfabricd.service)",
			dir));
	/* A client of the installed library, built with pkg-config alone. */
	{
		char path[64];
		FILE *f;

		snprintf(path, sizeof(path), "%s/client.c", dir);
		ASSERT((f = fopen(path, "w")) != NULL);
		fputs("#include <vmfabric/vmci.h>\n#include <stdio.h>\n"
		      "int main(void) { int s = vmci_socket(SOCK_STREAM); printf(\"%d\\n\", s >= 0); "
		      "return s < 0; }\n",
		      f);
		ASSERT_OK(fclose(f));
	}
	ASSERT_OK(td_sh("cd %s && pc=$(dirname $(find root -name vmfabric.pc)) && "
			"flags=$(PKG_CONFIG_PATH=$PWD/$pc PKG_CONFIG_SYSROOT_DIR=$PWD/root "
			"pkg-config --cflags --libs vmfabric) && "
			"cc client.c $flags -o client && "
			"LD_LIBRARY_PATH=$(dirname $(find $PWD/root -name 'libvmfabric.so.0')) ./client "
			">out && grep -qx 1 out",
			dir));
	/* Man pages: groff reads them with every warning on, and finds nothing to say. */
	ASSERT_OK(td_sh("cd %s/root && for m in $(find . -name '*.8'); do "
			"w=$(groff -man -ww -z $m 2>&1); [ -z \"$w\" ] || { echo $m: $w; exit 1; }; "
			"done",
			dir));
	ASSERT_OK(td_sh("rm -rf %s", dir));
}

TEST(cli_reference_current)
{
	ASSERT_OK(td_sh("%s/tools/gen-cli-ref markdown %s | diff -u %s/docs/CLI.md - >&2",
			VMFABRIC_SRC_DIR, VMFABRIC_CLI_PATH, VMFABRIC_SRC_DIR));
}
