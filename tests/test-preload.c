/* SPDX-License-Identifier: MIT */
/*
 * AF_VSOCK for unmodified programs: Debian's socat, with
 * LD_PRELOAD=libvmfabric-vsock.so (src/preload/vsock.c), talks over
 * vmfabric with its own VSOCK-LISTEN and VSOCK-CONNECT addresses: between
 * two process contexts (one way, both ways through an echo, and from the
 * children of a forking TCP listener), and with
 * a real guest running vmf-vsock over its kernel's AF_VSOCK (host to guest
 * through the guest's echo, guest to host into a socat listener). Every
 * byte is compared. Skips without socat, or in sanitizer builds (the
 * library is built only without them: a sanitizer's runtime cannot be
 * preloaded into socat).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../guest/tools/vmf-pattern.h"
#include "guests.h"
#include "harness.h"

#define PRELOAD VMFABRIC_BUILD_DIR "/src/libvmfabric-vsock.so"

static void
need_socat(void)
{
	if (access(PRELOAD, R_OK))
		SKIP("%s not built (sanitizer builds leave it out)", PRELOAD);
	if (td_sh("command -v socat >/dev/null"))
		SKIP("socat is not installed");
}

/* A file of @len pattern bytes (seed 0) at @path. */
static void
pattern_file(const char *path, size_t len)
{
	static uint8_t buf[1 << 16];
	FILE *f = fopen(path, "w");

	ASSERT(f != NULL);
	for (size_t off = 0; off < len; off += sizeof(buf)) {
		size_t n = len - off < sizeof(buf) ? len - off : sizeof(buf);

		vmf_pattern_fill(0, off, buf, n);
		ASSERT_EQ(fwrite(buf, 1, n, f), n);
	}
	ASSERT_OK(fclose(f));
}

/* @path holds exactly @len bytes of the pattern. */
static void
check_pattern_file(const char *path, size_t len)
{
	static uint8_t buf[1 << 16], want[1 << 16];
	FILE *f = fopen(path, "r");
	size_t off = 0, n;

	ASSERT(f != NULL);
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
		vmf_pattern_fill(0, off, want, n);
		if (memcmp(buf, want, n)) {
			th_log("%s: differs in [%zu, +%zu)", path, off, n);
			ASSERT(!"data corrupted");
		}
		off += n;
	}
	fclose(f);
	ASSERT_EQ(off, len);
}

/* Wait until socat listens on @port: it says nothing, so ask the daemon. */
static void
wait_listener(struct tdaemon *d, unsigned port)
{
	char needle[32];

	snprintf(needle, sizeof(needle), "\"port\":%u}", port);
	for (int i = 0; i < 500; i++) {
		char *j = td_mgmt(d, "vmci.socket.list");
		bool up = j && strstr(j, "listening") && strstr(j, needle);

		free(j);
		if (up)
			return;
		usleep(10000);
	}
	ASSERT(!"the socat listener did not come up");
}

#define SOCAT "LD_PRELOAD=" PRELOAD " VMFABRIC_SOCKET=%s timeout 60 socat"

TEST(preload_socat_hosts)
{
	struct tdaemon d;
	char in[128], out[128], echo[128];
	const size_t len = 3u << 20;

	need_socat();
	td_start(&d, NULL);
	snprintf(in, sizeof(in), "%s/in", d.dir);
	snprintf(out, sizeof(out), "%s/out", d.dir);
	snprintf(echo, sizeof(echo), "%s/echo", d.dir);
	pattern_file(in, len);
	/* One way: a listener in context b writes what context a sends into a file. */
	ASSERT_OK(td_sh("VMFABRIC_CONTEXT=b " SOCAT " -u VSOCK-LISTEN:7000 CREATE:%s & echo $! >%s/pid",
			d.sock, out, d.dir));
	wait_listener(&d, 7000);
	ASSERT_OK(td_sh("VMFABRIC_CONTEXT=a " SOCAT " -u %s VSOCK-CONNECT:4:7000", d.sock, in));
	ASSERT_OK(td_sh("for i in $(seq 500); do kill -0 $(cat %s/pid) 2>/dev/null || exit 0; "
			"sleep 0.01; done; exit 1", d.dir));
	check_pattern_file(out, len);
	/* Both ways: b echoes with cat; a sends and reads back, socat's poll loop on both. */
	ASSERT_OK(td_sh("VMFABRIC_CONTEXT=b " SOCAT " VSOCK-LISTEN:7001 EXEC:cat & ", d.sock));
	wait_listener(&d, 7001);
	ASSERT_OK(td_sh("VMFABRIC_CONTEXT=a " SOCAT " -t 5 - VSOCK-CONNECT:4:7001 <%s >%s", d.sock,
			in, echo));
	check_pattern_file(echo, len);
	/*
	 * A child of fork() makes its own socket (socat's TCP-LISTEN,fork opens
	 * VSOCK-CONNECT in each connection's child): it is the child's, and works.
	 */
	{
		unsigned tcp = 20000 + (unsigned)getpid() % 20000;

		ASSERT_OK(td_sh("VMFABRIC_CONTEXT=b " SOCAT " VSOCK-LISTEN:7002 EXEC:cat &", d.sock));
		wait_listener(&d, 7002);
		ASSERT_OK(td_sh("VMFABRIC_CONTEXT=a " SOCAT " TCP-LISTEN:%u,bind=127.0.0.1,reuseaddr,fork "
				"VSOCK-CONNECT:4:7002 & echo $! >%s/fork.pid",
				d.sock, tcp, d.dir));
		ASSERT_OK(td_sh("for i in $(seq 200); do r=$(echo forked | timeout 5 socat -t 2 - "
				"TCP:127.0.0.1:%u 2>/dev/null) && [ \"$r\" = forked ] && exit 0; "
				"sleep 0.05; done; exit 1",
				tcp));
		(void)td_sh("kill $(cat %s/fork.pid)", d.dir);
	}
	/* The kernel's refusals, as socat reports them: nobody on the port. */
	ASSERT(td_sh("VMFABRIC_CONTEXT=a " SOCAT " -u %s VSOCK-CONNECT:4:7999 2>%s/err", d.sock, in,
		     d.dir) != 0);
	ASSERT_OK(td_sh("grep -q 'Connection refused' %s/err", d.dir));
	td_stop(&d);
	td_cleanup(&d);
}

TEST(preload_socat_guest)
{
	struct vt t;
	char in[128], out[128], from[128], line[1024];
	const size_t len = 4u << 20;
	int cid;

	need_socat();
	vt_start(&t, NULL);
	snprintf(in, sizeof(in), "%s/in", t.d.dir);
	snprintf(out, sizeof(out), "%s/out", t.d.dir);
	snprintf(from, sizeof(from), "%s/from-guest", t.d.dir);
	pattern_file(in, len);
	/* The host's listener (the host context, CID 2) for the guest's send. */
	ASSERT_OK(td_sh(SOCAT " -u VSOCK-LISTEN:7001 CREATE:%s &", t.d.sock, from));
	wait_listener(&t.d, 7001);
	cid = vt_vm_start(&t, "socat", "vmci0.present = \"TRUE\"\n",
			  "vmf-vsock echo 7000 --count 1 && vmf-vsock send 2 7001 4M", NULL, 0);
	ASSERT_GE(cid, 3);
	vt_wait_console(&t, "socat", "VMF-READY", line, sizeof(line));
	/* Host to guest: socat connects to the guest's echo and reads back all it sent. */
	ASSERT_OK(td_sh(SOCAT " -t 10 - VSOCK-CONNECT:%d:7000 <%s >%s", t.d.sock, cid, in, out));
	check_pattern_file(out, len);
	/* Guest to host: the guest's kernel connects to socat's listener. */
	vt_wait_console(&t, "socat", "op=send", line, sizeof(line));
	th_log("guest: %s", line);
	ASSERT(strstr(line, " ok=1"));
	for (int i = 0; i < 500 && !td_sh("pgrep -f 'VSOCK-LISTEN:7001' >/dev/null"); i++)
		usleep(10000);
	check_pattern_file(from, len);
	vt_wait_exit(&t, "socat");
	td_stop(&t.d);
	td_cleanup(&t.d);
}
