/* SPDX-License-Identifier: MIT */
/*
 * .vmx file -> struct vm_config. The text is parsed by common/conf.c (the
 * one parser of this syntax); this file reads the keys it knows, marks them
 * used, checks every value and hands the rest to the caller as unknown.
 *
 * Each group of keys has its own function (name, sizes, VMCI, one NIC, the
 * boot keys); each returns 0 or -errno with @err naming the file, the line
 * and the key as written. A key that is present is always checked, even
 * when the device it belongs to is not present (ethernet1.address with
 * ethernet1.present = "FALSE"), so that a file is either right or refused,
 * whatever is switched on later.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "switch/frame.h"
#include "vmx.h"

struct vmx {
	struct conf *c;
	const char *file; /* for messages */
	struct conf_error *err;
};

/* The entry of @key (any case), or conf_count(): conf_prefixed() on the whole key. */
static size_t
vmx_index(const struct conf *c, const char *key)
{
	size_t klen = strlen(key);

	for (size_t i = conf_prefixed(c, key, 0); i < conf_count(c);
	     i = conf_prefixed(c, key, i + 1))
		if (strlen(conf_key(c, i)) == klen)
			return i;
	return conf_count(c);
}

/* An error about @key: at its line when it is in the file, else line 0. */
__attribute__((format(printf, 3, 4))) static int
vmx_fail(const struct vmx *x, const char *key, const char *fmt, ...)
{
	size_t i = vmx_index(x->c, key);
	va_list ap;

	if (!x->err)
		return -EINVAL;
	memset(x->err, 0, sizeof(*x->err));
	snprintf(x->err->file, sizeof(x->err->file), "%s", x->file ? x->file : "");
	snprintf(x->err->key, sizeof(x->err->key), "%s",
		 i < conf_count(x->c) ? conf_key(x->c, i) : key);
	x->err->line = conf_line(x->c, i);
	va_start(ap, fmt);
	vsnprintf(x->err->msg, sizeof(x->err->msg), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/*
 * The value of @key copied into @dst, or "" when absent. Refused when it
 * does not fit or holds a byte that is not printable ASCII.
 */
static int
vmx_str(const struct vmx *x, const char *key, char *dst, size_t size)
{
	const char *v = conf_get(x->c, key);

	conf_mark_used(x->c, key);
	dst[0] = '\0';
	if (!v)
		return 0;
	if (strlen(v) >= size)
		return vmx_fail(x, key, "longer than %zu bytes", size - 1);
	if (!conf_text(v))
		return vmx_fail(x, key, "holds a byte that is not printable ASCII");
	memcpy(dst, v, strlen(v) + 1);
	return 0;
}

static char
vmx_lower(char ch)
{
	return ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
}

static void
vmx_lower_str(char *s)
{
	for (; *s; s++)
		*s = vmx_lower(*s);
}

/* ---------------------------------------------------------------------- */
/* displayName, sizes, guestOS */

#define VMX_NAME_CHARS "letters, digits, spaces and . _ - + ( ) @"

/* 1..63 bytes of VMX_NAME_CHARS, starting with a letter or digit, no trailing space. */
static bool
vmx_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n >= sizeof(((struct vm_config *)0)->name))
		return false;
	if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') ||
	      (s[0] >= '0' && s[0] <= '9')) ||
	    s[n - 1] == ' ')
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || strchr(" ._-+()@", ch)))
			return false;
	}
	return true;
}

/* The base name of @file without a ".vmx" suffix (any case), into @dst. */
static void
vmx_base_name(const char *file, char *dst, size_t size)
{
	const char *b = strrchr(file, '/');
	size_t n;

	b = b ? b + 1 : file;
	n = strlen(b);
	if (n > 4 && !strcasecmp(b + n - 4, ".vmx"))
		n -= 4;
	snprintf(dst, size, "%.*s", (int)n, b);
}

static int
vmx_name(const struct vmx *x, struct vm_config *out)
{
	const char *v = conf_get(x->c, "displayName");
	char base[80];

	conf_mark_used(x->c, "displayName");
	if (v) {
		if (!vmx_name_ok(v))
			return vmx_fail(x, "displayName",
					"not a VM name: 1 to %zu bytes of " VMX_NAME_CHARS
					", starting with a letter or digit",
					sizeof(out->name) - 1);
		memcpy(out->name, v, strlen(v) + 1);
		return 0;
	}
	if (!x->file || !x->file[0])
		return vmx_fail(x, "displayName",
				"missing (and no file name to take the name from)");
	vmx_base_name(x->file, base, sizeof(base));
	if (!vmx_name_ok(base))
		return vmx_fail(x, "displayName",
				"missing, and the file's base name is not a VM name (1 to %zu "
				"bytes of " VMX_NAME_CHARS "): set displayName",
				sizeof(out->name) - 1);
	memcpy(out->name, base, strlen(base) + 1); /* vmx_name_ok(): it fits */
	return 0;
}

static int
vmx_sizes(const struct vmx *x, struct vm_config *out)
{
	uint64_t v;
	int r;

	conf_mark_used(x->c, "memsize");
	r = conf_get_u64(x->c, "memsize", VM_MEM_MIN, VM_MEM_MAX, VM_MEM_DEF, &out->mem_mib,
			 x->err);
	if (r < 0)
		return r;
	conf_mark_used(x->c, "numvcpus");
	r = conf_get_u64(x->c, "numvcpus", 1, VM_VCPUS_MAX, 1, &v, x->err);
	out->vcpus = (unsigned)v;
	if (r < 0)
		return r;
	return vmx_str(x, "guestOS", out->guest_os, sizeof(out->guest_os));
}

/* ---------------------------------------------------------------------- */
/* VMCI */

/* vmci0.id: a CID >= 3. VMware's own ids (often negative, or 1, 2) are refused. */
static int
vmx_cid(const struct vmx *x, struct vm_config *out)
{
	const char *v = conf_get(x->c, "vmci0.id");
	uint64_t u;

	conf_mark_used(x->c, "vmci0.id");
	out->cid = 0;
	if (!v)
		return 0;
	if (v[0] == '-' && v[1] >= '0' && v[1] <= '9')
		return vmx_fail(x, "vmci0.id",
				"\"%.20s\" is negative (an id VMware generated?): a CID is %u to "
				"%u; remove the key to have one assigned",
				conf_text(v) ? v : "?", VM_CID_MIN, VM_CID_MAX);
	if (conf_get_u64(x->c, "vmci0.id", 0, VM_CID_MIN - 1, 0, &u, NULL) == 0) {
		if (u == 0)
			return vmx_fail(x, "vmci0.id",
					"0 is not a CID (0 is the hypervisor's); remove the key "
					"to have one assigned");
		return vmx_fail(x, "vmci0.id",
				"CID %u is reserved (1 local, 2 host): VMware's id %u collides "
				"with it; use %u to %u, or remove the key to have one assigned",
				(unsigned)u, (unsigned)u, VM_CID_MIN, VM_CID_MAX);
	}
	/* Not a number, or too large: conf's own message gives the range. */
	if (conf_get_u64(x->c, "vmci0.id", VM_CID_MIN, VM_CID_MAX, 0, &u, x->err) < 0)
		return -EINVAL;
	out->cid = (uint32_t)u;
	return 0;
}

static int
vmx_vmci(const struct vmx *x, struct vm_config *out)
{
	int r;

	conf_mark_used(x->c, "vmci0.present");
	r = conf_get_bool(x->c, "vmci0.present", false, &out->vmci, x->err);
	if (r < 0)
		return r;
	conf_mark_used(x->c, "vmci0.restricted");
	r = conf_get_bool(x->c, "vmci0.restricted", false, &out->vmci_restricted, x->err);
	if (r < 0)
		return r;
	return vmx_cid(x, out);
}

/* vmfabric.limit.<name>, as contextN.limit.<name> in the host configuration. */
static int
vmx_limits(const struct vmx *x, struct vm_config *out)
{
	char key[64];

	for (int l = 0; l < VMCI_LIM_N; l++) {
		snprintf(key, sizeof(key), "vmfabric.limit.%s", vmci_limit_key(l));
		if (!conf_mark_used(x->c, key))
			continue;
		if (conf_get_u64(x->c, key, 0, UINT64_MAX, 0, &out->limit[l], x->err) < 0)
			return -EINVAL;
		out->limit_set |= 1u << l;
	}
	return 0;
}

/* ---------------------------------------------------------------------- */
/* ethernetN */

/* "xx:xx:xx:xx:xx:xx", unicast, not zero. */
static int
vmx_mac(const struct vmx *x, const char *key, uint8_t mac[6])
{
	const char *v = conf_get(x->c, key);
	static const uint8_t zero[6];

	if (eth_mac_parse(v, mac))
		goto bad;
	if (mac[0] & 1)
		return vmx_fail(x, key,
				"%s is a multicast address: a NIC needs a unicast one (first "
				"byte even)",
				v);
	if (!memcmp(mac, zero, 6))
		return vmx_fail(x, key, "00:00:00:00:00:00 is not a NIC's address");
	return 0;
bad:
	return vmx_fail(x, key, "\"%.40s\" is not a MAC address (like 00:50:56:01:02:03)",
			conf_text(v) ? v : "?");
}

#define NKEY(k) (snprintf(key, sizeof(key), "ethernet%u." k, n), conf_mark_used(x->c, key), key)

/* .address and .generatedAddress as VMware's .addressType says. */
static int
vmx_nic_mac(const struct vmx *x, unsigned n, struct vm_nic *nic)
{
	char type[16], key[48], use[48] = "";
	int r;

	r = vmx_str(x, NKEY("addressType"), type, sizeof(type));
	if (r < 0)
		return r;
	vmx_lower_str(type);
	if (type[0] && strcmp(type, "static") && strcmp(type, "generated") && strcmp(type, "vpx"))
		return vmx_fail(x, key, "\"%s\" is not static, generated or vpx", type);
	if (strcmp(type, "generated") && strcmp(type, "vpx") && conf_get(x->c, NKEY("address")))
		snprintf(use, sizeof(use), "%s", key);
	else if (!strcmp(type, "static"))
		return vmx_fail(x, NKEY("addressType"), "static, but ethernet%u.address is missing",
				n);
	if (conf_get(x->c, NKEY("generatedAddress")) && !use[0])
		snprintf(use, sizeof(use), "%s", key);
	conf_mark_used(x->c, NKEY("address"));
	if (!use[0])
		return 0;
	r = vmx_mac(x, use, nic->mac);
	nic->has_mac = r == 0;
	return r;
}

static int
vmx_nic(const struct vmx *x, unsigned n, struct vm_nic *nic)
{
	static const char *const devs[] = { "vmxnet3", "e1000", "e1000e", "virtio" };
	char key[48];
	bool known = false;
	int r;

	r = conf_get_bool(x->c, NKEY("present"), false, &nic->present, x->err);
	if (r < 0)
		return r;
	r = vmx_str(x, NKEY("virtualDev"), nic->virtual_dev, sizeof(nic->virtual_dev));
	if (r < 0)
		return r;
	vmx_lower_str(nic->virtual_dev);
	if (!nic->virtual_dev[0])
		snprintf(nic->virtual_dev, sizeof(nic->virtual_dev), "e1000");
	for (size_t i = 0; i < sizeof(devs) / sizeof(devs[0]); i++)
		known |= !strcmp(nic->virtual_dev, devs[i]);
	if (!known)
		return vmx_fail(x, key,
				"\"%s\" is not a NIC vmfabric provides: vmxnet3, e1000, "
				"e1000e or virtio",
				nic->virtual_dev);
	r = vmx_str(x, NKEY("networkName"), nic->network, sizeof(nic->network));
	if (r < 0)
		return r;
	return vmx_nic_mac(x, n, nic);
}

#undef NKEY

/* ethernet10.* and beyond, or ethernet01.*: refused rather than reported as unknown. */
static int
vmx_nic_range(const struct vmx *x)
{
	const struct conf *c = x->c;

	for (size_t i = conf_prefixed(c, "ethernet", 0); i < conf_count(c);
	     i = conf_prefixed(c, "ethernet", i + 1)) {
		const char *k = conf_key(c, i) + 8;
		size_t d = strspn(k, "0123456789");
		if (d == 0 || k[d] != '.')
			continue;
		if (d > 1)
			return vmx_fail(x, conf_key(c, i),
					"vmfabric has ethernet0 to ethernet%d only",
					VM_MAX_NICS - 1);
	}
	return 0;
}

/* ---------------------------------------------------------------------- */
/* vmfabric.kernel, .initrd, .append, .accel */

/* A path from @key, made absolute against @dir when it is relative. */
static int
vmx_path(const struct vmx *x, const char *key, const char *dir, char *dst, size_t size)
{
	char v[PATH_MAX];
	int r, n;

	r = vmx_str(x, key, v, sizeof(v));
	if (r < 0 || !conf_get(x->c, key))
		return r;
	if (!v[0])
		return vmx_fail(x, key, "empty path");
	if (v[0] == '/' || !dir || !dir[0])
		n = snprintf(dst, size, "%s", v);
	else
		n = snprintf(dst, size, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", v);
	if (n < 0 || (size_t)n >= size) {
		vmx_fail(x, key, "longer than %zu bytes once resolved against %s", size - 1,
			 dir ? dir : "");
		return -ENAMETOOLONG;
	}
	return 0;
}

static int
vmx_boot(const struct vmx *x, const char *dir, struct vm_config *out)
{
	int r;

	r = vmx_path(x, "vmfabric.kernel", dir, out->kernel, sizeof(out->kernel));
	if (r == 0 && !out->kernel[0])
		r = vmx_fail(x, "vmfabric.kernel",
			     "missing: vmfabric boots a guest from its kernel (direct kernel "
			     "boot); disks are not supported yet");
	r = r ?: vmx_path(x, "vmfabric.initrd", dir, out->initrd, sizeof(out->initrd));
	r = r ?: vmx_str(x, "vmfabric.append", out->append, sizeof(out->append));
	r = r ?: vmx_str(x, "vmfabric.accel", out->accel, sizeof(out->accel));
	if (r < 0)
		return r;
	vmx_lower_str(out->accel);
	if (!out->accel[0])
		snprintf(out->accel, sizeof(out->accel), "auto");
	if (strcmp(out->accel, "auto") && strcmp(out->accel, "kvm") && strcmp(out->accel, "tcg"))
		return vmx_fail(x, "vmfabric.accel", "\"%s\" is not auto, kvm or tcg", out->accel);
	return 0;
}

/* ---------------------------------------------------------------------- */

static int
vmx_read(const struct vmx *x, const char *dir, struct vm_config *out)
{
	int r;

	r = vmx_name(x, out);
	r = r ?: vmx_sizes(x, out);
	r = r ?: vmx_vmci(x, out);
	r = r ?: vmx_limits(x, out);
	r = r ?: vmx_nic_range(x);
	for (unsigned n = 0; n < VM_MAX_NICS && r == 0; n++)
		r = vmx_nic(x, n, &out->nic[n]);
	return r ?: vmx_boot(x, dir, out);
}

static int
vmx_from_conf(struct conf *c, const char *file, const char *dir, struct vm_config *out,
	      struct conf_error *err, vm_unknown_fn *unknown, void *ctx)
{
	const struct vmx x = { .c = c, .file = file, .err = err };
	struct vm_config cfg;
	int r;

	memset(&cfg, 0, sizeof(cfg));
	r = vmx_read(&x, dir, &cfg);
	if (r < 0)
		return r;
	for (size_t i = conf_first_unused(c, 0, NULL); i < conf_count(c);
	     i = conf_first_unused(c, i + 1, NULL)) {
		cfg.n_unknown++;
		if (unknown)
			unknown(ctx, conf_key(c, i), conf_line(c, i));
	}
	*out = cfg;
	return 0;
}

int
vm_config_parse(const char *name, const char *text, size_t len, const char *vmx_dir,
		struct vm_config *out, struct conf_error *err, vm_unknown_fn *unknown, void *ctx)
{
	struct conf *c;
	int r;

	r = conf_parse(name, text, len, &c, err);
	if (r < 0)
		return r;
	r = vmx_from_conf(c, name, vmx_dir, out, err, unknown, ctx);
	conf_free(c);
	return r;
}

int
vm_config_load(const char *path, struct vm_config *out, struct conf_error *err,
	       vm_unknown_fn *unknown, void *ctx)
{
	char dir[PATH_MAX], abs[PATH_MAX];
	const char *slash = strrchr(path, '/');
	struct conf *c;
	int r;

	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	r = conf_load(path, &c, err);
	if (r < 0)
		return r;
	if (!realpath(dir, abs)) {
		r = -errno;
		if (err) {
			memset(err, 0, sizeof(*err));
			snprintf(err->file, sizeof(err->file), "%s", path);
			snprintf(err->msg, sizeof(err->msg), "its directory: %s", strerror(-r));
		}
		conf_free(c);
		return r;
	}
	r = vmx_from_conf(c, path, abs, out, err, unknown, ctx);
	conf_free(c);
	return r;
}

/* ---------------------------------------------------------------------- */

char *
vm_mac_str(const uint8_t mac[6], char *buf)
{
	snprintf(buf, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4],
		 mac[5]);
	return buf;
}

void
vm_nic_default_mac(const char *vm_name, unsigned index, uint8_t mac[6])
{
	uint32_t h = 2166136261u; /* FNV-1a of the name, then the index */

	for (const char *s = vm_name; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	h = (h ^ (index & 0xff)) * 16777619u;
	mac[0] = 0x02; /* locally administered, unicast */
	mac[1] = 0x56;
	mac[2] = (uint8_t)(h >> 24);
	mac[3] = (uint8_t)(h >> 16);
	mac[4] = (uint8_t)(h >> 8);
	mac[5] = (uint8_t)h;
}
