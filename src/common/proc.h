/* SPDX-License-Identifier: MIT */
/* What /proc says about a process: for status answers and benchmarks. */
#ifndef VMFABRIC_PROC_H
#define VMFABRIC_PROC_H

#include <sys/types.h>

/* Resident memory of @pid (0: this process) in KiB, or -1 if unknown. */
long proc_rss_kib(pid_t pid);

#endif
