/* SPDX-License-Identifier: MIT */
/*
 * The RDMA device model (src/rdma/device.c): devices from the host
 * configuration and its errors, the path MTU, bindings to VMkernel
 * adapters with the reasons a device cannot carry RoCE, bindings written
 * back to the configuration file (every other byte kept) and read again.
 * The first tests drive the table without a daemon (the switches loaded,
 * not started: their uplinks are the loopback interface); rdmadev_cli runs
 * a daemon with a veth pair as uplink and TAP adapters (root), and
 * rdmadev_builtin one with the built-in configuration (its uplink's
 * interface, which make run creates, missing).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/conf.h"
#include "daemon.h"
#include "harness.h"
#include "rdma/device.h"
#include "switch/dp.h"

/* Two switches, two uplinks (the loopback interface: never opened here) and three adapters. */
#define RD_SWITCHES                                                                                \
	"# two switches\n"                                                                         \
	"vswitch0.name = \"vSwitch0\"\n"                                                           \
	"vswitch1.name = \"vSwitch1\"\n"                                                           \
	"portgroup0.name = \"VM Network\"\n"                                                       \
	"portgroup1.name = \"Other\"\nportgroup1.vswitch = \"vSwitch1\"\n"                         \
	"uplink0.name = \"vmnic1\"\nuplink0.device = \"lo\"\n"                                     \
	"uplink1.name = \"vmnic2\"\nuplink1.device = \"lo\"\n"                                     \
	"vmk0.name = \"vmkt1\"\nvmk0.portgroup = \"VM Network\"\n"                                 \
	"vmk0.ip = \"192.168.50.1/24\"\n"                                                          \
	"vmk1.name = \"vmkt2\"\nvmk1.portgroup = \"Other\"\nvmk1.ip = \"192.168.60.1/24\"\n"       \
	"vmk2.name = \"vmkt3\"\nvmk2.portgroup = \"VM Network\"\n"

struct rd_host {
	struct conf *c;
	struct vsw_dp *dp;
	struct rdma_devs devs;
};

/* Load @text (from @path when given: the file) as the daemon does; 0 or the error. */
static int
rd_load(struct rd_host *h, const char *text, const char *path, struct conf_error *e)
{
	int err;

	memset(h, 0, sizeof(*h));
	h->dp = calloc(1, sizeof(*h->dp));
	ASSERT(h->dp);
	if (path)
		ASSERT_OK(conf_load(path, &h->c, e));
	else
		ASSERT_OK(conf_parse("host.cfg", text, strlen(text), &h->c, e));
	ASSERT_OK(vsw_dp_load(h->dp, h->c, e));
	err = rdma_devs_load(&h->devs, h->c, h->dp, path, e);
	if (err && !e->file[0])
		snprintf(e->file, sizeof(e->file), "%s", path ? path : "host.cfg");
	return err;
}

static void
rd_free(struct rd_host *h)
{
	rdma_devs_free(&h->devs);
	vsw_dp_stop(h->dp);
	free(h->dp);
	conf_free(h->c);
}

/* The line of @text where @what starts (1-based). */
static unsigned
rd_line(const char *text, const char *what)
{
	const char *at = strstr(text, what);
	unsigned n = 1;

	ASSERT(at);
	for (const char *p = text; p < at; p++)
		n += *p == '\n';
	return n;
}

static json_t *
rd_mgmt(struct rd_host *h, const char *cmd, const char *arg, uid_t uid)
{
	json_t *doc = NULL;
	char *s;

	ASSERT_OK(rdma_dev_mgmt(&h->devs, cmd, arg, uid, &doc));
	ASSERT(doc);
	s = json_dumps(doc, JSON_COMPACT);
	th_log("%s %s: %s", cmd, arg ? arg : "", s);
	free(s);
	return doc;
}

static const char *
rd_str(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* A bind or unbind that must be refused with @err and a reason containing @why. */
static void
rd_refused(struct rd_host *h, const char *cmd, const char *arg, uid_t uid, int err, const char *why)
{
	json_t *doc = rd_mgmt(h, cmd, arg, uid);

	ASSERT(rd_str(doc, "error"));
	ASSERT(strstr(rd_str(doc, "error"), why));
	ASSERT_EQ(json_integer_value(json_object_get(doc, "errno")), err);
	json_decref(doc);
}

static char *
rd_read(const char *path)
{
	static char buf[8192];
	int fd = open(path, O_RDONLY);
	ssize_t n;

	ASSERT_GE(fd, 0);
	n = read(fd, buf, sizeof(buf) - 1);
	ASSERT_GE(n, 0);
	buf[n] = 0;
	close(fd);
	return buf;
}

static void
rd_write(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	ASSERT(f);
	fputs(text, f);
	ASSERT_OK(fclose(f));
}

TEST(rdmadev_path_mtu)
{
	static const unsigned in[][2] = { { 1500, 1024 }, { 9000, 4096 }, { 4176, 4096 },
					  { 4175, 2048 }, { 2128, 2048 }, { 2127, 1024 },
					  { 1104, 1024 }, { 1103, 512 },  { 592, 512 },
					  { 591, 256 },	  { 336, 256 },	  { 335, 0 },
					  { 68, 0 },	  { 65536, 4096 } };

	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		th_log("%u", in[i][0]);
		ASSERT_EQ(rdma_dev_path_mtu(in[i][0]), in[i][1]);
	}
}

/* Configuration errors name the line and the key; a good configuration marks its keys used. */
TEST(rdmadev_config_errors)
{
	static const char long_desc[] =
	    "rdma0.uplink = \"vmnic1\"\nrdma0.description = \""
	    "0123456789012345678901234567890123456789012345678901234567890123456789"
	    "01234567890123456789012345\"\n";
	static const struct {
		const char *rdma, *key, *msg;
	} cases[] = {
		{ "rdma0.uplink = \"vmnic9\"\n", "rdma0.uplink", "no uplink of that name" },
		{ "rdma0.description = \"no uplink\"\n", "rdma0.description",
		  "an RDMA device needs its paired uplink" },
		{ "rdma0.uplink = \"vmnic1\"\nrdma1.name = \"vmrdma0\"\nrdma1.uplink = "
		  "\"vmnic2\"\n",
		  "rdma1.name", "an RDMA device of that name exists already" },
		{ "rdma0.uplink = \"vmnic1\"\nrdma1.uplink = \"vmnic1\"\n", "rdma1.uplink",
		  "uplink vmnic1 is paired with vmrdma0 already" },
		{ "rdma0.uplink = \"vmnic1\"\nrdma0.vmknic = \"vmkt2\"\n", "rdma0.vmknic",
		  "vmkt2 is on vSwitch1, but the paired uplink vmnic1 is on vSwitch0" },
		{ "rdma0.name = \"vm rdma\"\nrdma0.uplink = \"vmnic1\"\n", "rdma0.name",
		  "an RDMA device's name is 1 to 31 letters" },
		{ "rdma0.uplink = \"vmnic1\"\nrdma0.vmknic = \"vmkt1\"\n"
		  "rdma1.uplink = \"vmnic2\"\nrdma1.vmknic = \"vmkt1\"\n",
		  "rdma1.vmknic", "vmkt1 is bound to vmrdma0 already" },
		{ long_desc, "rdma0.description", "rdmaN.description is 95 printable ASCII" },
		{ "rdma0.uplink = \"vmnic1\"\nrdma0.description = \"caf|E9\"\n", "rdma0.description",
		  "rdmaN.description is 95 printable ASCII" },
		{ "rdma0.uplink = \"vmnic1\"\nrdma0.vmknic = \"v|0A\"\n", "rdma0.vmknic",
		  "rdmaN.vmknic is a VMkernel adapter's name" },
	};
	char text[4096], buf[700], want[256];
	struct conf_error e;
	struct rd_host h;
	struct rdma_dev_source src;
	const char *why;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(text, sizeof(text), "%s%s", RD_SWITCHES, cases[i].rdma);
		memset(&e, 0, sizeof(e));
		ASSERT_NE(rd_load(&h, text, NULL, &e), 0);
		th_log("%s", conf_error_str(&e, buf, sizeof(buf)));
		snprintf(want, sizeof(want), "host.cfg:%u: %s: %s", rd_line(text, cases[i].key),
			 cases[i].key, cases[i].msg);
		ASSERT(!strncmp(buf, want, strlen(want)));
		ASSERT_EQ(h.devs.n, 0);
		rd_free(&h);
	}
	/*
	 * Good: defaults, a binding to an adapter the configuration does not
	 * have (one may be added at run time), every rdma key used but the
	 * unknown one.
	 */
	snprintf(text, sizeof(text),
		 "%srdma0.uplink = \"vmnic1\"\nrdma0.vmknic = \"vmkt9\"\nrdma0.speed = \"100\"\n"
		 "rdma1.name = \"roce-b\"\nrdma1.uplink = \"vmnic2\"\nrdma1.vmknic = \"\"\n",
		 RD_SWITCHES);
	ASSERT_OK(rd_load(&h, text, NULL, &e));
	ASSERT_EQ(h.devs.n, 2);
	ASSERT(!strcmp(h.devs.dev[0].name, "vmrdma0"));
	ASSERT(!strcmp(h.devs.dev[0].vmknic, "vmkt9"));
	ASSERT(!strcmp(h.devs.dev[0].description, "vmfabric RoCE v2 adapter (software)"));
	ASSERT(!strcmp(h.devs.dev[1].name, "roce-b"));
	ASSERT(!strcmp(h.devs.dev[1].vmknic, ""));
	ASSERT(!h.devs.path);
	ASSERT(rdma_dev_find(&h.devs, "roce-b") == &h.devs.dev[1]);
	ASSERT(!rdma_dev_find(&h.devs, "vmrdma1"));
	ASSERT_EQ(rdma_dev_roce_source(&h.devs, &h.devs.dev[0], &src, &why), -ENODEV);
	ASSERT(!strcmp(why, "vmkt9 does not exist"));
	ASSERT_EQ(rdma_dev_roce_source(&h.devs, &h.devs.dev[1], &src, &why), -ENOTCONN);
	ASSERT(!strcmp(why, "not bound to a VMkernel adapter"));
	i = conf_first_unused(h.c, 0, &e);
	ASSERT(i < conf_count(h.c));
	ASSERT(!strcmp(conf_key(h.c, i), "rdma0.speed"));
	for (i = conf_first_unused(h.c, i + 1, &e); i < conf_count(h.c);
	     i = conf_first_unused(h.c, i + 1, &e))
		ASSERT(strncmp(conf_key(h.c, i), "rdma", 4)); /* the switches' keys: not ours */
	rd_free(&h);
}

/* The daemon refuses to start on such an error, naming the file, the line and the key. */
TEST(rdmadev_config_errors_daemon)
{
	char dir[] = "/tmp/vmf-rdmadev-XXXXXX", path[96], cmd[512], out[4096], want[256];
	const char *text = RD_SWITCHES "rdma0.uplink = \"vmnic9\"\n";

	ASSERT(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/host.cfg", dir);
	rd_write(path, text);
	snprintf(cmd, sizeof(cmd), "%s --check-config -c %s 2>&1", VMFABRICD_PATH, path);
	ASSERT_EQ(td_run(cmd, out, sizeof(out)), 1);
	th_log("%s", out);
	snprintf(want, sizeof(want), "%s:%u: rdma0.uplink: no uplink of that name", path,
		 rd_line(text, "rdma0.uplink"));
	ASSERT(strstr(out, want));
	rd_write(path, RD_SWITCHES "rdma0.uplink = \"vmnic1\"\nrdma0.vmknic = \"vmkt1\"\n");
	ASSERT_EQ(td_run(cmd, out, sizeof(out)), 0);
	ASSERT(strstr(out, "RDMA device vmrdma0: paired uplink vmnic1, bound to vmkt1"));
	ASSERT(!strstr(out, "unknown key"));
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ASSERT_EQ(system(cmd), 0);
}

/* The configuration file of the binding tests: comments, blank lines, keys after the groups. */
#define RD_FILE                                                                                    \
	RD_SWITCHES "\n"                                                                           \
		    "# RDMA: vmrdma0 on vmnic1\n"                                                  \
		    "rdma0.name = \"vmrdma0\"\n"                                                   \
		    "rdma0.uplink = \"vmnic1\"   # paired\n"                                       \
		    "rdma0.description = \"Test adapter\"\n"                                       \
		    "\n"                                                                           \
		    "# the second device\n"                                                        \
		    "rdma1.uplink = \"vmnic2\"\n"                                                  \
		    "vmfabricd.log_level = \"info\"\n"

static bool
rd_lo_up(void)
{
	struct ifreq ifr = { .ifr_name = "lo" };
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	bool up = s >= 0 && ioctl(s, SIOCGIFFLAGS, &ifr) == 0 && (ifr.ifr_flags & IFF_UP) &&
		  (ifr.ifr_flags & IFF_RUNNING);

	if (s >= 0)
		close(s);
	return up;
}

/* Bind and unbind: the rules, the reasons, the file rewritten and read again. */
TEST(rdmadev_bind)
{
	char dir[] = "/tmp/vmf-rdmadev-XXXXXX", path[96], link[96], real[96], want[4096];
	struct rdma_dev_source src;
	struct conf_error e;
	struct rd_host h;
	struct stat st;
	json_t *doc, *row;
	const char *why, *at;

	if (!rd_lo_up())
		SKIP("the loopback interface (the uplinks here) is down");
	ASSERT(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/host.cfg", dir);
	snprintf(link, sizeof(link), "%s/link.cfg", dir);
	ASSERT(realpath(dir, real));
	strcat(real, "/host.cfg");
	rd_write(path, RD_FILE);
	ASSERT_OK(chmod(path, 0640));
	ASSERT_OK(symlink("host.cfg", link)); /* the daemon was given a link */
	ASSERT_OK(rd_load(&h, NULL, link, &e));
	ASSERT(!strcmp(h.devs.path, real));

	doc = rd_mgmt(&h, "rdma.device.list", "", 1000);
	ASSERT_EQ(json_array_size(json_object_get(doc, "devices")), 2);
	row = json_array_get(json_object_get(doc, "devices"), 0);
	ASSERT(!strcmp(rd_str(row, "name"), "vmrdma0"));
	ASSERT(!strcmp(rd_str(row, "driver"), "vmfabric"));
	ASSERT(!strcmp(rd_str(row, "state"), "active"));
	ASSERT(!strcmp(rd_str(row, "paired_uplink"), "vmnic1"));
	ASSERT(!strcmp(rd_str(row, "vswitch"), "vSwitch0"));
	ASSERT(!strcmp(rd_str(row, "description"), "Test adapter"));
	ASSERT_EQ(json_integer_value(json_object_get(row, "mtu")), 1024);
	ASSERT_EQ(json_integer_value(json_object_get(row, "eth_mtu")), 1500);
	ASSERT(json_is_null(json_object_get(row, "vmknic")));
	ASSERT(json_is_false(json_object_get(row, "roce_usable")));
	ASSERT(!strcmp(rd_str(row, "roce_why"), "not bound to a VMkernel adapter"));
	ASSERT(!strcmp(rd_str(doc, "config_file"), real));
	row = json_array_get(json_object_get(doc, "devices"), 1);
	ASSERT(!strcmp(rd_str(row, "name"), "vmrdma1"));
	json_decref(doc);

	/* Refusals, each with its reason; the file is not touched. */
	rd_refused(&h, "rdma.device.vmknic.bind", "device=vmrdma0\nnic=vmkt1", 1000, EPERM,
		   "needs root");
	rd_refused(&h, "rdma.device.vmknic.bind", "device=vmrdma0\nnic=vmkt2", 0, EXDEV,
		   "vmkt2 is on vSwitch1, but vmrdma0's paired uplink vmnic1 is on vSwitch0: "
		   "bind a VMkernel adapter of vSwitch0");
	rd_refused(&h, "rdma.device.vmknic.bind", "device=vmrdma0\nnic=vmkt9", 0, ENOENT,
		   "no VMkernel adapter \"vmkt9\"");
	rd_refused(&h, "rdma.device.vmknic.bind", "device=vmrdma7\nnic=vmkt1", 0, ENODEV,
		   "no RDMA device \"vmrdma7\"");
	rd_refused(&h, "rdma.device.vmknic.bind", "device=vmrdma0", 0, EINVAL, "--nic is needed");
	rd_refused(&h, "rdma.device.vmknic.bind", "nic=vmkt1", 0, EINVAL, "--device is needed");
	rd_refused(&h, "rdma.device.vmknic.unbind", "device=vmrdma0", 0, ENOTCONN,
		   "vmrdma0 is not bound to a VMkernel adapter");
	rd_refused(&h, "rdma.device.vmknic.bind", "device=vmrdma0\nvlan=3", 0, EINVAL,
		   "not device=, nic=");
	ASSERT(!strcmp(rd_read(path), RD_FILE));
	ASSERT_EQ(rdma_dev_roce_source(&h.devs, rdma_dev_find(&h.devs, "vmrdma0"), &src, &why),
		  -ENOTCONN);

	/* To an adapter without an IP address: bound, written after the group's last line. */
	doc = rd_mgmt(&h, "rdma.device.vmknic.bind", "device=vmrdma0\nnic=vmkt3", 0);
	ASSERT(!strcmp(rd_str(doc, "done"), "rdma.device.vmknic.bind"));
	ASSERT(!strcmp(rd_str(doc, "vmknic"), "vmkt3"));
	ASSERT(!strcmp(rd_str(doc, "kept_in"), real));
	ASSERT(json_is_false(json_object_get(doc, "roce_usable")));
	ASSERT(!strcmp(rd_str(doc, "roce_why"), "vmkt3 has no IP address"));
	json_decref(doc);
	at = strstr(RD_FILE, "\n\n# the second device");
	snprintf(want, sizeof(want), "%.*s\nrdma0.vmknic = \"vmkt3\"%s", (int)(at - RD_FILE),
		 RD_FILE, at);
	ASSERT(!strcmp(rd_read(path), want));
	ASSERT_OK(lstat(link, &st));
	ASSERT(S_ISLNK(st.st_mode));
	ASSERT_OK(stat(path, &st));
	ASSERT_EQ(st.st_mode & 07777, 0640);
	ASSERT_EQ(rdma_dev_roce_source(&h.devs, rdma_dev_find(&h.devs, "vmrdma0"), &src, &why),
		  -EADDRNOTAVAIL);
	ASSERT(!strcmp(why, "vmkt3 has no IP address"));
	doc = rd_mgmt(&h, "rdma.device.vmknic.list", "", 1000);
	row = json_array_get(json_object_get(doc, "vmknics"), 0);
	ASSERT(!strcmp(rd_str(row, "device"), "vmrdma0"));
	ASSERT(!strcmp(rd_str(row, "uplink"), "vmnic1"));
	ASSERT(!strcmp(rd_str(row, "vmknic"), "vmkt3"));
	ASSERT(!strcmp(rd_str(row, "portgroup"), "VM Network"));
	ASSERT(json_is_null(json_object_get(row, "ipv4")));
	json_decref(doc);

	/* To the one with an address: the line is replaced where it is, its comment kept. */
	snprintf(want, sizeof(want), "%.*s\n  RDMA0.vmknic  =  \"vmkt3\"  # bound%s",
		 (int)(at - RD_FILE), RD_FILE, at);
	rd_write(path, want);
	doc = rd_mgmt(&h, "rdma.device.vmknic.bind", "device=vmrdma0\nnic=vmkt1", 0);
	ASSERT(!strcmp(rd_str(doc, "previous"), "vmkt3"));
	ASSERT(json_is_true(json_object_get(doc, "roce_usable")));
	json_decref(doc);
	snprintf(want, sizeof(want), "%.*s\n  RDMA0.vmknic  =  \"vmkt1\"  # bound%s",
		 (int)(at - RD_FILE), RD_FILE, at);
	ASSERT(!strcmp(rd_read(path), want));
	ASSERT_OK(rdma_dev_roce_source(&h.devs, rdma_dev_find(&h.devs, "vmrdma0"), &src, &why));
	ASSERT(!strcmp(why, ""));
	ASSERT(src.has_ipv4);
	ASSERT_EQ(src.ipv4.s_addr, htonl(0xc0a83201)); /* 192.168.50.1 */
	ASSERT_EQ(src.ipv4_prefix, 24);
	ASSERT(!strcmp(src.vmknic, "vmkt1"));
	ASSERT(!strcmp(src.vswitch, "vSwitch0"));
	ASSERT_EQ(src.path_mtu, 1024);
	ASSERT_EQ(src.vlan, 0);
	doc = rd_mgmt(&h, "rdma.device.vmknic.list", "", 1000);
	row = json_array_get(json_object_get(doc, "vmknics"), 0);
	ASSERT(!strcmp(rd_str(row, "ipv4"), "192.168.50.1/24"));
	ASSERT(json_is_true(json_object_get(row, "roce_usable")));
	ASSERT(json_is_null(json_object_get(row, "roce_why")));
	json_decref(doc);
	/* One adapter, one device. */
	rd_refused(&h, "rdma.device.vmknic.bind", "device=vmrdma1\nnic=vmkt1", 0, EBUSY,
		   "vmkt1 is bound to vmrdma0 already");

	/* Read again, as a restarted daemon would. */
	rd_free(&h);
	ASSERT_OK(rd_load(&h, NULL, path, &e));
	ASSERT(!strcmp(rdma_dev_find(&h.devs, "vmrdma0")->vmknic, "vmkt1"));

	/* Unbound: the line goes, and the file is what it was. */
	doc = rd_mgmt(&h, "rdma.device.vmknic.unbind", "device=vmrdma0", 0);
	ASSERT(json_is_null(json_object_get(doc, "vmknic")));
	ASSERT(!strcmp(rd_str(doc, "previous"), "vmkt1"));
	json_decref(doc);
	ASSERT(!strcmp(rd_read(path), RD_FILE));

	/* A file that no longer has the device: refused, nothing changed. */
	rd_write(path, RD_SWITCHES);
	rd_refused(&h, "rdma.device.vmknic.bind", "device=vmrdma0\nnic=vmkt1", 0, ENOENT,
		   "no longer has an rdmaN group for vmrdma0 (the binding is unchanged)");
	ASSERT(!strcmp(rdma_dev_find(&h.devs, "vmrdma0")->vmknic, ""));
	ASSERT(!strcmp(rd_read(path), RD_SWITCHES));
	rd_free(&h);

	/* The built-in configuration: in memory only, and said so. */
	ASSERT_OK(rd_load(&h, RD_FILE, NULL, &e));
	doc = rd_mgmt(&h, "rdma.device.vmknic.bind", "device=vmrdma0\nnic=vmkt1", 0);
	ASSERT(!strcmp(rd_str(doc, "kept_in"),
		       "memory, until vmfabricd restarts (built-in configuration)"));
	json_decref(doc);
	ASSERT(!strcmp(rdma_dev_find(&h.devs, "vmrdma0")->vmknic, "vmkt1"));
	doc = rd_mgmt(&h, "rdma.device.list", "", 0);
	ASSERT(json_is_null(json_object_get(doc, "config_file")));
	json_decref(doc);
	rd_free(&h);
	ASSERT(!strcmp(rd_read(path), RD_SWITCHES));
	snprintf(want, sizeof(want), "rm -rf %s", dir);
	ASSERT_EQ(system(want), 0);
}

/* ---------------------------------------------------------------------- */
/* Through the daemon and the CLI */

static int
rd_sh(const char *cmd)
{
	int r = system(cmd);

	return WIFEXITED(r) ? WEXITSTATUS(r) : -1;
}

static int
rd_cli(const char *sock, char *out, size_t len, const char *args)
{
	char cmd[1024];
	int rc;

	snprintf(cmd, sizeof(cmd), "%s --socket %s %s 2>&1", VMFABRIC_CLI_PATH, sock, args);
	rc = td_run(cmd, out, len);
	th_log("vmfabric %s (%d):\n%s", args, rc, out);
	return rc;
}

#define RD_CLI_CONFIG                                                                              \
	TD_CONTEXTS                                                                                \
	"vmfabricd.mgmt_group = \"65534\"\n"                                                       \
	"# the host\n"                                                                             \
	"vswitch0.name = \"vSwitch0\"\n"                                                           \
	"vswitch1.name = \"vSwitch1\"\n"                                                           \
	"portgroup0.name = \"VM Network\"\n"                                                       \
	"portgroup1.name = \"Other\"\nportgroup1.vswitch = \"vSwitch1\"\n"                         \
	"uplink0.name = \"vmnic1\"\nuplink0.device = \"vmft-rd0\"\n"                               \
	"vmk0.name = \"vmft-rk1\"\nvmk0.portgroup = \"VM Network\"\n"                              \
	"vmk0.ip = \"10.218.0.1/24\"\n"                                                            \
	"vmk1.name = \"vmft-rk2\"\nvmk1.portgroup = \"Other\"\nvmk1.ip = \"10.219.0.1/24\"\n"      \
	"vmk2.name = \"vmft-rk3\"\nvmk2.portgroup = \"VM Network\"\n"                              \
	"\n"                                                                                       \
	"# RDMA\n"                                                                                 \
	"rdma0.name = \"vmrdma0\"\n"                                                               \
	"rdma0.uplink = \"vmnic1\"   # the paired uplink\n"                                        \
	"rdma0.description = \"Test adapter\"\n"

/* vmfabric rdma ...: tables, JSON, refusals, MTU, uplink state, a restart. */
TEST(rdmadev_cli)
{
	char out[8192], want[4096];
	struct tdaemon d;
	json_t *doc, *row;
	const char *at;

	if (geteuid() != 0)
		SKIP("needs root (an uplink on a veth pair and TAP adapters)");
	if (rd_sh("command -v ip >/dev/null 2>&1"))
		SKIP("no ip command (iproute2)");
	if (access("/dev/net/tun", R_OK | W_OK))
		SKIP("no /dev/net/tun");
	(void)rd_sh("ip link del vmft-rd0 2>/dev/null");
	ASSERT_EQ(rd_sh("ip link add vmft-rd0 type veth peer name vmft-rd1 && "
			"ip link set dev vmft-rd0 up && ip link set dev vmft-rd1 up"),
		  0);
	td_start(&d, RD_CLI_CONFIG);

	ASSERT_EQ(rd_cli(d.sock, out, sizeof(out), "rdma device list"), 0);
	ASSERT(strstr(out,
		      "NAME     DRIVER    STATE   SPEED    PAIRED_UPLINK   MTU  DESCRIPTION\n"
		      "vmrdma0  vmfabric  Active  10 Gbps  vmnic1         1024  Test adapter\n"));
	ASSERT_EQ(rd_cli(d.sock, out, sizeof(out), "rdma device list --format=json"), 0);
	doc = json_loads(out, 0, NULL);
	ASSERT(doc);
	row = json_array_get(json_object_get(doc, "devices"), 0);
	ASSERT(!strcmp(rd_str(row, "uplink_device"), "vmft-rd0"));
	ASSERT_EQ(json_integer_value(json_object_get(row, "speed_mbps")), 10000);
	ASSERT(!strcmp(rd_str(doc, "config_file"), d.conf));
	json_decref(doc);
	ASSERT_EQ(rd_cli(d.sock, out, sizeof(out), "rdma device vmknic list"), 0);
	ASSERT(strstr(out, "vmrdma0  vmnic1  vSwitch0  -       -     -     not bound to a "
			   "VMkernel adapter\n"));

	/* Refused: another switch's adapter, a user that is not root. */
	ASSERT_EQ(rd_cli(d.sock, out, sizeof(out),
			 "rdma device vmknic bind --device=vmrdma0 --nic=vmft-rk2"),
		  1);
	ASSERT(strstr(out, "vmft-rk2 is on vSwitch1, but vmrdma0's paired uplink vmnic1 is on "
			   "vSwitch0"));
	/* nobody is in the management group: it may list, not bind. */
	if (!rd_sh("command -v setpriv >/dev/null 2>&1")) {
		char cmd[512];

		snprintf(cmd, sizeof(cmd),
			 "setpriv --reuid=65534 --regid=65534 --clear-groups %s --socket %s rdma "
			 "device vmknic bind --device=vmrdma0 --nic=vmft-rk1 2>&1",
			 VMFABRIC_CLI_PATH, d.sock);
		ASSERT_EQ(td_run(cmd, out, sizeof(out)), 1);
		th_log("%s", out);
		ASSERT(strstr(out, "binding and unbinding RDMA devices needs root"));
	}
	/* An adapter without an address: bound, not usable, and why. */
	ASSERT_EQ(rd_cli(d.sock, out, sizeof(out),
			 "rdma device vmknic bind --device=vmrdma0 --nic=vmft-rk3"),
		  0);
	ASSERT(strstr(out, "roce_why:    vmft-rk3 has no IP address"));
	ASSERT_EQ(rd_cli(d.sock, out, sizeof(out), "rdma device vmknic list"), 0);
	ASSERT(strstr(out, "vmrdma0  vmnic1  vSwitch0  vmft-rk3  -     -     vmft-rk3 has no IP "
			   "address\n"));
	/* The one with an address (and an IPv6 one added by hand): usable. */
	ASSERT_EQ(rd_sh("ip -6 addr add fd00:218::1/64 dev vmft-rk1 nodad"), 0);
	ASSERT_EQ(rd_cli(d.sock, out, sizeof(out),
			 "rdma device vmknic bind --device=vmrdma0 --nic=vmft-rk1"),
		  0);
	ASSERT(strstr(out, "previous:    vmft-rk3"));
	ASSERT(strstr(out, "kept_in:     "));
	ASSERT(strstr(out, d.conf));
	ASSERT_EQ(rd_cli(d.sock, out, sizeof(out), "rdma device vmknic list"), 0);
	ASSERT(strstr(out, "vmrdma0  vmnic1  vSwitch0  vmft-rk1  10.218.0.1/24  fd00:218::1/64  "
			   "yes\n"));
	at = strstr(RD_CLI_CONFIG, "rdma0.description");
	at = strchr(at, '\n') + 1;
	snprintf(want, sizeof(want), "%.*srdma0.vmknic = \"vmft-rk1\"\n%s",
		 (int)(at - RD_CLI_CONFIG), RD_CLI_CONFIG, at);
	ASSERT(!strcmp(rd_read(d.conf), want));

	/* Jumbo frames: the switch, the uplink and the adapter at 9000 give 4096. */
	ASSERT_EQ(rd_cli(d.sock, out, sizeof(out),
			 "network vswitch standard set --vswitch-name=vSwitch0 --mtu=9000"),
		  0);
	ASSERT_EQ(rd_sh("ip link set dev vmft-rd0 mtu 9000"), 0);
	ASSERT_EQ(rd_cli(d.sock, out, sizeof(out), "rdma device list"), 0);
	ASSERT(strstr(out, "vmnic1         1024  Test adapter")); /* the adapter's 1500 */
	ASSERT_EQ(rd_sh("ip link set dev vmft-rk1 mtu 9000"), 0);
	ASSERT_EQ(rd_cli(d.sock, out, sizeof(out), "rdma device list"), 0);
	ASSERT(strstr(out, "vmnic1         4096  Test adapter"));

	/* The uplink loses its carrier: Down, and not usable. */
	ASSERT_EQ(rd_sh("ip link set dev vmft-rd1 down"), 0);
	ASSERT_EQ(rd_cli(d.sock, out, sizeof(out), "rdma device list"), 0);
	ASSERT(strstr(out, "vmrdma0  vmfabric  Down "));
	ASSERT_EQ(rd_cli(d.sock, out, sizeof(out), "rdma device vmknic list --format=json"), 0);
	ASSERT(strstr(out, "\"roce_why\": \"uplink down (vmnic1)\""));
	ASSERT_EQ(rd_sh("ip link set dev vmft-rd1 up"), 0);

	/* Kept across a restart; then unbound, and the file is as it was. */
	td_stop(&d);
	td_restart(&d);
	ASSERT_EQ(rd_cli(d.sock, out, sizeof(out), "rdma device vmknic list"), 0);
	ASSERT(strstr(out, "vmrdma0  vmnic1  vSwitch0  vmft-rk1  10.218.0.1/24  -     yes\n"));
	ASSERT_EQ(rd_cli(d.sock, out, sizeof(out), "rdma device vmknic unbind --device=vmrdma0"),
		  0);
	ASSERT(!strcmp(rd_read(d.conf), RD_CLI_CONFIG));
	ASSERT_EQ(rd_cli(d.sock, out, sizeof(out), "rdma device vmknic unbind --device=vmrdma0"),
		  1);
	ASSERT(strstr(out, "vmrdma0 is not bound to a VMkernel adapter"));
	ASSERT_EQ(rd_cli(d.sock, out, sizeof(out), "rdma device vmknic unbind --nic=vmft-rk1"), 2);
	td_stop(&d);
	td_cleanup(&d);
	(void)rd_sh("ip link del vmft-rd0");
}

/*
 * The built-in configuration pairs vmrdma0 with make run's uplink; without
 * that interface the daemon starts, the uplink left out, the device down.
 */
TEST(rdmadev_builtin)
{
	char dir[] = "/tmp/vmf-rdmadev-XXXXXX", sock[96], cmd[512], out[4096];
	pid_t pid;
	int st;

	snprintf(cmd, sizeof(cmd), "%s --print-default-config", VMFABRICD_PATH);
	ASSERT_EQ(td_run(cmd, out, sizeof(out)), 0);
	ASSERT(strstr(out, "\nrdma0.uplink = \"vmnic1\"\n"));
	ASSERT(strstr(out, "\nuplink0.device = \"vmfdemo0\"\n"));
	if (if_nametoindex("vmfdemo0")) {
		th_log("vmfdemo0 exists (make run is running): not starting the daemon");
		return;
	}
	ASSERT(mkdtemp(dir));
	snprintf(sock, sizeof(sock), "%s/vmfabricd.sock", dir);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		execl(VMFABRICD_PATH, "vmfabricd", "-s", sock, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 500; i++) { /* until it answers */
		if (!access(sock, F_OK) &&
		    !rd_cli(sock, out, sizeof(out), "rdma device list --format=json"))
			break;
		usleep(10000);
	}
	ASSERT_EQ(rd_cli(sock, out, sizeof(out), "rdma device list --format=json"), 0);
	ASSERT(strstr(out, "\"name\": \"vmrdma0\""));
	ASSERT(strstr(out, "\"state\": \"down\""));
	ASSERT(strstr(out, "\"roce_why\": \"paired uplink vmnic1 does not exist\""));
	ASSERT(strstr(out, "\"config_file\": null"));
	ASSERT_EQ(rd_cli(sock, out, sizeof(out), "network nic list --format=json"), 0);
	ASSERT(!strstr(out, "vmnic1"));
	kill(pid, SIGTERM);
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ASSERT_EQ(system(cmd), 0);
}
