/* SPDX-License-Identifier: MIT */
/*
 * Tests of the .vmx / host configuration parser: the examples of both kinds
 * of file, line endings, comments, escapes, unquoted values, case-insensitive
 * keys; every syntax error with its line and key; the limits at and just
 * past each bound; the typed getters; iteration, prefix walks and unknown
 * keys; loading files, including missing, too large and not regular ones.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "common/conf.h"

#define STREQ(a, b) (strcmp((a), (b)) == 0)

static const char host_example[] = "# vmfabric host configuration\n"
				   ".encoding = \"UTF-8\"\n"
				   "context3.name = \"db\"\n"
				   "context3.uid = \"1000\"\n"
				   "context3.vmci0.present = \"TRUE\"\n"
				   "context3.vmci0.restricted = \"FALSE\"\n";

static const char vm_example[] = "vmci0.present = \"TRUE\"\n"
				 "vmci0.id = \"5\"\n"
				 "memsize = \"512\"\n"
				 "displayName = \"vm1\"\n"
				 "ethernet0.virtualDev = \"vmxnet3\"\n"
				 "ethernet0.address = \"00:50:56:01:02:03\"\n";

static struct conf *
parse_len(const char *text, size_t len)
{
	struct conf_error e = { 0 };
	struct conf *c = NULL;
	char buf[600];
	int r = conf_parse("t.vmx", text, len, &c, &e);

	if (r != 0)
		th_log("unexpected error: %s", conf_error_str(&e, buf, sizeof(buf)));
	ASSERT_OK(r);
	ASSERT(c);
	return c;
}

static struct conf *
parse(const char *text)
{
	return parse_len(text, strlen(text));
}

/* @text must fail with -EINVAL on @line, about @key, with @msg in the message. */
static void
parse_fails_len(const char *text, size_t len, unsigned line, const char *key, const char *msg)
{
	struct conf_error e;
	struct conf *c = (struct conf *)&e; /* must be reset to NULL */
	char buf[600];
	int r;

	memset(&e, 0x55, sizeof(e));
	r = conf_parse("bad.vmx", text, len, &c, &e);
	th_log("input %.60s -> %d: %s", text, r, r ? conf_error_str(&e, buf, sizeof(buf)) : "");
	ASSERT_EQ(r, -EINVAL);
	ASSERT(c == NULL);
	ASSERT(STREQ(e.file, "bad.vmx"));
	ASSERT_EQ(e.line, line);
	ASSERT(STREQ(e.key, key));
	ASSERT(strstr(e.msg, msg));
}

static void
parse_fails(const char *text, unsigned line, const char *key, const char *msg)
{
	parse_fails_len(text, strlen(text), line, key, msg);
}

TEST(conf_examples)
{
	struct conf *c = parse(host_example);

	ASSERT_EQ(conf_count(c), 5);
	ASSERT(STREQ(conf_get(c, ".encoding"), "UTF-8"));
	ASSERT(STREQ(conf_get(c, "context3.name"), "db"));
	ASSERT(STREQ(conf_get(c, "context3.uid"), "1000"));
	ASSERT(STREQ(conf_get(c, "context3.vmci0.present"), "TRUE"));
	ASSERT(STREQ(conf_get(c, "context3.vmci0.restricted"), "FALSE"));
	ASSERT(conf_get(c, "context3") == NULL);
	ASSERT(conf_get(c, "context3.name.") == NULL);
	ASSERT(conf_get(c, "") == NULL);
	ASSERT(conf_get(c, NULL) == NULL);
	conf_free(c);

	c = parse(vm_example);
	ASSERT_EQ(conf_count(c), 6);
	ASSERT(STREQ(conf_get(c, "vmci0.present"), "TRUE"));
	ASSERT(STREQ(conf_get(c, "vmci0.id"), "5"));
	ASSERT(STREQ(conf_get(c, "memsize"), "512"));
	ASSERT(STREQ(conf_get(c, "displayName"), "vm1"));
	ASSERT(STREQ(conf_get(c, "ethernet0.virtualDev"), "vmxnet3"));
	ASSERT(STREQ(conf_get(c, "ethernet0.address"), "00:50:56:01:02:03"));
	conf_free(c);

	/* Nothing at all, or only comments and blanks, is an empty configuration. */
	c = parse("");
	ASSERT_EQ(conf_count(c), 0);
	conf_free(c);
	c = parse_len(NULL, 0);
	ASSERT_EQ(conf_count(c), 0);
	conf_free(c);
	c = parse("\n\n  \t\n# only a comment\n   # indented comment");
	ASSERT_EQ(conf_count(c), 0);
	conf_free(c);
	conf_free(NULL);
}

TEST(conf_syntax)
{
	static const char text[] = "\xEF\xBB\xBF"	 /* byte-order mark */
				   "a=\"1\"\r\n"	 /* line 1: CRLF, no spaces */
				   "\r\n"		 /* line 2: blank CRLF */
				   "  b   =   \"2\"  \n" /* line 3 */
				   "\tc\t=\t\"3\"\t# trailing comment\n" /* line 4 */
				   "d = \"x\"# no space before it\n"	 /* line 5 */
				   "e = \"\"\n"				 /* line 6: empty value */
				   "f = \"  spaced # not a comment \"\n" /* line 7 */
				   "g:h-i_j.k = \"odd key\"\n"		 /* line 8 */
				   "last = \"no newline\"";		 /* line 9 */
	struct conf *c = parse(text);

	ASSERT_EQ(conf_count(c), 8);
	ASSERT(STREQ(conf_get(c, "a"), "1"));
	ASSERT_EQ(conf_line(c, 0), 1);
	ASSERT(STREQ(conf_get(c, "b"), "2"));
	ASSERT_EQ(conf_line(c, 1), 3);
	ASSERT(STREQ(conf_get(c, "c"), "3"));
	ASSERT(STREQ(conf_get(c, "d"), "x"));
	ASSERT(STREQ(conf_get(c, "e"), ""));
	ASSERT(STREQ(conf_get(c, "f"), "  spaced # not a comment "));
	ASSERT(STREQ(conf_get(c, "g:h-i_j.k"), "odd key"));
	ASSERT(STREQ(conf_get(c, "last"), "no newline"));
	ASSERT_EQ(conf_line(c, 7), 9);
	conf_free(c);

	/* Unquoted values are taken literally, up to the first space. */
	c = parse("memsize = 512\n"
		  "x=a#b\n"
		  "y = TRUE   # comment\n"
		  "z = |22\r\n");
	ASSERT(STREQ(conf_get(c, "memsize"), "512"));
	ASSERT(STREQ(conf_get(c, "x"), "a#b"));
	ASSERT(STREQ(conf_get(c, "y"), "TRUE"));
	ASSERT(STREQ(conf_get(c, "z"), "|22"));
	conf_free(c);
}

TEST(conf_escapes)
{
	struct conf *c = parse("q = \"say |22hi|22\"\n"
			       "bar = \"a|7Cb|7cc\"\n"
			       "nl = \"one|0Atwo\"\n"
			       "utf8 = \"caf|C3|A9\"\n"
			       "all = \"|7C|22|23|3D\"\n"
			       "raw = \"caf\xC3\xA9 \t tab\"\n");

	ASSERT(STREQ(conf_get(c, "q"), "say \"hi\""));
	ASSERT(STREQ(conf_get(c, "bar"), "a|b|c"));
	ASSERT(STREQ(conf_get(c, "nl"), "one\ntwo"));
	ASSERT(STREQ(conf_get(c, "utf8"), "caf\xC3\xA9"));
	ASSERT(STREQ(conf_get(c, "all"), "|\"#="));
	ASSERT(STREQ(conf_get(c, "raw"), "caf\xC3\xA9 \t tab"));
	conf_free(c);
}

TEST(conf_case_insensitive)
{
	struct conf *c = parse("displayName = \"vm1\"\nEthernet0.VirtualDev = \"e1000\"\n");

	ASSERT(STREQ(conf_get(c, "displayname"), "vm1"));
	ASSERT(STREQ(conf_get(c, "DISPLAYNAME"), "vm1"));
	ASSERT(STREQ(conf_get(c, "ethernet0.virtualdev"), "e1000"));
	/* Stored as written, for messages. */
	ASSERT(STREQ(conf_key(c, 0), "displayName"));
	ASSERT(STREQ(conf_key(c, 1), "Ethernet0.VirtualDev"));
	conf_free(c);

	parse_fails("displayName = \"a\"\n# x\nDISPLAYNAME = \"b\"\n", 3, "DISPLAYNAME",
		    "duplicate key (first set on line 1)");
}

TEST(conf_errors)
{
	parse_fails("a = \"1\"\nfoo \"x\"\n", 2, "foo", "missing '=' after the key");
	parse_fails("key\t\"x\"", 1, "key", "missing '='");
	parse_fails("bad key = \"1\"", 1, "bad", "missing '='");
	parse_fails("justakey\n", 1, "justakey", "missing '='");
	parse_fails("= \"x\"\n", 1, "", "missing key before '='");
	parse_fails("\n  = 1", 2, "", "missing key");
	parse_fails("fo$o = \"x\"", 1, "fo$o", "bad character '$' in key at column 3");
	parse_fails("a\001b = \"x\"", 1, "a?b", "bad character 0x01 in key");
	parse_fails("k\xC3\xA9 = \"x\"", 1, "k??", "bad character 0xC3 in key");
	parse_fails("key\"x\" = 1", 1, "key\"x\"", "bad character '\"' in key");
	parse_fails("#c\n\nkey = \"abc\n", 3, "key", "unterminated quote");
	parse_fails("key = \"abc", 1, "key", "unterminated quote");
	parse_fails("key = \"", 1, "key", "unterminated quote");
	parse_fails("key = \"a|4\"", 1, "key", "bad escape at column 9");
	parse_fails("key = \"a|\"", 1, "key", "bad escape at column 9");
	parse_fails("key = \"a|zz\"", 1, "key", "bad escape");
	parse_fails("key = \"a|4", 1, "key", "bad escape");
	parse_fails("key = \"|00\"", 1, "key", "escape |00 at column 8");
	parse_fails("key = \"a\" b", 1, "key", "garbage after the closing quote at column 11");
	parse_fails("key = \"a\"\"b\"", 1, "key", "garbage after the closing quote at column 10");
	parse_fails("key = a b", 1, "key", "garbage after the value at column 9");
	parse_fails("key = a\"b", 1, "key", "'\"' inside an unquoted value at column 8");
	parse_fails("key = \"x\"\rjunk\n", 1, "key", "garbage after the closing quote");
	parse_fails("key =", 1, "key", "missing value after '='");
	parse_fails("key =   \r\n", 1, "key", "missing value");
	parse_fails("key = # comment", 1, "key", "missing value");
	parse_fails_len("a = 1\nb = \"x\0y\"\n", 15, 2, "b", "NUL byte at column 7");
	parse_fails_len("\0", 1, 1, "", "NUL byte at column 1");
	parse_fails("a = 1\nb = 2\nA = 3\n", 3, "A", "duplicate key (first set on line 1)");
	/* A byte-order mark is only skipped at the very start. */
	parse_fails("a = 1\n\357\273\277b = 2\n", 2, "???b", "bad character 0xEF");
}

/* @n entries, one per line, then @tail. */
static char *
entries(unsigned n, const char *tail, size_t *len)
{
	size_t cap = (size_t)n * 32 + strlen(tail) + 1, off = 0;
	char *s = malloc(cap);

	ASSERT(s);
	for (unsigned i = 0; i < n; i++)
		off += (size_t)snprintf(s + off, cap - off, "k%u = \"%u\"\n", i, i);
	off += (size_t)snprintf(s + off, cap - off, "%s", tail);
	*len = off;
	return s;
}

TEST(conf_limits)
{
	char line[CONF_MAX_LINE + 8], *s;
	struct conf_error e;
	struct conf *c;
	size_t len;

	/* "long = \"" is 8 bytes and the closing quote 1: a line of exactly 4096 bytes. */
	memcpy(line, "long = \"", 8);
	memset(line + 8, 'x', CONF_MAX_LINE - 9);
	memcpy(line + CONF_MAX_LINE - 1, "\"\r\n", 4);
	c = parse(line);
	ASSERT_EQ(strlen(conf_get(c, "long")), CONF_MAX_LINE - 9);
	conf_free(c);
	memcpy(line + CONF_MAX_LINE - 1, "x\"\n", 4);
	parse_fails(line, 1, "long", "line longer than 4096 bytes");

	s = entries(CONF_MAX_ENTRIES, "# the last entry was the 10000th\n", &len);
	c = parse_len(s, len);
	ASSERT_EQ(conf_count(c), CONF_MAX_ENTRIES);
	ASSERT(STREQ(conf_get(c, "k9999"), "9999"));
	ASSERT(STREQ(conf_get(c, "K0"), "0"));
	ASSERT_EQ(conf_line(c, CONF_MAX_ENTRIES - 1), CONF_MAX_ENTRIES);
	conf_free(c);
	free(s);
	s = entries(CONF_MAX_ENTRIES, "one.more = \"x\"\n", &len);
	parse_fails_len(s, len, CONF_MAX_ENTRIES + 1, "one.more", "more than 10000 entries");
	free(s);

	/* 1 MiB of text is fine, one byte more is not. */
	s = malloc(CONF_MAX_FILE + 1);
	ASSERT(s);
	memset(s, '\n', CONF_MAX_FILE + 1);
	c = parse_len(s, CONF_MAX_FILE);
	ASSERT_EQ(conf_count(c), 0);
	conf_free(c);
	ASSERT_EQ(conf_parse("big", s, CONF_MAX_FILE + 1, &c, &e), -EFBIG);
	ASSERT(c == NULL);
	ASSERT(STREQ(e.file, "big"));
	ASSERT_EQ(e.line, 0);
	ASSERT(strstr(e.msg, "larger than 1 MiB"));
	free(s);
}

TEST(conf_get_bool)
{
	static const struct {
		const char *v;
		bool want;
	} good[] = { { "TRUE", true }, { "true", true }, { "True", true },   { "1", true },
		     { "yes", true },  { "ON", true },	 { "FALSE", false }, { "false", false },
		     { "0", false },   { "No", false },	 { "off", false } };
	static const char *const bad[] = { "maybe", "", "TRUEx", "2", " true", "t", "00" };
	struct conf_error e;
	char text[64];
	struct conf *c;
	bool b;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(text, sizeof(text), "x = \"%s\"\n", good[i].v);
		c = parse(text);
		memset(&e, 0x55, sizeof(e));
		ASSERT_OK(conf_get_bool(c, "X", !good[i].want, &b, &e));
		ASSERT_EQ(b, good[i].want);
		ASSERT_EQ(e.line, 0x55555555u); /* left alone on success */
		conf_free(c);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "# c\nvmci0.present = \"%s\"\n", bad[i]);
		c = parse(text);
		b = true;
		ASSERT_EQ(conf_get_bool(c, "vmci0.present", true, &b, &e), -EINVAL);
		ASSERT_EQ(b, true); /* the default, on failure too */
		ASSERT(STREQ(e.file, "t.vmx"));
		ASSERT_EQ(e.line, 2);
		ASSERT(STREQ(e.key, "vmci0.present"));
		ASSERT(strstr(e.msg, "is not a boolean (TRUE or FALSE)"));
		ASSERT_EQ(conf_get_bool(c, "vmci0.present", false, &b, NULL), -EINVAL);
		conf_free(c);
	}
	c = parse("x = \"maybe\"");
	ASSERT_EQ(conf_get_bool(c, "x", false, &b, &e), -EINVAL);
	ASSERT(STREQ(e.msg, "\"maybe\" is not a boolean (TRUE or FALSE)"));
	ASSERT_OK(conf_get_bool(c, "absent", true, &b, &e));
	ASSERT_EQ(b, true);
	ASSERT_OK(conf_get_bool(c, "absent", false, &b, &e));
	ASSERT_EQ(b, false);
	conf_free(c);
}

TEST(conf_get_u64)
{
	static const struct {
		const char *v;
		uint64_t want;
	} good[] = { { "0", 0 },
		     { "5", 5 },
		     { "010", 10 },
		     { "0x10", 16 },
		     { "0X1f", 31 },
		     { "18446744073709551615", UINT64_MAX },
		     { "0xffffffffffffffff", UINT64_MAX },
		     { "0x00000000000000000001", 1 } };
	static const char *const bad[] = {
		"abc", "", "-1", "+1", " 1", "1 ", "0x", "0x-1", "1e3", "12a", "0b1", "1.0",
		"18446744073709551616", "0x10000000000000000", /* UINT64_MAX + 1 */
	};
	struct conf_error e;
	char text[80], buf[600];
	struct conf *c;
	uint64_t v;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(text, sizeof(text), "n = \"%s\"\n", good[i].v);
		c = parse(text);
		ASSERT_OK(conf_get_u64(c, "n", 0, UINT64_MAX, 7, &v, &e));
		ASSERT_EQ(v, good[i].want);
		conf_free(c);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "\n\nn = \"%s\"\n", bad[i]);
		c = parse(text);
		ASSERT_EQ(conf_get_u64(c, "N", 0, UINT64_MAX, 7, &v, &e), -EINVAL);
		ASSERT_EQ(v, 7);
		ASSERT_EQ(e.line, 3);
		ASSERT(STREQ(e.key, "n"));
		ASSERT(strstr(e.msg, "is not a number between 0 and 18446744073709551615"));
		conf_free(c);
	}

	/* The range is inclusive at both ends. */
	c = parse("# vm\n"
		  "vmci0.id = \"abc\"\n"
		  "lo = 2\n"
		  "min = 3\n"
		  "max = 4294967295\n"
		  "hi = 0x100000000\n");
	ASSERT_EQ(conf_get_u64(c, "vmci0.id", 3, 4294967295u, 0, &v, &e), -EINVAL);
	ASSERT(STREQ(conf_error_str(&e, buf, sizeof(buf)),
		     "t.vmx:2: vmci0.id: \"abc\" is not a number between 3 and 4294967295"));
	ASSERT_EQ(conf_get_u64(c, "lo", 3, 4294967295u, 0, &v, &e), -EINVAL);
	ASSERT_EQ(e.line, 3);
	ASSERT(STREQ(e.msg, "\"2\" is not a number between 3 and 4294967295"));
	ASSERT_OK(conf_get_u64(c, "min", 3, 4294967295u, 0, &v, &e));
	ASSERT_EQ(v, 3);
	ASSERT_OK(conf_get_u64(c, "max", 3, 4294967295u, 0, &v, &e));
	ASSERT_EQ(v, 4294967295u);
	ASSERT_EQ(conf_get_u64(c, "hi", 3, 4294967295u, 0, &v, &e), -EINVAL);
	ASSERT_EQ(e.line, 6);
	ASSERT(STREQ(e.key, "hi"));
	ASSERT_OK(conf_get_u64(c, "absent", 3, 10, 42, &v, &e));
	ASSERT_EQ(v, 42);
	conf_free(c);
}

TEST(conf_iteration)
{
	struct conf *c = parse("# host\n"
			       "context3.name = \"db\"\n"
			       "log = \"on\"\n"
			       "context12.name = \"web\"\n"
			       "CONTEXT3.uid = \"1000\"\n"
			       "context12.uid = \"33\"\n"
			       "contexts = \"not a group\"\n");
	static const char *const keys[] = { "context3.name", "log",	      "context12.name",
					    "CONTEXT3.uid",  "context12.uid", "contexts" };
	static const unsigned lines[] = { 2, 3, 4, 5, 6, 7 };
	size_t n = conf_count(c), i, seen = 0;

	ASSERT_EQ(n, 6);
	for (i = 0; i < n; i++) {
		ASSERT(STREQ(conf_key(c, i), keys[i]));
		ASSERT_EQ(conf_line(c, i), lines[i]);
		ASSERT(conf_value(c, i) == conf_get(c, keys[i]));
	}
	ASSERT(conf_key(c, n) == NULL);
	ASSERT(conf_value(c, n) == NULL);
	ASSERT_EQ(conf_line(c, n), 0);

	ASSERT_EQ(conf_prefixed(c, "context3.", 0), 0);
	ASSERT_EQ(conf_prefixed(c, "context3.", 1), 3);
	ASSERT_EQ(conf_prefixed(c, "Context3.", 4), n);
	ASSERT_EQ(conf_prefixed(c, "", 2), 2);
	ASSERT_EQ(conf_prefixed(c, "log", 0), 1);
	ASSERT_EQ(conf_prefixed(c, "nothing", 0), n);
	ASSERT_EQ(conf_prefixed(c, "context3.", n + 5), n);
	ASSERT_EQ(conf_prefixed(NULL, "x", 0), 0);

	/* Finding every contextN. group, as the host configuration's reader does. */
	for (i = conf_prefixed(c, "context", 0); i < n; i = conf_prefixed(c, "context", i + 1)) {
		const char *k = conf_key(c, i) + strlen("context");
		char *end;
		unsigned long id = strtoul(k, &end, 10);

		if (end == k || *end != '.')
			continue;
		th_log("group %lu: %s = %s", id, conf_key(c, i), conf_value(c, i));
		ASSERT(id == 3 || id == 12);
		seen++;
	}
	ASSERT_EQ(seen, 4);
	conf_free(c);
}

TEST(conf_unused)
{
	struct conf *c = parse("a = 1\nunknown.one = 2\nB = 3\nunknown.two = 4\n");
	struct conf_error e;
	size_t i;

	ASSERT(conf_mark_used(c, "A"));
	ASSERT(conf_mark_used(c, "b"));
	ASSERT(!conf_mark_used(c, "c"));
	i = conf_first_unused(c, 0, &e);
	ASSERT_EQ(i, 1);
	ASSERT_EQ(e.line, 2);
	ASSERT(STREQ(e.key, "unknown.one"));
	ASSERT(STREQ(e.msg, "unknown key"));
	i = conf_first_unused(c, i + 1, &e);
	ASSERT_EQ(i, 3);
	ASSERT(STREQ(e.key, "unknown.two"));
	ASSERT_EQ(conf_first_unused(c, i + 1, &e), conf_count(c));
	ASSERT_EQ(conf_first_unused(c, 0, NULL), 1);
	conf_free(c);
}

TEST(conf_error_str)
{
	struct conf_error e = { "vm.vmx", 7, "vmci0.id", "bad" };
	struct conf_error empty = { 0 };
	char buf[600], small[5];
	struct conf *c;

	ASSERT(STREQ(conf_error_str(&e, buf, sizeof(buf)), "vm.vmx:7: vmci0.id: bad"));
	e.key[0] = '\0';
	ASSERT(STREQ(conf_error_str(&e, buf, sizeof(buf)), "vm.vmx:7: bad"));
	e.line = 0;
	ASSERT(STREQ(conf_error_str(&e, buf, sizeof(buf)), "vm.vmx: bad"));
	e.file[0] = '\0';
	e.line = 3;
	ASSERT(STREQ(conf_error_str(&e, buf, sizeof(buf)), "line 3: bad"));
	ASSERT(STREQ(conf_error_str(&empty, buf, sizeof(buf)), ""));
	ASSERT(STREQ(conf_error_str(&e, small, sizeof(small)), "line"));
	ASSERT(conf_error_str(&e, small, 0) == small);

	/* conf_error.key holds 127 characters; a longer key is cut to 124 and "...". */
	memset(buf, 'k', sizeof(buf));
	memcpy(buf + 127, " = 1\n", 6);
	c = parse(buf);
	ASSERT_EQ(conf_first_unused(c, 0, &e), 0);
	ASSERT_EQ(strlen(e.key), 127);
	ASSERT_EQ(th_memdiff(e.key, buf, 127), (size_t)-1);
	conf_free(c);
	memcpy(buf + 127, "k = 1\n", 7);
	c = parse(buf);
	ASSERT_EQ(conf_first_unused(c, 0, &e), 0);
	ASSERT_EQ(strlen(e.key), 127);
	ASSERT(STREQ(e.key + 124, "..."));
	ASSERT_EQ(th_memdiff(e.key, buf, 124), (size_t)-1);
	conf_free(c);

	/* Input bytes reach messages escaped: no terminal control sequence gets through. */
	c = parse("x = \"a|1B[31m|7C|22\"\nlong = \"" /* 70 characters: */
		  "0123456789012345678901234567890123456789012345678901234567890123456789\"\n");
	ASSERT_EQ(conf_get_bool(c, "x", false, &(bool){ 0 }, &e), -EINVAL);
	ASSERT(STREQ(e.msg, "\"a|1B[31m|7C|22\" is not a boolean (TRUE or FALSE)"));
	ASSERT_EQ(conf_get_u64(c, "long", 0, 1, 0, &(uint64_t){ 0 }, &e), -EINVAL);
	th_log("%s", e.msg);
	ASSERT(strstr(e.msg, "\"0123456789"));
	ASSERT(strstr(e.msg, "\"... is not a number between 0 and 1"));
	ASSERT_LT(strlen(e.msg), 120);
	conf_free(c);
}

struct tmp {
	char dir[512];
	char path[600];
};

static void
tmp_init(struct tmp *t)
{
	const char *base = getenv("TMPDIR");

	snprintf(t->dir, sizeof(t->dir), "%s/vmf-conf-XXXXXX", base && *base ? base : "/tmp");
	ASSERT(mkdtemp(t->dir));
}

static const char *
tmp_file(struct tmp *t, const char *name, const char *text, off_t size)
{
	int fd;

	snprintf(t->path, sizeof(t->path), "%s/%s", t->dir, name);
	fd = open(t->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ASSERT(fd >= 0);
	ASSERT_EQ(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	if (size)
		ASSERT_OK(ftruncate(fd, size));
	close(fd);
	return t->path;
}

TEST(conf_load)
{
	struct conf_error e;
	struct conf *c;
	struct tmp t;
	const char *p;

	tmp_init(&t);
	p = tmp_file(&t, "host.conf", host_example, 0);
	ASSERT_OK(conf_load(p, &c, &e));
	ASSERT_EQ(conf_count(c), 5);
	ASSERT(STREQ(conf_get(c, "context3.name"), "db"));
	conf_free(c);
	ASSERT_OK(unlink(p));

	p = tmp_file(&t, "bad.vmx", "memsize = \"512\"\ndisplayName = vm 1\n", 0);
	ASSERT_EQ(conf_load(p, &c, &e), -EINVAL);
	ASSERT(c == NULL);
	ASSERT(STREQ(e.file, p));
	ASSERT_EQ(e.line, 2);
	ASSERT(STREQ(e.key, "displayName"));
	ASSERT_OK(unlink(p));

	/* Exactly 1 MiB is accepted: one entry, then lines of spaces. */
	p = tmp_file(&t, "max.conf", "", 0);
	{
		char *s = malloc(CONF_MAX_FILE);
		int fd = open(p, O_WRONLY | O_CLOEXEC);

		ASSERT(s && fd >= 0);
		memset(s, ' ', CONF_MAX_FILE);
		for (size_t i = 0; i < CONF_MAX_FILE; i += 1024)
			s[i + 1023] = '\n';
		memcpy(s, "a = 1", 5);
		ASSERT_EQ(write(fd, s, CONF_MAX_FILE), CONF_MAX_FILE);
		close(fd);
		free(s);
	}
	ASSERT_OK(conf_load(p, &c, &e));
	ASSERT(STREQ(conf_get(c, "a"), "1"));
	conf_free(c);
	ASSERT_OK(truncate(p, CONF_MAX_FILE + 1));
	ASSERT_EQ(conf_load(p, &c, &e), -EFBIG);
	ASSERT(c == NULL);
	ASSERT(STREQ(e.file, p));
	ASSERT_EQ(e.line, 0);
	ASSERT(STREQ(e.msg, "larger than 1 MiB"));
	ASSERT_OK(unlink(p));

	ASSERT_EQ(conf_load(p, &c, &e), -ENOENT);
	ASSERT(c == NULL);
	ASSERT(STREQ(e.file, p));
	ASSERT_EQ(e.line, 0);
	ASSERT(STREQ(e.key, ""));
	ASSERT(STREQ(e.msg, strerror(ENOENT)));

	ASSERT_EQ(conf_load(t.dir, &c, &e), -EISDIR);
	ASSERT(STREQ(e.msg, "is a directory"));
	ASSERT_EQ(conf_load("/dev/null", &c, &e), -EINVAL);
	ASSERT(STREQ(e.msg, "not a regular file"));

	p = tmp_file(&t, "secret.conf", "a = 1\n", 0);
	ASSERT_OK(chmod(p, 0));
	if (geteuid() != 0) {
		ASSERT_EQ(conf_load(p, &c, &e), -EACCES);
		ASSERT(STREQ(e.file, p));
	} else {
		th_log("root reads any file: -EACCES not checked");
	}
	ASSERT_OK(unlink(p));
	ASSERT_OK(rmdir(t.dir));
}
