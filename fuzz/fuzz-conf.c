/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the .vmx / host configuration parser on arbitrary text. A
 * rejected input must leave no result and a printable message with a line
 * number; an accepted one must be consistent: every key is found again by
 * conf_get() in any case, iteration and prefix walks agree, the getters
 * either succeed within range or report the entry's own line, and writing
 * the entries back out (escaped the .vmx way) parses to the same entries.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/conf.h"
#include "fuzz.h"

static bool
printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

/* Every string field terminated, and the whole message safe to print. */
static void
check_error(const struct conf_error *e)
{
	char buf[700];

	if (!memchr(e->file, 0, sizeof(e->file)) || !memchr(e->key, 0, sizeof(e->key)) ||
	    !memchr(e->msg, 0, sizeof(e->msg)) || !e->msg[0])
		abort();
	if (!printable(conf_error_str(e, buf, sizeof(buf))))
		abort();
}

static void
check_rejected(int r, const struct conf *c, const struct conf_error *e, const uint8_t *data,
	       size_t size)
{
	size_t lines = 1;

	if (c || (r != -EINVAL && r != -EFBIG && r != -ENOMEM))
		abort();
	check_error(e);
	for (size_t i = 0; i < size; i++)
		lines += data[i] == '\n';
	if (r == -EINVAL && (e->line == 0 || e->line > lines))
		abort();
}

/* conf_error.key holds a long key's start, then "...". */
static bool
same_key(const char *ekey, const char *key)
{
	size_t cap = sizeof(((struct conf_error *)0)->key);

	if (strlen(key) < cap)
		return strcmp(ekey, key) == 0;
	return strlen(ekey) == cap - 1 && strncmp(ekey, key, cap - 4) == 0 &&
	       strcmp(ekey + cap - 4, "...") == 0;
}

static char
flip_case(char ch)
{
	if (ch >= 'a' && ch <= 'z')
		return (char)(ch - 'a' + 'A');
	if (ch >= 'A' && ch <= 'Z')
		return (char)(ch - 'A' + 'a');
	return ch;
}

/* The getters on entry @i: found under any case, and any error is about this entry. */
static void
check_entry(const struct conf *c, size_t i)
{
	const char *k = conf_key(c, i), *v = conf_value(c, i);
	char alt[CONF_MAX_LINE + 1];
	struct conf_error e;
	uint64_t u;
	bool b;
	int r;

	if (!k || !v || !k[0] || strlen(k) > CONF_MAX_LINE || strlen(v) > CONF_MAX_LINE)
		abort();
	for (size_t j = 0; k[j]; j++) {
		alt[j] = flip_case(k[j]);
		alt[j + 1] = '\0';
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-",
			    k[j]))
			abort();
	}
	if (conf_get(c, k) != v || conf_get(c, alt) != v)
		abort();
	/* O(n) each: only the first entries, to keep large inputs fast. */
	if (i < 200 && (conf_prefixed(c, k, 0) > i || conf_prefixed(c, alt, i) != i))
		abort();
	r = conf_get_bool(c, alt, false, &b, &e);
	if (r != 0 && (r != -EINVAL || b || e.line != conf_line(c, i) || !same_key(e.key, k)))
		abort();
	if (r)
		check_error(&e);
	r = conf_get_u64(c, k, 3, 4294967295u, 1, &u, &e);
	if (r == 0 && (u < 3 || u > 4294967295u))
		abort();
	if (r != 0 && (r != -EINVAL || u != 1 || e.line != conf_line(c, i) || !same_key(e.key, k)))
		abort();
	if (r)
		check_error(&e);
	r = conf_get_u64(c, k, 0, UINT64_MAX, 1, &u, &e);
	if (r == 0 && strlen(v) == 0)
		abort();
}

/* Entries written back as `key = "value"` lines; NULL if they would not fit. */
static char *
write_back(const struct conf *c, size_t *len)
{
	size_t n = conf_count(c), cap = 0, off = 0;
	char *s;

	for (size_t i = 0; i < n; i++)
		cap += strlen(conf_key(c, i)) + 6 + 3 * strlen(conf_value(c, i));
	if (cap > CONF_MAX_FILE || !(s = malloc(cap + 1)))
		return NULL;
	for (size_t i = 0; i < n; i++) {
		size_t start = off;

		off += (size_t)sprintf(s + off, "%s = \"", conf_key(c, i));
		for (const char *v = conf_value(c, i); *v; v++) {
			unsigned char ch = (unsigned char)*v;
			if (ch < 0x20 || ch == 0x7f || ch == '"' || ch == '|')
				off += (size_t)sprintf(s + off, "|%02x", ch);
			else
				s[off++] = (char)ch;
		}
		s[off++] = '"';
		if (off - start > CONF_MAX_LINE) {
			free(s);
			return NULL;
		}
		s[off++] = '\n';
	}
	*len = off;
	return s;
}

static void
check_round_trip(const struct conf *c)
{
	struct conf_error e;
	struct conf *d;
	size_t len;
	char *s = write_back(c, &len);

	if (!s)
		return;
	if (conf_parse("again", s, len, &d, &e) != 0 || conf_count(d) != conf_count(c))
		abort();
	for (size_t i = 0; i < conf_count(c); i++)
		if (strcmp(conf_key(c, i), conf_key(d, i)) != 0 ||
		    strcmp(conf_value(c, i), conf_value(d, i)) != 0 || conf_line(d, i) != i + 1)
			abort();
	conf_free(d);
	free(s);
}

static void
check_accepted(struct conf *c)
{
	size_t n = conf_count(c), i, walked = 0;
	struct conf_error e;

	if (n > CONF_MAX_ENTRIES || conf_key(c, n) || conf_value(c, n) || conf_line(c, n))
		abort();
	for (i = 0; i < n; i++) {
		if (i && conf_line(c, i) <= conf_line(c, i - 1))
			abort();
		check_entry(c, i);
		if (i % 2 == 0 && !conf_mark_used(c, conf_key(c, i)))
			abort();
	}
	for (i = conf_prefixed(c, "", 0); i < n; i = conf_prefixed(c, "", i + 1))
		if (i != walked++)
			abort();
	if (walked != n)
		abort();
	for (i = conf_first_unused(c, 0, &e); i < n; i = conf_first_unused(c, i + 1, &e)) {
		if (i % 2 == 0 || e.line != conf_line(c, i) || !same_key(e.key, conf_key(c, i)))
			abort();
		check_error(&e);
	}
	check_round_trip(c);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conf_error e;
	struct conf *c = NULL;
	int r;

	memset(&e, 0, sizeof(e));
	r = conf_parse("fuzz", (const char *)data, size, &c, &e);
	if (r < 0) {
		check_rejected(r, c, &e, data, size);
		return 0;
	}
	check_accepted(c);
	conf_free(c);
	return 0;
}
