/* SPDX-License-Identifier: MIT */
/*
 * make bench-report: docs/PERFORMANCE.md and its plots from the benchmarks'
 * results (bench/results/NAME.jsonl, appended by bench/run NAME).
 *
 * Of each results file only the last run counts: the lines after the
 * previous run's targets. Its measurements become a table per benchmark
 * (one row per measurement, every system measured in the same run side by
 * side), its targets a table of ratios, and each (benchmark, metric) a PNG
 * made by gnuplot: values against the message size (log scale) when the
 * run measured several sizes, one line per system and mode; otherwise bars,
 * one per system, grouped by mode and the extra fields.
 *
 *   vmf-bench-report RESULTS_DIR OUT_MD PLOT_DIR
 */
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define MAX_ROWS 4096

struct row {
	char bench[48], system[48], mode[32], metric[24];
	char fields[200]; /* the extra fields, "k=v k=v" */
	long msg_bytes;
	double value;
};

struct target {
	char name[96], goal[32];
	double value;
	bool met;
};

static struct row rows[MAX_ROWS];
static size_t nrows;
static struct target targets[256];
static size_t ntargets;

static const char *const known[] = { "bench", "system", "msg_bytes", "mode", "metric", "value" };

static void
copy(char *dst, size_t len, json_t *v)
{
	snprintf(dst, len, "%s", json_is_string(v) ? json_string_value(v) : "");
}

/* The extra members of a measurement, in order, as "k=v k=v". */
static void
extra_fields(json_t *o, char *buf, size_t len)
{
	const char *k;
	json_t *v;
	size_t n = 0;

	buf[0] = 0;
	json_object_foreach(o, k, v) {
		bool std = false;
		char val[64];

		for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
			std |= !strcmp(k, known[i]);
		if (std)
			continue;
		if (json_is_string(v))
			snprintf(val, sizeof(val), "%s", json_string_value(v));
		else if (json_is_integer(v))
			snprintf(val, sizeof(val), "%lld", (long long)json_integer_value(v));
		else if (json_is_real(v))
			snprintf(val, sizeof(val), "%g", json_real_value(v));
		else
			snprintf(val, sizeof(val), "%s", json_is_true(v) ? "true" : "false");
		n += (size_t)snprintf(buf + n, n < len ? len - n : 0, "%s%s=%s", n ? " " : "", k,
				      val);
		if (n >= len)
			break;
	}
}

/* Keep the last run of @path: lines after the last target block that measurements follow. */
static int
load(const char *path)
{
	char line[4096];
	bool after_targets = false;
	FILE *f = fopen(path, "r");

	if (!f)
		return -errno;
	nrows = ntargets = 0;
	while (fgets(line, sizeof(line), f)) {
		json_error_t e;
		json_t *o = json_loads(line, 0, &e);

		if (!json_is_object(o)) {
			json_decref(o);
			continue; /* a line cut by an interrupted run */
		}
		if (json_is_string(json_object_get(o, "bench")) &&
		    !strcmp(json_string_value(json_object_get(o, "bench")), "target")) {
			if (ntargets < sizeof(targets) / sizeof(targets[0])) {
				struct target *t = &targets[ntargets++];

				copy(t->name, sizeof(t->name), json_object_get(o, "target"));
				copy(t->goal, sizeof(t->goal), json_object_get(o, "goal"));
				t->value = json_number_value(json_object_get(o, "value"));
				t->met = json_is_true(json_object_get(o, "met"));
			}
			after_targets = true;
		} else {
			if (after_targets)
				nrows = ntargets = 0; /* a new run */
			after_targets = false;
			if (nrows < MAX_ROWS) {
				struct row *r = &rows[nrows++];

				copy(r->bench, sizeof(r->bench), json_object_get(o, "bench"));
				copy(r->system, sizeof(r->system), json_object_get(o, "system"));
				copy(r->mode, sizeof(r->mode), json_object_get(o, "mode"));
				copy(r->metric, sizeof(r->metric), json_object_get(o, "metric"));
				r->msg_bytes = (long)json_integer_value(json_object_get(o, "msg_bytes"));
				r->value = json_number_value(json_object_get(o, "value"));
				extra_fields(o, r->fields, sizeof(r->fields));
			}
		}
		json_decref(o);
	}
	fclose(f);
	return 0;
}

static void
human_bytes(long b, char *buf, size_t len)
{
	if (b <= 0)
		snprintf(buf, len, "—");
	else if (b % (1 << 20) == 0)
		snprintf(buf, len, "%ld MiB", b >> 20);
	else if (b % 1024 == 0)
		snprintf(buf, len, "%ld KiB", b >> 10);
	else
		snprintf(buf, len, "%ld B", b);
}

/* A file-name-safe copy of @s. */
static void
slug(const char *s, char *out, size_t len)
{
	size_t n = 0;

	for (; *s && n + 1 < len; s++)
		out[n++] = (char)((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-'
					  ? *s
					  : (*s >= 'A' && *s <= 'Z') ? *s - 'A' + 'a' : '_');
	out[n] = 0;
}

static bool
seen_before(size_t i, bool (*same)(const struct row *, const struct row *))
{
	for (size_t j = 0; j < i; j++)
		if (same(&rows[j], &rows[i]))
			return true;
	return false;
}

static bool
same_plot(const struct row *a, const struct row *b)
{
	return !strcmp(a->bench, b->bench) && !strcmp(a->metric, b->metric);
}

static bool
same_series(const struct row *a, const struct row *b)
{
	return same_plot(a, b) && !strcmp(a->system, b->system) && !strcmp(a->mode, b->mode) &&
	       !strcmp(a->fields, b->fields);
}

/* The plot of rows like rows[p]: a PNG in @dir; its file name in @name. Returns 0 or -1. */
static int
plot(size_t p, const char *group, const char *dir, char *name, size_t namelen)
{
	const struct row *r0 = &rows[p];
	char bslug[48], base[128], data[640], script[640], png[640], cmd[1400], label[300];
	bool sizes = false;
	int nseries = 0, err;
	FILE *d, *s;

	slug(r0->bench, bslug, sizeof(bslug));
	snprintf(base, sizeof(base), "%.16s-%s-%s", group, bslug, r0->metric);
	snprintf(name, namelen, "%s.png", base);
	snprintf(data, sizeof(data), "%s/%s.dat", dir, base);
	snprintf(script, sizeof(script), "%s/%s.gp", dir, base);
	snprintf(png, sizeof(png), "%s/%s", dir, name);
	for (size_t i = p; i < nrows; i++)
		if (same_plot(&rows[i], r0) && rows[i].msg_bytes != r0->msg_bytes)
			sizes = true;
	if (!(d = fopen(data, "w")) || !(s = fopen(script, "w"))) {
		if (d)
			fclose(d);
		return -1;
	}
	fprintf(s, "set terminal pngcairo size 900,500 font 'sans,10'\nset output '%s'\n"
		   "set title '%s: %s' noenhanced\nset ylabel '%s' noenhanced\nset grid ytics\n"
		   "set key below noenhanced\nset yrange [0:*]\n",
		png, r0->bench, r0->metric, r0->metric);
	if (sizes) {
		/* One block per series (blank lines between), x = message size. */
		fputs("set logscale x 2\nset format x '%.0b %BB'\nset xlabel 'message size'\nplot ", s);
		for (size_t i = p; i < nrows; i++) {
			if (!same_plot(&rows[i], r0) || seen_before(i, same_series))
				continue;
			for (size_t j = i; j < nrows; j++)
				if (same_series(&rows[j], &rows[i]))
					fprintf(d, "%ld %g\n", rows[j].msg_bytes, rows[j].value);
			fputs("\n\n", d);
			snprintf(label, sizeof(label), "%s %s%s%s", rows[i].system, rows[i].mode,
				 rows[i].fields[0] ? " " : "", rows[i].fields);
			fprintf(s, "%s'%s' index %d using 1:2 with linespoints lw 2 title '%s'",
				nseries ? ", " : "", data, nseries, label);
			nseries++;
		}
	} else {
		/* Bars: one row per measurement, labelled by system, mode and fields. */
		fputs("set style data histograms\nset style fill solid 0.8 border -1\n"
		      "set boxwidth 0.8\nset xtics rotate by -30 noenhanced\nunset key\nplot ",
		      s);
		for (size_t i = p; i < nrows; i++) {
			if (!same_plot(&rows[i], r0))
				continue;
			fprintf(d, "\"%s %s%s%s\" %g\n", rows[i].system, rows[i].mode,
				rows[i].fields[0] ? " " : "", rows[i].fields, rows[i].value);
			nseries++;
		}
		fprintf(s, "'%s' using 2:xtic(1) lc rgb '#3070b0'", data);
	}
	fputs("\n", s);
	fclose(d);
	fclose(s);
	snprintf(cmd, sizeof(cmd), "gnuplot '%s' 2>&1", script);
	err = system(cmd);
	remove(data);
	remove(script);
	return err ? -1 : 0;
}

static void
report_group(FILE *md, const char *results, const char *group, const char *plotdir,
	     const char *plotrel)
{
	char path[512], when[32] = "?", size[32];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s.jsonl", results, group);
	if (load(path) || !nrows)
		return;
	if (!stat(path, &st))
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M UTC", gmtime(&st.st_mtime));
	fprintf(md, "## %s\n\nThe last run in `bench/results/%s.jsonl` (%s); docs/BENCHMARKS.md "
		    "says what each measurement is.\n\n",
		group, group, when);
	fputs("| bench | system | size | mode | more | metric | value |\n"
	      "|---|---|---|---|---|---|---|\n",
	      md);
	for (size_t i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];

		human_bytes(r->msg_bytes, size, sizeof(size));
		fprintf(md, "| %s | %s | %s | %s | %s | %s | %.4g |\n", r->bench, r->system, size,
			r->mode, r->fields, r->metric, r->value);
	}
	if (ntargets) {
		fputs("\n| target | measured | goal | met |\n|---|---|---|---|\n", md);
		for (size_t i = 0; i < ntargets; i++)
			fprintf(md, "| %s | %.4g | %s | %s |\n", targets[i].name, targets[i].value,
				targets[i].goal, targets[i].met ? "yes" : "**no**");
	}
	fputs("\n", md);
	for (size_t i = 0; i < nrows; i++) {
		char name[256];

		if (seen_before(i, same_plot))
			continue;
		if (plot(i, group, plotdir, name, sizeof(name)))
			fprintf(md, "(plot of %s %s: gnuplot failed)\n\n", rows[i].bench, rows[i].metric);
		else
			fprintf(md, "![%s, %s](%s/%s)\n\n", rows[i].bench, rows[i].metric, plotrel, name);
	}
}

int
main(int argc, char **argv)
{
	static const char *const groups[] = { "qp", "vmci", "vm", "vswitch", "rdma" };
	const char *rel;
	FILE *md;

	if (argc != 4) {
		fprintf(stderr, "usage: vmf-bench-report RESULTS_DIR OUT_MD PLOT_DIR\n"
				"Writes OUT_MD with the last run of each RESULTS_DIR/NAME.jsonl "
				"and its plots (PNG, gnuplot) in PLOT_DIR.\n");
		return 2;
	}
	if (!(md = fopen(argv[2], "w"))) {
		perror(argv[2]);
		return 1;
	}
	mkdir(argv[3], 0755);
	rel = strrchr(argv[3], '/') ? strrchr(argv[3], '/') + 1 : argv[3];
	fputs("# Performance\n\n"
	      "Made by `make bench-report` from the benchmarks' results: every table is one run, "
	      "with vmfabric and its peers (TCP loopback, AF_UNIX, the Linux bridge, DPDK's "
	      "testpmd, UCX, the kernel's vsock and virtio-net …) measured in that same run on "
	      "this machine (2 CPUs, shared and noisy: compare ratios within a run, not values "
	      "across runs). `bench/run NAME` makes a run; docs/BENCHMARKS.md describes each "
	      "measurement and comments on the figures.\n\n",
	      md);
	for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++)
		report_group(md, argv[1], groups[i], argv[3], rel);
	if (fclose(md)) {
		perror(argv[2]);
		return 1;
	}
	return 0;
}
