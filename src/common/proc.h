/* SPDX-License-Identifier: MIT */
/* What /proc says about a process: for status answers and benchmarks. */
#ifndef VMFABRIC_PROC_H
#define VMFABRIC_PROC_H

#include <sys/types.h>

/* Resident memory of @pid (0: this process) in KiB, or -1 if unknown. */
long proc_rss_kib(pid_t pid);

/* This process's open descriptors, or -1 if /proc cannot say. */
long proc_fd_count(void);
/* Another process's (0: this one), or -1. */
long proc_fd_count_of(pid_t pid);

/* Bytes this process has allocated and not freed (malloc's own count). */
long long proc_heap_bytes(void);

#endif
