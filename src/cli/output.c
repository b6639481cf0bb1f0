/* SPDX-License-Identifier: MIT */
/*
 * Printing the daemon's JSON documents: as a table (a generic printer
 * driven by column specs, so that each listing only says which fields go
 * where), as aligned "key: value" lines, or as JSON again.
 *
 * The documents are untrusted: a field of the wrong type prints as "-",
 * and every string is made safe for a terminal (control characters become
 * '?') and cut to CELL_MAX bytes. The table printer formats every cell
 * twice, once to measure and once to print, so it needs no memory.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

bool
json_get_int(json_t *obj, const char *key, long long *v)
{
	json_t *j = json_object_get(obj, key);

	if (!json_is_integer(j))
		return false;
	*v = (long long)json_integer_value(j);
	return true;
}

bool
json_get_bool(json_t *obj, const char *key, bool *v)
{
	json_t *j = json_object_get(obj, key);

	if (!json_is_boolean(j))
		return false;
	*v = json_is_true(j);
	return true;
}

/* Bytes of the UTF-8 character at @s, or 0 for a stray or cut-off byte. */
static size_t
utf8_len(const unsigned char *s)
{
	size_t n = *s < 0x80 ? 1 : *s < 0xc0 ? 0 : *s < 0xe0 ? 2 : *s < 0xf0 ? 3 : 4;

	for (size_t i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

/* A C0 or C1 control character, or DEL: nothing a terminal should see raw. */
static bool
utf8_is_control(const unsigned char *s)
{
	return *s < 0x20 || *s == 0x7f || (s[0] == 0xc2 && s[1] >= 0x80 && s[1] < 0xa0);
}

/* Copy a string for a terminal: controls become '?', cut at a character boundary to fit. */
static void
safe_copy(char *dst, size_t size, const char *src)
{
	const unsigned char *s = (const unsigned char *)src;
	size_t o = 0;

	while (*s) {
		size_t clen = utf8_len(s);
		bool bad = !clen || utf8_is_control(s);
		size_t olen = bad ? 1 : clen;

		if (o + olen >= size)
			break;
		memcpy(dst + o, bad ? "?" : (const char *)s, olen);
		o += olen;
		s += clen ? clen : 1;
	}
	dst[o] = '\0';
}

/* Characters, not bytes, for alignment (the strings are valid UTF-8). */
static size_t
display_width(const char *s)
{
	size_t w = 0;

	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	return w;
}

static void
fmt_bytes(char *buf, size_t size, long long v)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	double d = (double)v / 1024;
	size_t u = 0;

	if (v < 1024) {
		snprintf(buf, size, "%lld B", v);
		return;
	}
	/* 1023.96 KiB would print as "1024.0 KiB": move up a unit first. */
	while (d >= 1023.95 && u + 1 < ARRAY_SIZE(units)) {
		d /= 1024;
		u++;
	}
	snprintf(buf, size, "%.1f %s", d, units[u]);
}

static void
fmt_addr(char *buf, size_t size, json_t *a)
{
	long long cid, port;
	char c[24], p[24];

	if (!json_get_int(a, "cid", &cid) || !json_get_int(a, "port", &port)) {
		snprintf(buf, size, "-");
		return;
	}
	/* VMADDR_CID_ANY, VMADDR_PORT_ANY */
	if (cid == 0xffffffffLL)
		snprintf(c, sizeof(c), "*");
	else
		snprintf(c, sizeof(c), "%lld", cid);
	if (port == 0xffffffffLL)
		snprintf(p, sizeof(p), "*");
	else
		snprintf(p, sizeof(p), "%lld", port);
	snprintf(buf, size, "%s:%s", c, p);
}

/* Format one cell into buf[CELL_MAX]. */
static void
fmt_cell(char *buf, json_t *row, const struct table_col *c)
{
	json_t *v = c->kind == COL_FN ? NULL : json_object_get(row, c->key);
	long long n = 0;
	bool num = json_is_integer(v);

	if (num)
		n = (long long)json_integer_value(v);
	snprintf(buf, CELL_MAX, "-");
	switch (c->kind) {
	case COL_STR:
		if (json_is_string(v))
			safe_copy(buf, CELL_MAX, json_string_value(v));
		break;
	case COL_INT:
		if (num)
			snprintf(buf, CELL_MAX, "%lld", n);
		break;
	case COL_YESNO:
		if (json_is_boolean(v))
			snprintf(buf, CELL_MAX, "%s", json_is_true(v) ? "yes" : "no");
		break;
	case COL_BYTES:
		if (num && n >= 0)
			fmt_bytes(buf, CELL_MAX, n);
		break;
	case COL_KIB:
		if (num && n >= 0 && n % 1024 == 0)
			snprintf(buf, CELL_MAX, "%lld KiB", n / 1024);
		else if (num && n >= 0)
			snprintf(buf, CELL_MAX, "%.1f KiB", (double)n / 1024);
		break;
	case COL_ADDR:
		fmt_addr(buf, CELL_MAX, v);
		break;
	case COL_FN:
		if (json_is_object(row))
			c->fn(row, buf, CELL_MAX);
		break;
	}
}

static bool
col_right(const struct table_col *c)
{
	return c->kind == COL_INT || c->kind == COL_BYTES || c->kind == COL_KIB;
}

static void
print_cell(FILE *f, const char *s, size_t width, bool right, bool last)
{
	size_t pad = width - display_width(s);

	if (right)
		fprintf(f, "%*s%s", (int)pad, "", s);
	else if (last)
		fputs(s, f);
	else
		fprintf(f, "%s%*s", s, (int)pad, "");
	fputs(last ? "\n" : "  ", f);
}

int
table_print(FILE *f, json_t *rows, const struct table_col *cols, size_t ncols)
{
	size_t width[16] = { 0 };
	char cell[CELL_MAX];
	size_t nrows = json_array_size(rows);

	if (ncols > ARRAY_SIZE(width))
		return -EINVAL;
	for (size_t c = 0; c < ncols; c++)
		width[c] = display_width(cols[c].title);
	for (size_t r = 0; r < nrows; r++)
		for (size_t c = 0; c < ncols; c++) {
			fmt_cell(cell, json_array_get(rows, r), &cols[c]);
			if (display_width(cell) > width[c])
				width[c] = display_width(cell);
		}
	for (size_t c = 0; c < ncols; c++)
		print_cell(f, cols[c].title, width[c], col_right(&cols[c]), c + 1 == ncols);
	for (size_t r = 0; r < nrows; r++)
		for (size_t c = 0; c < ncols; c++) {
			fmt_cell(cell, json_array_get(rows, r), &cols[c]);
			print_cell(f, cell, width[c], col_right(&cols[c]), c + 1 == ncols);
		}
	return 0;
}

/* Shortest "%.Ng" that reads back as the same double; always looks like a real. */
static void
fmt_real(char *buf, size_t size, double d)
{
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(buf, size, "%.*g", prec, d);
		if (strtod(buf, NULL) == d)
			break;
	}
	if (!strpbrk(buf, ".eEin"))
		strncat(buf, ".0", size - strlen(buf) - 1);
}

/* A scalar for "key: value" lines; containers are flattened by the caller. */
static void
fmt_scalar(char *buf, size_t size, json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_STRING:
		safe_copy(buf, size, json_string_value(v));
		break;
	case JSON_INTEGER:
		snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		break;
	case JSON_REAL:
		fmt_real(buf, size, json_real_value(v));
		break;
	case JSON_TRUE:
		snprintf(buf, size, "yes");
		break;
	case JSON_FALSE:
		snprintf(buf, size, "no");
		break;
	default:
		snprintf(buf, size, "-");
		break;
	}
}

/*
 * Visit the leaves under @v, @path being its key so far; objects add
 * ".key", arrays "[i]". An empty container is a leaf ("-"). With @f NULL,
 * only measure the widest key into *width.
 */
static void
kv_walk(FILE *f, json_t *v, char *path, size_t len, size_t *width)
{
	size_t cap = CELL_MAX * 2;
	char val[CELL_MAX * 2];

	if (json_is_object(v) && json_object_size(v)) {
		for (void *it = json_object_iter(v); it; it = json_object_iter_next(v, it)) {
			snprintf(path + len, cap - len, "%s%s", len ? "." : "",
				 json_object_iter_key(it));
			kv_walk(f, json_object_iter_value(it), path, strlen(path), width);
		}
		path[len] = '\0';
		return;
	}
	if (json_is_array(v) && json_array_size(v)) {
		for (size_t i = 0; i < json_array_size(v); i++) {
			snprintf(path + len, cap - len, "[%zu]", i);
			kv_walk(f, json_array_get(v, i), path, strlen(path), width);
		}
		path[len] = '\0';
		return;
	}
	safe_copy(val, sizeof(val), path);
	if (!f) {
		if (display_width(val) > *width)
			*width = display_width(val);
		return;
	}
	fprintf(f, "%s:%*s ", val, (int)(*width - display_width(val)), "");
	fmt_scalar(val, sizeof(val), v);
	fprintf(f, "%s\n", val);
}

int
kv_print(FILE *f, json_t *obj)
{
	char path[CELL_MAX * 2] = "";
	size_t width = 0;

	kv_walk(NULL, obj, path, 0, &width);
	kv_walk(f, obj, path, 0, &width);
	return 0;
}

/* JSON's short escape for @ch, or NULL. */
static const char *
json_short_escape(unsigned char ch)
{
	switch (ch) {
	case '"':
		return "\\\"";
	case '\\':
		return "\\\\";
	case '\b':
		return "\\b";
	case '\f':
		return "\\f";
	case '\n':
		return "\\n";
	case '\r':
		return "\\r";
	case '\t':
		return "\\t";
	}
	return NULL;
}

/* Controls, DEL and C1 controls escaped: the same string, safe on a terminal. */
static void
json_put_string(FILE *f, const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str;

	fputc('"', f);
	for (size_t i = 0; i < len; i++) {
		const char *e = json_short_escape(s[i]);

		if (e) {
			fputs(e, f);
		} else if (s[i] < 0x20 || s[i] == 0x7f) {
			fprintf(f, "\\u%04x", s[i]);
		} else if (i + 1 < len && utf8_is_control(s + i)) {
			fprintf(f, "\\u%04x", s[i + 1]); /* U+0080..U+009F */
			i++;
		} else {
			fputc(s[i], f);
		}
	}
	fputc('"', f);
}

/* Like json_dumpf(JSON_INDENT(2)), but reals print as their shortest exact form. */
static void
json_put(FILE *f, json_t *v, int depth)
{
	char buf[40];
	size_t i, n;

	switch (json_typeof(v)) {
	case JSON_OBJECT:
		if (!json_object_size(v)) {
			fputs("{}", f);
			break;
		}
		i = 0;
		fputs("{\n", f);
		for (void *it = json_object_iter(v); it; it = json_object_iter_next(v, it)) {
			const char *k = json_object_iter_key(it);

			fprintf(f, "%s%*s", i++ ? ",\n" : "", (depth + 1) * 2, "");
			json_put_string(f, k, strlen(k));
			fputs(": ", f);
			json_put(f, json_object_iter_value(it), depth + 1);
		}
		fprintf(f, "\n%*s}", depth * 2, "");
		break;
	case JSON_ARRAY:
		n = json_array_size(v);
		if (!n) {
			fputs("[]", f);
			break;
		}
		fputs("[\n", f);
		for (i = 0; i < n; i++) {
			fprintf(f, "%s%*s", i ? ",\n" : "", (depth + 1) * 2, "");
			json_put(f, json_array_get(v, i), depth + 1);
		}
		fprintf(f, "\n%*s]", depth * 2, "");
		break;
	case JSON_STRING:
		json_put_string(f, json_string_value(v), json_string_length(v));
		break;
	case JSON_REAL:
		fmt_real(buf, sizeof(buf), json_real_value(v));
		fputs(buf, f);
		break;
	case JSON_INTEGER:
		fprintf(f, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		break;
	case JSON_TRUE:
		fputs("true", f);
		break;
	case JSON_FALSE:
		fputs("false", f);
		break;
	case JSON_NULL:
		fputs("null", f);
		break;
	}
}

int
json_print(FILE *f, json_t *doc)
{
	json_put(f, doc, 0);
	fputc('\n', f);
	return 0;
}
