/* SPDX-License-Identifier: MIT */
/*
 * vmfabric: the administrator's command line for vmfabricd, with esxcli-like
 * namespaces and commands ("vmfabric vmci context list"). This file parses
 * the command line (options may appear anywhere), resolves the words
 * against the namespace and command tables of commands.c, prints the help
 * of any level, and runs the command's handler.
 *
 * Exit status: 0 on success, 1 when the command failed, 2 for a usage error.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#ifndef VMFABRIC_VERSION
#define VMFABRIC_VERSION "unknown"
#endif

#define MAX_WORDS 16
#define MAX_PATH  128 /* bytes of a namespace path or a command's words */

struct cli_args {
	const char *words[MAX_WORDS];
	size_t nwords;
	bool help, version;
	struct cli_ctx cx;
};

static int
usage_error(const char *what, const char *arg)
{
	cli_error(NULL, "%s '%s'; see '" CLI_NAME " --help'", what, arg);
	return -EINVAL;
}

static int
set_format(struct cli_args *a, const char *v)
{
	if (!strcmp(v, "table"))
		a->cx.format = CLI_FMT_TABLE;
	else if (!strcmp(v, "json"))
		a->cx.format = CLI_FMT_JSON;
	else
		return usage_error("--format takes table or json, not", v);
	return 0;
}

/* An option with a value, as "--name=value" or "--name value". */
static int
opt_value(int argc, char **argv, int *i, const char *name, const char **v)
{
	size_t n = strlen(name);

	if (strncmp(argv[*i], name, n))
		return 0;
	if (argv[*i][n] == '=') {
		*v = argv[*i] + n + 1;
	} else if (argv[*i][n] != '\0') {
		return 0;
	} else if (*i + 1 < argc) {
		*v = argv[++*i];
	} else {
		cli_error(NULL, "%s needs a value; see '" CLI_NAME " --help'", name);
		return -EINVAL;
	}
	return 1;
}

static int
parse_option(int argc, char **argv, int *i, struct cli_args *a)
{
	const char *arg = argv[*i], *v = NULL;
	int r;

	if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
		a->help = true;
		return 0;
	}
	if (!strcmp(arg, "--version")) {
		a->version = true;
		return 0;
	}
	r = opt_value(argc, argv, i, "--format", &v);
	if (r)
		return r < 0 ? r : set_format(a, v);
	for (int k = 0; k < OPT_N; k++) {
		r = opt_value(argc, argv, i, cli_opt_name[k], &v);
		if (r < 0)
			return r;
		if (r) {
			a->cx.opt[k] = v;
			return 0;
		}
	}
	r = opt_value(argc, argv, i, "--socket", &v);
	if (r < 0)
		return r;
	if (r && !*v)
		return usage_error("--socket needs a path, not", v);
	if (r) {
		a->cx.socket = v;
		return 0;
	}
	return usage_error("unknown option", arg);
}

static int
parse_args(int argc, char **argv, struct cli_args *a)
{
	const char *env = getenv("VMFABRIC_SOCKET");
	bool words_only = false;

	memset(a, 0, sizeof(*a));
	a->cx.socket = env && *env ? env : CLI_DEFAULT_SOCKET;
	a->cx.format = CLI_FMT_TABLE;
	for (int i = 1; i < argc; i++) {
		int err;

		if (!words_only && !strcmp(argv[i], "--")) {
			words_only = true;
			continue;
		}
		if (!words_only && argv[i][0] == '-' && argv[i][1]) {
			err = parse_option(argc, argv, &i, a);
			if (err)
				return err;
			continue;
		}
		/* No command has MAX_WORDS words: resolve() refuses one of these. */
		if (a->nwords < MAX_WORDS)
			a->words[a->nwords++] = argv[i];
	}
	return 0;
}

static const struct cli_ns *
find_ns(const char *path)
{
	for (size_t i = 0; i < cli_nnss; i++)
		if (!strcmp(cli_nss[i].path, path))
			return &cli_nss[i];
	return NULL;
}

static const struct cli_cmd *
find_cmd(const char *noun, const char *verb)
{
	for (size_t i = 0; i < cli_ncmds; i++)
		if (!strcmp(cli_cmds[i].noun, noun) && !strcmp(cli_cmds[i].verb, verb))
			return &cli_cmds[i];
	return NULL;
}

/*
 * Walk the words down the namespaces to a command (*cmd) or, when they
 * stop at a namespace, leave *cmd NULL and the namespace's path in @ns
 * ("" for the top).
 */
static int
resolve(struct cli_args *a, char *ns, const struct cli_cmd **cmd)
{
	char next[MAX_PATH];
	size_t i;

	ns[0] = '\0';
	*cmd = NULL;
	for (i = 0; i < a->nwords && !*cmd; i++) {
		const char *w = a->words[i];

		if (strchr(w, ' ') || (size_t)snprintf(next, sizeof(next), "%s%s%s", ns,
						       *ns ? " " : "", w) >= sizeof(next))
			return usage_error("unknown command", w);
		if (find_ns(next))
			strcpy(ns, next);
		else if (!(*cmd = find_cmd(ns, w)))
			return usage_error("unknown command", w);
	}
	if (*cmd && (*cmd)->argname && i < a->nwords) {
		a->cx.arg = a->words[i++];
	} else if (*cmd && (*cmd)->argname && !a->help) {
		cli_error(NULL, "%s %s needs %s; see '" CLI_NAME " %s %s --help'", (*cmd)->noun,
			  (*cmd)->verb, (*cmd)->argname, (*cmd)->noun, (*cmd)->verb);
		return -EINVAL;
	}
	if (i < a->nwords) {
		cli_error(NULL, "%s %s takes no argument '%s'; see '" CLI_NAME " %s %s --help'",
			  (*cmd)->noun, (*cmd)->verb, a->words[i], (*cmd)->noun, (*cmd)->verb);
		return -EINVAL;
	}
	for (int k = 0; *cmd && k < OPT_N; k++)
		if (a->cx.opt[k] && !((*cmd)->opts & (1u << k))) {
			cli_error(NULL, "%s %s does not take %s; see '" CLI_NAME " %s %s --help'",
				  (*cmd)->noun, (*cmd)->verb, cli_opt_name[k], (*cmd)->noun,
				  (*cmd)->verb);
			return -EINVAL;
		}
	return 0;
}

static void
print_options(FILE *f)
{
	fputs("\nOptions (anywhere on the line):\n"
	      "  --format=table|json  a table (the default), or the daemon's JSON document\n"
	      "  --socket PATH        vmfabricd's control socket (default: $VMFABRIC_SOCKET,\n"
	      "                       else " CLI_DEFAULT_SOCKET ")\n"
	      "  -h, --help           show what is available at this level\n"
	      "  --version            print the version of " CLI_NAME "\n",
	      f);
}

/* Is @path a direct child namespace of @parent? */
static bool
ns_is_child(const char *path, const char *parent)
{
	size_t n = strlen(parent);

	if (n && (strncmp(path, parent, n) || path[n] != ' '))
		return false;
	return !strchr(path + (n ? n + 1 : 0), ' ');
}

/* The namespaces and commands directly under @ns; returns how many namespaces. */
static size_t
print_children(FILE *f, const char *ns)
{
	size_t skip = *ns ? strlen(ns) + 1 : 0, nns = 0, ncmds = 0;

	for (size_t i = 0; i < cli_nnss; i++) {
		if (!ns_is_child(cli_nss[i].path, ns))
			continue;
		if (f)
			fprintf(f, "%s  %-10s %s\n", nns ? "" : "\nNamespaces:\n",
				cli_nss[i].path + skip, cli_nss[i].help);
		nns++;
	}
	for (size_t i = 0; f && i < cli_ncmds; i++) {
		if (strcmp(cli_cmds[i].noun, ns))
			continue;
		fprintf(f, "%s  %-10s %s\n", ncmds ? "" : "\nCommands:\n", cli_cmds[i].verb,
			cli_cmds[i].help);
		ncmds++;
	}
	return nns;
}

static void
print_level(FILE *f, const char *ns)
{
	const struct cli_ns *self = find_ns(ns);

	fprintf(f, "usage: " CLI_NAME " [options] %s%s%s\n\n", ns, *ns ? " " : "",
		print_children(NULL, ns) ? "NAMESPACE... COMMAND" : "COMMAND");
	if (self)
		fprintf(f, "%s: %s.\n", ns, self->help);
	else
		fputs("Administer vmfabricd, the host-side VM I/O fabric daemon.\n", f);
	print_children(f, ns);
	print_options(f);
	fprintf(f, "\nExample:\n  " CLI_NAME " %s\n", self ? self->example : "vmci context list");
}

static void
print_cmd_help(FILE *f, const struct cli_cmd *c)
{
	fprintf(f, "usage: " CLI_NAME " %s %s%s%s [--format=table|json] [--socket PATH]\n\n%s\n",
		c->noun, c->verb, c->argname ? " " : "", c->argname ? c->argname : "", c->detail);
	print_options(f);
	fprintf(f, "\nExample:\n  " CLI_NAME " %s\n", c->example);
}

/* Print the command's output; on any failure, say so and return -errno. */
static int
run(struct cli_args *a, const struct cli_cmd *cmd)
{
	char what[MAX_PATH];
	int err;

	snprintf(what, sizeof(what), "%s %s", cmd->noun, cmd->verb);
	a->cx.what = what;
	err = cmd->run(&a->cx, cmd);
	if (fflush(stdout) || ferror(stdout)) {
		cli_error(NULL, "writing the output: %s", strerror(errno));
		return err ? err : -EIO;
	}
	return err;
}

int
main(int argc, char **argv)
{
	struct cli_args a;
	const struct cli_cmd *cmd;
	char ns[MAX_PATH];

	if (parse_args(argc, argv, &a))
		return 2;
	if (a.version) {
		printf(CLI_NAME " " VMFABRIC_VERSION "\n");
		return 0;
	}
	if (resolve(&a, ns, &cmd))
		return 2;
	if (!cmd && a.help) {
		print_level(stdout, ns);
		return 0;
	}
	if (!cmd) {
		print_level(stderr, ns);
		return 2;
	}
	if (a.help) {
		print_cmd_help(stdout, cmd);
		return 0;
	}
	return run(&a, cmd) ? 1 : 0;
}
