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

/*
 * make bench-report's generator: of a results file only the last run
 * counts (the lines after the previous run's targets); its measurements
 * and targets become tables, and each (bench, metric) a PNG.
 */
TEST(bench_report_last_run)
{
	char dir[] = "/tmp/vmf-report-XXXXXX";

	if (td_sh("command -v gnuplot >/dev/null"))
		SKIP("gnuplot is not installed");
	ASSERT(mkdtemp(dir) != NULL);
	ASSERT_OK(td_sh(
		"mkdir %s/res && cd %s/res && "
		"echo '{\"bench\":\"qp_stream\",\"system\":\"vmfabric_qp\",\"msg_bytes\":64,"
		"\"mode\":\"blocking\",\"metric\":\"gbit_s\",\"value\":1.5}' >qp.jsonl && "
		"echo '{\"bench\":\"target\",\"target\":\"old\",\"value\":1,\"goal\":\">= 5\","
		"\"met\":false}' >>qp.jsonl && "
		"for s in 64 4096 65536; do for sys in vmfabric_qp tcp_loopback; do "
		"echo \"{\\\"bench\\\":\\\"qp_stream\\\",\\\"system\\\":\\\"$sys\\\",\\\"msg_bytes\\\":$s,"
		"\\\"mode\\\":\\\"blocking\\\",\\\"metric\\\":\\\"gbit_s\\\",\\\"value\\\":$s.5}\" "
		">>qp.jsonl; done; done && "
		"echo '{\"bench\":\"target\",\"target\":\"stream vs TCP\",\"value\":8.2,"
		"\"goal\":\">= 5\",\"met\":true}' >>qp.jsonl",
		dir, dir));
	ASSERT_OK(td_sh("%s/bench/vmf-bench-report %s/res %s/P.md %s/perf", VMFABRIC_BUILD_DIR, dir,
			dir, dir));
	ASSERT_OK(td_sh("grep -q '| stream vs TCP | 8.2 | >= 5 | yes |' %s/P.md", dir));
	ASSERT(td_sh("grep -q 'old' %s/P.md", dir) != 0);
	ASSERT(td_sh("grep -q '| 1.5 |' %s/P.md", dir) != 0);
	ASSERT_OK(td_sh("test $(grep -c '^| qp_stream |' %s/P.md) -eq 6", dir));
	ASSERT_OK(td_sh("grep -q '](perf/qp-qp_stream-gbit_s.png)' %s/P.md && "
			"head -c 8 %s/perf/qp-qp_stream-gbit_s.png | od -c | grep -q 'P   N   G'",
			dir, dir));
	ASSERT_OK(td_sh("rm -rf %s", dir));
}
