/* SPDX-License-Identifier: MIT */
/*
 * Parser for files of `key = "value"` lines: VMware's .vmx files and
 * vmfabric's host configuration, which uses the same syntax so that one
 * parser (and one fuzz target) serves both.
 *
 * Keys are [A-Za-z0-9_.:-]+, compared case-insensitively as VMware does and
 * kept as written for messages. Values are quoted, with VMware's escape `|XX`
 * (two hex digits) decoded; an unquoted run of non-space characters is also
 * accepted. Everything is read into memory once; the getters only look up.
 *
 * Threat model: the text is untrusted (a guest owner's .vmx file). Every
 * syntax error is reported, never skipped; the size of the file, the length
 * of a line and the number of entries are bounded; bytes quoted from the
 * input in error messages are escaped so that they cannot reach a terminal
 * or a log as control characters. Decoded values may still hold any byte but
 * NUL (`|1B` is ESC): sanitise them before printing them.
 */
#ifndef VMFABRIC_CONF_H
#define VMFABRIC_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONF_MAX_FILE	 (1u << 20) /* bytes of text, for conf_load() and conf_parse() */
#define CONF_MAX_LINE	 4096u	    /* bytes of a line, without its "\n" or "\r\n" */
#define CONF_MAX_ENTRIES 10000u

struct conf;

/*
 * Where and why something failed. Empty strings and line 0 mean "not
 * applicable" (e.g. no line for a file that cannot be opened).
 */
struct conf_error {
	char file[256];
	unsigned line; /* 1-based */
	char key[128]; /* as written in the file, non-printable bytes as '?' */
	char msg[160];
};

/* "file:line: key: message", leaving out empty parts. Returns @buf. */
const char *conf_error_str(const struct conf_error *e, char *buf, size_t len);

/*
 * conf_parse() - parse @len bytes of @text (need not be NUL-terminated).
 * @name: for error messages, e.g. the file name (may be NULL)
 * @err: filled on failure only (may be NULL)
 *
 * Returns 0 and a new struct in *@out, or -EINVAL for a syntax error, -EFBIG
 * for more than CONF_MAX_FILE bytes, -ENOMEM; *@out is NULL on failure.
 */
int conf_parse(const char *name, const char *text, size_t len, struct conf **out,
	       struct conf_error *err);

/*
 * conf_load() - read and parse the regular file at @path (at most
 * CONF_MAX_FILE bytes). As conf_parse(), plus -errno from open() or read()
 * (-ENOENT, -EACCES...), -EISDIR or -EINVAL for a directory or another kind
 * of non-regular file; @err is filled for these too.
 */
int conf_load(const char *path, struct conf **out, struct conf_error *err);

void conf_free(struct conf *c);

/* The value of @key (any case), or NULL if absent. */
const char *conf_get(const struct conf *c, const char *key);

/*
 * Typed getters: *@out = @def if @key is absent. A value of the wrong form
 * is -EINVAL with @err naming the file, the key and its line.
 * Booleans: TRUE/FALSE, 1/0, yes/no, on/off, in any case.
 * Numbers: decimal or 0x-prefixed hex, no sign nor spaces, in [@min, @max].
 */
int conf_get_bool(const struct conf *c, const char *key, bool def, bool *out,
		  struct conf_error *err);
int conf_get_u64(const struct conf *c, const char *key, uint64_t min, uint64_t max, uint64_t def,
		 uint64_t *out, struct conf_error *err);

/* Entries in file order; out of range: NULL / 0. */
size_t conf_count(const struct conf *c);
const char *conf_key(const struct conf *c, size_t i);
const char *conf_value(const struct conf *c, size_t i);
unsigned conf_line(const struct conf *c, size_t i);

/*
 * The first index at or after @start whose key starts with @prefix (any
 * case), or conf_count(@c). Walks e.g. every "context3." key:
 *   for (i = conf_prefixed(c, p, 0); i < conf_count(c); i = conf_prefixed(c, p, i + 1))
 */
size_t conf_prefixed(const struct conf *c, const char *prefix, size_t start);

/*
 * Unknown keys: the caller marks each key it understood, then walks the
 * rest, which conf_first_unused() returns like conf_prefixed() does, with
 * @err (may be NULL) set to "file:line: key: unknown key" when one is found.
 * conf_mark_used() returns false if @key is absent.
 */
bool conf_mark_used(struct conf *c, const char *key);
/* "context12.vmci0.present" with prefix "context" -> 12; -1 if not in such a group. */
long conf_group(const char *key, const char *prefix);
/*
 * Whether @s is printable ASCII only: a name or text that logs, JSON
 * answers and the CLI's tables can show as it is (JSON needs UTF-8; a
 * control character would break a table's line).
 */
bool conf_text(const char *s);
/* Fill @err (if any) with @msg about entry @i. */
void conf_fail_at(struct conf_error *err, const struct conf *c, size_t i, const char *msg);
size_t conf_first_unused(const struct conf *c, size_t start, struct conf_error *err);

/*
 * The arguments of a management request: "key=value" lines in @buf,
 * split in place. Each key must be one of the @n @keys; its value goes to
 * @vals[i] (left as it was when the key is not given). -EINVAL for a line
 * without '=', a key not in @keys or a value that is not printable ASCII.
 */
int conf_kv_lines(char *buf, const char *const *keys, const char **vals, size_t n);

#endif
