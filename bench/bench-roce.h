/* SPDX-License-Identifier: MIT */
/*
 * bench/run rdma's rdma_roce_write_bw measurement (bench-roce.c): RDMA
 * WRITE between two namespace hosts over RoCE v2, against TCP between
 * their VMkernel adapters over the same switches, uplinks and veth.
 */
#ifndef VMFABRIC_BENCH_ROCE_H
#define VMFABRIC_BENCH_ROCE_H

#include "bench.h"

/*
 * Run it when --only lets it: emits its JSON lines, prints its table and
 * sets its targets. Without root it says that it is skipped and why, and
 * returns true. Returns false when the vmfabric side failed (it said why
 * on stderr).
 */
bool bench_rdma_roce(const struct bench_opts *o);

#endif
