/* SPDX-License-Identifier: MIT */
/*
 * The commands of vmfabric: the namespace and command tables main.c
 * dispatches through and prints help from, and one small handler per
 * command. A listing handler only names the daemon's array and its
 * columns; cli_list() does the asking and the printing.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

const struct cli_ns cli_nss[] = {
	{ "system", "the daemon itself", "system status" },
	{ "vmci", "VMCI contexts and sockets", "vmci context list" },
	{ "vmci context", "VMCI contexts (the host, host processes, VMs)", "vmci context list" },
	{ "vmci socket", "VMCI sockets and their traffic", "vmci socket list --format=json" },
	{ "vm", "virtual machines: start from a .vmx file, list, console, stop",
	  "vm start examples/demo-a.vmx" },
	{ "network", "virtual switches, port groups and ports", "network vswitch standard list" },
	{ "network vswitch", "virtual switches", "network vswitch standard list" },
	{ "network vswitch standard", "standard switches (vSwitch0 ...)",
	  "network vswitch standard list" },
	{ "network vswitch standard portgroup", "port groups and their VLAN",
	  "network vswitch standard portgroup list" },
	{ "network port", "switch ports and their traffic", "network port list" },
	{ "network ip", "the host's IP interfaces on the switches", "network ip interface list" },
	{ "network ip interface", "VMkernel adapters (vmkN)", "network ip interface list" },
	{ "network ip interface ipv4", "a VMkernel adapter's IPv4 address",
	  "network ip interface ipv4 set --interface-name=vmk1 --ipv4=192.168.50.1/24" },
	{ "network nic", "physical NICs: the host interfaces uplinks use", "network nic list" },
	{ "rdma", "RDMA devices (RoCE v2)", "rdma device list" },
	{ "rdma device", "RDMA devices (vmrdmaN) and their paired uplinks", "rdma device list" },
	{ "rdma device vmknic", "the VMkernel adapters RDMA devices are bound to",
	  "rdma device vmknic list" },
};
const size_t cli_nnss = ARRAY_SIZE(cli_nss);

/* Ask for @cx's command and print the array @key of the reply. */
static int
cli_list(const struct cli_ctx *cx, const struct cli_cmd *cmd, const char *key,
	 const struct table_col *cols, size_t ncols)
{
	json_t *doc, *rows;
	int err;

	err = cli_call(cx, cmd->wire, "", &doc);
	if (err)
		return err;
	rows = json_object_get(doc, key);
	if (cx->format == CLI_FMT_JSON) {
		err = json_print(stdout, doc);
	} else if (!json_is_array(rows)) {
		cli_error(cx, "vmfabricd's reply has no \"%s\" list", key);
		err = -EPROTO;
	} else {
		err = table_print(stdout, rows, cols, ncols);
	}
	json_decref(doc);
	return err;
}

/* on: a VMCI device; host-only: one restricted to talking to the host. */
static void
ctx_vmci(json_t *row, char *buf, size_t size)
{
	bool present, restricted;

	if (!json_get_bool(row, "present", &present))
		snprintf(buf, size, "-");
	else if (!present)
		snprintf(buf, size, "off");
	else if (!json_get_bool(row, "restricted", &restricted))
		snprintf(buf, size, "-");
	else
		snprintf(buf, size, "%s", restricted ? "host-only" : "on");
}

static void
ctx_owner(json_t *row, char *buf, size_t size)
{
	long long uid, gid;
	bool has_uid = json_get_int(row, "uid", &uid);
	bool has_gid = json_get_int(row, "gid", &gid);

	if (has_uid && has_gid)
		snprintf(buf, size, "uid=%lld gid=%lld", uid, gid);
	else if (has_uid)
		snprintf(buf, size, "uid=%lld", uid);
	else if (has_gid)
		snprintf(buf, size, "gid=%lld", gid);
	else
		snprintf(buf, size, "-");
}

/* One quota as used/limit ("limits" in the JSON). */
static void
ctx_quota(json_t *row, const char *key, char *buf, size_t size)
{
	json_t *q = json_object_get(json_object_get(row, "limits"), key);
	long long used, limit;

	if (json_get_int(q, "used", &used) && json_get_int(q, "limit", &limit))
		snprintf(buf, size, "%lld/%lld", used, limit);
	else
		snprintf(buf, size, "-");
}

static void
ctx_sockets(json_t *row, char *buf, size_t size)
{
	ctx_quota(row, "sockets", buf, size);
}

static void
ctx_ports(json_t *row, char *buf, size_t size)
{
	ctx_quota(row, "ports", buf, size);
}

static int
cmd_context_list(const struct cli_ctx *cx, const struct cli_cmd *cmd)
{
	static const struct table_col cols[] = {
		{ "CID", "cid", COL_INT, NULL },
		{ "NAME", "name", COL_STR, NULL },
		{ "KIND", "kind", COL_STR, NULL },
		{ "VMCI", NULL, COL_FN, ctx_vmci },
		{ "ASSIGNED", "assigned", COL_YESNO, NULL },
		{ "OWNER", NULL, COL_FN, ctx_owner },
		{ "CONNECTIONS", "connections", COL_INT, NULL },
		{ "SOCKETS", NULL, COL_FN, ctx_sockets },
		{ "PORTS", NULL, COL_FN, ctx_ports },
		{ "REFUSED", "refused", COL_INT, NULL },
	};

	return cli_list(cx, cmd, "contexts", cols, ARRAY_SIZE(cols));
}

static int
cmd_socket_list(const struct cli_ctx *cx, const struct cli_cmd *cmd)
{
	static const struct table_col cols[] = {
		{ "ID", "id", COL_INT, NULL },
		{ "TYPE", "type", COL_STR, NULL },
		{ "STATE", "state", COL_STR, NULL },
		{ "LOCAL", "local", COL_ADDR, NULL },	   /* cid:port */
		{ "PEER", "peer", COL_ADDR, NULL },	   /* cid:port, or - */
		{ "QUEUE", "queue_bytes", COL_KIB, NULL }, /* per direction */
		{ "TX", "tx_bytes", COL_BYTES, NULL },
		{ "RX", "rx_bytes", COL_BYTES, NULL },
		{ "DROPS", "drops", COL_INT, NULL },
		{ "PID", "pid", COL_INT, NULL },
	};

	return cli_list(cx, cmd, "sockets", cols, ARRAY_SIZE(cols));
}

static int
cmd_system_status(const struct cli_ctx *cx, const struct cli_cmd *cmd)
{
	json_t *doc;
	int err;

	err = cli_call(cx, cmd->wire, "", &doc);
	if (err)
		return err;
	if (cx->format == CLI_FMT_JSON)
		err = json_print(stdout, doc);
	else
		err = kv_print(stdout, doc);
	json_decref(doc);
	return err;
}

/* A reply that says {"error": …} is a refusal with the daemon's reason. */
static int
refused(const struct cli_ctx *cx, json_t *doc)
{
	json_t *e = json_object_get(doc, "error");
	long long no = 0;

	if (!json_is_string(e))
		return 0;
	json_get_int(doc, "errno", &no);
	cli_error(cx, "%s", json_string_value(e));
	return no > 0 ? -(int)no : -EINVAL;
}

static int
print_doc(const struct cli_ctx *cx, json_t *doc)
{
	int err = refused(cx, doc);

	if (!err)
		err = cx->format == CLI_FMT_JSON ? json_print(stdout, doc) : kv_print(stdout, doc);
	json_decref(doc);
	return err;
}

static int
cmd_vm_start(const struct cli_ctx *cx, const struct cli_cmd *cmd)
{
	char path[PATH_MAX];
	json_t *doc;
	int fd, err;

	/* The daemon reads the file through our descriptor: what we may read. */
	fd = open(cx->arg, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || !realpath(cx->arg, path)) {
		err = -errno;
		cli_error(cx, "%s: %s", cx->arg, strerror(errno));
		if (fd >= 0)
			close(fd);
		return err;
	}
	err = cli_call_fd(cx, cmd->wire, path, fd, &doc);
	close(fd);
	return err ? err : print_doc(cx, doc);
}

static int
cmd_vm_arg(const struct cli_ctx *cx, const struct cli_cmd *cmd)
{
	json_t *doc;
	int err = cli_call(cx, cmd->wire, cx->arg, &doc);

	return err ? err : print_doc(cx, doc);
}

static int
cmd_vm_console(const struct cli_ctx *cx, const struct cli_cmd *cmd)
{
	json_t *doc, *text;
	int err = cli_call(cx, cmd->wire, cx->arg, &doc);

	if (err)
		return err;
	text = json_object_get(doc, "text");
	if (cx->format == CLI_FMT_JSON)
		err = json_print(stdout, doc);
	else if (json_is_string(text))
		fwrite(json_string_value(text), 1, json_string_length(text), stdout);
	json_decref(doc);
	return err;
}

static void
vm_vsock(json_t *row, char *buf, size_t size)
{
	json_t *v = json_object_get(row, "vsock");
	long long conns;
	bool up;

	if (!json_is_object(v))
		snprintf(buf, size, "off");
	else if (!json_get_bool(v, "connected", &up) || !up)
		snprintf(buf, size, "waiting");
	else if (json_get_int(v, "conns", &conns))
		snprintf(buf, size, "%lld conns", conns);
	else
		snprintf(buf, size, "-");
}

static int
cmd_vm_list(const struct cli_ctx *cx, const struct cli_cmd *cmd)
{
	static const struct table_col cols[] = {
		{ "NAME", "name", COL_STR, NULL },    { "CID", "cid", COL_INT, NULL },
		{ "PID", "pid", COL_INT, NULL },      { "ACCEL", "accel", COL_STR, NULL },
		{ "MEM_MIB", "memsize_mib", COL_INT, NULL },
		{ "VCPUS", "vcpus", COL_INT, NULL },  { "VMCI", NULL, COL_FN, vm_vsock },
		{ "VMX", "vmx", COL_STR, NULL },
	};

	return cli_list(cx, cmd, "vms", cols, ARRAY_SIZE(cols));
}

static int
cmd_vswitch_list(const struct cli_ctx *cx, const struct cli_cmd *cmd)
{
	static const struct table_col cols[] = {
		{ "NAME", "name", COL_STR, NULL },	 { "MTU", "mtu", COL_INT, NULL },
		{ "VMQ", "vmq", COL_STR, NULL },	 { "PORTS", "ports", COL_INT, NULL },
		{ "FDB", "fdb_entries", COL_INT, NULL }, { "FORWARDED", "forwarded", COL_INT, NULL },
		{ "FLOODED", "flooded", COL_INT, NULL },
	};

	return cli_list(cx, cmd, "vswitches", cols, ARRAY_SIZE(cols));
}

static int
cmd_portgroup_list(const struct cli_ctx *cx, const struct cli_cmd *cmd)
{
	static const struct table_col cols[] = {
		{ "NAME", "name", COL_STR, NULL },
		{ "VSWITCH", "vswitch", COL_STR, NULL },
		{ "VLAN", "vlan_id", COL_INT, NULL },
		{ "PORTS", "ports", COL_INT, NULL },
	};

	return cli_list(cx, cmd, "portgroups", cols, ARRAY_SIZE(cols));
}

static int
cmd_nic_list(const struct cli_ctx *cx, const struct cli_cmd *cmd)
{
	static const struct table_col cols[] = {
		{ "NAME", "name", COL_STR, NULL },    { "DEVICE", "device", COL_STR, NULL },
		{ "VSWITCH", "vswitch", COL_STR, NULL }, { "ADMIN", "admin", COL_STR, NULL },
		{ "LINK", "link", COL_STR, NULL },    { "MTU", "mtu", COL_INT, NULL },
		{ "MAC", "mac", COL_STR, NULL },
	};

	return cli_list(cx, cmd, "nics", cols, ARRAY_SIZE(cols));
}

static int
cmd_vmk_list(const struct cli_ctx *cx, const struct cli_cmd *cmd)
{
	static const struct table_col cols[] = {
		{ "NAME", "name", COL_STR, NULL },	     { "PORTGROUP", "portgroup", COL_STR, NULL },
		{ "VSWITCH", "vswitch", COL_STR, NULL },     { "IPV4", "ip", COL_STR, NULL },
		{ "MAC", "mac", COL_STR, NULL },	     { "RX_PKTS", "rx_packets", COL_INT, NULL },
		{ "TX_PKTS", "tx_packets", COL_INT, NULL },
	};

	return cli_list(cx, cmd, "interfaces", cols, ARRAY_SIZE(cols));
}

static int
cmd_port_list(const struct cli_ctx *cx, const struct cli_cmd *cmd)
{
	static const struct table_col cols[] = {
		{ "NAME", "name", COL_STR, NULL },	     { "KIND", "kind", COL_STR, NULL },
		{ "PORTGROUP", "portgroup", COL_STR, NULL }, { "VLAN", "vlan_id", COL_INT, NULL },
		{ "MAC", "mac", COL_STR, NULL },	     { "RX_PKTS", "rx_packets", COL_INT, NULL },
		{ "TX_PKTS", "tx_packets", COL_INT, NULL },   { "RX", "rx_bytes", COL_BYTES, NULL },
		{ "TX", "tx_bytes", COL_BYTES, NULL },	     { "DROPS", "drops", COL_INT, NULL },
		{ "PID", "pid", COL_INT, NULL },
	};

	return cli_list(cx, cmd, "ports", cols, ARRAY_SIZE(cols));
}

/* One port's counters as lines: traffic, drops by reason, its queues. */
static void
port_stats_print(json_t *p)
{
	const char *name = json_string_value(json_object_get(p, "name"));
	const char *kind = json_string_value(json_object_get(p, "kind"));
	const char *pg = json_string_value(json_object_get(p, "portgroup"));
	json_t *why = json_object_get(p, "drops_by_reason"), *qs = json_object_get(p, "queues"), *v;
	long long n[5] = { 0 }, vlan = 0;
	const char *key;
	bool any = false;
	size_t i;

	json_get_int(p, "rx_packets", &n[0]);
	json_get_int(p, "rx_bytes", &n[1]);
	json_get_int(p, "tx_packets", &n[2]);
	json_get_int(p, "tx_bytes", &n[3]);
	json_get_int(p, "flooded", &n[4]);
	json_get_int(p, "vlan_id", &vlan);
	printf("%s (%s%s%s, VLAN %lld)\n", name ? name : "?", kind ? kind : "?", pg ? ", " : "",
	       pg ? pg : "", vlan);
	printf("  from the port (rx): %lld packets, %lld bytes\n", n[0], n[1]);
	printf("  to the port (tx):   %lld packets, %lld bytes, %lld of them flooded\n", n[2], n[3],
	       n[4]);
	printf("  drops:");
	json_object_foreach(why, key, v) {
		if (json_integer_value(v)) {
			printf(" %s %lld", key, (long long)json_integer_value(v));
			any = true;
		}
	}
	printf("%s\n", any ? "" : " none");
	json_array_foreach(qs, i, v) {
		const char *k;
		json_t *x;

		printf("  queue %s:", json_string_value(json_object_get(v, "queue")));
		json_object_foreach(v, k, x)
			if (strcmp(k, "queue") && json_is_integer(x))
				printf(" %s %lld", k, (long long)json_integer_value(x));
			else if (json_is_boolean(x))
				printf(" %s %s", k, json_is_true(x) ? "yes" : "no");
		printf("\n");
	}
	if (json_get_int(p, "ring_errors", &n[0]) && n[0])
		printf("  rings the guest broke: %lld (last: %s)\n", n[0],
		       json_string_value(json_object_get(p, "ring_error")) ?: "?");
}

/* network port stats [--port P]: every port's counters, or one port's. */
static int
cmd_port_stats(const struct cli_ctx *cx, const struct cli_cmd *cmd)
{
	const char *want = cx->opt[OPT_PORT];
	json_t *doc, *ports, *p, *out;
	size_t i;
	int err = cli_call(cx, cmd->wire, "", &doc);

	if (err)
		return err;
	ports = json_object_get(doc, "ports");
	out = json_array();
	json_array_foreach(ports, i, p) {
		const char *name = json_string_value(json_object_get(p, "name"));

		if (!want || (name && !strcmp(name, want)))
			json_array_append(out, p);
	}
	if (want && !json_array_size(out)) {
		cli_error(cx, "no port named \"%s\" (see network port list)", want);
		json_decref(out);
		json_decref(doc);
		return -ENOENT;
	}
	if (cx->format == CLI_FMT_JSON) {
		json_t *o = json_pack("{s:o}", "ports", out);

		json_print(stdout, o);
		json_decref(o);
	} else {
		json_array_foreach(out, i, p)
			port_stats_print(p);
		json_decref(out);
	}
	json_decref(doc);
	return 0;
}

/* A string field of @row for a cell: controls become '?' (the reply is untrusted). */
static void
cell_str(json_t *row, const char *key, char *buf, size_t size)
{
	json_t *v = json_object_get(row, key);
	size_t n = 0;

	for (const char *s = json_is_string(v) ? json_string_value(v) : "-"; *s && n + 1 < size;
	     s++)
		buf[n++] = (unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s;
	buf[n] = 0;
}

/* ESXi's words: Active when the paired uplink is up, else Down. */
static void
rdma_state(json_t *row, char *buf, size_t size)
{
	json_t *v = json_object_get(row, "state");
	const char *s = json_is_string(v) ? json_string_value(v) : "";

	if (!strcmp(s, "active"))
		snprintf(buf, size, "Active");
	else if (!strcmp(s, "down"))
		snprintf(buf, size, "Down");
	else
		snprintf(buf, size, "-");
}

static void
rdma_speed(json_t *row, char *buf, size_t size)
{
	long long mbps;

	if (!json_get_int(row, "speed_mbps", &mbps) || mbps <= 0)
		snprintf(buf, size, "-");
	else if (mbps % 1000 == 0)
		snprintf(buf, size, "%lld Gbps", mbps / 1000);
	else
		snprintf(buf, size, "%lld Mbps", mbps);
}

/* yes, or why not. */
static void
rdma_usable(json_t *row, char *buf, size_t size)
{
	bool ok;

	if (json_get_bool(row, "roce_usable", &ok) && ok)
		snprintf(buf, size, "yes");
	else
		cell_str(row, "roce_why", buf, size);
}

static int
cmd_rdma_device_list(const struct cli_ctx *cx, const struct cli_cmd *cmd)
{
	static const struct table_col cols[] = {
		{ "NAME", "name", COL_STR, NULL },
		{ "DRIVER", "driver", COL_STR, NULL },
		{ "STATE", NULL, COL_FN, rdma_state },
		{ "SPEED", NULL, COL_FN, rdma_speed },
		{ "PAIRED_UPLINK", "paired_uplink", COL_STR, NULL },
		{ "MTU", "mtu", COL_INT, NULL },
		{ "DESCRIPTION", "description", COL_STR, NULL },
	};

	return cli_list(cx, cmd, "devices", cols, ARRAY_SIZE(cols));
}

static int
cmd_rdma_vmknic_list(const struct cli_ctx *cx, const struct cli_cmd *cmd)
{
	static const struct table_col cols[] = {
		{ "DEVICE", "device", COL_STR, NULL },
		{ "UPLINK", "uplink", COL_STR, NULL },
		{ "VSWITCH", "vswitch", COL_STR, NULL },
		{ "VMKNIC", "vmknic", COL_STR, NULL },
		{ "IPV4", "ipv4", COL_STR, NULL },
		{ "IPV6", "ipv6", COL_STR, NULL },
		{ "USABLE_FOR_ROCE", NULL, COL_FN, rdma_usable },
	};

	return cli_list(cx, cmd, "vmknics", cols, ARRAY_SIZE(cols));
}

const char *const cli_opt_name[OPT_N] = { "--vswitch-name", "--portgroup-name", "--vlan-id",
					   "--mtu",	     "--vmq",		 "--port",
					   "--output",	     "--count",		 "--seconds",
					   "--interface-name", "--ipv4",	 "--device",
					   "--nic",	     "--listen" };
static const char *const opt_key[OPT_N] = { "vswitch", "portgroup", "vlan",	 "mtu",
					    "vmq",     "port",	    "output",	 "count",
					    "seconds", "interface", "ipv4",	 "device",
					    "nic",     "listen" };

/*
 * A change to the switches or to an RDMA device's binding: the options go
 * as "key=value" lines (names may hold spaces); the daemon checks them and
 * says what is wrong.
 */
static int
cmd_network_change(const struct cli_ctx *cx, const struct cli_cmd *cmd)
{
	char arg[192] = "";
	size_t off = 0;
	json_t *doc;
	int err;

	for (int k = 0; k < OPT_N; k++) {
		int n;

		if (!cx->opt[k])
			continue;
		n = snprintf(arg + off, sizeof(arg) - off, "%s%s=%s", off ? "\n" : "", opt_key[k],
			     cx->opt[k]);
		if (n < 0 || (size_t)n >= sizeof(arg) - off) {
			cli_error(cx, "the options are too long");
			return -E2BIG;
		}
		off += (size_t)n;
	}
	err = cli_call(cx, cmd->wire, arg, &doc);
	return err ? err : print_doc(cx, doc);
}

const struct cli_cmd cli_cmds[] = {
	{ "vm", "start", "vm.start", cmd_vm_start, "start a VM from its .vmx file",
	  "Start the VM a .vmx file describes (displayName, memsize, numvcpus, vmci0.present,\n"
	  "vmci0.id, ethernetN.*, and vmfabric.kernel/initrd/append for direct kernel boot;\n"
	  "see examples/README.md). The daemon reads the file through this command, claims\n"
	  "the CID (vmci0.id, or one it assigns), serves the VM's virtio-vsock device when\n"
	  "vmci0.present is TRUE, and launches QEMU. Needs root.",
	  "vm start examples/demo-a.vmx", "FILE.vmx" },
	{ "vm", "stop", "vm.stop", cmd_vm_arg, "stop a VM (by name or CID)",
	  "Stop a running VM: QEMU gets SIGTERM, then SIGKILL after 3 s; its connections are\n"
	  "reset and its CID is free again. Needs root.",
	  "vm stop demo-a", "NAME" },
	{ "vm", "list", "vm.list", cmd_vm_list, "list the running VMs",
	  "List the running VMs: name, CID, QEMU's process id, accelerator (kvm or tcg),\n"
	  "memory, vCPUs, VMCI (off, waiting for QEMU, or open connections) and .vmx file.",
	  "vm list" },
	{ "vm", "console", "vm.console", cmd_vm_console, "print a VM's serial console log",
	  "Print the last 64 KiB of a VM's serial console (its log file is in vm list\n"
	  "--format=json as console_log).",
	  "vm console demo-a", "NAME" },

	{ "system", "status", "system.status", cmd_system_status,
	  "show the daemon's version, uptime, socket and counters",
	  "Show vmfabricd's version, process id, uptime, control socket, configuration\n"
	  "and counters, one \"key: value\" line each; nested values are joined with '.'\n"
	  "(dgram.endpoints).",
	  "system status" },
	{ "system", "metrics", "system.status", cmd_metrics,
	  "every counter in Prometheus' text format, or served over HTTP",
	  "Print the counters of the daemon, its VMCI contexts and sockets, switches,\n"
	  "ports (by drop reason), VMs' vsock devices and RDMA in Prometheus' text\n"
	  "exposition format (--format=json: the listings they come from). With\n"
	  "--listen ADDRESS:PORT, serve them over HTTP at /metrics instead, asking\n"
	  "the daemon anew at each scrape, until interrupted.",
	  "system metrics --listen 127.0.0.1:9464", NULL, 1u << OPT_LISTEN },
	{ "vmci context", "list", "vmci.context.list", cmd_context_list,
	  "list the VMCI contexts: CID, name, kind, owner, connections, quotas",
	  "List the VMCI contexts the daemon knows: the host, host processes and VMs.\n"
	  "VMCI is on, off, or host-only (the context may talk to the host only);\n"
	  "OWNER is the uid and gid a context is restricted to, or -. SOCKETS and\n"
	  "PORTS are in use/limit; REFUSED counts requests refused by any quota\n"
	  "(--format=json has every quota under \"limits\").",
	  "vmci context list" },
	{ "network vswitch standard", "list", "network.vswitch.list", cmd_vswitch_list,
	  "list the standard switches: MTU, VMQ, ports, filter table, traffic",
	  "List the standard switches: MTU, whether VMQ classification is on (frames go\n"
	  "straight into the destination port's queue) or off (through one default queue),\n"
	  "ports, entries in the filter table, frames forwarded to one port and flooded.",
	  "network vswitch standard list" },
	{ "network vswitch standard", "add", "network.vswitch.add", cmd_network_change,
	  "add a standard switch",
	  "Add a standard switch: --vswitch-name (required), --mtu (68-9000, default 1500),\n"
	  "--vmq on|off (default on). Kept until vmfabricd restarts: put it in the host\n"
	  "configuration (vswitchN.*) to keep it. Needs root.",
	  "network vswitch standard add --vswitch-name=vSwitch1 --vmq=off", NULL,
	  1u << OPT_VSWITCH | 1u << OPT_MTU | 1u << OPT_VMQ },
	{ "network vswitch standard", "remove", "network.vswitch.remove", cmd_network_change,
	  "remove a standard switch without port groups",
	  "Remove a standard switch (--vswitch-name); its port groups must go first. Needs\n"
	  "root.",
	  "network vswitch standard remove --vswitch-name=vSwitch1", NULL, 1u << OPT_VSWITCH },
	{ "network vswitch standard", "set", "network.vswitch.set", cmd_network_change,
	  "change a switch's MTU or VMQ",
	  "Change a standard switch (--vswitch-name): --mtu (frames above it are dropped\n"
	  "and counted from then on), --vmq on|off (off: every frame through the default\n"
	  "queue). Needs root.",
	  "network vswitch standard set --vswitch-name=vSwitch0 --vmq=off", NULL,
	  1u << OPT_VSWITCH | 1u << OPT_MTU | 1u << OPT_VMQ },
	{ "network vswitch standard portgroup", "add", "network.portgroup.add", cmd_network_change,
	  "add a port group to a switch",
	  "Add a port group: --portgroup-name and --vswitch-name (required), --vlan-id\n"
	  "(0 untagged, 1-4094, 4095 trunk; default 0). Needs root.",
	  "network vswitch standard portgroup add --portgroup-name=\"VLAN 10\" "
	  "--vswitch-name=vSwitch0 --vlan-id=10",
	  NULL, 1u << OPT_PORTGROUP | 1u << OPT_VSWITCH | 1u << OPT_VLAN },
	{ "network vswitch standard portgroup", "remove", "network.portgroup.remove",
	  cmd_network_change, "remove a port group without ports",
	  "Remove a port group (--portgroup-name); its ports must be closed first. Needs root.",
	  "network vswitch standard portgroup remove --portgroup-name=\"VLAN 10\"", NULL,
	  1u << OPT_PORTGROUP },
	{ "network vswitch standard portgroup", "set", "network.portgroup.set", cmd_network_change,
	  "change a port group's VLAN ID",
	  "Change a port group's VLAN (--portgroup-name, --vlan-id): its ports move to the\n"
	  "new VLAN at once and the addresses learned on them are forgotten. Needs root.",
	  "network vswitch standard portgroup set --portgroup-name=\"VM Network\" --vlan-id=20",
	  NULL, 1u << OPT_PORTGROUP | 1u << OPT_VLAN },
	{ "network vswitch standard portgroup", "list", "network.portgroup.list",
	  cmd_portgroup_list, "list the port groups: switch, VLAN ID, ports",
	  "List the port groups: their switch, VLAN ID (0 untagged, 1-4094 that VLAN with\n"
	  "tags removed toward the port, 4095 trunk: the port sees the tags) and ports.",
	  "network vswitch standard portgroup list" },
	{ "network", "capture", "network.capture", cmd_capture,
	  "write a port's frames to a pcap file",
	  "Copy every frame a port sends into its switch and every frame the switch gives it\n"
	  "into a pcap file (Ethernet; tcpdump, tshark and Wireshark read it): --port (a\n"
	  "name from network port list) and --output are needed; --count and --seconds\n"
	  "stop it (else Ctrl-C). Frames that find the capture ring full are not copied\n"
	  "and are counted. Needs root.",
	  "network capture --port=vnic0 --output=vnic0.pcap --count=100", NULL,
	  1u << OPT_PORT | 1u << OPT_OUTPUT | 1u << OPT_COUNT | 1u << OPT_SECONDS },
	{ "network ip interface", "list", "network.vmk.list", cmd_vmk_list,
	  "list the VMkernel adapters: port group, IPv4 address, MAC, traffic",
	  "List the VMkernel adapters (the host's own IP interfaces on the switches, TAP\n"
	  "interfaces of the same name): port group, switch, IPv4 address, MAC, packets.",
	  "network ip interface list" },
	{ "network ip interface", "add", "network.vmk.add", cmd_network_change,
	  "add a VMkernel adapter on a port group",
	  "Add a VMkernel adapter: --interface-name (the TAP interface made for it) and\n"
	  "--portgroup-name are needed; --ipv4 (a.b.c.d/len) sets its address. Kept until\n"
	  "vmfabricd restarts (vmkN.* in the host configuration keeps it). Needs root.",
	  "network ip interface add --interface-name=vmk2 --portgroup-name=\"VM Network\"",
	  NULL, 1u << OPT_INTERFACE | 1u << OPT_PORTGROUP | 1u << OPT_IPV4 },
	{ "network ip interface", "remove", "network.vmk.remove", cmd_network_change,
	  "remove a VMkernel adapter",
	  "Remove a VMkernel adapter (--interface-name): its TAP interface goes. Needs root.",
	  "network ip interface remove --interface-name=vmk2", NULL, 1u << OPT_INTERFACE },
	{ "network ip interface ipv4", "set", "network.vmk.ipv4", cmd_network_change,
	  "set a VMkernel adapter's IPv4 address",
	  "Set a VMkernel adapter's IPv4 address (--interface-name, --ipv4=a.b.c.d/len).\n"
	  "Needs root.",
	  "network ip interface ipv4 set --interface-name=vmk1 --ipv4=192.168.50.1/24", NULL,
	  1u << OPT_INTERFACE | 1u << OPT_IPV4 },
	{ "network nic", "list", "network.nic.list", cmd_nic_list,
	  "list the uplinks' host interfaces: state, MTU, MAC",
	  "List the physical NICs the switches use as uplinks (vmnicN): the host interface,\n"
	  "its switch, administrative and link state, MTU and MAC address, as the host\n"
	  "sees them now (\"gone\" when the interface has disappeared).",
	  "network nic list" },
	{ "network port", "list", "network.port.list", cmd_port_list,
	  "list the switch ports with their traffic and drops",
	  "List the switch ports: kind (vnic: a process's; virtio: a VM's virtio-net or\n"
	  "an outside vhost-user frontend's; emulated: a VM's e1000 or vmxnet3;\n"
	  "uplink; vmk), port group, VLAN, MAC,\n"
	  "packets and bytes received from the port (RX) and queued to it (TX), drops.\n"
	  "--format=json adds the drops by reason (runt, mtu, bad_source, vlan, spoofed,\n"
	  "queue_full, port_down) and the copies of flooded frames.",
	  "network port list --format=json" },
	{ "network port", "stats", "network.port.list", cmd_port_stats,
	  "per-port and per-queue counters: packets, bytes, drops and why",
	  "Every port's counters, or those of the port --port names: packets and bytes\n"
	  "from the port into the switch (rx) and from the switch into the port's queue\n"
	  "(tx), copies of flooded frames, drops by reason (runt, mtu, bad_source, vlan,\n"
	  "spoofed, queue_full, port_down) and, for a VM's virtio-net port, its receive\n"
	  "and transmit queues (buffers used, interrupts sent and suppressed), buffers\n"
	  "missing (rx_no_buffers), 64 KiB segments cut (tso_segments) and rings the\n"
	  "guest broke (ring_errors; ring_error says what was wrong with the last).",
	  "network port stats --port=vm1.eth0", NULL, 1u << OPT_PORT },
	{ "rdma", "stats", "rdma.stats", cmd_system_status,
	  "show the verbs objects and the RoCE v2 engine's counters",
	  "Show the daemon's RDMA counters, one \"key: value\" line each: QPs and\n"
	  "memory regions of every process, and the RoCE v2 engine's (QPs to other\n"
	  "hosts): frames in and out, bad frames, frames for no QP, injected faults,\n"
	  "and the RC transport's packets, retransmissions, timeouts, NAKs, RNR NAKs\n"
	  "and duplicate requests, summed over its QPs.",
	  "rdma stats" },
	{ "rdma device", "list", "rdma.device.list", cmd_rdma_device_list,
	  "list the RDMA devices: driver, state, speed, paired uplink, MTU",
	  "List the RDMA devices (rdmaN.* in the host configuration): driver, state\n"
	  "(Active while the paired uplink's interface is up, else Down), the uplink's\n"
	  "speed when the host knows it, the paired uplink (vmnicN), the path MTU RoCE\n"
	  "can use (the smallest of the switch's, the uplink's and the bound VMkernel\n"
	  "adapter's MTU, less 80 bytes of headers, rounded down to 256, 512, 1024, 2048\n"
	  "or 4096) and the description. --format=json adds the switch, the binding and\n"
	  "whether the device can carry RoCE now (roce_usable, roce_why).",
	  "rdma device list" },
	{ "rdma device vmknic", "list", "rdma.device.vmknic.list", cmd_rdma_vmknic_list,
	  "list the devices' bindings: device -> uplink -> VMkernel adapter, its IPs",
	  "List each RDMA device with its paired uplink, the uplink's switch, the VMkernel\n"
	  "adapter it is bound to and that adapter's IPv4 and IPv6 addresses, and whether\n"
	  "the device can carry RoCE to other hosts: yes, or why not (not bound, the\n"
	  "adapter has no IP address or is on another switch, the uplink is down).",
	  "rdma device vmknic list" },
	{ "rdma device vmknic", "bind", "rdma.device.vmknic.bind", cmd_network_change,
	  "bind an RDMA device to a VMkernel adapter",
	  "Bind an RDMA device (--device) to a VMkernel adapter (--nic) on the same switch\n"
	  "as the device's paired uplink; its IP address and MAC become the device's RoCE\n"
	  "source. A device is bound to one adapter, an adapter to one device. Kept in\n"
	  "the host configuration file vmfabricd was started with (its rdmaN.vmknic\n"
	  "line); with the built-in configuration, until vmfabricd restarts. Needs root.",
	  "rdma device vmknic bind --device=vmrdma0 --nic=vmk1", NULL,
	  1u << OPT_DEVICE | 1u << OPT_NIC },
	{ "rdma device vmknic", "unbind", "rdma.device.vmknic.unbind", cmd_network_change,
	  "unbind an RDMA device from its VMkernel adapter",
	  "Unbind an RDMA device (--device) from its VMkernel adapter: it can no longer\n"
	  "carry RoCE to other hosts. Kept in the host configuration file as bind is.\n"
	  "Needs root.",
	  "rdma device vmknic unbind --device=vmrdma0", NULL, 1u << OPT_DEVICE },
	{ "vmci socket", "list", "vmci.socket.list", cmd_socket_list,
	  "list the VMCI sockets: addresses, state, queue size, traffic",
	  "List the VMCI sockets: stream, seqpacket and datagram, with their local and\n"
	  "peer addresses (cid:port), state, queue size per direction, bytes sent (TX)\n"
	  "and received (RX), dropped datagrams and owning process. - means unknown.",
	  "vmci socket list --format=json" },
};
const size_t cli_ncmds = ARRAY_SIZE(cli_cmds);
