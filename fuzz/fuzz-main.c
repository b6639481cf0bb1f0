/* SPDX-License-Identifier: MIT */
/*
 * Corpus replay driver: links with a fuzz target in place of libFuzzer, so
 * that every target's corpus runs as a regression test under gcc and the
 * sanitizers. Arguments are files or directories (not recursive). An empty
 * corpus is an error: a regression test with no inputs tests nothing.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int
replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	long len;

	if (!f) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return -1;
	}
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc(len > 0 ? (size_t)len : 1);
	if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len) {
		fprintf(stderr, "%s: read failed\n", path);
		fclose(f);
		free(buf);
		return -1;
	}
	fclose(f);
	/* An exact-size heap copy, so ASan catches any read past the input. */
	LLVMFuzzerTestOneInput(buf, (size_t)len);
	free(buf);
	return 0;
}

static int
cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
replay_dir(const char *dir, int *count)
{
	struct dirent *e;
	char **names = NULL;
	size_t n = 0;
	int err = 0;
	DIR *d = opendir(dir);

	if (!d) {
		fprintf(stderr, "%s: %s\n", dir, strerror(errno));
		return -1;
	}
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		names = realloc(names, (n + 1) * sizeof(*names));
		names[n] = malloc(strlen(dir) + strlen(e->d_name) + 2);
		sprintf(names[n], "%s/%s", dir, e->d_name);
		n++;
	}
	closedir(d);
	qsort(names, n, sizeof(*names), cmp);
	for (size_t i = 0; i < n; i++) {
		if (replay_file(names[i]) < 0)
			err = -1;
		else
			(*count)++;
		free(names[i]);
	}
	free(names);
	return err;
}

int
main(int argc, char **argv)
{
	int count = 0, err = 0;
	struct stat st;

	for (int i = 1; i < argc; i++) {
		if (stat(argv[i], &st) < 0) {
			fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
			err = 1;
		} else if (S_ISDIR(st.st_mode)) {
			err |= replay_dir(argv[i], &count) < 0;
		} else {
			err |= replay_file(argv[i]) < 0;
			count += !err;
		}
	}
	printf("replayed %d inputs\n", count);
	if (count == 0) {
		fprintf(stderr, "no inputs: an empty corpus tests nothing\n");
		return 1;
	}
	return err;
}
