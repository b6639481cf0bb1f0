/* SPDX-License-Identifier: MIT */
/*
 * Log lines go to stderr (a service manager's journal collects them):
 * "2026-11-22T02:40:01.123Z info  message". Writes are one fprintf each so
 * that lines from the dataplane thread and the control thread never
 * interleave mid-line.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"

#define LOG_BURST 10

static enum log_level level = LOG_LVL_INFO;
static const char *const names[] = { "error", "warn", "info", "debug" };

void
log_set_level(enum log_level l)
{
	level = l;
}

enum log_level
log_get_level(void)
{
	return level;
}

int
log_parse_level(const char *s, enum log_level *out)
{
	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(s, names[i])) {
			*out = (enum log_level)i;
			return 0;
		}
	return -EINVAL;
}

__attribute__((format(printf, 2, 0))) static void
log_v(enum log_level l, const char *fmt, va_list ap)
{
	char msg[1024], stamp[32];
	struct timespec ts;
	struct tm tm;

	if (l > level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	fprintf(stderr, "%s.%03ldZ %-5s %s\n", stamp, ts.tv_nsec / 1000000, names[l], msg);
}

void
log_msg(enum log_level l, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_v(l, fmt, ap);
	va_end(ap);
}

void
log_limited(struct log_limit *ll, enum log_level l, const char *fmt, ...)
{
	struct timespec ts;
	va_list ap;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (ts.tv_sec != ll->window) {
		if (ll->dropped)
			log_msg(LOG_LVL_WARN, "(%u similar messages suppressed)", ll->dropped);
		ll->window = ts.tv_sec;
		ll->count = ll->dropped = 0;
	}
	if (++ll->count > LOG_BURST) {
		ll->dropped++;
		return;
	}
	va_start(ap, fmt);
	log_v(l, fmt, ap);
	va_end(ap);
}
