/* SPDX-License-Identifier: MIT */
/*
 * The vmfabric command-line tool: what its parts share. main.c parses the
 * command line and dispatches through the command table of commands.c;
 * client.c asks the daemon (one WIRE_MGMT request, a JSON document back in
 * a memfd); output.c prints the document as a table, as "key: value" lines
 * or as JSON. Every function returns 0 or -errno and has already told the
 * user what went wrong; only main() exits.
 */
#ifndef VMFABRIC_CLI_H
#define VMFABRIC_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#define CLI_NAME	   "vmfabric"
#define CLI_DEFAULT_SOCKET "/run/vmfabric/vmfabricd.sock"
#define CLI_TIMEOUT_MS	   20000 /* vm start may probe KVM first (up to 8 s) */
#define CLI_MAX_REPLY	   (64u << 20) /* bytes of JSON we accept */

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

enum cli_format { CLI_FMT_TABLE, CLI_FMT_JSON };

/* What one invocation is about. */
/* Options some commands take (esxcli's style: --vswitch-name=vSwitch1). */
enum cli_opt { OPT_VSWITCH, OPT_PORTGROUP, OPT_VLAN, OPT_MTU, OPT_VMQ, OPT_PORT, OPT_OUTPUT,
	       OPT_COUNT, OPT_SECONDS, OPT_INTERFACE, OPT_IPV4, OPT_DEVICE, OPT_NIC, OPT_LISTEN,
	       OPT_N };
extern const char *const cli_opt_name[OPT_N]; /* "--vswitch-name", ... */

struct cli_ctx {
	const char *socket; /* the daemon's control socket */
	enum cli_format format;
	const char *what; /* the command as typed, e.g. "vmci context list" */
	const char *arg;  /* the command's argument (cli_cmd.argname), or NULL */
	const char *opt[OPT_N]; /* command options given, or NULL */
};

struct cli_cmd {
	const char *noun; /* namespace path, e.g. "vmci context" */
	const char *verb; /* e.g. "list" */
	const char *wire; /* the daemon's name for it, e.g. "vmci.context.list" */
	int (*run)(const struct cli_ctx *cx, const struct cli_cmd *cmd);
	const char *help;    /* one line */
	const char *detail;  /* a paragraph for the command's own --help */
	const char *example; /* arguments after "vmfabric " */
	const char *argname; /* the one argument it takes ("NAME"), or NULL: none */
	unsigned opts;	     /* the options it takes: 1 << OPT_* */
};

struct cli_ns {
	const char *path; /* e.g. "vmci context" */
	const char *help; /* one line */
	const char *example;
};

extern const struct cli_cmd cli_cmds[];
extern const size_t cli_ncmds;
extern const struct cli_ns cli_nss[];
extern const size_t cli_nnss;

/* client.c: send @cmd with @arg, return the reply's JSON object in @out. */
/* system metrics (metrics.c): Prometheus' text format, or an HTTP endpoint */
int cmd_metrics(const struct cli_ctx *cx, const struct cli_cmd *cmd);
/* network capture (capture.c) */
int cmd_capture(const struct cli_ctx *cx, const struct cli_cmd *cmd);
int cli_call(const struct cli_ctx *cx, const char *cmd, const char *arg, json_t **out);
/* The same with a descriptor for the daemon (WIRE_MGMT_FD): a file it reads. */
int cli_call_fd(const struct cli_ctx *cx, const char *cmd, const char *arg, int fd, json_t **out);

/* client.c: "vmfabric: [command: ]message" on stderr; @cx may be NULL. */
__attribute__((format(printf, 2, 3))) void cli_error(const struct cli_ctx *cx, const char *fmt,
						     ...);

/* output.c */

enum col_kind {
	COL_STR,   /* a string */
	COL_INT,   /* an integer */
	COL_YESNO, /* a boolean as yes / no */
	COL_BYTES, /* a byte count in human units: 100 B, 1.5 MiB */
	COL_KIB,   /* a byte count in KiB */
	COL_ADDR,  /* {"cid": C, "port": P} as C:P */
	COL_FN,	   /* computed from the whole row by fn */
};

#define CELL_MAX 96 /* bytes of one table cell, NUL included */

struct table_col {
	const char *title;
	const char *key; /* the row's field (not for COL_FN) */
	enum col_kind kind;
	/* COL_FN: write the cell (at most CELL_MAX bytes) or "-" */
	void (*fn)(json_t *row, char *buf, size_t size);
};

/* Print the array @rows of objects, one line each, columns per @cols. */
int table_print(FILE *f, json_t *rows, const struct table_col *cols, size_t ncols);
/* Print an object as aligned "key: value" lines, nested keys joined by '.'. */
int kv_print(FILE *f, json_t *obj);
/* Print a document as JSON, 2-space indent, keys in the daemon's order. */
int json_print(FILE *f, json_t *doc);

/* Cell helpers for COL_FN: fields of the wrong type count as missing. */
bool json_get_int(json_t *obj, const char *key, long long *v);
bool json_get_bool(json_t *obj, const char *key, bool *v);

#endif
