/* SPDX-License-Identifier: MIT */
/*
 * The table of figures of docs/SECURITY.md, made from what the runs wrote:
 * the "figure: {...}" lines of a `make check` log (fault injection, daemon
 * crashes, fairness: one JSON object each, prefixed by the suite the test
 * ran in), the JSON lines of `make fuzz` (bench/results/fuzz.jsonl: the
 * last run of each target) and of `make soak` (bench/results/soak.jsonl:
 * the last run's totals). Prints Markdown on stdout.
 *
 *   vmf-figures CHECK_LOG [FUZZ_JSONL [SOAK_JSONL]]
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FIG 256

struct fig {
	char suite[16];
	json_t *o;
};

static struct fig figs[MAX_FIG];
static size_t nfigs;

/* A number field, or -1 when absent. */
static double
num(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);

	return json_is_number(v) ? json_number_value(v) : -1;
}

static const char *
name_of(json_t *o)
{
	json_t *v = json_object_get(o, "scenario");

	if (!json_is_string(v))
		v = json_object_get(o, "test");
	return json_is_string(v) ? json_string_value(v) : "?";
}

static void
load_check(const char *path)
{
	char line[8192];
	FILE *f = fopen(path, "r");

	if (!f) {
		perror(path);
		exit(1);
	}
	while (fgets(line, sizeof(line), f) && nfigs < MAX_FIG) {
		char *p = strstr(line, "figure: {");
		json_error_t e;
		json_t *o;

		if (!p || !(o = json_loads(p + 8, JSON_DISABLE_EOF_CHECK, &e)) || !json_is_object(o))
			continue;
		figs[nfigs].suite[0] = 0;
		if (line[0] == '[') /* tests/check prefixes each line with its suite */
			sscanf(line, "[%15[^]]]", figs[nfigs].suite);
		figs[nfigs++].o = o;
	}
	fclose(f);
}

static bool
is_known(const char *k)
{
	static const char *const known[] = { "scenario",    "test",	  "runs",
					     "kills",	    "bytes_verified", "vsock_bytes_verified",
					     "bytes_lost",  "fds_before", "fds_after",
					     "heap_before", "heap_after" };

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (!strcmp(k, known[i]))
			return true;
	return false;
}

/* The other members, compact: "k=v, k=v" (objects and arrays as JSON). */
static void
others(json_t *o, char *buf, size_t len)
{
	const char *k;
	json_t *v;
	size_t n = 0;

	buf[0] = 0;
	json_object_foreach(o, k, v) {
		char *txt;

		if (is_known(k) || n >= len)
			continue;
		txt = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		n += (size_t)snprintf(buf + n, len - n, "%s%s=%s", n ? ", " : "", k, txt ? txt : "?");
		free(txt);
	}
}

static void
fault_table(void)
{
	double runs = 0, verified = 0, lost = 0;

	puts("| scenario | suite | runs (kills) | bytes verified | bytes lost | daemon fds before → after "
	     "| daemon heap before → after | more |");
	puts("|---|---|---|---|---|---|---|---|");
	for (size_t i = 0; i < nfigs; i++) {
		json_t *o = figs[i].o;
		double r = num(o, "runs") >= 0 ? num(o, "runs") : num(o, "kills");
		double b = num(o, "bytes_verified") >= 0 ? num(o, "bytes_verified")
							 : num(o, "vsock_bytes_verified");
		double l = num(o, "bytes_lost");
		char more[600], fds[48] = "", heap[64] = "";

		others(o, more, sizeof(more));
		if (num(o, "fds_before") >= 0)
			snprintf(fds, sizeof(fds), "%.0f → %.0f", num(o, "fds_before"),
				 num(o, "fds_after"));
		if (num(o, "heap_before") >= 0)
			snprintf(heap, sizeof(heap), "%.0f → %.0f", num(o, "heap_before"),
				 num(o, "heap_after"));
		printf("| %s | %s | ", name_of(o), figs[i].suite);
		r >= 0 ? printf("%.0f", r) : printf(" ");
		printf(" | ");
		b >= 0 ? printf("%.0f", b) : printf(" ");
		printf(" | ");
		l >= 0 ? printf("%.0f", l) : printf(" ");
		printf(" | %s | %s | %s |\n", fds, heap, more);
		runs += r > 0 ? r : 0, verified += b > 0 ? b : 0, lost += l > 0 ? l : 0;
	}
	printf("| **total** | | %.0f | %.0f | %.0f | | | |\n\n", runs, verified, lost);
}

/* The last line of @path for each value of @key that @keep accepts. */
static size_t
last_lines(const char *path, const char *key, bool (*keep)(json_t *), json_t **out, size_t max)
{
	char line[8192];
	FILE *f = fopen(path, "r");
	size_t n = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		json_error_t e;
		json_t *o = json_loads(line, 0, &e);
		const char *v = o ? json_string_value(json_object_get(o, key)) : NULL;
		size_t i;

		if (!v || !keep(o)) {
			json_decref(o);
			continue;
		}
		for (i = 0; i < n; i++)
			if (!strcmp(json_string_value(json_object_get(out[i], key)), v))
				break;
		if (i < n) {
			json_decref(out[i]);
			out[i] = o;
		} else if (n < max) {
			out[n++] = o;
		} else {
			json_decref(o);
		}
	}
	fclose(f);
	return n;
}

static bool
any(json_t *o)
{
	(void)o;
	return true;
}

static void
fuzz_table(const char *path)
{
	json_t *t[64];
	size_t n = last_lines(path, "target", any, t, 64);
	double execs = 0, secs = 0, found = 0;

	if (!n)
		return;
	puts("| fuzz target | seconds | executions | executions/s | corpus inputs | findings |");
	puts("|---|---|---|---|---|---|");
	for (size_t i = 0; i < n; i++) {
		printf("| %s | %.0f | %.0f | %.0f | %.0f | %.0f |\n",
		       json_string_value(json_object_get(t[i], "target")), num(t[i], "seconds"),
		       num(t[i], "executions"), num(t[i], "exec_per_s"), num(t[i], "corpus_after"),
		       num(t[i], "crashes"));
		execs += num(t[i], "executions"), secs += num(t[i], "seconds");
		found += num(t[i], "crashes");
		json_decref(t[i]);
	}
	printf("| **%zu targets** | %.0f | %.0f | | | %.0f |\n\n", n, secs, execs, found);
}

static bool
soak_total(json_t *o)
{
	const char *s = json_string_value(json_object_get(o, "system"));

	return s && !strcmp(s, "soak");
}

static void
soak_table(const char *path)
{
	json_t *t[64];
	size_t n;

	/* Keyed by "bench metric": the last run's totals. */
	{
		char line[8192];
		FILE *f = fopen(path, "r");

		n = 0;
		if (!f)
			return;
		while (fgets(line, sizeof(line), f) && n < 64) {
			json_error_t e;
			json_t *o = json_loads(line, 0, &e);
			size_t i;

			if (!o || !soak_total(o)) {
				json_decref(o);
				continue;
			}
			for (i = 0; i < n; i++)
				if (json_equal(json_object_get(t[i], "bench"), json_object_get(o, "bench")) &&
				    json_equal(json_object_get(t[i], "metric"), json_object_get(o, "metric")))
					break;
			if (i < n) {
				json_decref(t[i]);
				t[i] = o;
			} else {
				t[n++] = o;
			}
		}
		fclose(f);
	}
	if (!n)
		return;
	/* One row per workload, one column per measure, as the run named them. */
	{
		static const char *const cols[] = { "bytes_checked", "bytes_corrupted", "units",
						    "dropped",	     "errors",		"setups" };

		puts("| soak workload | bytes checked | bytes corrupted | units | dropped by design | "
		     "failed calls | setups |");
		puts("|---|---|---|---|---|---|---|");
		for (size_t i = 0; i < n; i++) {
			const char *w = json_string_value(json_object_get(t[i], "bench"));
			bool first = true;

			for (size_t j = 0; j < i; j++)
				first &= strcmp(json_string_value(json_object_get(t[j], "bench")), w) != 0;
			if (!first || !strcmp(w, "daemon"))
				continue;
			printf("| %s |", w);
			for (size_t c = 0; c < sizeof(cols) / sizeof(cols[0]); c++) {
				double v = -1;

				for (size_t j = 0; j < n; j++)
					if (!strcmp(json_string_value(json_object_get(t[j], "bench")), w) &&
					    !strcmp(json_string_value(json_object_get(t[j], "metric")),
						    cols[c]))
						v = num(t[j], "value");
				v >= 0 ? printf(" %.4g |", v) : printf("  |");
			}
			puts("");
		}
		puts("");
		for (size_t i = 0; i < n; i++)
			if (!strcmp(json_string_value(json_object_get(t[i], "bench")), "daemon"))
				printf("- daemon %s (%s): %.0f\n",
				       json_string_value(json_object_get(t[i], "metric")),
				       json_string_value(json_object_get(t[i], "mode")),
				       num(t[i], "value"));
		puts("");
	}
	for (size_t i = 0; i < n; i++)
		json_decref(t[i]);
}

int
main(int argc, char **argv)
{
	if (argc < 2 || argc > 4) {
		fprintf(stderr, "usage: vmf-figures CHECK_LOG [FUZZ_JSONL [SOAK_JSONL]]\n"
				"Markdown tables of the figure lines of a make check log, the last "
				"make fuzz run of each target and the last make soak run.\n");
		return 2;
	}
	load_check(argv[1]);
	fault_table();
	if (argc > 2)
		fuzz_table(argv[2]);
	if (argc > 3)
		soak_table(argv[3]);
	for (size_t i = 0; i < nfigs; i++)
		json_decref(figs[i].o);
	return 0;
}
