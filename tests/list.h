/* SPDX-License-Identifier: MIT */
/*
 * Every test, once: X(name, timeout in seconds). The runner's table and the
 * declarations are generated from this list, so a test that is written but
 * not listed does not link silently unused (-Wmissing-prototypes catches it).
 * Names starting with qp_ form the ring suite that also runs under TSan.
 */
#define TEST_LIST(X)                    \
	X(qp_create_sizes, 10)          \
	X(qp_attach_checks, 10)         \
	X(qp_wrap_every_offset, 30)     \
	X(qp_full_and_empty, 10)        \
	X(qp_iov, 10)                   \
	X(qp_msg_sizes, 30)             \
	X(qp_msg_straddle, 10)          \
	X(qp_msg_truncate, 10)          \
	X(qp_nonblock_and_timeout, 10)  \
	X(qp_shutdown_eof_epipe, 10)    \
	X(qp_peer_death, 20)            \
	X(qp_corrupt_indices, 10)       \
	X(qp_corrupt_records, 10)       \
	X(qp_arm_events, 10)            \
	X(qp_threads_stream, 120)       \
	X(qp_threads_msgs, 120)         \
	X(qp_process_stream_1gib, 300)  \
	X(conf_examples, 10)            \
	X(conf_syntax, 10)              \
	X(conf_escapes, 10)             \
	X(conf_case_insensitive, 10)    \
	X(conf_errors, 10)              \
	X(conf_limits, 20)              \
	X(conf_get_bool, 10)            \
	X(conf_get_u64, 10)             \
	X(conf_iteration, 10)           \
	X(conf_unused, 10)              \
	X(conf_error_str, 10)           \
	X(conf_load, 20)                \
	X(vmci_stream_basic, 30)        \
	X(vmci_seqpacket_basic, 30)     \
	X(vmci_seqpacket_boundaries, 30) \
	X(vmci_refusals, 30)            \
	X(vmci_ports, 30)               \
	X(vmci_backlog, 30)             \
	X(vmci_connect_timeout, 30)     \
	X(vmci_peer_death, 30)          \
	X(vmci_daemon_restart, 60)      \
	X(vmci_dgram, 30)               \
	X(vmci_nonblocking, 30)         \
	X(vmci_buffer_size, 30)         \
	X(vmci_stream_6gib, 600)        \
	X(vmci_cli, 30)                 \
	X(vmci_config_errors, 30)       \
	X(vmci_many, 120)               \
	X(vmci_dgram_restart, 30)       \
	X(guest_boot, 120)              \
	X(vhost_vsock_sequence, 10)     \
	X(vhost_translate, 10)          \
	X(vhost_mem_table_checks, 10)   \
	X(vhost_malformed, 10)          \
	X(vhost_split_writes, 10)       \
	X(vhost_reply_ack, 10)          \
	X(vhost_ring_rules, 10)         \
	X(vhost_config_and_reset, 10)
