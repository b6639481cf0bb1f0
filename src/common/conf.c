/* SPDX-License-Identifier: MIT */
/*
 * The `key = "value"` parser of .vmx files and the host configuration.
 *
 * The text is cut into lines, each line into a key, an '=' and a value;
 * every entry is one allocation (key, NUL, decoded value, NUL) and the
 * entries sit in an array in file order, with an open-addressing hash table
 * of their lower-cased keys beside it for lookups and duplicate detection.
 * Decoding writes into the entry's allocation directly: a decoded value is
 * never longer than its text.
 *
 * Threat model: the text comes from whoever wrote the file, e.g. a guest
 * owner. Nothing is skipped silently: a line that is not exactly an entry,
 * a comment or blank is an error naming the file, line and key. The limits
 * (CONF_MAX_FILE, CONF_MAX_LINE, CONF_MAX_ENTRIES) bound time and memory,
 * including keys chosen to collide in the hash table: 10000 such keys take
 * 0.15 s to parse instead of about 1 ms.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"

struct conf_entry {
	char *key;   /* start of the entry's allocation */
	char *value; /* in the same allocation, after the key's NUL */
	size_t klen;
	unsigned line;
	bool used;
};

struct conf {
	char *name;
	struct conf_entry *ent;
	size_t n, cap;
	uint32_t *slot; /* entry index + 1; 0 is an empty slot */
	size_t nslot;	/* power of two, more than twice n */
};

struct conf_parser {
	struct conf *c;
	struct conf_error *err;
	const char *ls; /* start of the current line, for column numbers */
	unsigned line;
	const char *key; /* of the current line, once known, for messages */
	size_t klen;
};

/* ASCII only: tolower() depends on the locale (in Turkish, 'I' is not 'i'). */
static char
conf_lower(char ch)
{
	return ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
}

static bool
conf_eq(const char *a, size_t an, const char *b, size_t bn)
{
	if (an != bn)
		return false;
	for (size_t i = 0; i < an; i++)
		if (conf_lower(a[i]) != conf_lower(b[i]))
			return false;
	return true;
}

static bool
conf_is_ws(char ch)
{
	return ch == ' ' || ch == '\t';
}

static bool
conf_is_key_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '_' || ch == '.' || ch == ':' || ch == '-';
}

static int
conf_hex(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch = conf_lower(ch);
	return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

static size_t
conf_skip_ws(const char *s, size_t len, size_t i)
{
	while (i < len && conf_is_ws(s[i]))
		i++;
	return i;
}

/* ---------------------------------------------------------------------- */
/* Errors. Input bytes are escaped before they go into a message. */

/* A key as written, non-printable bytes as '?', "..." when cut short. */
static void
conf_copy_key(char *dst, size_t size, const char *key, size_t klen)
{
	size_t n = klen < size ? klen : size - 4;

	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)key[i];
		dst[i] = ch > ' ' && ch < 0x7f ? (char)ch : '?';
	}
	if (n < klen) {
		memcpy(dst + n, "...", 3);
		n += 3;
	}
	dst[n] = '\0';
}

/* A value in double quotes, escaped the .vmx way (|XX), "..." when cut short. */
static const char *
conf_quote(char *buf, size_t size, const char *s)
{
	size_t n = 0;

	buf[n++] = '"';
	for (; *s && n + 8 < size; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch >= ' ' && ch < 0x7f && ch != '"' && ch != '|')
			buf[n++] = (char)ch;
		else
			n += (size_t)snprintf(buf + n, size - n, "|%02X", ch);
	}
	buf[n++] = '"';
	if (*s) {
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	buf[n] = '\0';
	return buf;
}

/* Fills @err, if any, about @key (may be NULL); returns @r. */
__attribute__((format(printf, 7, 0))) static int
conf_vfail(struct conf_error *err, int r, const char *file, unsigned line, const char *key,
	   size_t klen, const char *fmt, va_list ap)
{
	if (!err)
		return r;
	snprintf(err->file, sizeof(err->file), "%s", file ? file : "");
	err->line = line;
	conf_copy_key(err->key, sizeof(err->key), key, key ? klen : 0);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	return r;
}

/* An error about the file as a whole. */
__attribute__((format(printf, 4, 5))) static int
conf_fail(struct conf_error *err, int r, const char *file, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	conf_vfail(err, r, file, 0, NULL, 0, fmt, ap);
	va_end(ap);
	return r;
}

/* A syntax error on the current line. */
__attribute__((format(printf, 2, 3))) static int
conf_syntax(struct conf_parser *p, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	conf_vfail(p->err, -EINVAL, p->c->name, p->line, p->key, p->klen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int
conf_nomem(struct conf_parser *p)
{
	conf_syntax(p, "out of memory");
	return -ENOMEM;
}

/* An error about entry @i: its file, line and key. */
__attribute__((format(printf, 4, 5))) static int
conf_entry_fail(const struct conf *c, size_t i, struct conf_error *err, const char *fmt, ...)
{
	const struct conf_entry *e = &c->ent[i];
	va_list ap;

	va_start(ap, fmt);
	conf_vfail(err, -EINVAL, c->name, e->line, e->key, e->klen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

const char *
conf_error_str(const struct conf_error *e, char *buf, size_t len)
{
	bool file = e->file[0], key = e->key[0];
	char line[20] = "";

	if (e->line)
		snprintf(line, sizeof(line), file ? ":%u" : "line %u", e->line);
	/* %.*s: the fields of a caller's struct need not be NUL-terminated. */
	snprintf(buf, len, "%.*s%s%s%.*s%s%.*s", (int)sizeof(e->file), e->file, line,
		 (file || e->line) && key ? ": " : "", (int)sizeof(e->key), e->key,
		 (file || e->line || key) && e->msg[0] ? ": " : "", (int)sizeof(e->msg), e->msg);
	return buf;
}

/* ---------------------------------------------------------------------- */
/* The table. */

static uint32_t
conf_hash(const char *key, size_t klen)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (size_t i = 0; i < klen; i++)
		h = (h ^ (unsigned char)conf_lower(key[i])) * 16777619u;
	return h;
}

/* Index of @key, or c->n. */
static size_t
conf_find(const struct conf *c, const char *key, size_t klen)
{
	size_t mask = c->nslot - 1;

	if (!c->nslot)
		return c->n;
	for (size_t s = conf_hash(key, klen) & mask; c->slot[s]; s = (s + 1) & mask) {
		const struct conf_entry *e = &c->ent[c->slot[s] - 1];
		if (conf_eq(e->key, e->klen, key, klen))
			return c->slot[s] - 1;
	}
	return c->n;
}

/* Index of @key, or conf_count(@c). */
static size_t
conf_index(const struct conf *c, const char *key)
{
	if (!c || !key)
		return c ? c->n : 0;
	return conf_find(c, key, strlen(key));
}

static void
conf_slot_insert(struct conf *c, size_t i)
{
	size_t mask = c->nslot - 1, s = conf_hash(c->ent[i].key, c->ent[i].klen) & mask;

	while (c->slot[s])
		s = (s + 1) & mask;
	c->slot[s] = (uint32_t)i + 1;
}

/* Room for one more entry, in the array and in the table. */
static int
conf_grow(struct conf *c)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 16;
		struct conf_entry *ent = realloc(c->ent, cap * sizeof(*ent));
		if (!ent)
			return -ENOMEM;
		c->ent = ent;
		c->cap = cap;
	}
	if (2 * (c->n + 1) >= c->nslot) {
		size_t nslot = c->nslot ? 2 * c->nslot : 32;
		uint32_t *slot = calloc(nslot, sizeof(*slot));
		if (!slot)
			return -ENOMEM;
		free(c->slot);
		c->slot = slot;
		c->nslot = nslot;
		for (size_t i = 0; i < c->n; i++)
			conf_slot_insert(c, i);
	}
	return 0;
}

/* Takes @ent, the entry's allocation: its key, then @value. */
static int
conf_add(struct conf_parser *p, char *ent, char *value)
{
	struct conf *c = p->c;
	size_t dup = conf_find(c, ent, p->klen);
	int r = 0;

	if (dup < c->n)
		r = conf_syntax(p, "duplicate key (first set on line %u)", c->ent[dup].line);
	else if (c->n >= CONF_MAX_ENTRIES)
		r = conf_syntax(p, "more than %u entries", CONF_MAX_ENTRIES);
	else if (conf_grow(c) < 0)
		r = conf_nomem(p);
	if (r < 0) {
		free(ent);
		return r;
	}
	c->ent[c->n] = (struct conf_entry){ ent, value, p->klen, p->line, false };
	conf_slot_insert(c, c->n);
	c->n++;
	return 0;
}

/* ---------------------------------------------------------------------- */
/* The parser. */

static size_t
conf_col(const struct conf_parser *p, const char *at)
{
	return (size_t)(at - p->ls) + 1;
}

/*
 * Decodes the value s[0..len) into @v (room for @len bytes): quoted with
 * |XX escapes, or unquoted and taken literally. Returns its length or -EINVAL.
 */
static ssize_t
conf_decode(struct conf_parser *p, const char *s, size_t len, char *v)
{
	bool quoted = s[0] == '"';
	size_t i, n = 0;
	int hi, lo;

	for (i = quoted; i < len && (quoted ? s[i] != '"' : !conf_is_ws(s[i])); i++) {
		if (!quoted && s[i] == '"')
			return conf_syntax(p, "'\"' inside an unquoted value at column %zu",
					   conf_col(p, s + i));
		if (!quoted || s[i] != '|') {
			v[n++] = s[i];
			continue;
		}
		hi = i + 1 < len ? conf_hex(s[i + 1]) : -1;
		lo = i + 2 < len ? conf_hex(s[i + 2]) : -1;
		if (hi < 0 || lo < 0)
			return conf_syntax(p,
					   "bad escape at column %zu: '|' must be followed by "
					   "two hex digits (|7C is '|')",
					   conf_col(p, s + i));
		if (hi == 0 && lo == 0)
			return conf_syntax(p, "escape |00 at column %zu: a value cannot hold a NUL",
					   conf_col(p, s + i));
		v[n++] = (char)(hi << 4 | lo);
		i += 2;
	}
	if (quoted && i == len)
		return conf_syntax(p, "unterminated quote");
	i = conf_skip_ws(s, len, i + quoted);
	if (i < len && s[i] != '#')
		return conf_syntax(p,
				   quoted ? "garbage after the closing quote at column %zu"
					  : "garbage after the value at column %zu (quote a value "
					    "that holds spaces)",
				   conf_col(p, s + i));
	return (ssize_t)n;
}

/* The value s[0..len) of the key p->key, not empty. */
static int
conf_value_add(struct conf_parser *p, const char *s, size_t len)
{
	char *ent = malloc(p->klen + len + 2), *v;
	ssize_t n;

	if (!ent)
		return conf_nomem(p);
	memcpy(ent, p->key, p->klen);
	ent[p->klen] = '\0';
	v = ent + p->klen + 1;
	n = conf_decode(p, s, len, v);
	if (n < 0) {
		free(ent);
		return (int)n;
	}
	v[n] = '\0';
	return conf_add(p, ent, v);
}

static int
conf_parse_line(struct conf_parser *p, const char *s, size_t len)
{
	size_t i = conf_skip_ws(s, len, 0), k0 = i;
	unsigned char ch;

	if (i == len || s[i] == '#')
		return 0;
	while (i < len && !conf_is_ws(s[i]) && s[i] != '=')
		i++;
	p->key = s + k0;
	p->klen = i - k0;
	if (!p->klen)
		return conf_syntax(p, "missing key before '='");
	for (size_t j = k0; j < i; j++) {
		if (conf_is_key_char(s[j]))
			continue;
		ch = (unsigned char)s[j];
		if (ch > ' ' && ch < 0x7f)
			return conf_syntax(p, "bad character '%c' in key at column %zu", ch, j + 1);
		return conf_syntax(p, "bad character 0x%02X in key at column %zu", ch, j + 1);
	}
	i = conf_skip_ws(s, len, i);
	if (i == len || s[i] != '=')
		return conf_syntax(p, "missing '=' after the key");
	i = conf_skip_ws(s, len, i + 1);
	if (i == len || s[i] == '#')
		return conf_syntax(p, "missing value after '=' (\"\" is an empty value)");
	return conf_value_add(p, s + i, len - i);
}

/* A line refused before parsing: its key is what it seems to start with. */
static int
conf_bad_line(struct conf_parser *p, const char *s, size_t len, const char *nul)
{
	size_t k0 = conf_skip_ws(s, len, 0), k1 = k0;

	while (k1 < len && conf_is_key_char(s[k1]))
		k1++;
	p->key = s + k0;
	p->klen = k1 - k0;
	if (nul)
		return conf_syntax(p, "NUL byte at column %zu", conf_col(p, nul));
	return conf_syntax(p, "line longer than %u bytes", CONF_MAX_LINE);
}

int
conf_parse(const char *name, const char *text, size_t len, struct conf **out,
	   struct conf_error *err)
{
	struct conf_parser p = { .err = err };
	size_t pos = 0;
	int r = 0;

	*out = NULL;
	if (len > CONF_MAX_FILE)
		return conf_fail(err, -EFBIG, name, "larger than 1 MiB");
	p.c = calloc(1, sizeof(*p.c));
	if (!p.c || !(p.c->name = strdup(name ? name : ""))) {
		free(p.c);
		return conf_fail(err, -ENOMEM, name, "out of memory");
	}
	/* A byte-order mark, which some editors put at the start of UTF-8 files. */
	if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
		pos = 3;
	while (pos < len && r == 0) {
		const char *s = text + pos, *nl = memchr(s, '\n', len - pos), *nul;
		size_t n = nl ? (size_t)(nl - s) : len - pos;

		pos += n + (nl != NULL);
		p.ls = s;
		p.line++;
		p.key = NULL;
		if (n && s[n - 1] == '\r')
			n--;
		if (n > CONF_MAX_LINE)
			r = conf_bad_line(&p, s, n, NULL);
		else if ((nul = memchr(s, '\0', n)))
			r = conf_bad_line(&p, s, n, nul);
		else
			r = conf_parse_line(&p, s, n);
	}
	if (r < 0) {
		conf_free(p.c);
		return r;
	}
	*out = p.c;
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Files. */

/* Up to CONF_MAX_FILE + 1 bytes: one more than allowed tells a file that grew. */
static int
conf_read(int fd, char **bufp, size_t *lenp)
{
	char *buf = malloc(CONF_MAX_FILE + 1);
	size_t n = 0;
	ssize_t r = 1;

	if (!buf)
		return -ENOMEM;
	while (n < CONF_MAX_FILE + 1 && r != 0) {
		r = read(fd, buf + n, CONF_MAX_FILE + 1 - n);
		if (r < 0 && errno != EINTR) {
			free(buf);
			return -errno;
		}
		n += r > 0 ? (size_t)r : 0;
	}
	*bufp = buf;
	*lenp = n;
	return 0;
}

int
conf_load(const char *path, struct conf **out, struct conf_error *err)
{
	char *buf = NULL;
	size_t len = 0;
	struct stat st;
	int fd, r;

	*out = NULL;
	/* O_NONBLOCK: opening a FIFO must not hang; it is refused below anyway. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		r = -errno;
		return conf_fail(err, r, path, "%s", strerror(-r));
	}
	if (fstat(fd, &st) < 0)
		r = conf_fail(err, -errno, path, "%s", strerror(errno));
	else if (S_ISDIR(st.st_mode))
		r = conf_fail(err, -EISDIR, path, "is a directory");
	else if (!S_ISREG(st.st_mode))
		r = conf_fail(err, -EINVAL, path, "not a regular file");
	else if (st.st_size > (off_t)CONF_MAX_FILE)
		r = conf_fail(err, -EFBIG, path, "larger than 1 MiB");
	else if ((r = conf_read(fd, &buf, &len)) < 0)
		conf_fail(err, r, path, "%s", strerror(-r));
	close(fd);
	/* The file may have grown since fstat(): conf_parse() checks the size again. */
	if (r == 0)
		r = conf_parse(path, buf, len, out, err);
	free(buf);
	return r;
}

void
conf_free(struct conf *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++)
		free(c->ent[i].key);
	free(c->ent);
	free(c->slot);
	free(c->name);
	free(c);
}

/* ---------------------------------------------------------------------- */
/* Getters. */

const char *
conf_get(const struct conf *c, const char *key)
{
	size_t i = conf_index(c, key);

	return i < conf_count(c) ? c->ent[i].value : NULL;
}

int
conf_get_bool(const struct conf *c, const char *key, bool def, bool *out, struct conf_error *err)
{
	static const struct {
		const char *s;
		bool v;
	} words[] = { { "true", true }, { "false", false }, { "1", true },  { "0", false },
		      { "yes", true },	{ "no", false },    { "on", true }, { "off", false } };
	size_t i = conf_index(c, key);
	const char *v;
	char q[64];

	*out = def;
	if (i == conf_count(c))
		return 0;
	v = c->ent[i].value;
	for (size_t k = 0; k < sizeof(words) / sizeof(words[0]); k++) {
		if (conf_eq(v, strlen(v), words[k].s, strlen(words[k].s))) {
			*out = words[k].v;
			return 0;
		}
	}
	return conf_entry_fail(c, i, err, "%s is not a boolean (TRUE or FALSE)",
			       conf_quote(q, sizeof(q), v));
}

/* Decimal, or hex after "0x"; no sign, no spaces, no overflow. */
static bool
conf_parse_u64(const char *s, uint64_t *out)
{
	unsigned base = 10;
	uint64_t v = 0;
	int d;

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	if (!*s)
		return false;
	for (; *s; s++) {
		d = conf_hex(*s);
		if (d < 0 || (unsigned)d >= base || v > (UINT64_MAX - (unsigned)d) / base)
			return false;
		v = v * base + (unsigned)d;
	}
	*out = v;
	return true;
}

int
conf_get_u64(const struct conf *c, const char *key, uint64_t min, uint64_t max, uint64_t def,
	     uint64_t *out, struct conf_error *err)
{
	size_t i = conf_index(c, key);
	uint64_t v;
	char q[64];

	*out = def;
	if (i == conf_count(c))
		return 0;
	if (conf_parse_u64(c->ent[i].value, &v) && v >= min && v <= max) {
		*out = v;
		return 0;
	}
	return conf_entry_fail(c, i, err, "%s is not a number between %" PRIu64 " and %" PRIu64,
			       conf_quote(q, sizeof(q), c->ent[i].value), min, max);
}

size_t
conf_count(const struct conf *c)
{
	return c ? c->n : 0;
}

const char *
conf_key(const struct conf *c, size_t i)
{
	return i < conf_count(c) ? c->ent[i].key : NULL;
}

const char *
conf_value(const struct conf *c, size_t i)
{
	return i < conf_count(c) ? c->ent[i].value : NULL;
}

unsigned
conf_line(const struct conf *c, size_t i)
{
	return i < conf_count(c) ? c->ent[i].line : 0;
}

size_t
conf_prefixed(const struct conf *c, const char *prefix, size_t start)
{
	size_t plen = prefix ? strlen(prefix) : 0;

	for (size_t i = start; i < conf_count(c); i++)
		if (c->ent[i].klen >= plen && conf_eq(c->ent[i].key, plen, prefix, plen))
			return i;
	return conf_count(c);
}

bool
conf_mark_used(struct conf *c, const char *key)
{
	size_t i = conf_index(c, key);

	if (i == conf_count(c))
		return false;
	c->ent[i].used = true;
	return true;
}

size_t
conf_first_unused(const struct conf *c, size_t start, struct conf_error *err)
{
	for (size_t i = start; i < conf_count(c); i++) {
		if (!c->ent[i].used) {
			conf_entry_fail(c, i, err, "unknown key");
			return i;
		}
	}
	return conf_count(c);
}

long
conf_group(const char *key, const char *prefix)
{
	size_t n = strlen(prefix);
	char *end;
	long g;

	if (strncasecmp(key, prefix, n) || !isdigit((unsigned char)key[n]))
		return -1;
	g = strtol(key + n, &end, 10);
	return *end == '.' && g >= 0 && g < 1000000 ? g : -1;
}

bool
conf_text(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < ' ' || (unsigned char)*s > '~')
			return false;
	return true;
}

void
conf_fail_at(struct conf_error *err, const struct conf *c, size_t i, const char *msg)
{
	if (!err)
		return;
	memset(err, 0, sizeof(*err));
	snprintf(err->key, sizeof(err->key), "%s", conf_key(c, i) ? conf_key(c, i) : "");
	err->line = conf_line(c, i);
	snprintf(err->msg, sizeof(err->msg), "%s", msg);
}

int
conf_kv_lines(char *buf, const char *const *keys, const char **vals, size_t n)
{
	char *save, *line;

	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *eq = strchr(line, '=');
		size_t k;

		if (!eq)
			return -EINVAL;
		*eq++ = 0;
		if (!conf_text(eq)) /* names end up in answers, logs and tables */
			return -EINVAL;
		for (k = 0; k < n && strcmp(line, keys[k]); k++)
			;
		if (k == n)
			return -EINVAL;
		vals[k] = eq;
	}
	return 0;
}
