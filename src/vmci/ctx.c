/* SPDX-License-Identifier: MIT */
/*
 * The context registry and the VMCI policy. The registry is a sorted array
 * (a host has tens to thousands of contexts, looked up by CID on connect and
 * on every datagram refusal, never in a loop over packets).
 *
 * Policy, as in the VMCI document: VMCI is off unless vmci0.present is TRUE;
 * an enabled context may talk to the host and to every other enabled
 * context, or only to the host when restricted. The host context (CID 2)
 * is always on. A context may always talk to itself.
 */
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "ctx.h"

static const struct {
	const char *key, *unit;
	uint64_t def;
	int err;
} limits[VMCI_LIM_N] = {
#define LIM_ROW(id, k, d, e, u) [VMCI_LIM_##id] = { #k, u, d, e },
	VMCI_LIMITS(LIM_ROW)
#undef LIM_ROW
};

const char *
vmci_limit_key(enum vmci_limit l)
{
	return l < VMCI_LIM_N ? limits[l].key : "?";
}

int
vmci_reg_init(struct vmci_reg *r)
{
	struct vmci_ctx host = { .cid = VMCI_CID_HOST, .kind = VMCI_KIND_HOST, .present = true,
				 .privileged = true };

	memset(r, 0, sizeof(*r));
	for (int i = 0; i < VMCI_LIM_N; i++)
		r->limit[i] = limits[i].def;
	snprintf(host.name, sizeof(host.name), "host");
	return vmci_reg_add(r, &host, NULL, NULL, 0);
}

void
vmci_reg_free(struct vmci_reg *r)
{
	free(r->ctx);
	memset(r, 0, sizeof(*r));
}

static size_t
reg_index(const struct vmci_reg *r, uint32_t cid)
{
	size_t lo = 0, hi = r->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (r->ctx[mid].cid < cid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

struct vmci_ctx *
vmci_reg_find(const struct vmci_reg *r, uint32_t cid)
{
	size_t i = reg_index(r, cid);

	return i < r->n && r->ctx[i].cid == cid ? &r->ctx[i] : NULL;
}

struct vmci_ctx *
vmci_reg_find_name(const struct vmci_reg *r, const char *name)
{
	if (!name || !*name)
		return NULL;
	for (size_t i = 0; i < r->n; i++)
		if (!strcmp(r->ctx[i].name, name))
			return &r->ctx[i];
	return NULL;
}

static uint32_t
reg_free_cid(const struct vmci_reg *r)
{
	uint32_t cid = VMCI_CID_FIRST;

	/* The array is sorted: the first gap at or after 3 is the answer. */
	for (size_t i = reg_index(r, VMCI_CID_FIRST); i < r->n && r->ctx[i].cid == cid; i++)
		cid++;
	return cid;
}

int
vmci_reg_add(struct vmci_reg *r, const struct vmci_ctx *c, struct vmci_ctx **out, char *why,
	     size_t whylen)
{
	struct vmci_ctx n = *c, *dup;
	size_t i;

	if (n.kind != VMCI_KIND_HOST && n.cid != VMCI_CID_ANY && n.cid < VMCI_CID_FIRST) {
		if (why)
			snprintf(why, whylen, "CID %u is reserved (0 hypervisor, 1 local, 2 host)",
				 n.cid);
		return -EINVAL;
	}
	if (n.cid == VMCI_CID_ANY) {
		n.cid = reg_free_cid(r);
		n.assigned = true;
		if (n.cid == VMCI_CID_ANY)
			return -ENOSPC;
	}
	if ((dup = vmci_reg_find(r, n.cid))) {
		if (why)
			snprintf(why, whylen, "CID %u is already used by \"%s\"%s", n.cid, dup->name,
				 dup->line ? " (configured earlier)" : "");
		return -EEXIST;
	}
	if ((dup = vmci_reg_find_name(r, n.name))) {
		if (why)
			snprintf(why, whylen, "name \"%s\" is already used by CID %u", n.name,
				 dup->cid);
		return -EEXIST;
	}
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 16;
		struct vmci_ctx *p = realloc(r->ctx, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		r->ctx = p;
		r->cap = cap;
	}
	i = reg_index(r, n.cid);
	memmove(&r->ctx[i + 1], &r->ctx[i], (r->n - i) * sizeof(*r->ctx));
	n.refs = 0;
	/* Limits not configured for the context are the daemon's defaults. */
	for (int l = 0; l < VMCI_LIM_N; l++)
		if (!(n.quota.set & 1u << l))
			n.quota.max[l] = r->limit[l];
	memset(n.quota.used, 0, sizeof(n.quota.used));
	memset(n.quota.refused, 0, sizeof(n.quota.refused));
	r->ctx[i] = n;
	r->n++;
	if (out)
		*out = &r->ctx[i];
	return 0;
}

int
vmci_reg_remove(struct vmci_reg *r, uint32_t cid)
{
	size_t i = reg_index(r, cid);

	if (i >= r->n || r->ctx[i].cid != cid || cid == VMCI_CID_HOST)
		return -ENOENT;
	memmove(&r->ctx[i], &r->ctx[i + 1], (r->n - i - 1) * sizeof(*r->ctx));
	r->n--;
	return 0;
}

int
vmci_quota_take(struct vmci_reg *r, uint32_t cid, enum vmci_limit l, uint64_t n)
{
	struct vmci_ctx *x = vmci_reg_find(r, cid);
	struct vmci_quota *q = x ? &x->quota : NULL;
	char key[64];

	if (!q || l >= VMCI_LIM_N)
		return 0;
	if (n <= q->max[l] && q->used[l] <= q->max[l] - n) {
		q->used[l] += n;
		return 0;
	}
	q->refused[l]++;
	if ((q->set & 1u << l) && x->kind == VMCI_KIND_VM)
		snprintf(key, sizeof(key), "vmfabric.limit.%s in its .vmx", limits[l].key);
	else if (q->set & 1u << l)
		snprintf(key, sizeof(key), "context%ld.limit.%s", x->group, limits[l].key);
	else
		snprintf(key, sizeof(key), "vmfabricd.limit.%s", limits[l].key);
	log_rl(LOG_LVL_WARN,
	       "context %u \"%s\": refused: %s limit reached (%llu%s in use, %llu more asked, "
	       "limit %llu: %s)",
	       x->cid, x->name, limits[l].key, (unsigned long long)q->used[l], limits[l].unit,
	       (unsigned long long)n, (unsigned long long)q->max[l], key);
	return -limits[l].err;
}

void
vmci_quota_give(struct vmci_reg *r, uint32_t cid, enum vmci_limit l, uint64_t n)
{
	struct vmci_ctx *x = vmci_reg_find(r, cid);

	if (x && l < VMCI_LIM_N)
		x->quota.used[l] -= n < x->quota.used[l] ? n : x->quota.used[l];
}

int
vmci_policy(const struct vmci_ctx *a, const struct vmci_ctx *b)
{
	if (a == b || a->cid == b->cid)
		return a->present ? 0 : -EACCES;
	if (!a->present || !b->present)
		return -EACCES;
	if (a->kind == VMCI_KIND_HOST || b->kind == VMCI_KIND_HOST)
		return 0;
	if (a->restricted || b->restricted)
		return -EACCES;
	return 0;
}

int
vmci_may_act_as(const struct vmci_ctx *c, uid_t uid, gid_t gid)
{
	if (c->kind == VMCI_KIND_VM)
		return -EACCES; /* a VM's CID is its guest's: no process acts as it */
	if (uid == 0 || c->kind == VMCI_KIND_HOST)
		return 0;
	if (c->has_uid && c->uid == uid)
		return 0;
	if (c->has_gid && c->gid == gid)
		return 0;
	return -EACCES;
}

/* ---------------------------------------------------------------------- */
/* Loading contextN.* groups from a host configuration */

static int
load_group(struct vmci_reg *r, struct conf *c, long g, size_t first, struct conf_error *err)
{
	struct vmci_ctx x = { .kind = VMCI_KIND_PROCESS, .line = conf_line(c, first), .group = g };
	char key[96], why[160] = "";
	const char *v;
	uint64_t u;
	int e = 0;

#define GKEY(k) (snprintf(key, sizeof(key), "context%ld." k, g), conf_mark_used(c, key), key)
	v = conf_get(c, GKEY("name"));
	if (v && (!*v || strlen(v) >= sizeof(x.name) || !conf_text(v))) {
		snprintf(why, sizeof(why), "a context name is 1 to %zu printable ASCII characters",
			 sizeof(x.name) - 1);
		conf_fail_at(err, c, first, why);
		return -EINVAL;
	}
	snprintf(x.name, sizeof(x.name), "%s", v ? v : "");
	if (!v)
		snprintf(x.name, sizeof(x.name), "context%ld", g);
	e = e ?: conf_get_bool(c, GKEY("vmci0.present"), false, &x.present, err);
	e = e ?: conf_get_bool(c, GKEY("vmci0.restricted"), false, &x.restricted, err);
	e = e ?: conf_get_bool(c, GKEY("privileged"), false, &x.privileged, err);
	e = e ?: conf_get_u64(c, GKEY("vmci0.id"), 1, 0xfffffffe, VMCI_CID_ANY, &u, err);
	x.cid = (uint32_t)u;
	if (!e && conf_get(c, GKEY("uid"))) {
		e = conf_get_u64(c, key, 0, 0xfffffffe, 0, &u, err);
		x.has_uid = true;
		x.uid = (uid_t)u;
	}
	if (!e && conf_get(c, GKEY("gid"))) {
		e = conf_get_u64(c, key, 0, 0xfffffffe, 0, &u, err);
		x.has_gid = true;
		x.gid = (gid_t)u;
	}
	for (int l = 0; l < VMCI_LIM_N && !e; l++) {
		snprintf(key, sizeof(key), "context%ld.limit.%s", g, limits[l].key);
		if (!conf_mark_used(c, key))
			continue;
		e = conf_get_u64(c, key, 0, UINT64_MAX, 0, &x.quota.max[l], err);
		x.quota.set |= 1u << l;
	}
#undef GKEY
	if (e)
		return e;
	if (x.cid != VMCI_CID_ANY && x.cid < VMCI_CID_FIRST) {
		snprintf(key, sizeof(key), "context%ld.vmci0.id", g);
		for (size_t i = 0; i < conf_count(c); i++)
			if (!strcasecmp(conf_key(c, i), key))
				conf_fail_at(err, c, i,
					  "CIDs 0, 1 and 2 are reserved (hypervisor, local, host)");
		return -EINVAL;
	}
	e = vmci_reg_add(r, &x, NULL, why, sizeof(why));
	if (e)
		conf_fail_at(err, c, first, why[0] ? why : strerror(-e));
	return e;
}

/* vmfabricd.limit.*: every context's defaults, the host's and those loaded so far too. */
static int
load_limits(struct vmci_reg *r, struct conf *c, struct conf_error *err)
{
	char key[64];
	int e;

	for (int l = 0; l < VMCI_LIM_N; l++) {
		snprintf(key, sizeof(key), "vmfabricd.limit.%s", limits[l].key);
		if (!conf_mark_used(c, key))
			continue;
		if ((e = conf_get_u64(c, key, 0, UINT64_MAX, 0, &r->limit[l], err)))
			return e;
		for (size_t i = 0; i < r->n; i++)
			if (!(r->ctx[i].quota.set & 1u << l))
				r->ctx[i].quota.max[l] = r->limit[l];
	}
	return 0;
}

/* vmfabricd.mgmt_group: a group name or a number. */
static int
load_mgmt_group(struct vmci_reg *r, struct conf *c, struct conf_error *err)
{
	const char *key = "vmfabricd.mgmt_group", *v;
	struct group *gr;
	char *end;
	unsigned long n;

	if (!conf_mark_used(c, key) || !(v = conf_get(c, key)) || !*v)
		return 0;
	errno = 0;
	n = strtoul(v, &end, 10);
	if (!*end && !errno && n < 0xffffffffu && isdigit((unsigned char)*v)) {
		r->mgmt_gid = (gid_t)n;
	} else if ((gr = getgrnam(v))) {
		r->mgmt_gid = gr->gr_gid;
	} else {
		for (size_t i = 0; i < conf_count(c); i++)
			if (!strcasecmp(conf_key(c, i), key))
				conf_fail_at(err, c, i, "no such group (a group name or a number)");
		return -EINVAL;
	}
	r->has_mgmt_gid = true;
	snprintf(r->mgmt_group, sizeof(r->mgmt_group), "%s", v);
	return 0;
}

int
vmci_reg_load(struct vmci_reg *r, struct conf *c, struct conf_error *err)
{
	struct vmci_reg tmp = { 0 };
	long done[4096];
	size_t ndone = 0;
	int e = 0;

	/* Work on a copy: a failing file adds nothing. */
	tmp.cap = r->cap;
	tmp.n = r->n;
	tmp.ctx = malloc((r->cap ? r->cap : 1) * sizeof(*tmp.ctx));
	if (!tmp.ctx)
		return -ENOMEM;
	memcpy(tmp.ctx, r->ctx, r->n * sizeof(*r->ctx));
	memcpy(tmp.limit, r->limit, sizeof(tmp.limit));
	e = load_limits(&tmp, c, err);
	e = e ?: load_mgmt_group(&tmp, c, err);

	/* Explicit CIDs first, so that assigned ones never take them. */
	for (int pass = 0; pass < 2 && !e; pass++) {
		for (size_t i = 0; i < conf_count(c) && !e; i++) {
			long g = conf_group(conf_key(c, i), "context");
			char key[64];
			bool seen = false;

			if (g < 0)
				continue;
			for (size_t k = 0; k < ndone; k++)
				seen |= done[k] == g;
			snprintf(key, sizeof(key), "context%ld.vmci0.id", g);
			if (seen || (pass == 0) != (conf_get(c, key) != NULL))
				continue;
			if (ndone == sizeof(done) / sizeof(done[0])) {
				conf_fail_at(err, c, i, "too many contexts (4096 at most)");
				e = -E2BIG;
				break;
			}
			done[ndone++] = g;
			e = load_group(&tmp, c, g, i, err);
		}
	}
	if (e) {
		free(tmp.ctx);
		return e;
	}
	free(r->ctx);
	*r = tmp;
	return 0;
}
