/* SPDX-License-Identifier: MIT */
/*
 * vmfabric system metrics: the daemon's counters in Prometheus' text
 * exposition format (version 0.0.4), from the management listings
 * (system.status, vmci.context.list, vmci.socket.list, network.vswitch.list,
 * network.port.list, vm.list, rdma.stats), asked one after the other. With
 * --listen ADDR:PORT the CLI serves them over HTTP (GET /metrics) instead,
 * asking the daemon anew for each scrape, until it is interrupted.
 *
 * Each family is described by a table: which listing, which array in it,
 * which string fields become labels, and which numeric fields become
 * counters (_total) or gauges. Listings the daemon cannot give (no VMs
 * manager, say) are left out with a comment line; a daemon that does not
 * answer at all is an error (and, over HTTP, a 503).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

enum mkind { GAUGE, COUNTER };

struct metric {
	const char *field; /* the numeric field; "a.b" reaches into an object */
	const char *name;  /* the metric's name after the family's prefix */
	enum mkind kind;
	const char *help;
	double scale; /* multiplies the value (KiB to bytes); 0: 1 */
};

struct family {
	const char *cmd;	  /* the management request */
	const char *array;	  /* the array of rows in its answer; NULL: the answer is one row */
	const char *sub;	  /* rows are each row's array of this name (labels[0] from the row) */
	const char *prefix;	  /* "vmfabric_port_" */
	const char *labels[5];	  /* string or integer fields that label each row */
	const struct metric m[20];
};

static const struct family families[] = {
	{ "system.status", NULL, NULL, "vmfabric_", { NULL },
	  { { "uptime_s", "uptime_seconds", GAUGE, "Seconds since vmfabricd started.", 0 },
	    { "contexts", "contexts", GAUGE, "VMCI contexts known to the daemon.", 0 },
	    { "connections", "control_connections", GAUGE, "Open control connections.", 0 },
	    { "fds", "daemon_open_fds", GAUGE, "Descriptors the daemon has open.", 0 },
	    { "heap_bytes", "daemon_heap_bytes", GAUGE, "Bytes the daemon has allocated.", 0 },
	    { "rss_kib", "daemon_resident_bytes", GAUGE, "The daemon's resident memory.", 1024 },
	    { "dgram.endpoints", "dgram_endpoints", GAUGE, "Datagram sockets open.", 0 },
	    { "dgram.forwarded", "dgram_forwarded", COUNTER, "Datagrams the router delivered.", 0 },
	    { "dgram.drops", "dgram_dropped", COUNTER,
	      "Datagrams dropped because the receiver's ring stayed full.", 0 } } },
	{ "vmci.context.list", "contexts", NULL, "vmfabric_context_", { "cid", "name", "kind" },
	  { { "connections", "connections", GAUGE, "Control connections acting as the context.",
	      0 } } },
	{ "vmci.socket.list", "sockets", NULL, "vmfabric_socket_", { "id", "type", "state", "pid" },
	  { { "tx_bytes", "tx_bytes", COUNTER, "Bytes sent on a connected socket.", 0 },
	    { "rx_bytes", "rx_bytes", COUNTER, "Bytes received on a connected socket.", 0 },
	    { "queue_bytes", "queue_bytes", GAUGE, "Size of each direction's ring.", 0 },
	    { "drops", "dropped", COUNTER, "Datagrams dropped toward the socket.", 0 },
	    { "tx_msgs", "tx_messages", COUNTER, "Datagrams sent.", 0 },
	    { "rx_msgs", "rx_messages", COUNTER, "Datagrams received.", 0 } } },
	{ "network.vswitch.list", "vswitches", NULL, "vmfabric_vswitch_", { "name", "vmq" },
	  { { "ports", "ports", GAUGE, "Ports on the switch.", 0 },
	    { "fdb_entries", "fdb_entries", GAUGE, "Entries in the filter table.", 0 },
	    { "forwarded", "forwarded_frames", COUNTER, "Frames forwarded to one port.", 0 },
	    { "flooded", "flooded_frames", COUNTER, "Frames flooded within their VLAN.", 0 },
	    { "default_queue_sorted", "default_queue_sorted_frames", COUNTER,
	      "Frames sorted from the default queue (VMQ off).", 0 } } },
	{ "network.port.list", "ports", NULL, "vmfabric_port_",
	  { "name", "kind", "vswitch", "portgroup", "vlan_id" },
	  { { "rx_packets", "rx_packets", COUNTER, "Frames the port's queue received.", 0 },
	    { "rx_bytes", "rx_bytes", COUNTER, "Bytes the port's queue received.", 0 },
	    { "tx_packets", "tx_packets", COUNTER, "Frames the port sent into the switch.", 0 },
	    { "tx_bytes", "tx_bytes", COUNTER, "Bytes the port sent into the switch.", 0 },
	    { "flooded", "flooded", COUNTER, "Frames from the port that were flooded.", 0 },
	    { "drops_by_reason.runt", "dropped_runt", COUNTER, "Frames too short.", 0 },
	    { "drops_by_reason.mtu", "dropped_mtu", COUNTER, "Frames above the MTU.", 0 },
	    { "drops_by_reason.bad_source", "dropped_bad_source", COUNTER,
	      "Frames with a multicast source.", 0 },
	    { "drops_by_reason.vlan", "dropped_vlan", COUNTER, "Frames against VLAN rules.", 0 },
	    { "drops_by_reason.spoofed", "dropped_spoofed", COUNTER,
	      "Frames from a MAC not the port's.", 0 },
	    { "drops_by_reason.queue_full", "dropped_queue_full", COUNTER,
	      "Frames dropped because the port's queue was full.", 0 },
	    { "drops_by_reason.port_down", "dropped_port_down", COUNTER,
	      "Frames toward a port that was down.", 0 } } },
	{ "vm.list", "vms", NULL, "vmfabric_vm_", { "name", "cid", "accel" },
	  { { "uptime_s", "uptime_seconds", GAUGE, "Seconds since the VM started.", 0 },
	    { "memsize_mib", "memory_bytes", GAUGE, "The VM's memory.", 1048576 },
	    { "vsock.conns", "vsock_connections", GAUGE, "Open vsock connections.", 0 },
	    { "vsock.opened", "vsock_opened", COUNTER, "vsock connections opened.", 0 },
	    { "vsock.refused", "vsock_refused", COUNTER, "vsock connections refused.", 0 },
	    { "vsock.to_guest_bytes", "vsock_to_guest_bytes", COUNTER, "Bytes to the guest.", 0 },
	    { "vsock.from_guest_bytes", "vsock_from_guest_bytes", COUNTER,
	      "Bytes from the guest.", 0 },
	    { "vsock.resets", "vsock_resets", COUNTER, "vsock connections reset.", 0 },
	    { "vsock.proto_errors", "vsock_protocol_errors", COUNTER,
	      "Malformed or spoofed packets from the guest.", 0 },
	    { "vsock.rx_no_buffers", "vsock_rx_no_buffers", COUNTER,
	      "Times the guest had no receive buffer.", 0 } } },
	{ "network.port.list", "ports", "queues", "vmfabric_port_queue_", { "name", "queue" },
	  { { "running", "running", GAUGE, "Whether the virtqueue runs.", 0 },
	    { "size", "size", GAUGE, "Descriptors in the virtqueue.", 0 },
	    { "buffers", "buffers", GAUGE, "Buffers the guest has given and not had back.", 0 },
	    { "interrupts", "interrupts", COUNTER, "Interrupts sent to the guest.", 0 },
	    { "interrupts_suppressed", "interrupts_suppressed", COUNTER,
	      "Interrupts the guest asked not to get.", 0 } } },
	{ "rdma.stats", NULL, NULL, "vmfabric_rdma_", { NULL },
	  { { "qps", "qps", GAUGE, "Queue pairs of every process.", 0 },
	    { "mrs", "mrs", GAUGE, "Memory regions of every process.", 0 },
	    { "roce.qps", "roce_qps", GAUGE, "Queue pairs to other hosts.", 0 },
	    { "roce.frames_in", "roce_frames_in", COUNTER, "RoCE v2 frames taken.", 0 },
	    { "roce.frames_out", "roce_frames_out", COUNTER, "RoCE v2 frames sent.", 0 },
	    { "roce.bad_frames", "roce_bad_frames", COUNTER, "Frames that did not parse.", 0 },
	    { "roce.no_qp", "roce_no_qp", COUNTER, "Frames for no queue pair.", 0 },
	    { "roce.retransmits", "roce_retransmits", COUNTER, "Packets sent again.", 0 },
	    { "roce.timeouts", "roce_timeouts", COUNTER, "Retransmit timer expiries.", 0 },
	    { "roce.naks_sent", "roce_naks_sent", COUNTER, "NAKs sent.", 0 },
	    { "roce.naks_rcvd", "roce_naks_received", COUNTER, "NAKs received.", 0 },
	    { "roce.rnr_naks_sent", "roce_rnr_naks_sent", COUNTER, "RNR NAKs sent.", 0 },
	    { "roce.rnr_naks_rcvd", "roce_rnr_naks_received", COUNTER, "RNR NAKs received.",
	      0 },
	    { "roce.dup_requests", "roce_duplicate_requests", COUNTER, "Duplicate requests.",
	      0 } } },
};

/* @obj's field @path ("a.b": field b of object a). */
static json_t *
field(json_t *obj, const char *path)
{
	char key[64];
	const char *dot = strchr(path, '.');

	if (!dot)
		return json_object_get(obj, path);
	snprintf(key, sizeof(key), "%.*s", (int)(dot - path), path);
	return field(json_object_get(obj, key), dot + 1);
}

/* A label value with \, " and newline escaped as the format asks. */
static void
put_label(FILE *f, const char *name, json_t *v, bool *first)
{
	char num[32];
	const char *s = NULL;

	if (json_is_string(v))
		s = json_string_value(v);
	else if (json_is_integer(v))
		snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v)), s = num;
	else
		return;
	fprintf(f, "%s%s=\"", *first ? "{" : ",", name);
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fprintf(f, "\\%c", *s);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
	fputc('"', f);
	*first = false;
}

/* One sample of @m from @row (with @parent: a row of the family's sub-array). */
static void
put_sample(FILE *f, const struct family *fam, const struct metric *m, json_t *parent,
	   json_t *row)
{
	json_t *v = field(row, m->field);
	double x;
	bool first = true;

	if (json_is_boolean(v))
		x = json_is_true(v);
	else if (json_is_number(v))
		x = json_number_value(v) * (m->scale ? m->scale : 1);
	else
		return; /* absent or null for this row (a listener has no byte counts) */
	fprintf(f, "%s%s%s", fam->prefix, m->name, m->kind == COUNTER ? "_total" : "");
	for (size_t i = 0; i < 5 && fam->labels[i]; i++)
		put_label(f, fam->labels[i], field(parent && !i ? parent : row, fam->labels[i]),
			  &first);
	/* Integers exactly (counters reach 2^53 long after anyone looks), the rest to 1 ns. */
	fprintf(f, x == (double)(long long)x ? "%s %.0f\n" : "%s %.9f\n", first ? "" : "}", x);
}

static void
put_family(FILE *f, const struct family *fam, json_t *doc)
{
	json_t *rows = fam->array ? json_object_get(doc, fam->array) : NULL;

	for (size_t k = 0; k < ARRAY_SIZE(fam->m) && fam->m[k].field; k++) {
		const struct metric *m = &fam->m[k];
		size_t i;
		json_t *row;

		fprintf(f, "# HELP %s%s%s %s\n# TYPE %s%s%s %s\n", fam->prefix, m->name,
			m->kind == COUNTER ? "_total" : "", m->help, fam->prefix, m->name,
			m->kind == COUNTER ? "_total" : "", m->kind == COUNTER ? "counter" : "gauge");
		if (!fam->array)
			put_sample(f, fam, m, NULL, doc);
		else
			json_array_foreach(rows, i, row) {
				size_t j;
				json_t *sub;

				if (!fam->sub)
					put_sample(f, fam, m, NULL, row);
				else
					json_array_foreach(json_object_get(row, fam->sub), j, sub)
						put_sample(f, fam, m, row, sub);
			}
	}
}

/* Every family into @f; -errno when the daemon could not be asked at all. */
static int
exposition(const struct cli_ctx *cx, FILE *f, json_t *all)
{
	int up = 0;

	for (size_t i = 0; i < ARRAY_SIZE(families); i++) {
		json_t *doc;
		int err = cli_call(cx, families[i].cmd, "", &doc);

		if (err && i == 0)
			return err; /* no daemon to ask: cli_call said why */
		if (err || json_object_get(doc, "error")) {
			if (f)
				fprintf(f, "# %s: not available\n", families[i].cmd);
			if (!err)
				json_decref(doc);
			continue;
		}
		up++;
		if (f)
			put_family(f, &families[i], doc);
		if (all)
			json_object_set(all, families[i].cmd, doc);
		json_decref(doc);
	}
	if (f)
		fprintf(f, "# HELP vmfabric_up Whether vmfabricd answered.\n"
			   "# TYPE vmfabric_up gauge\nvmfabric_up %d\n",
			up > 0);
	return up ? 0 : -EIO;
}

/* ---------------------------------------------------------------------- */
/* --listen: a small HTTP server for Prometheus' scrapes */

static volatile sig_atomic_t stopping;

static void
on_stop(int sig)
{
	(void)sig;
	stopping = 1;
}

static int
listen_on(const struct cli_ctx *cx, const char *spec)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	char host[64];
	const char *colon = strrchr(spec, ':');
	long port;
	char *end;
	int fd, one = 1;

	if (!colon || (size_t)(colon - spec) >= sizeof(host)) {
		cli_error(cx, "--listen takes ADDRESS:PORT (an IPv4 address), not '%s'", spec);
		return -EINVAL;
	}
	snprintf(host, sizeof(host), "%.*s", (int)(colon - spec), spec);
	port = strtol(colon + 1, &end, 10);
	if (*end || port < 1 || port > 65535 || inet_pton(AF_INET, host, &a.sin_addr) != 1) {
		cli_error(cx, "--listen takes ADDRESS:PORT (an IPv4 address), not '%s'", spec);
		return -EINVAL;
	}
	a.sin_port = htons((uint16_t)port);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 16)) {
		int err = -errno;

		cli_error(cx, "listening on %s: %s", spec, strerror(-err));
		if (fd >= 0)
			close(fd);
		return err;
	}
	return fd;
}

/* One request: GET /metrics (or /) gets the exposition; anything else a 404. */
static void
serve_one(const struct cli_ctx *cx, int c)
{
	struct timeval tv = { .tv_sec = 5 };
	char req[2048], *body = NULL;
	size_t len = 0, got = 0;
	const char *status = "200 OK", *type = "text/plain; version=0.0.4; charset=utf-8";
	time_t deadline = time(NULL) + 5; /* the whole request, however it trickles in */
	FILE *m;
	ssize_t n;

	/* One client at a time: none may hold the server for more than seconds. */
	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	while (got < sizeof(req) - 1 && time(NULL) < deadline &&
	       (n = read(c, req + got, sizeof(req) - 1 - got)) > 0) {
		got += (size_t)n;
		req[got] = 0;
		if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
			break;
	}
	req[got] = 0;
	if (!(m = open_memstream(&body, &len)))
		return;
	if (strncmp(req, "GET /metrics ", 13) && strncmp(req, "GET / ", 6)) {
		status = "404 Not Found", type = "text/plain";
		fputs("vmfabric: GET /metrics\n", m);
	} else if (exposition(cx, m, NULL)) {
		status = "503 Service Unavailable";
		fputs("vmfabric_up 0\n", m);
	}
	fclose(m);
	dprintf(c, "HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		   "Connection: close\r\n\r\n",
		status, type, len);
	for (size_t off = 0; off < len; off += (size_t)n)
		if ((n = write(c, body + off, len - off)) <= 0)
			break;
	free(body);
}

static int
serve(const struct cli_ctx *cx, const char *spec)
{
	struct sigaction sa = { .sa_handler = on_stop };
	int fd = listen_on(cx, spec);

	if (fd < 0)
		return fd;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	fprintf(stderr, CLI_NAME ": serving metrics at http://%s/metrics (Ctrl-C ends)\n", spec);
	while (!stopping) {
		int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);

		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
				continue; /* a client gone before we took it */
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				usleep(100000); /* out of something for now: try again */
				continue;
			}
			cli_error(cx, "accept: %s", strerror(errno));
			close(fd);
			return -errno;
		}
		serve_one(cx, c);
		close(c);
	}
	close(fd);
	return 0;
}

int
cmd_metrics(const struct cli_ctx *cx, const struct cli_cmd *cmd)
{
	json_t *all;
	int err;

	(void)cmd;
	if (cx->opt[OPT_LISTEN])
		return serve(cx, cx->opt[OPT_LISTEN]);
	if (cx->format != CLI_FMT_JSON)
		return exposition(cx, stdout, NULL);
	if (!(all = json_object()))
		return -ENOMEM;
	err = exposition(cx, NULL, all);
	if (!err)
		err = json_print(stdout, all);
	json_decref(all);
	return err;
}
