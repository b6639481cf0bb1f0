/* SPDX-License-Identifier: MIT */
/*
 * Logging for the daemon and the CLI: levels, one line per message with a
 * timestamp, and a rate limit for anything a guest or client can trigger at
 * will (datapath and protocol errors), so that a misbehaving peer cannot
 * flood the log. Libraries do not use this: they take a callback.
 */
#ifndef VMFABRIC_LOG_H
#define VMFABRIC_LOG_H

#include <stdint.h>

enum log_level { LOG_LVL_ERR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

void log_set_level(enum log_level l);
enum log_level log_get_level(void);
/* Parses "error", "warn", "info", "debug"; -EINVAL otherwise. */
int log_parse_level(const char *s, enum log_level *out);
__attribute__((format(printf, 2, 3))) void log_msg(enum log_level l, const char *fmt, ...);

/* At most @burst messages per second from one call site; says how many it dropped. */
struct log_limit {
	int64_t window;
	uint32_t count, dropped;
};
__attribute__((format(printf, 3, 4))) void log_limited(struct log_limit *ll, enum log_level l,
						       const char *fmt, ...);

#define log_err(...) log_msg(LOG_LVL_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...)                                     \
	do {                                               \
		if (log_get_level() >= LOG_LVL_DEBUG)      \
			log_msg(LOG_LVL_DEBUG, __VA_ARGS__); \
	} while (0)
#define log_rl(lvl, ...)                               \
	do {                                           \
		static struct log_limit ll_;           \
		log_limited(&ll_, lvl, __VA_ARGS__);   \
	} while (0)

#endif
