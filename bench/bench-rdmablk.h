/* SPDX-License-Identifier: MIT */
/*
 * bench/run rdma's rdma_block measurement (bench-rdmablk.c): the
 * rdma-block example's target and host over the verbs, against the same
 * block protocol over TCP loopback, on a file in tmpfs.
 */
#ifndef VMFABRIC_BENCH_RDMABLK_H
#define VMFABRIC_BENCH_RDMABLK_H

#include "bench.h"

/*
 * Run it when --only lets it, on the private vmfabricd that is running
 * (contexts a and b): emits its JSON lines and prints its table. Returns
 * false when the vmfabric side failed (it said why on stderr).
 */
bool bench_rdma_block(const struct bench_opts *o);

#endif
