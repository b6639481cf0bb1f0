/* SPDX-License-Identifier: MIT */
/*
 * Management answers of the broker, as JSON documents built with jansson:
 * vmci.context.list, vmci.socket.list, system.status (network.* are the
 * switches', rdma.device.* the RDMA devices'). The CLI prints them as
 * tables or passes them through (--format=json); their fields are
 * documented in docs/MANAGEMENT.md.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"
#include "common/proc.h"
#include "vmfabric/qp.h"

#ifndef VMFABRIC_VERSION
#define VMFABRIC_VERSION "0.1.0"
#endif

static const char *
kind_name(enum vmci_kind k)
{
	return k == VMCI_KIND_HOST ? "host" : k == VMCI_KIND_VM ? "vm" : "process";
}

/* Each quota: in use, the limit, refusals (docs/MANAGEMENT.md). */
static json_t *
quotas(const struct vmci_quota *q, uint64_t *refused)
{
	json_t *o = json_object();

	*refused = 0;
	for (int l = 0; l < VMCI_LIM_N; l++) {
		json_object_set_new(o, vmci_limit_key(l),
				    json_pack("{s:I, s:I, s:I}", "used", (json_int_t)q->used[l],
					      "limit", (json_int_t)q->max[l], "refused",
					      (json_int_t)q->refused[l]));
		*refused += q->refused[l];
	}
	return o;
}

static json_t *
contexts(struct vmci_broker *b)
{
	json_t *arr = json_array();

	for (size_t i = 0; i < b->reg.n; i++) {
		const struct vmci_ctx *x = &b->reg.ctx[i];
		uint64_t refused;
		json_t *o = json_pack("{s:I, s:s, s:s, s:b, s:b, s:b, s:b, s:I}", "cid",
				      (json_int_t)x->cid, "name", x->name, "kind",
				      kind_name(x->kind), "present", x->present, "restricted",
				      x->restricted, "privileged", x->privileged, "assigned",
				      x->assigned, "connections", (json_int_t)x->refs);

		json_object_set_new(o, "uid", x->has_uid ? json_integer(x->uid) : json_null());
		json_object_set_new(o, "gid", x->has_gid ? json_integer(x->gid) : json_null());
		json_object_set_new(o, "limits", quotas(&x->quota, &refused));
		json_object_set_new(o, "refused", json_integer((json_int_t)refused));
		json_array_append_new(arr, o);
	}
	return json_pack("{s:o}", "contexts", arr);
}

static const char *
type_name(uint32_t t)
{
	return t == SOCK_DGRAM ? "dgram" : t == SOCK_SEQPACKET ? "seqpacket" : "stream";
}

static const char *
state_name(enum conn_state s)
{
	static const char *const n[] = { "new", "ready", "bound", "listening", "connected",
					 "bound" };

	return s < sizeof(n) / sizeof(n[0]) ? n[s] : "?";
}

static json_t *
addr(uint32_t cid, uint32_t port)
{
	return json_pack("{s:I, s:I}", "cid", (json_int_t)cid, "port", (json_int_t)port);
}

/* Counters of one socket: from the shared indices (streams) or the router. */
static void
counters(const struct vmci_conn *c, json_t *o)
{
	json_t *tx = json_null(), *rx = json_null(), *drops = json_null();
	struct qp_counts k;

	if (c->watching) { /* the connector produces queue 0 */
		qp_watch_read(&c->watch, &k);
		tx = json_integer((json_int_t)k.tail[0]);
		rx = json_integer((json_int_t)k.head[1]);
		drops = json_integer(0);
	} else if (c->ep) {
		tx = json_integer((json_int_t)atomic_load(&c->ep->tx_bytes));
		rx = json_integer((json_int_t)atomic_load(&c->ep->rx_bytes));
		drops = json_integer((json_int_t)atomic_load(&c->ep->rx_drops));
		json_object_set_new(o, "tx_msgs", json_integer((json_int_t)atomic_load(&c->ep->tx_msgs)));
		json_object_set_new(o, "rx_msgs", json_integer((json_int_t)atomic_load(&c->ep->rx_msgs)));
		json_object_set_new(o, "tx_refused",
				    json_integer((json_int_t)atomic_load(&c->ep->tx_refused)));
		json_object_set_new(o, "tx_no_port",
				    json_integer((json_int_t)atomic_load(&c->ep->tx_no_port)));
	}
	json_object_set_new(o, "tx_bytes", tx);
	json_object_set_new(o, "rx_bytes", rx);
	json_object_set_new(o, "drops", drops);
}

/*
 * A dialer's connections, from the table its library keeps (untrusted: only
 * numbers to show, the type named only when it is one).
 */
static void
dialer_sockets(const struct vmci_conn *c, json_t *arr)
{
	for (uint32_t i = 0; i < WIRE_DIAL_SLOTS; i++) {
		const struct wire_dial_slot *t = &c->table[i];
		uint32_t type = t->type;
		json_t *o;

		if (atomic_load_explicit(&t->state, memory_order_acquire) != 1)
			continue;
		o = json_pack("{s:I, s:s, s:s, s:I, s:o, s:o, s:I, s:I, s:I, s:i}", "id",
			      (json_int_t)c->id, "type",
			      type == SOCK_STREAM || type == SOCK_SEQPACKET ? type_name(type) : "?",
			      "state", "connected", "pid", (json_int_t)c->pid, "local",
			      addr(c->cid, t->port), "peer", addr(t->peer_cid, t->peer_port),
			      "queue_bytes", (json_int_t)t->size, "tx_bytes",
			      (json_int_t)atomic_load(&t->tx_bytes), "rx_bytes",
			      (json_int_t)atomic_load(&t->rx_bytes), "drops", 0);
		json_object_set_new(o, "direct", json_true());
		json_array_append_new(arr, o);
	}
}

static json_t *
sockets(struct vmci_broker *b)
{
	json_t *arr = json_array();

	for (const struct vmci_conn *c = b->conns; c; c = c->next) {
		json_t *o;

		if (c->table) {
			dialer_sockets(c, arr);
			continue;
		}
		if (c->state == CONN_NEW || c->state == CONN_VNIC)
			continue; /* not a socket (the CLI itself; a vNIC: network port list) */
		o = json_pack("{s:I, s:s, s:s, s:I}", "id", (json_int_t)c->id, "type",
			      type_name(c->type), "state", state_name(c->state), "pid",
			      (json_int_t)c->pid);
		json_object_set_new(o, "local", c->bound || c->state >= CONN_LISTENING
							? addr(c->cid, c->port)
							: addr(c->cid, VMCI_PORT_ANY));
		json_object_set_new(o, "peer", c->state == CONN_CONNECTED
						       ? addr(c->peer_cid, c->peer_port)
						       : json_null());
		json_object_set_new(o, "queue_bytes",
				    c->qsize ? json_integer((json_int_t)c->qsize) : json_null());
		if (c->state == CONN_LISTENING) {
			json_object_set_new(o, "backlog", json_integer(c->backlog));
			json_object_set_new(o, "pending",
					    json_integer(atomic_load(&c->bl->pending)));
			json_object_set_new(o, "channels", json_integer((json_int_t)c->channels));
		}
		counters(c, o);
		json_array_append_new(arr, o);
	}
	return json_pack("{s:o}", "sockets", arr);
}

static json_t *
status(struct vmci_broker *b)
{
	struct timespec ts;
	json_t *doc;
	double up;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	up = (double)((int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec - b->started_ns) / 1e9;
	doc = json_pack("{s:s, s:I, s:f, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:{s:I, s:I, s:I}}", "version",
			 VMFABRIC_VERSION, "pid", (json_int_t)getpid(), "uptime_s", up, "socket",
			 b->path, "config", b->config_name ? b->config_name : "(built-in)",
			 "contexts", (json_int_t)b->reg.n, "connections", (json_int_t)b->nconns,
			 "rss_kib", (json_int_t)proc_rss_kib(0), "fds", (json_int_t)proc_fd_count(),
			 "heap_bytes", (json_int_t)proc_heap_bytes(), "dgram", "endpoints",
			 (json_int_t)atomic_load(&b->router.endpoints), "forwarded",
			 (json_int_t)atomic_load(&b->router.forwarded), "drops",
			 (json_int_t)atomic_load(&b->router.drops));
	if (doc && b->status_ext)
		b->status_ext(b, doc);
	return doc;
}

int
broker_mgmt(struct vmci_broker *b, const struct broker_mgmt_req *r, char **json)
{
	const char *cmd = r->cmd;
	json_t *doc = NULL;
	int err;

	if (!strcmp(cmd, "vmci.context.list"))
		doc = contexts(b);
	else if (!strcmp(cmd, "vmci.socket.list"))
		doc = sockets(b);
	else if (!strcmp(cmd, "system.status"))
		doc = status(b);
	else if (!strncmp(cmd, "network.", 8) && (err = vsw_dp_mgmt(&b->dp, cmd, r->arg, r->uid, &doc)) != -EOPNOTSUPP) {
		if (err)
			return err;
	} else if (!strncmp(cmd, "rdma.device.", 12) &&
		   (err = rdma_dev_mgmt(&b->rdma_devs, cmd, r->arg, r->uid, &doc)) != -EOPNOTSUPP) {
		if (err)
			return err;
	} else if (!strcmp(cmd, "rdma.stats")) {
		doc = broker__rdma_stats(b);
	} else if (!b->mgmt_ext)
		return -EOPNOTSUPP;
	else if ((err = b->mgmt_ext(b->mgmt_ctx, r, &doc)))
		return err;
	if (!doc)
		return -ENOMEM;
	*json = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	return *json ? 0 : -ENOMEM;
}
