/* SPDX-License-Identifier: MIT */
/*
 * Tests of src/vm: .vmx files into struct vm_config (every key, defaults,
 * case, every error with its line and key, unknown keys, paths, the files
 * of examples/), QEMU's command line, spawning and stopping a process
 * through a pidfd, one real boot of the test guest under TCG through the
 * same functions as the daemon, and the KVM probe (which must fall back to
 * TCG on a host whose KVM cannot boot Linux, and succeeds under TCG).
 * The QEMU tests skip when QEMU or the guest image is missing.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "vm/qemu.h"
#include "vm/vmx.h"

#ifndef VMFABRIC_SRC_DIR
#error "VMFABRIC_SRC_DIR must name the source tree (tests/meson.build)"
#endif

#define STREQ(a, b) (strcmp((a), (b)) == 0)
#define KERNEL_LINE "vmfabric.kernel = \"/boot/vmlinuz\"\n"

struct unknowns {
	unsigned n;
	char key[16][64];
	unsigned line[16];
};

static void
collect(void *ctx, const char *key, unsigned line)
{
	struct unknowns *u = ctx;

	if (u->n < 16) {
		snprintf(u->key[u->n], sizeof(u->key[0]), "%s", key);
		u->line[u->n] = line;
	}
	u->n++;
}

static void
parse_ok(const char *name, const char *text, const char *dir, struct vm_config *c,
	 struct unknowns *u)
{
	struct conf_error e = { 0 };
	char buf[600];
	int r;

	r = vm_config_parse(name, text, strlen(text), dir, c, &e, u ? collect : NULL, u);
	if (r)
		th_log("unexpected error: %s", conf_error_str(&e, buf, sizeof(buf)));
	ASSERT_OK(r);
}

/* @text must fail with @res on @line, about @key, with @msg in the message. */
static void
parse_fails_r(const char *text, int res, unsigned line, const char *key, const char *msg)
{
	struct conf_error e;
	struct vm_config c;
	char buf[600];
	int r;

	memset(&e, 0x55, sizeof(e));
	memset(&c, 0x55, sizeof(c));
	r = vm_config_parse("bad.vmx", text, strlen(text), "/vms", &c, &e, NULL, NULL);
	th_log("input %.80s -> %d: %s", text, r, r ? conf_error_str(&e, buf, sizeof(buf)) : "");
	ASSERT_EQ(r, res);
	ASSERT(STREQ(e.file, "bad.vmx"));
	ASSERT_EQ(e.line, line);
	ASSERT(STREQ(e.key, key));
	ASSERT(strstr(e.msg, msg));
}

static void
parse_fails(const char *text, unsigned line, const char *key, const char *msg)
{
	parse_fails_r(text, -EINVAL, line, key, msg);
}

TEST(vm_parse_keys)
{
	static const char text[] = "displayName = \"web 1 (test)\"\n"
				   "memsize = \"1024\"\n"
				   "numvcpus = \"4\"\n"
				   "guestOS = \"debian12-64\"\n"
				   "vmci0.present = \"TRUE\"\n"
				   "vmci0.restricted = \"TRUE\"\n"
				   "vmci0.id = \"0x20\"\n"
				   "ethernet0.present = \"TRUE\"\n"
				   "ethernet0.virtualDev = \"virtio\"\n"
				   "ethernet0.networkName = \"VM Network\"\n"
				   "ethernet0.address = \"00:50:56:0A:0b:0c\"\n"
				   "ethernet1.present = \"TRUE\"\n"
				   "ethernet1.virtualDev = \"vmxnet3\"\n"
				   "ethernet1.addressType = \"generated\"\n"
				   "ethernet1.generatedAddress = \"00:0c:29:01:02:03\"\n"
				   "ethernet2.virtualDev = \"e1000e\"\n"
				   "ethernet9.present = \"TRUE\"\n"
				   "vmfabric.kernel = \"k/vmlinuz\"\n"
				   "vmfabric.initrd = \"/abs/initrd.gz\"\n"
				   "vmfabric.append = \"panic=-1 vmf.cmd=|22true|22\"\n"
				   "vmfabric.accel = \"tcg\"\n";
	static const uint8_t mac0[6] = { 0x00, 0x50, 0x56, 0x0a, 0x0b, 0x0c };
	static const uint8_t mac1[6] = { 0x00, 0x0c, 0x29, 0x01, 0x02, 0x03 };
	struct unknowns u = { 0 };
	struct vm_config c;
	char buf[18];

	parse_ok("dir/web.vmx", text, "/vms/web", &c, &u);
	ASSERT_EQ(u.n, 0);
	ASSERT_EQ(c.n_unknown, 0);
	ASSERT(STREQ(c.name, "web 1 (test)"));
	ASSERT_EQ(c.mem_mib, 1024);
	ASSERT_EQ(c.vcpus, 4);
	ASSERT(STREQ(c.guest_os, "debian12-64"));
	ASSERT(c.vmci && c.vmci_restricted);
	ASSERT_EQ(c.cid, 32);
	ASSERT(c.nic[0].present && c.nic[0].has_mac);
	ASSERT(STREQ(c.nic[0].virtual_dev, "virtio"));
	ASSERT(STREQ(c.nic[0].network, "VM Network"));
	ASSERT_MEM_EQ(c.nic[0].mac, mac0, 6);
	ASSERT(STREQ(vm_mac_str(c.nic[0].mac, buf), "00:50:56:0a:0b:0c"));
	ASSERT(c.nic[1].present && c.nic[1].has_mac);
	ASSERT(STREQ(c.nic[1].virtual_dev, "vmxnet3"));
	ASSERT_MEM_EQ(c.nic[1].mac, mac1, 6);
	ASSERT(!c.nic[2].present && !c.nic[2].has_mac);
	ASSERT(STREQ(c.nic[2].virtual_dev, "e1000e"));
	ASSERT(c.nic[9].present && STREQ(c.nic[9].virtual_dev, "e1000"));
	ASSERT(STREQ(c.kernel, "/vms/web/k/vmlinuz"));
	ASSERT(STREQ(c.initrd, "/abs/initrd.gz"));
	ASSERT(STREQ(c.append, "panic=-1 vmf.cmd=\"true\""));
	ASSERT(STREQ(c.accel, "tcg"));
}

TEST(vm_defaults)
{
	struct vm_config c;

	parse_ok("/some/where/My-VM.1.VMX", KERNEL_LINE, NULL, &c, NULL);
	ASSERT(STREQ(c.name, "My-VM.1"));
	ASSERT_EQ(c.mem_mib, 256);
	ASSERT_EQ(c.vcpus, 1);
	ASSERT(!c.vmci && !c.vmci_restricted);
	ASSERT_EQ(c.cid, 0);
	for (int i = 0; i < VM_MAX_NICS; i++) {
		ASSERT(!c.nic[i].present && !c.nic[i].has_mac);
		ASSERT(STREQ(c.nic[i].virtual_dev, "e1000"));
		ASSERT(STREQ(c.nic[i].network, ""));
	}
	ASSERT(STREQ(c.initrd, "") && STREQ(c.append, ""));
	ASSERT(STREQ(c.accel, "auto"));
	ASSERT(STREQ(c.guest_os, ""));
	ASSERT_EQ(c.n_unknown, 0);

	/* Bounds are accepted. */
	parse_ok("a.vmx", "memsize = \"32\"\nnumvcpus = \"64\"\nvmci0.id = \"3\"\n" KERNEL_LINE,
		 NULL, &c, NULL);
	ASSERT_EQ(c.mem_mib, 32);
	ASSERT_EQ(c.vcpus, 64);
	ASSERT_EQ(c.cid, 3);
	parse_ok("a.vmx", "memsize = \"65536\"\nvmci0.id = \"4294967294\"\n" KERNEL_LINE, NULL, &c,
		 NULL);
	ASSERT_EQ(c.mem_mib, 65536);
	ASSERT_EQ(c.cid, 4294967294u);
	/* A name of 63 bytes fits. */
	parse_ok("a.vmx",
		 "displayName = \""
		 "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789a"
		 "\"\n" KERNEL_LINE,
		 NULL, &c, NULL);
	ASSERT_EQ(strlen(c.name), 63);
}

TEST(vm_case_insensitive)
{
	static const char text[] = "DISPLAYNAME = \"x\"\n"
				   "MemSize = \"300\"\n"
				   "NUMVCPUS = \"2\"\n"
				   "VMCI0.Present = \"true\"\n"
				   "vmci0.ID = \"7\"\n"
				   "Ethernet3.PRESENT = \"yes\"\n"
				   "ETHERNET3.VIRTUALDEV = \"VMXNET3\"\n"
				   "ethernet3.ADDRESSTYPE = \"Static\"\n"
				   "Ethernet3.Address = \"00:50:56:AA:BB:CC\"\n"
				   "VMFABRIC.KERNEL = \"/k\"\n"
				   "vmfabric.Accel = \"KVM\"\n"
				   "GuestOS = \"other\"\n";
	struct vm_config c;

	parse_ok("x.vmx", text, NULL, &c, NULL);
	ASSERT(STREQ(c.name, "x"));
	ASSERT_EQ(c.mem_mib, 300);
	ASSERT_EQ(c.vcpus, 2);
	ASSERT(c.vmci);
	ASSERT_EQ(c.cid, 7);
	ASSERT(c.nic[3].present && c.nic[3].has_mac);
	ASSERT(STREQ(c.nic[3].virtual_dev, "vmxnet3"));
	ASSERT_EQ(c.nic[3].mac[5], 0xcc);
	ASSERT(STREQ(c.kernel, "/k"));
	ASSERT(STREQ(c.accel, "kvm"));
	ASSERT(STREQ(c.guest_os, "other"));
	/* The same key twice in different cases is a duplicate. */
	parse_fails("memsize = \"300\"\nMEMSIZE = \"400\"\n" KERNEL_LINE, 2, "MEMSIZE",
		    "duplicate");
}

TEST(vm_errors)
{
	char long_name[200], long_append[1100], text[1400];

	parse_fails("memsize = \"31\"\n" KERNEL_LINE, 1, "memsize", "between 32 and 65536");
	parse_fails(KERNEL_LINE "memsize = \"65537\"\n", 2, "memsize", "between 32 and 65536");
	parse_fails("\n\nMemSize = \"lots\"\n" KERNEL_LINE, 3, "MemSize", "not a number");
	parse_fails("numvcpus = \"0\"\n" KERNEL_LINE, 1, "numvcpus", "between 1 and 64");
	parse_fails("numvcpus = \"65\"\n" KERNEL_LINE, 1, "numvcpus", "between 1 and 64");
	parse_fails("vmci0.present = \"maybe\"\n" KERNEL_LINE, 1, "vmci0.present", "boolean");
	parse_fails("vmci0.restricted = \"2\"\n" KERNEL_LINE, 1, "vmci0.restricted", "boolean");

	/* vmci0.id: VMware's ids that collide with reserved CIDs, 0, negative, junk. */
	parse_fails(KERNEL_LINE "vmci0.id = \"1\"\n", 2, "vmci0.id", "CID 1 is reserved");
	parse_fails(KERNEL_LINE "vmci0.id = \"2\"\n", 2, "vmci0.id", "CID 2 is reserved");
	parse_fails(KERNEL_LINE "vmci0.id = \"0\"\n", 2, "vmci0.id", "0 is not a CID");
	parse_fails(KERNEL_LINE "vmci0.id = \"-1795425276\"\n", 2, "vmci0.id", "negative");
	parse_fails(KERNEL_LINE "vmci0.id = \"ten\"\n", 2, "vmci0.id", "between 3 and 4294967294");
	parse_fails(KERNEL_LINE "vmci0.id = \"4294967295\"\n", 2, "vmci0.id",
		    "between 3 and 4294967294");
	parse_fails(KERNEL_LINE "vmci0.id = \"-\"\n", 2, "vmci0.id", "not a number");

	/* NICs */
	parse_fails(KERNEL_LINE "ethernet0.virtualDev = \"vlance\"\n", 2, "ethernet0.virtualDev",
		    "vmxnet3, e1000, e1000e or virtio");
	parse_fails(KERNEL_LINE "ethernet4.present = \"x\"\n", 2, "ethernet4.present", "boolean");
	parse_fails(KERNEL_LINE "ethernet0.address = \"01:50:56:00:00:01\"\n", 2,
		    "ethernet0.address", "multicast");
	parse_fails(KERNEL_LINE "ethernet0.address = \"ff:ff:ff:ff:ff:ff\"\n", 2,
		    "ethernet0.address", "multicast");
	parse_fails(KERNEL_LINE "ethernet0.address = \"00:00:00:00:00:00\"\n", 2,
		    "ethernet0.address", "not a NIC's address");
	parse_fails(KERNEL_LINE "ethernet1.address = \"00:50:56:00:00\"\n", 2, "ethernet1.address",
		    "not a MAC address");
	parse_fails(KERNEL_LINE "ethernet1.address = \"00-50-56-00-00-01\"\n", 2,
		    "ethernet1.address", "not a MAC address");
	parse_fails(KERNEL_LINE "ethernet1.address = \"00:50:56:00:00:0g\"\n", 2,
		    "ethernet1.address", "not a MAC address");
	parse_fails(KERNEL_LINE "ethernet2.generatedAddress = \"03:0c:29:00:00:01\"\n", 2,
		    "ethernet2.generatedAddress", "multicast");
	parse_fails(KERNEL_LINE "ethernet0.addressType = \"static\"\n", 2, "ethernet0.addressType",
		    "ethernet0.address is missing");
	parse_fails(KERNEL_LINE "ethernet0.addressType = \"dynamic\"\n", 2, "ethernet0.addressType",
		    "static, generated or vpx");
	parse_fails(KERNEL_LINE "ethernet10.present = \"TRUE\"\n", 2, "ethernet10.present",
		    "ethernet0 to ethernet9");
	parse_fails(KERNEL_LINE "ethernet01.present = \"TRUE\"\n", 2, "ethernet01.present",
		    "ethernet0 to ethernet9");
	parse_fails(KERNEL_LINE "ethernet0.networkName = \"tab|09here\"\n", 2,
		    "ethernet0.networkName", "not printable");

	/* Names */
	memset(long_name, 'n', 64);
	snprintf(text, sizeof(text), "displayName = \"%.64s\"\n" KERNEL_LINE, long_name);
	parse_fails(text, 1, "displayName", "not a VM name");
	parse_fails("displayName = \"\"\n" KERNEL_LINE, 1, "displayName", "not a VM name");
	parse_fails("displayName = \"a/b\"\n" KERNEL_LINE, 1, "displayName", "not a VM name");
	parse_fails("displayName = \"a,b\"\n" KERNEL_LINE, 1, "displayName", "not a VM name");
	parse_fails("displayName = \" a\"\n" KERNEL_LINE, 1, "displayName", "not a VM name");
	parse_fails("displayName = \"esc|1B[2J\"\n" KERNEL_LINE, 1, "displayName", "not a VM name");
	parse_fails("guestOS = \"|0A\"\n" KERNEL_LINE, 1, "guestOS", "not printable");
	memset(long_name, 'g', 64);
	snprintf(text, sizeof(text), "guestOS = \"%.64s\"\n" KERNEL_LINE, long_name);
	parse_fails(text, 1, "guestOS", "longer than 63 bytes");

	/* Boot keys */
	parse_fails("memsize = \"64\"\n", 0, "vmfabric.kernel", "missing");
	parse_fails("vmfabric.kernel = \"\"\n", 1, "vmfabric.kernel", "empty path");
	parse_fails(KERNEL_LINE "vmfabric.accel = \"hvf\"\n", 2, "vmfabric.accel",
		    "auto, kvm or tcg");
	memset(long_append, 'a', sizeof(long_append));
	snprintf(text, sizeof(text), KERNEL_LINE "vmfabric.append = \"%.1024s\"\n", long_append);
	parse_fails(text, 2, "vmfabric.append", "longer than 1023 bytes");
	parse_fails(KERNEL_LINE "vmfabric.append = \"a|07b\"\n", 2, "vmfabric.append",
		    "not printable");

	/* Syntax errors come from the parser, with their line. */
	parse_fails(KERNEL_LINE "memsize \"64\"\n", 2, "memsize", "missing '='");
	parse_fails(KERNEL_LINE "vmci0.present = \"TRUE\n", 2, "vmci0.present", "unterminated");
}

/* No displayName and a base name that is not a VM name; no file name at all. */
TEST(vm_name_from_file)
{
	struct conf_error e;
	struct vm_config c;

	parse_ok("vms/db.vmx", KERNEL_LINE, NULL, &c, NULL);
	ASSERT(STREQ(c.name, "db"));
	parse_ok("db", KERNEL_LINE, NULL, &c, NULL);
	ASSERT(STREQ(c.name, "db"));
	ASSERT_EQ(
	    vm_config_parse("vms/.vmx", KERNEL_LINE, strlen(KERNEL_LINE), NULL, &c, &e, NULL, NULL),
	    -EINVAL);
	ASSERT(STREQ(e.key, "displayName"));
	ASSERT(strstr(e.msg, "base name"));
	ASSERT_EQ(vm_config_parse(NULL, KERNEL_LINE, strlen(KERNEL_LINE), NULL, &c, &e, NULL, NULL),
		  -EINVAL);
	ASSERT(STREQ(e.key, "displayName"));
	ASSERT(strstr(e.msg, "missing"));
}

TEST(vm_unknown_keys)
{
	static const char text[] =
	    ".encoding = \"UTF-8\"\n"
	    "config.version = \"8\"\n"
	    "virtualHW.version = \"19\"\n"
	    "# a comment\n"
	    "memsize = \"128\"\n"
	    "scsi0:0.fileName = \"disk.vmdk\"\n"
	    "ethernet0.generatedAddressOffset = \"0\"\n" KERNEL_LINE "uuid.bios = \"56 4d 12\"\n";
	struct unknowns u = { 0 };
	struct vm_config c;

	parse_ok("boiler.vmx", text, NULL, &c, &u);
	ASSERT_EQ(u.n, 6);
	ASSERT_EQ(c.n_unknown, 6);
	ASSERT(STREQ(u.key[0], ".encoding") && u.line[0] == 1);
	ASSERT(STREQ(u.key[1], "config.version") && u.line[1] == 2);
	ASSERT(STREQ(u.key[2], "virtualHW.version") && u.line[2] == 3);
	ASSERT(STREQ(u.key[3], "scsi0:0.fileName") && u.line[3] == 6);
	ASSERT(STREQ(u.key[4], "ethernet0.generatedAddressOffset") && u.line[4] == 7);
	ASSERT(STREQ(u.key[5], "uuid.bios") && u.line[5] == 9);
	ASSERT_EQ(c.mem_mib, 128);
	/* Without a callback they are only counted. */
	parse_ok("boiler.vmx", text, NULL, &c, NULL);
	ASSERT_EQ(c.n_unknown, 6);
	/* An address that addressType says is not used is still a known key. */
	u.n = 0;
	parse_ok("m.vmx",
		 "ethernet0.addressType = \"generated\"\n"
		 "ethernet0.address = \"00:50:56:00:00:01\"\n"
		 "ethernet0.generatedAddress = \"00:0c:29:00:00:02\"\n" KERNEL_LINE,
		 NULL, &c, &u);
	ASSERT_EQ(u.n, 0);
	ASSERT(c.nic[0].has_mac && c.nic[0].mac[5] == 2);
	parse_ok("m.vmx",
		 "ethernet0.address = \"00:50:56:00:00:01\"\n"
		 "ethernet0.generatedAddress = \"00:0c:29:00:00:02\"\n" KERNEL_LINE,
		 NULL, &c, &u);
	ASSERT_EQ(u.n, 0);
	ASSERT(c.nic[0].has_mac && c.nic[0].mac[5] == 1);
}

TEST(vm_paths)
{
	char dir[PATH_MAX], want[PATH_MAX + 64], path[PATH_MAX + 64], cwd[PATH_MAX];
	struct conf_error e;
	struct vm_config c;
	char *text;
	FILE *f;

	parse_ok("a.vmx", "vmfabric.kernel = \"../k\"\nvmfabric.initrd = \"i\"\n", "/vms/", &c,
		 NULL);
	ASSERT(STREQ(c.kernel, "/vms/../k"));
	ASSERT(STREQ(c.initrd, "/vms/i"));
	parse_ok("a.vmx", "vmfabric.kernel = \"../k\"\n", NULL, &c, NULL);
	ASSERT(STREQ(c.kernel, "../k"));
	parse_ok("a.vmx", "vmfabric.kernel = \"/k\"\n", "/vms", &c, NULL);
	ASSERT(STREQ(c.kernel, "/k"));

	/* Too long once joined: a path that fits alone does not fit after the directory. */
	text = malloc(PATH_MAX + 64);
	ASSERT(text);
	memset(dir, 'd', PATH_MAX - 10);
	dir[0] = '/';
	dir[PATH_MAX - 10] = '\0';
	snprintf(text, PATH_MAX + 64, "vmfabric.kernel = \"vmlinuz-long\"\n");
	ASSERT_EQ(vm_config_parse("a.vmx", text, strlen(text), dir, &c, &e, NULL, NULL),
		  -ENAMETOOLONG);
	ASSERT_EQ(e.line, 1);
	ASSERT(STREQ(e.key, "vmfabric.kernel"));
	free(text);

	/* vm_config_load(): relative to the file's directory, made absolute. */
	snprintf(dir, sizeof(dir), "/tmp/vmf-test-vm-XXXXXX");
	ASSERT(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/t.vmx", dir);
	f = fopen(path, "w");
	ASSERT(f);
	fprintf(f, "vmfabric.kernel = \"sub/vmlinuz\"\nvmfabric.initrd = \"/x/initrd\"\n");
	fclose(f);
	ASSERT(getcwd(cwd, sizeof(cwd)));
	ASSERT_OK(chdir(dir));
	ASSERT_OK(vm_config_load("t.vmx", &c, &e, NULL, NULL));
	ASSERT_OK(chdir(cwd));
	ASSERT(STREQ(c.name, "t"));
	snprintf(want, sizeof(want), "%s/sub/vmlinuz", dir);
	ASSERT(STREQ(c.kernel, want));
	ASSERT(STREQ(c.initrd, "/x/initrd"));
	ASSERT_OK(vm_config_load(path, &c, &e, NULL, NULL));
	ASSERT(STREQ(c.kernel, want));
	/* Errors of loading carry the file name. */
	unlink(path);
	ASSERT_EQ(vm_config_load(path, &c, &e, NULL, NULL), -ENOENT);
	ASSERT(STREQ(e.file, path));
	ASSERT_OK(rmdir(dir));
}

TEST(vm_examples)
{
	static const struct {
		const char *file, *name;
		bool vmci;
		uint32_t cid;
		unsigned unknown;
	} ex[] = {
		{ "demo-a.vmx", "demo-vm-a", true, 10, 0 },
		{ "demo-b.vmx", "demo-vm-b", true, 11, 0 },
		{ "test-guest.vmx", "test-guest", true, 0, 0 },
		{ "no-vmci.vmx", "no-vmci", false, 0, 7 },
	};
	char path[PATH_MAX], real[PATH_MAX], want[PATH_MAX + 64];
	struct unknowns u;
	struct conf_error e;
	struct vm_config c;
	char buf[600];

	for (size_t i = 0; i < sizeof(ex) / sizeof(ex[0]); i++) {
		int r;

		memset(&u, 0, sizeof(u));
		snprintf(path, sizeof(path), "%s/examples/%s", VMFABRIC_SRC_DIR, ex[i].file);
		r = vm_config_load(path, &c, &e, collect, &u);
		th_log("%s: %d %s", path, r, r ? conf_error_str(&e, buf, sizeof(buf)) : "");
		ASSERT_OK(r);
		ASSERT(STREQ(c.name, ex[i].name));
		ASSERT_EQ(c.vmci, ex[i].vmci);
		ASSERT_EQ(c.cid, ex[i].cid);
		ASSERT_EQ(u.n, ex[i].unknown);
		ASSERT(STREQ(c.accel, "auto"));
		ASSERT(realpath(VMFABRIC_SRC_DIR "/examples", real));
		snprintf(want, sizeof(want), "%s/../build/guest/vmlinuz", real);
		ASSERT(STREQ(c.kernel, want));
		snprintf(want, sizeof(want), "%s/../build/guest/initramfs.cpio.gz", real);
		ASSERT(STREQ(c.initrd, want));
	}
	/* The last one is VMware's kind of file: its NIC. */
	ASSERT(c.nic[0].present && c.nic[0].has_mac);
	ASSERT(STREQ(c.nic[0].virtual_dev, "virtio"));
	ASSERT(STREQ(c.nic[0].network, "VM Network"));
	ASSERT_EQ(c.mem_mib, 512);
	ASSERT_EQ(c.vcpus, 2);
}

/* ---------------------------------------------------------------------- */
/* The command line */

static int
argv_find(char **argv, const char *opt, const char *val)
{
	for (int i = 0; argv[i]; i++)
		if (STREQ(argv[i], opt) && (!val || (argv[i + 1] && STREQ(argv[i + 1], val))))
			return i;
	return -1;
}

static int
argv_count(char **argv, const char *opt)
{
	int n = 0;

	for (int i = 0; argv[i]; i++)
		n += STREQ(argv[i], opt);
	return n;
}

static void
argv_log(char **argv)
{
	char line[4096];
	size_t n = 0;

	for (int i = 0; argv[i] && n < sizeof(line) - 1; i++)
		n += (size_t)snprintf(line + n, sizeof(line) - n, "%s ", argv[i]);
	th_log("argv: %s", line);
}

TEST(vm_argv)
{
	struct vm_launch l = { .accel = "tcg", .serial_log = "/run/vm/serial.log" };
	struct vm_config c;
	char **argv;

	parse_ok("v.vmx",
		 "displayName = \"v1\"\nmemsize = \"384\"\nnumvcpus = \"2\"\n" KERNEL_LINE
		 "vmfabric.initrd = \"/boot/initrd\"\nvmfabric.append = \"panic=-1 quiet\"\n",
		 NULL, &c, NULL);
	ASSERT_OK(vm_qemu_argv(&c, &l, &argv));
	argv_log(argv);
	ASSERT(STREQ(argv[0], "qemu-system-x86_64"));
	ASSERT_GE(argv_find(argv, "-name", "guest=v1,debug-threads=on"), 0);
	ASSERT_GE(argv_find(argv, "-nodefaults", NULL), 0);
	ASSERT_GE(argv_find(argv, "-accel", "tcg"), 0);
	ASSERT_GE(argv_find(argv, "-m", "384"), 0);
	ASSERT_GE(argv_find(argv, "-smp", "2"), 0);
	ASSERT_GE(argv_find(argv, "-object", "memory-backend-memfd,id=mem0,size=384M,share=on"), 0);
	ASSERT_GE(argv_find(argv, "-numa", "node,memdev=mem0"), 0);
	ASSERT_GE(argv_find(argv, "-kernel", "/boot/vmlinuz"), 0);
	ASSERT_GE(argv_find(argv, "-initrd", "/boot/initrd"), 0);
	ASSERT_GE(argv_find(argv, "-append", "console=ttyS0 panic=-1 quiet no_timer_check"), 0);
	ASSERT_GE(argv_find(argv, "-display", "none"), 0);
	ASSERT_GE(argv_find(argv, "-chardev", "file,id=serial0,path=/run/vm/serial.log"), 0);
	ASSERT_GE(argv_find(argv, "-serial", "chardev:serial0"), 0);
	ASSERT_GE(argv_find(argv, "-no-reboot", NULL), 0);
	/* VMCI off: no vsock device; no NIC sockets: no NIC; no QMP, no pidfile. */
	for (int i = 0; argv[i]; i++) {
		ASSERT(!strstr(argv[i], "vsock"));
		ASSERT(!strstr(argv[i], "virtio-net"));
	}
	ASSERT_EQ(argv_find(argv, "-netdev", NULL), -1);
	ASSERT_EQ(argv_find(argv, "-mon", NULL), -1);
	ASSERT_EQ(argv_find(argv, "-pidfile", NULL), -1);
	ASSERT_EQ(argv_count(argv, "-chardev"), 1);
	vm_qemu_argv_free(argv);
}

/* VMCI on, virtio NICs over vhost-user under TCG and KVM, QMP, pidfile, commas escaped. */
TEST(vm_argv_devices)
{
	struct vm_launch l = { .accel = "tcg", .serial_log = "/run/vm/serial.log" };
	struct vm_config c;
	char **argv;

	parse_ok("v.vmx",
		 "displayName = \"v2\"\nvmci0.present = \"TRUE\"\nvmci0.id = \"12\"\n"
		 "ethernet1.present = \"TRUE\"\nethernet1.virtualDev = \"virtio\"\n"
		 "ethernet1.address = \"00:50:56:00:00:07\"\n"
		 "ethernet2.present = \"TRUE\"\nethernet2.virtualDev = \"virtio\"\n" KERNEL_LINE
		 "vmfabric.append = \"console=hvc0 -- x\"\n",
		 NULL, &c, NULL);
	l.qemu = "/opt/qemu/bin/qemu-system-x86_64";
	l.vsock_sock = "/run/vm/a,b.vsock";
	l.nic_sock[1] = "/run/vm/net1";
	l.nic_sock[2] = "/run/vm/net2";
	l.qmp_sock = "/run/vm/qmp";
	l.pidfile = "/run/vm/pid";
	ASSERT_OK(vm_qemu_argv(&c, &l, &argv));
	argv_log(argv);
	ASSERT(STREQ(argv[0], "/opt/qemu/bin/qemu-system-x86_64"));
	ASSERT_GE(argv_find(argv, "-append", "console=hvc0 no_timer_check -- x"), 0);
	ASSERT_GE(argv_find(argv, "-chardev", "socket,id=vsock0,path=/run/vm/a,,b.vsock"), 0);
	ASSERT_GE(argv_find(argv, "-device", "vhost-user-vsock-pci,chardev=vsock0,id=vmci0"), 0);
	ASSERT_GE(argv_find(argv, "-chardev", "socket,id=net1,path=/run/vm/net1,reconnect=1"), 0);
	ASSERT_GE(argv_find(argv, "-netdev", "vhost-user,id=hostnet1,chardev=net1"), 0);
	ASSERT_GE(argv_find(argv, "-device",
			    "virtio-net-pci,netdev=hostnet1,id=ethernet1,"
			    "mac=00:50:56:00:00:07,vectors=0"),
		  0);
	ASSERT_EQ(argv_count(argv, "-netdev"), 2);
	ASSERT_GE(argv_find(argv, "-chardev", "socket,id=qmp0,path=/run/vm/qmp,server=on,wait=off"),
		  0);
	ASSERT_GE(argv_find(argv, "-mon", "chardev=qmp0,mode=control"), 0);
	ASSERT_GE(argv_find(argv, "-pidfile", "/run/vm/pid"), 0);
	vm_qemu_argv_free(argv);

	/* Under KVM: MSI-X stays (no vectors=0); a NIC without a MAC gets a stable one. */
	l.accel = "kvm";
	ASSERT_OK(vm_qemu_argv(&c, &l, &argv));
	argv_log(argv);
	for (int i = 0; argv[i]; i++)
		ASSERT(!strstr(argv[i], "vectors="));
	{
		uint8_t m[6];
		char want[128], mac[18];

		vm_nic_default_mac("v2", 2, m);
		ASSERT_EQ(m[0], 0x02);
		snprintf(want, sizeof(want), "virtio-net-pci,netdev=hostnet2,id=ethernet2,mac=%s",
			 vm_mac_str(m, mac));
		ASSERT_GE(argv_find(argv, "-device", want), 0);
		vm_nic_default_mac("v2", 1, m);
		ASSERT(!STREQ(vm_mac_str(m, mac), want + strlen(want) - 17));
	}
	vm_qemu_argv_free(argv);
}

TEST(vm_argv_errors)
{
	struct vm_launch l = { .accel = "tcg", .serial_log = "/s" };
	struct vm_config c;
	char **argv = (char **)&l;

	parse_ok("v.vmx",
		 "ethernet0.present = \"TRUE\"\nethernet0.virtualDev = \"e1000\"\n"
		 "ethernet1.present = \"TRUE\"\nethernet1.virtualDev = \"vmxnet3\"\n"
		 "ethernet2.virtualDev = \"virtio\"\n" KERNEL_LINE,
		 NULL, &c, NULL);
	ASSERT_OK(vm_qemu_argv(&c, &l, &argv));
	vm_qemu_argv_free(argv);
	l.accel = "auto";
	ASSERT_EQ(vm_qemu_argv(&c, &l, &argv), -EINVAL);
	ASSERT(argv == NULL);
	l.accel = NULL;
	ASSERT_EQ(vm_qemu_argv(&c, &l, &argv), -EINVAL);
	l.accel = "kvm";
	l.serial_log = NULL;
	ASSERT_EQ(vm_qemu_argv(&c, &l, &argv), -EINVAL);
	l.serial_log = "/s";
	l.vsock_sock = "/v"; /* VMCI is off */
	ASSERT_EQ(vm_qemu_argv(&c, &l, &argv), -EINVAL);
	l.vsock_sock = NULL;
	c.vmci = true; /* and no socket for it */
	ASSERT_EQ(vm_qemu_argv(&c, &l, &argv), -EINVAL);
	c.vmci = false;
	l.nic_sock[0] = "/n0"; /* e1000: emulated, not over vhost-user */
	ASSERT_EQ(vm_qemu_argv(&c, &l, &argv), -EOPNOTSUPP);
	l.nic_sock[0] = NULL;
	l.nic_sock[1] = "/n1"; /* vmxnet3: the same */
	ASSERT_EQ(vm_qemu_argv(&c, &l, &argv), -EOPNOTSUPP);
	l.nic_sock[1] = NULL;
	l.nic_sock[2] = "/n2"; /* not present */
	ASSERT_EQ(vm_qemu_argv(&c, &l, &argv), -EINVAL);
	l.nic_sock[2] = NULL;
	c.kernel[0] = '\0';
	ASSERT_EQ(vm_qemu_argv(&c, &l, &argv), -EINVAL);
}

/* ---------------------------------------------------------------------- */
/* Spawning and stopping */

static int
pidfd_readable(int pidfd, int timeout_ms)
{
	struct pollfd p = { .fd = pidfd, .events = POLLIN };

	return poll(&p, 1, timeout_ms);
}

static char *
read_all(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, size - 1) : -1;

	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

/* A malloc'd argv (vm_qemu_argv_free()) of @n words from @w and then @tail (may be NULL). */
static char **
argv_make(const char *const *w, int n, char **tail)
{
	int m = 0;
	char **v;

	while (tail && tail[m])
		m++;
	v = calloc((size_t)(n + m + 1), sizeof(*v));
	ASSERT(v);
	for (int i = 0; i < n + m; i++) {
		v[i] = strdup(i < n ? w[i] : tail[i - n]);
		ASSERT(v[i]);
	}
	return v;
}

/* Spawns "sh -c @script". */
static void
spawn_sh(const char *script, const char *log, int *pidfd, pid_t *pid)
{
	const char *w[] = { "sh", "-c", script };
	char **argv = argv_make(w, 3, NULL);

	ASSERT_OK(vm_qemu_spawn(argv, log, pidfd, pid));
	vm_qemu_argv_free(argv);
}

static long
ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

/* sleep: running (-EAGAIN), stopped by SIGTERM (0), reaped, its pidfd readable. */
TEST(vm_spawn_stop)
{
	struct timespec t0;
	int pidfd, st;
	pid_t pid;

	spawn_sh("exec sleep 30", NULL, &pidfd, &pid);
	ASSERT_GT(pid, 0);
	ASSERT_GE(pidfd, 0);
	ASSERT_EQ(getsid(pid), pid); /* a session of its own */
	ASSERT_EQ(pidfd_readable(pidfd, 100), 0);
	ASSERT_EQ(vm_qemu_reap(pidfd, &st), -EAGAIN);
	ASSERT_EQ(vm_qemu_stop(pid, pidfd, 5000), 0);
	ASSERT_EQ(pidfd_readable(pidfd, 0), 1);
	ASSERT_EQ(waitpid(pid, NULL, WNOHANG), -1); /* reaped already */
	ASSERT_EQ(errno, ECHILD);
	ASSERT_EQ(vm_qemu_reap(pidfd, &st), -ECHILD);
	ASSERT_EQ(vm_qemu_stop(pid, pidfd, 100), -ESRCH);
	close(pidfd);

	/* A process that ignores SIGTERM is killed after the timeout: 1. */
	spawn_sh("trap '' TERM; exec sleep 30", NULL, &pidfd, &pid);
	usleep(200 * 1000); /* let sh set the trap and exec */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ASSERT_EQ(vm_qemu_stop(pid, pidfd, 300), 1);
	ASSERT_GE(ms_since(&t0), 290);
	close(pidfd);

	/* A process that exits by itself: the pidfd says so, reap gives its status. */
	spawn_sh("exit 3", NULL, &pidfd, &pid);
	ASSERT_EQ(pidfd_readable(pidfd, 5000), 1);
	ASSERT_OK(vm_qemu_reap(pidfd, &st));
	ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 3);
	/* Stopping one that exited but was not reaped yet reaps it: 0. */
	close(pidfd);
	spawn_sh("exit 0", NULL, &pidfd, &pid);
	ASSERT_EQ(pidfd_readable(pidfd, 5000), 1);
	ASSERT_EQ(vm_qemu_stop(pid, pidfd, 100), 0);
	ASSERT_EQ(vm_qemu_reap(pidfd, &st), -ECHILD);
	close(pidfd);
}

/* What the child inherits: output to the log, no other descriptor, no blocked
 * nor ignored signal, even when the parent has them. */
TEST(vm_spawn_child_state)
{
	const char *none[] = { "/nonexistent/qemu" };
	char dir[64] = "/tmp/vmf-test-spawn-XXXXXX", log[128], buf[4096];
	int pidfd, st, leak[2];
	char **argv;
	sigset_t set;
	pid_t pid;

	ASSERT(mkdtemp(dir));
	snprintf(log, sizeof(log), "%s/qemu.log", dir);
	ASSERT_OK(pipe(leak)); /* not close-on-exec */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	spawn_sh("echo out; echo err >&2; grep -E '^Sig(Blk|Ign)' /proc/self/status;"
		 " ls /proc/self/fd | tr '\\n' ' '; echo",
		 log, &pidfd, &pid);
	ASSERT_EQ(pidfd_readable(pidfd, 5000), 1);
	ASSERT_OK(vm_qemu_reap(pidfd, &st));
	ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	close(pidfd);
	read_all(log, buf, sizeof(buf));
	th_log("child said: %s", buf);
	ASSERT(strstr(buf, "out\nerr\n"));
	ASSERT(strstr(buf, "SigBlk:\t0000000000000000\n"));
	ASSERT(strstr(buf, "SigIgn:\t0000000000000000\n"));
	/* ls lists 0 1 2 and the descriptor it reads the directory with. */
	ASSERT(strstr(buf, "\n0 1 2 3 \n"));
	close(leak[0]);
	close(leak[1]);

	argv = argv_make(none, 1, NULL);
	ASSERT_EQ(vm_qemu_spawn(argv, log, &pidfd, &pid), -ENOENT);
	ASSERT_EQ(pidfd, -1);
	vm_qemu_argv_free(argv);
	unlink(log);
	ASSERT_OK(rmdir(dir));
}

/* ---------------------------------------------------------------------- */
/* QEMU */

static const char *
guest_dir(void)
{
	const char *dir = getenv("VMFABRIC_GUEST_DIR");

	return dir && *dir ? dir : VMFABRIC_SRC_DIR "/build/guest";
}

/* Skips unless QEMU and the guest image are there; fills their paths. */
static void
need_guest(char *kernel, char *initrd, size_t size)
{
	int pidfd, st;
	pid_t pid;

	spawn_sh("command -v " VM_QEMU_DEFAULT, NULL, &pidfd, &pid);
	ASSERT_EQ(pidfd_readable(pidfd, 10000), 1);
	ASSERT_OK(vm_qemu_reap(pidfd, &st));
	close(pidfd);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		SKIP(VM_QEMU_DEFAULT " not found (tools/setup-deps vm)");
	snprintf(kernel, size, "%s/vmlinuz", guest_dir());
	snprintf(initrd, size, "%s/initramfs.cpio.gz", guest_dir());
	if (access(kernel, R_OK) || access(initrd, R_OK))
		SKIP("no guest image in %s (guest/build-image)", guest_dir());
}

/* One real boot, VMCI off, under TCG: the readiness marker, then QEMU's own exit. */
TEST(vm_boot_tcg)
{
	char kernel[PATH_MAX], initrd[PATH_MAX], text[3 * PATH_MAX], dir[64], serial[128],
	    qlog[128], buf[65536];
	/* QEMU runs in a session of its own, out of reach of the runner's
	 * timeout: timeout(1) bounds its life in case this test dies. */
	const char *bound[] = { "timeout", "-k", "5", "100" };
	struct vm_launch l = { .accel = "tcg" };
	char **argv, **wrapped;
	struct vm_config c;
	int pidfd, st;
	pid_t pid;

	need_guest(kernel, initrd, sizeof(kernel));
	snprintf(text, sizeof(text),
		 "displayName = \"boot-test\"\nmemsize = \"256\"\nvmfabric.kernel = \"%s\"\n"
		 "vmfabric.initrd = \"%s\"\nvmfabric.append = \"panic=-1 quiet "
		 "vmf.cmd=|22echo virtio-devices: $(ls /sys/bus/virtio/devices |7C wc -l)|22\"\n",
		 kernel, initrd);
	parse_ok("boot.vmx", text, NULL, &c, NULL);
	snprintf(dir, sizeof(dir), "/tmp/vmf-test-boot-XXXXXX");
	ASSERT(mkdtemp(dir));
	snprintf(serial, sizeof(serial), "%s/serial.log", dir);
	snprintf(qlog, sizeof(qlog), "%s/serial.log.qemu", dir);
	l.serial_log = serial;
	ASSERT_OK(vm_qemu_argv(&c, &l, &argv));
	wrapped = argv_make(bound, 4, argv);
	vm_qemu_argv_free(argv);
	argv_log(wrapped);
	ASSERT_OK(vm_qemu_spawn(wrapped, qlog, &pidfd, &pid));
	vm_qemu_argv_free(wrapped);
	/* A guest reaches /init in ~2 s under TCG and powers off at once. */
	if (pidfd_readable(pidfd, 90000) != 1) {
		vm_qemu_stop(pid, pidfd, 1000);
		th_log("serial: %s", read_all(serial, buf, sizeof(buf)));
		ASSERT(!"QEMU did not exit within 90 s");
	}
	ASSERT_OK(vm_qemu_reap(pidfd, &st));
	close(pidfd);
	read_all(serial, buf, sizeof(buf));
	th_log("serial console:\n%s", buf);
	th_log("qemu log: %s", read_all(qlog, buf + 32768, 32768));
	ASSERT(WIFEXITED(st));
	ASSERT_EQ(WEXITSTATUS(st), 0);
	ASSERT(strstr(buf, "VMFABRIC-GUEST-READY"));
	/* VMCI off and no NIC socket: no virtio device at all (no vsock). */
	ASSERT(strstr(buf, "virtio-devices: 0"));
	unlink(serial);
	unlink(qlog);
	ASSERT_OK(rmdir(dir));
}

/* The probe on this kind of host: "tcg" with a reason, within the timeout. */
TEST(vm_accel_probe)
{
	char kernel[PATH_MAX], initrd[PATH_MAX], accel[8], why[256];
	struct timespec t0, t1;
	long ms;
	int r;

	need_guest(kernel, initrd, sizeof(kernel));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	r = vm_accel_probe(NULL, kernel, initrd, 0, accel, why, sizeof(why));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	th_log("probe: %d, %s (%s) in %ld ms", r, accel, why, ms);
	ASSERT_OK(r);
	ASSERT(STREQ(accel, "kvm") || STREQ(accel, "tcg"));
	ASSERT(why[0] && !STREQ(why, "?"));
	ASSERT_LT(ms, VM_PROBE_TIMEOUT_MS + 4000);
	if (STREQ(accel, "kvm"))
		SKIP("KVM boots guests on this host: %s", why);
	/* Bad input. */
	ASSERT_EQ(vm_accel_probe(NULL, NULL, NULL, 0, accel, why, sizeof(why)), -EINVAL);
	ASSERT(STREQ(accel, "tcg"));
	ASSERT_EQ(vm_accel_try(NULL, "kvm", "/nonexistent/vmlinuz", NULL, 1000, why, sizeof(why)),
		  -ENOENT);
	ASSERT(strstr(why, "/nonexistent/vmlinuz"));
	ASSERT_EQ(vm_accel_try("/nonexistent/qemu", "tcg", kernel, initrd, 1000, why, sizeof(why)),
		  -ENOENT);
}

/* The probe's success path, with TCG, which can always boot; and an early exit. */
TEST(vm_accel_try_tcg)
{
	char kernel[PATH_MAX], initrd[PATH_MAX], why[256];
	int r;

	need_guest(kernel, initrd, sizeof(kernel));
	r = vm_accel_try(NULL, "tcg", kernel, initrd, 20000, why, sizeof(why));
	th_log("tcg: %d %s", r, why);
	ASSERT_OK(r);
	ASSERT(strstr(why, "kernel banner"));
	/* QEMU refuses the accelerator and exits before the kernel runs. */
	r = vm_accel_try(NULL, "nope", kernel, initrd, 5000, why, sizeof(why));
	ASSERT_EQ(r, -EINVAL); /* vm_qemu_argv() refuses it first */
	/* A kernel QEMU cannot load: it exits, and its message is in @why. */
	r = vm_accel_try(NULL, "tcg", VMFABRIC_SRC_DIR "/examples/demo-a.vmx", NULL, 5000, why,
			 sizeof(why));
	th_log("bad kernel: %d %s", r, why);
	ASSERT_EQ(r, -ECHILD);
	ASSERT(strstr(why, "exited"));
}
