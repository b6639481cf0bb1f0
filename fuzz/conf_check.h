/* SPDX-License-Identifier: MIT */
/* Checks of configuration errors, for the targets of the files users write (vmx, hostconf). */
#ifndef VMFABRIC_FUZZ_CONF_CHECK_H
#define VMFABRIC_FUZZ_CONF_CHECK_H

#include <string.h>

#include "common/conf.h"
#include "fuzz.h"

/*
 * An error as users see it: every field terminated, the message not empty
 * and printable, its line within the @len bytes of @text (0: no line).
 */
static inline void
fz_check_conf_error(const struct conf_error *e, const uint8_t *text, size_t len)
{
	char buf[700];
	unsigned lines = 1;

	FZ_CHECK(memchr(e->msg, 0, sizeof(e->msg)) && e->msg[0]);
	FZ_CHECK(memchr(e->key, 0, sizeof(e->key)) && memchr(e->file, 0, sizeof(e->file)));
	FZ_CHECK(conf_text(conf_error_str(e, buf, sizeof(buf))));
	for (size_t i = 0; i < len; i++)
		lines += text[i] == '\n';
	FZ_CHECK(e->line <= lines);
}

#endif
