/* SPDX-License-Identifier: MIT */
/*
 * bench/run qp: the queue pair against TCP loopback and an AF_UNIX stream
 * socketpair, two processes each, measured in the same run.
 *   qp_stream  one-way throughput, 64 B / 4 KiB / 64 KiB writes, 128 KiB
 *              queues, the receiver reading up to 64 KiB per call (gbit_s)
 *   qp_rr      64 B request/response, round-trip time median and p99
 *              (rtt_us, rtt_p99_us)
 * each in the modes blocking, blocking_nospin (queue pair only) and busy_poll
 * (see bench/ends.h).
 * Every side writes its whole message (partial writes are continued), as a
 * socket application would.
 */
#include <signal.h>
#include <string.h>

#include "bench.h"
#include "ends.h"

#define QP_SYSTEMS (1u << BSYS_QP | 1u << BSYS_TCP | 1u << BSYS_UNIX)

int
main(int argc, char **argv)
{
	struct bench_opts o;
	double qp, peer;

	bench_parse(argc, argv, &o,
		    "Queue pair vs TCP loopback and AF_UNIX: stream throughput and round trip.");
	signal(SIGPIPE, SIG_IGN);
	if (!o.only || !strncmp(o.only, "qp_stream", strlen(o.only)))
		bench_run_stream(&o, "qp", QP_SYSTEMS, (1u << BMODE_N) - 1);
	if (!o.only || !strncmp(o.only, "qp_rr", strlen(o.only)))
		bench_run_rr(&o, "qp", QP_SYSTEMS, (1u << BMODE_N) - 1);

	qp = bench_value("qp_stream", "vmfabric_qp", 65536, "blocking", "gbit_s");
	peer = bench_value("qp_stream", "tcp_loopback", 65536, "blocking", "gbit_s");
	bench_target("stream_64k_vs_tcp", qp / peer, ">=", 5,
		     "64 KiB stream throughput, queue pair / TCP loopback");
	qp = bench_value("qp_rr", "vmfabric_qp", 64, "busy_poll", "rtt_us");
	bench_target("rr_busy_poll_us", qp, "<=", 2, "busy-poll 64 B round trip, microseconds");
	peer = bench_value("qp_rr", "tcp_loopback", 64, "busy_poll", "rtt_us");
	bench_target("rr_busy_poll_vs_tcp", qp / peer, "<=", 0.1,
		     "busy-poll round trip, queue pair / TCP loopback busy-polling");
	peer = bench_value("qp_rr", "tcp_loopback", 64, "blocking", "rtt_us");
	bench_target("rr_busy_poll_vs_tcp_block", qp / peer, "<=", 0.1,
		     "busy-poll round trip, queue pair / TCP loopback blocking");
	qp = bench_value("qp_rr", "vmfabric_qp", 64, "blocking", "rtt_us");
	peer = bench_value("qp_rr", "af_unix", 64, "blocking", "rtt_us");
	bench_target("rr_blocking_vs_unix", qp / peer, "<=", 1,
		     "blocking round trip (default: brief spin), queue pair / AF_UNIX");
	qp = bench_value("qp_rr", "vmfabric_qp", 64, "blocking_nospin", "rtt_us");
	bench_target("rr_nospin_vs_unix", qp / peer, "<=", 1,
		     "blocking round trip, every wait a sleep, queue pair / AF_UNIX");
	return bench_report();
}
