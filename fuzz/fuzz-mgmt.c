/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: management requests (a command name and its argument
 * string, as struct wire_mgmt carries them) as broker_mgmt() parses and
 * carries them out: the broker's own listings, the switches' listings and
 * changes (vsw_dp_mgmt: "key=value" lines), the RDMA devices' listings,
 * bindings and unbindings (rdma_dev_mgmt). fuzz-wire reaches MGMT messages
 * too, but with arguments that almost never parse; here arguments are made
 * of the keys and of names the configuration has, of values at and past
 * every bound, and of raw bytes, as root or another user.
 *
 * The host is a configuration loaded as the daemon loads it, with its
 * dataplane never started: nothing touches the host's network. For that
 * reason network.vmk.add (which makes a TAP interface) is never sent, and
 * the configuration has no VMkernel adapter (so network.vmk.ipv4 never
 * finds one to set an address on). vm.* requests belong to the VM manager
 * (mgmt_ext), absent here: they compare their argument with VM names only.
 *
 * Checked after each request: an answer is 0 with a JSON object (a change
 * refused says why in "error" and "errno") or an errno of the documented
 * ones; a change by a user other than root is refused with EPERM; and the
 * host stays consistent (host.h: names unique and printable, port groups
 * on switches that exist, RDMA devices on uplinks that exist; after every
 * change and at the end, every listing showing every object). Then
 * everything is freed (descriptors counted, memory: LeakSanitizer).
 *
 * Input: requests { u8 command, u8 mode, operands } (see request()).
 */
#include "common/log.h"
#include "host.h"

static const char host_cfg[] = "context0.name = \"a\"\n"
			       "context0.vmci0.present = \"TRUE\"\n"
			       "context1.name = \"b\"\n"
			       "context1.vmci0.id = \"9\"\n"
			       "vswitch0.name = \"vSwitch0\"\n"
			       "vswitch1.name = \"vSwitch1\"\n"
			       "vswitch1.mtu = \"9000\"\n"
			       "vswitch1.vmq = \"FALSE\"\n"
			       "portgroup0.name = \"VM Network\"\n"
			       "portgroup0.vswitch = \"vSwitch0\"\n"
			       "portgroup1.name = \"Storage\"\n"
			       "portgroup1.vswitch = \"vSwitch1\"\n"
			       "portgroup1.vlan = \"4095\"\n"
			       "uplink0.name = \"vmnic1\"\n"
			       "uplink0.device = \"fzeth1\"\n"
			       "uplink0.vswitch = \"vSwitch1\"\n"
			       "uplink1.name = \"vmnic2\"\n"
			       "uplink1.device = \"fzeth2\"\n"
			       "vhostuser0.path = \"vhu0.sock\"\n"
			       "vhostuser0.portgroup = \"VM Network\"\n"
			       "rdma0.uplink = \"vmnic1\"\n"
			       "rdma1.uplink = \"vmnic2\"\n"
			       "rdma1.vmknic = \"vmk1\"\n";

static const char *const cmds[] = {
	"vmci.context.list",	   "vmci.socket.list",		"system.status",
	"network.vswitch.list",	   "network.portgroup.list",	"network.port.list",
	"network.nic.list",	   "network.vmk.list",		"network.vswitch.add",
	"network.vswitch.remove",  "network.vswitch.set",	"network.portgroup.add",
	"network.portgroup.remove", "network.portgroup.set",	"network.vmk.remove",
	"network.vmk.ipv4",	   "rdma.device.list",		"rdma.device.vmknic.list",
	"rdma.device.vmknic.bind", "rdma.device.vmknic.unbind", "rdma.stats",
	"vm.list",		   "network.",			"rdma.device.",
};
#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

static const char *const keys[] = { "vswitch",	 "portgroup", "vlan",	"mtu", "vmq",
				    "interface", "ipv4",      "device", "nic" };
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static const char *const vals[] = {
	"vSwitch0", "vSwitch1", "VM Network", "Storage", "pg2", "vmnic1", "vmnic2", "vmrdma0",
	"vmrdma1",  "vmk1",	"0",	      "1",	 "4094", "4095",  "4096",   "68",
	"67",	    "9000",	"9001",	      "-1",	 "on",	 "off",	  "TRUE",   "",
	"1.2.3.4/24", "a,b",	"0123456789012345678901234567890", "01234567890123456789012345678901",
};
#define NVALS (sizeof(vals) / sizeof(vals[0]))

struct fzm {
	struct fz in;
	struct vmci_broker *b;
	char cmd[64], arg[192];
};

static unsigned
take1(struct fzm *w)
{
	return (unsigned)fz_take(&w->in, 1);
}

/* Up to @max - 1 raw bytes (NUL-terminated; a NUL in them ends the string early). */
static void
take_str(struct fzm *w, char *dst, size_t max, size_t *off)
{
	size_t n = take1(w) % 48;

	for (size_t i = 0; i < n && *off + 1 < max; i++)
		dst[(*off)++] = (char)take1(w);
	dst[*off] = 0;
}

/* "key=value" lines: keys and values from the lists above, or raw bytes. */
static void
make_arg(struct fzm *w, unsigned mode)
{
	size_t off = 0;

	w->arg[0] = 0;
	if (mode & 0x40) { /* all raw */
		take_str(w, w->arg, sizeof(w->arg), &off);
		return;
	}
	for (unsigned i = 0; i < 1 + (mode & 3); i++) {
		unsigned k = take1(w), v = take1(w);
		int n;

		if (k % (NKEYS + 1) == NKEYS)
			take_str(w, w->arg, sizeof(w->arg), &off);
		else
			off += (size_t)snprintf(w->arg + off, sizeof(w->arg) - off, "%s",
						keys[k % (NKEYS + 1)]);
		if (off + 1 >= sizeof(w->arg))
			break;
		w->arg[off++] = '=';
		if (v % (NVALS + 1) == NVALS)
			take_str(w, w->arg, sizeof(w->arg), &off);
		else if ((n = snprintf(w->arg + off, sizeof(w->arg) - off, "%s",
				       vals[v % (NVALS + 1)])) > 0)
			off += (size_t)n;
		if (off + 1 >= sizeof(w->arg))
			break;
		if (!(k & 0x80))
			w->arg[off++] = '\n';
		w->arg[off] = 0;
	}
	w->arg[sizeof(w->arg) - 1] = 0;
}

static bool
is_change(const char *cmd)
{
	static const char *const verbs[] = { ".add", ".remove", ".set", ".ipv4", ".bind", ".unbind" };
	size_t n = strlen(cmd);

	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		size_t v = strlen(verbs[i]);

		if (n > v && !strcmp(cmd + n - v, verbs[i]))
			return true;
	}
	return false;
}

static void
check_answer(int r, const char *out, const char *cmd, uid_t uid)
{
	json_error_t je;
	json_t *doc, *e;

	FZ_CHECK(r == 0 || r == -EOPNOTSUPP || r == -EPERM || r == -EINVAL || r == -ENOENT);
	if (r == -EPERM)
		FZ_CHECK(uid != 0);
	if (r)
		return;
	FZ_CHECK(out && (doc = json_loads(out, 0, &je)) && json_is_object(doc));
	e = json_object_get(doc, "error");
	FZ_CHECK(!e || (json_is_string(e) && json_string_length(e) > 0 &&
			json_integer_value(json_object_get(doc, "errno")) > 0));
	if (uid != 0 && is_change(cmd)) /* refused, and said so */
		FZ_CHECK(e && json_integer_value(json_object_get(doc, "errno")) == EPERM);
	json_decref(doc);
}

static void
request(struct fzm *w)
{
	unsigned c = take1(w), mode = take1(w);
	uid_t uid = mode & 0x80 ? 1000 : 0;
	struct broker_mgmt_req r = { .cmd = w->cmd, .arg = w->arg, .uid = uid, .fd = -1 };
	char *out = NULL;
	size_t off = 0;
	int ret;

	if (c % (NCMDS + 1) == NCMDS)
		take_str(w, w->cmd, sizeof(w->cmd), &off);
	else
		snprintf(w->cmd, sizeof(w->cmd), "%s", cmds[c % (NCMDS + 1)]);
	make_arg(w, mode);
	if (!strcmp(w->cmd, "network.vmk.add"))
		return; /* a TAP interface on this host: not from a fuzzer */
	ret = broker_mgmt(w->b, &r, &out);
	if (getenv("FUZZ_MGMT_TRACE")) /* what an input does, for whoever grows the corpus by hand */
		fprintf(stderr, "%s [%s] uid %u: %d %.200s\n", w->cmd, w->arg, (unsigned)uid, ret,
			ret ? "" : out);
	check_answer(ret, out, w->cmd, uid);
	free(out);
	check_dp(&w->b->dp);
	check_rdma(&w->b->rdma_devs, &w->b->dp);
	if (is_change(w->cmd)) /* the listings after every change (they cost most of a run) */
		check_lists(w->b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fzm w = { .in = { data, size } };
	int fds_before = fz_count_fds();
	struct conf_error e;
	struct conf *c;

	log_set_level(getenv("FUZZ_DEBUG") ? LOG_LVL_DEBUG : LOG_LVL_ERR);
	w.b = calloc(1, sizeof(*w.b));
	FZ_CHECK(w.b != NULL);
	snprintf(w.b->path, sizeof(w.b->path), "vmfabric.sock");
	FZ_CHECK(conf_parse("host.cfg", host_cfg, sizeof(host_cfg) - 1, &c, &e) == 0);
	FZ_CHECK(vmci_reg_init(&w.b->reg) == 0 && vmci_reg_load(&w.b->reg, c, &e) == 0);
	FZ_CHECK(vsw_dp_load(&w.b->dp, c, &e) == 0);
	FZ_CHECK(rdma_devs_load(&w.b->rdma_devs, c, &w.b->dp, NULL, &e) == 0);
	conf_free(c);
	for (int i = 0; i < 64 && w.in.n; i++)
		request(&w);
	check_lists(w.b);
	vsw_dp_stop(&w.b->dp);
	rdma_devs_free(&w.b->rdma_devs);
	vmci_reg_free(&w.b->reg);
	free(w.b);
	FZ_CHECK(fz_count_fds() == fds_before); /* a descriptor leaked */
	return 0;
}
