/* SPDX-License-Identifier: MIT */
/*
 * The commands of vmfabric: the namespace and command tables main.c
 * dispatches through and prints help from, and one small handler per
 * command. A listing handler only names the daemon's array and its
 * columns; cli_list() does the asking and the printing.
 */
#include <errno.h>
#include <string.h>

#include "cli.h"

const struct cli_ns cli_nss[] = {
	{ "system", "the daemon itself", "system status" },
	{ "vmci", "VMCI contexts and sockets", "vmci context list" },
	{ "vmci context", "VMCI contexts (the host, host processes, VMs)", "vmci context list" },
	{ "vmci socket", "VMCI sockets and their traffic", "vmci socket list --format=json" },
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

const struct cli_cmd cli_cmds[] = {
	{ "system", "status", "system.status", cmd_system_status,
	  "show the daemon's version, uptime, socket and counters",
	  "Show vmfabricd's version, process id, uptime, control socket, configuration\n"
	  "and counters, one \"key: value\" line each; nested values are joined with '.'\n"
	  "(dgram.endpoints).",
	  "system status" },
	{ "vmci context", "list", "vmci.context.list", cmd_context_list,
	  "list the VMCI contexts: CID, name, kind, owner, connections",
	  "List the VMCI contexts the daemon knows: the host, host processes and VMs.\n"
	  "VMCI is on, off, or host-only (the context may talk to the host only);\n"
	  "OWNER is the uid and gid a context is restricted to, or -.",
	  "vmci context list" },
	{ "vmci socket", "list", "vmci.socket.list", cmd_socket_list,
	  "list the VMCI sockets: addresses, state, queue size, traffic",
	  "List the VMCI sockets: stream, seqpacket and datagram, with their local and\n"
	  "peer addresses (cid:port), state, queue size per direction, bytes sent (TX)\n"
	  "and received (RX), dropped datagrams and owning process. - means unknown.",
	  "vmci socket list --format=json" },
};
const size_t cli_ncmds = ARRAY_SIZE(cli_cmds);
