/* SPDX-License-Identifier: MIT */
/*
 * Running VMs (see vms.h). Start: parse the .vmx, claim the CID in the
 * VMCI registry, make the runtime directory and the vsock device's
 * listening vhost-user socket, launch QEMU. QEMU connects to the socket
 * as a vhost-user client; the device takes the accepted connection. Exit:
 * the pidfd becomes readable, the process is reaped, the device, the CID
 * and the directory go.
 *
 * Only the daemon's user (root) may start and stop VMs: a .vmx names a
 * kernel that QEMU reads with the daemon's rights.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/unixsock.h"
#include "qemu.h"
#include "switch/emu.h"
#include "switch/vnet.h"
#include "vhost/vhost.h"
#include "vmci/broker.h"
#include "vms.h"
#include "vsock/vsock.h"

#define STOP_TIMEOUT_MS 3000
#define CONSOLE_TAIL (64u << 10)

struct vm {
	struct vm *next;
	struct vms *m;
	struct vm_config cfg;
	uint32_t cid;
	char vmx[256];
	char dir[192];
	char sock_path[224];
	char serial[224];
	char hybrid[224]; /* Firecracker-style UNIX socket to the guest's vsock ports */
	char accel[8];
	struct loop_src listen; /* the vsock device's vhost-user socket */
	struct loop_src proc;	/* pidfd */
	pid_t pid;
	struct vsock_dev *vsock;
	/* Its NICs' switch ports: virtio over vhost-user, or emulated by QEMU. */
	struct vnet_port *vnet[VM_MAX_NICS];
	struct emu_port *emu[VM_MAX_NICS];
	int qemu_fd[VM_MAX_NICS]; /* an emulated NIC's socket end for QEMU, until it starts */
	int64_t started_ns;
};

static void probe_finished(struct loop_src *s, uint32_t events);

static int
make_dir(const char *path)
{
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int
vms_init(struct vms *m, struct loop *loop, struct vmci_broker *b, const char *rundir,
	 const char *accel)
{
	memset(m, 0, sizeof(*m));
	m->loop = loop;
	m->b = b;
	if (strlen(rundir) >= sizeof(m->rundir))
		return -ENAMETOOLONG;
	snprintf(m->rundir, sizeof(m->rundir), "%s", rundir);
	snprintf(m->accel, sizeof(m->accel), "%s", accel && *accel ? accel : "auto");
	if (strcmp(m->accel, "auto") && strcmp(m->accel, "kvm") && strcmp(m->accel, "tcg"))
		return -EINVAL;
	m->probe_done = (struct loop_src){ .fn = probe_finished };
	m->probe_done.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (m->probe_done.fd < 0)
		return -errno;
	if (loop_add(loop, &m->probe_done, EPOLLIN) < 0) {
		close(m->probe_done.fd);
		return -errno;
	}
	return make_dir(m->rundir);
}

/* ---------------------------------------------------------------------- */
/* Tear-down */

static void
rm_dir(struct vm *v)
{
	unlink(v->sock_path);
	/* The console log stays until the next VM of that name: it says why it ended. */
	rmdir(v->dir);
}

static void
nics_free(struct vm *v)
{
	for (unsigned i = 0; i < VM_MAX_NICS; i++) {
		vnet_free(v->vnet[i]);
		v->vnet[i] = NULL;
		if (v->emu[i])
			vsw_dp_remove_port(&v->m->b->dp, &v->emu[i]->dp);
		v->emu[i] = NULL;
		if (v->qemu_fd[i] >= 0)
			close(v->qemu_fd[i]);
		v->qemu_fd[i] = -1;
	}
}

static void
vm_free(struct vm *v)
{
	struct vms *m = v->m;
	struct vmci_ctx *x;

	for (struct vm **p = &m->list; *p; p = &(*p)->next) {
		if (*p == v) {
			*p = v->next;
			m->n--;
			break;
		}
	}
	if (v->listen.fd >= 0) {
		loop_del(m->loop, &v->listen);
		close(v->listen.fd);
	}
	if (v->proc.fd >= 0) {
		loop_del(m->loop, &v->proc);
		close(v->proc.fd);
	}
	vsock_dev_free(v->vsock);
	nics_free(v);
	if ((x = vmci_reg_find(&m->b->reg, v->cid)) && x->kind == VMCI_KIND_VM)
		vmci_reg_remove(&m->b->reg, v->cid);
	rm_dir(v);
	loop_mark_dirty(m->loop);
	free(v);
}

static void
proc_exited(struct loop_src *s, uint32_t events)
{
	struct vm *v = (struct vm *)((char *)s - offsetof(struct vm, proc));
	int st = 0, err;

	(void)events;
	err = vm_qemu_reap(v->proc.fd, &st);
	if (err == -ECHILD) /* started by a daemon that crashed: init reaps it */
		log_info("vm %s (cid %u): QEMU exited", v->cfg.name, v->cid);
	else if (err < 0)
		return;
	else if (WIFEXITED(st))
		log_info("vm %s (cid %u): QEMU exited with status %d", v->cfg.name, v->cid,
			 WEXITSTATUS(st));
	else
		log_warn("vm %s (cid %u): QEMU killed by signal %d", v->cfg.name, v->cid,
			 WTERMSIG(st));
	vm_free(v);
}

/* ---------------------------------------------------------------------- */
/* Start */

static void
frontend_connected(struct loop_src *s, uint32_t events)
{
	struct vm *v = (struct vm *)((char *)s - offsetof(struct vm, listen));
	pid_t peer;
	int fd, err;

	(void)events;
	/* Only this VM's QEMU (or root) may be its device's frontend. */
	fd = unix_accept_from(s->fd, v->pid, &peer);
	if (fd == -EPERM)
		log_warn("vm %s: refused vhost-user connection from pid %d", v->cfg.name, (int)peer);
	if (fd < 0)
		return;
	if ((err = vsock_dev_attach(v->vsock, fd)))
		log_warn("vm %s: vhost-user: %s", v->cfg.name, strerror(-err));
	else
		log_info("vm %s (cid %u): vsock device connected", v->cfg.name, v->cid);
}


static void *
probe_main(void *arg)
{
	struct vms *m = arg;
	uint64_t one = 1;

	vm_accel_probe(m->qemu, m->probe_kernel, m->probe_initrd[0] ? m->probe_initrd : NULL,
		       VM_PROBE_TIMEOUT_MS, m->probe_out, m->probe_out_why, sizeof(m->probe_out_why));
	if (write(m->probe_done.fd, &one, sizeof(one)) < 0) {
		/* the eventfd cannot be full after one write */
	}
	return NULL;
}

/*
 * The accelerator for @c: its own setting, the daemon's, or the probe's;
 * NULL while the probe runs (started here with @c's kernel if need be).
 */
static const char *
pick_accel(struct vms *m, const struct vm_config *c)
{
	if (strcmp(c->accel, "auto"))
		return c->accel;
	if (strcmp(m->accel, "auto"))
		return m->accel;
	if (m->probed[0])
		return m->probed;
	if (!m->probing) {
		snprintf(m->probe_kernel, sizeof(m->probe_kernel), "%s", c->kernel);
		snprintf(m->probe_initrd, sizeof(m->probe_initrd), "%s", c->initrd);
		if (pthread_create(&m->probe_thread, NULL, probe_main, m)) {
			snprintf(m->probed, sizeof(m->probed), "tcg");
			return m->probed;
		}
		m->probing = true;
		log_info("accelerator: probing whether KVM can boot Linux (up to %d s)",
			 VM_PROBE_TIMEOUT_MS / 1000);
	}
	return NULL;
}

static int launch(struct vm *v, char *why, size_t whylen);

/* The probe finished: start the VMs that waited for it. */
static void
probe_finished(struct loop_src *s, uint32_t events)
{
	struct vms *m = (struct vms *)((char *)s - offsetof(struct vms, probe_done));
	struct vm *v, *next;
	uint64_t n;
	char why[256];

	(void)events;
	if (read(s->fd, &n, sizeof(n)) < 0 || !m->probing)
		return;
	pthread_join(m->probe_thread, NULL);
	m->probing = false;
	memcpy(m->probed, m->probe_out, sizeof(m->probed));
	memcpy(m->probe_why, m->probe_out_why, sizeof(m->probe_why));
	log_info("accelerator: %s (%s)", m->probed, m->probe_why);
	for (v = m->list; v; v = next) {
		next = v->next;
		if (v->accel[0])
			continue;
		snprintf(v->accel, sizeof(v->accel), "%s", m->probed);
		if (launch(v, why, sizeof(why))) {
			log_err("vm %s: %s", v->cfg.name, why);
			vm_free(v);
		} else {
			log_info("vm %s: started (cid %u, %s, pid %d)", v->cfg.name, v->cid,
				 v->accel, (int)v->pid);
			loop_mark_dirty(m->loop);
		}
	}
}

static int
claim_cid(struct vm *v, char *why, size_t whylen)
{
	struct vmci_ctx x = { .cid = v->cfg.cid ? v->cfg.cid : VMCI_CID_ANY,
			      .kind = VMCI_KIND_VM,
			      .present = v->cfg.vmci,
			      .restricted = v->cfg.vmci_restricted };
	struct vmci_ctx *out;
	int err;

	snprintf(x.name, sizeof(x.name), "%s", v->cfg.name);
	memcpy(x.quota.max, v->cfg.limit, sizeof(x.quota.max));
	x.quota.set = v->cfg.limit_set;
	err = vmci_reg_add(&v->m->b->reg, &x, &out, why, whylen);
	if (err)
		return err;
	v->cid = out->cid;
	return 0;
}

static int
launch(struct vm *v, char *why, size_t whylen)
{
	struct vm_launch l = { .qemu = v->m->qemu, .accel = v->accel, .serial_log = v->serial };
	char qlog[sizeof(v->dir) + 16], **argv;
	int err;

	snprintf(qlog, sizeof(qlog), "%s/qemu.log", v->dir);
	l.qemu_log = qlog;
	l.vsock_sock = v->vsock ? v->sock_path : NULL;
	for (unsigned i = 0; i < VM_MAX_NICS; i++) {
		l.nic_sock[i] = v->vnet[i] ? v->vnet[i]->path : NULL;
		l.nic_stream[i] = v->emu[i] != NULL;
	}
	if ((err = vm_qemu_argv(&v->cfg, &l, &argv))) {
		snprintf(why, whylen, "QEMU command line: %s", strerror(-err));
		return err;
	}
	err = vm_qemu_spawn_fds(argv, qlog, v->qemu_fd, VM_MAX_NICS, &v->proc.fd, &v->pid);
	vm_qemu_argv_free(argv);
	if (err) {
		snprintf(why, whylen, "starting QEMU: %s", strerror(-err));
		return err;
	}
	for (unsigned i = 0; i < VM_MAX_NICS; i++) {
		if (v->qemu_fd[i] >= 0) /* QEMU has it */
			close(v->qemu_fd[i]);
		v->qemu_fd[i] = -1;
		if (v->vnet[i]) /* only this QEMU may be the NIC's frontend */
			v->vnet[i]->allowed_pid = v->pid;
	}
	if (loop_add(v->m->loop, &v->proc, EPOLLIN) < 0) {
		err = -errno;
		vm_qemu_stop(v->pid, v->proc.fd, 0);
		close(v->proc.fd);
		v->proc.fd = -1;
		return err;
	}
	return 0;
}

/* The device and its socket, for a VM with VMCI on. */
static int
make_device(struct vm *v, char *why, size_t whylen)
{
	int err = vsock_dev_new(v->m->loop, v->cid, v->cfg.name, &v->m->b->fabric, &v->vsock);

	/* A restored VM brings its listening socket along. */
	if (!err && v->listen.fd < 0) {
		v->listen.fd = unix_listen(v->sock_path, SOCK_STREAM, 0600, 4);
		err = v->listen.fd < 0 ? v->listen.fd : 0;
	}
	if (!err && loop_add(v->m->loop, &v->listen, EPOLLIN) < 0)
		err = -errno;
	if (err) {
		snprintf(why, whylen, "vsock device socket %s: %s", v->sock_path, strerror(-err));
		return err;
	}
	vmci_reg_find(&v->m->b->reg, v->cid)->vsock = v->vsock;
	if ((err = vsock_hybrid_listen(v->vsock, v->hybrid)))
		log_warn("vm %s: no hybrid vsock socket %s: %s", v->cfg.name, v->hybrid,
			 strerror(-err)); /* VMCI sockets work without it */
	return 0;
}

/*
 * NIC @i's port on the switch: its port group (ethernetN.networkName, "VM
 * Network" by default), its MAC, and for virtio the vhost-user socket QEMU
 * connects to (made anew: after a restart QEMU reconnects to it), for an
 * emulated NIC a socketpair (@emu_fd: the switch's end kept across a
 * restart, or -1: a new pair, QEMU's end in qemu_fd[i]).
 */
static int
make_nic(struct vm *v, unsigned i, int emu_fd, char *why, size_t whylen)
{
	const struct vm_nic *n = &v->cfg.nic[i];
	const char *pg = n->network[0] ? n->network : "VM Network";
	char name[VSW_NAME], path[sizeof(v->dir) + 16];
	uint8_t mac[6];
	int err, sv[2] = { emu_fd, -1 };

	if (n->has_mac)
		memcpy(mac, n->mac, sizeof(mac));
	else
		vm_nic_default_mac(v->cfg.name, i, mac);
	/* "<vm>.ethN", the VM's name cut to fit */
	snprintf(name, sizeof(name), "%.*s.eth%u", (int)(sizeof(name) - 7), v->cfg.name, i);
	if (!strcmp(n->virtual_dev, "virtio")) {
		snprintf(path, sizeof(path), "%s/eth%u.sock", v->dir, i);
		err = vnet_new(&v->m->b->dp, v->m->loop, pg, name, mac, path, v->pid, &v->vnet[i]);
	} else {
		if (sv[0] < 0 && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
			err = -errno;
		else if (!(err = emu_new(&v->m->b->dp, pg, name, mac, sv[0], &v->emu[i])))
			v->qemu_fd[i] = sv[1];
		else
			for (int k = 0; k < 2; k++)
				if (sv[k] >= 0)
					close(sv[k]);
	}
	if (err) {
		char m[18];

		snprintf(why, whylen, "ethernet%u: %s", i,
			 err == -ENOENT	  ? "no port group of that name (ethernetN.networkName)"
			 : err == -EEXIST ? "its MAC address is another port's on the switch"
					  : strerror(-err));
		if (err == -EEXIST)
			snprintf(why + strlen(why), whylen - strlen(why), " (%s)", vm_mac_str(mac, m));
	}
	return err;
}

static int
make_nics(struct vm *v, char *why, size_t whylen)
{
	for (unsigned i = 0; i < VM_MAX_NICS; i++) {
		int err = v->cfg.nic[i].present ? make_nic(v, i, -1, why, whylen) : 0;

		if (err)
			return err;
	}
	return 0;
}

static void
report_unknown(void *ctx, const char *key, unsigned line)
{
	log_info("%s:%u: %s: not used by vmfabric (kept)", (const char *)ctx, line, key);
}

int
vms_start(struct vms *m, const char *text, size_t len, const char *path, char *why,
	  size_t whylen)
{
	struct conf_error e = { 0 };
	char dir[160], *slash;
	const char *accel;
	struct vm *v = calloc(1, sizeof(*v));
	int err;

	if (!v)
		return -ENOMEM;
	v->m = m;
	v->listen = (struct loop_src){ .fd = -1, .fn = frontend_connected };
	v->proc = (struct loop_src){ .fd = -1, .fn = proc_exited };
	for (unsigned i = 0; i < VM_MAX_NICS; i++)
		v->qemu_fd[i] = -1;
	snprintf(v->vmx, sizeof(v->vmx), "%s", path);
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	err = vm_config_parse(path, text, len, slash ? dir : ".", &v->cfg, &e, report_unknown,
			      (void *)(uintptr_t)path);
	if (err) {
		conf_error_str(&e, why, whylen);
		free(v);
		return err;
	}
	for (struct vm *o = m->list; o; o = o->next) {
		if (!strcmp(o->cfg.name, v->cfg.name)) {
			snprintf(why, whylen, "a VM named \"%s\" is running (cid %u)", o->cfg.name,
				 o->cid);
			free(v);
			return -EEXIST;
		}
	}
	if ((err = claim_cid(v, why, whylen))) {
		free(v);
		return err;
	}
	accel = pick_accel(m, &v->cfg);
	snprintf(v->accel, sizeof(v->accel), "%s", accel ? accel : ""); /* "": after the probe */
	snprintf(v->dir, sizeof(v->dir), "%s/%s", m->rundir, v->cfg.name);
	snprintf(v->sock_path, sizeof(v->sock_path), "%s/vsock.sock", v->dir);
	snprintf(v->serial, sizeof(v->serial), "%s/console.log", v->dir);
	snprintf(v->hybrid, sizeof(v->hybrid), "%s/hybrid.sock", v->dir);
	v->next = m->list;
	m->list = v;
	m->n++;
	unlink(v->serial); /* the last run's console, kept after it ended */
	if ((err = make_dir(v->dir))) {
		snprintf(why, whylen, "%s: %s", v->dir, strerror(-err));
	} else if (!(v->cfg.vmci && (err = make_device(v, why, whylen))) &&
		   !(err = make_nics(v, why, whylen)) && accel) {
		err = launch(v, why, whylen);
	}
	if (err) {
		vm_free(v);
		return err;
	}
	v->started_ns = clock_ns();
	loop_mark_dirty(m->loop);
	if (accel)
		log_info("vm %s: started (cid %u, %s, vmci %s, pid %d)", v->cfg.name, v->cid,
			 v->accel, v->cfg.vmci ? "on" : "off", (int)v->pid);
	else
		log_info("vm %s: cid %u, waiting for the accelerator probe", v->cfg.name, v->cid);
	return 0;
}

/* ---------------------------------------------------------------------- */

static struct vm *
find(struct vms *m, const char *name)
{
	char *end;
	unsigned long cid = strtoul(name, &end, 10);

	for (struct vm *v = m->list; v; v = v->next)
		if (!strcmp(v->cfg.name, name) || (!*end && end != name && v->cid == cid))
			return v;
	return NULL;
}

int
vms_stop(struct vms *m, const char *name)
{
	struct vm *v = find(m, name);

	if (!v)
		return -ENOENT;
	log_info("vm %s (cid %u): stopping", v->cfg.name, v->cid);
	if (v->proc.fd >= 0) /* not while it waits for the accelerator probe */
		vm_qemu_stop(v->pid, v->proc.fd, STOP_TIMEOUT_MS);
	vm_free(v);
	return 0;
}

void
vms_fini(struct vms *m)
{
	if (m->probing)
		pthread_join(m->probe_thread, NULL); /* at most the probe's timeout */
	m->probing = false;
	while (m->list)
		vms_stop(m, m->list->cfg.name);
	if (m->probe_done.fd >= 0) {
		loop_del(m->loop, &m->probe_done);
		close(m->probe_done.fd);
		m->probe_done.fd = -1;
	}
}

static json_t *
nics_json(const struct vm *v)
{
	json_t *a = json_array();
	char mac[18];

	for (unsigned i = 0; a && i < VM_MAX_NICS; i++) {
		const struct vm_nic *n = &v->cfg.nic[i];
		const struct dp_port *p = v->vnet[i]  ? &v->vnet[i]->dp
					  : v->emu[i] ? &v->emu[i]->dp
						      : NULL;
		json_t *o;

		if (!p)
			continue;
		o = json_pack("{s:s, s:s, s:s, s:s, s:b}", "virtual_dev", n->virtual_dev, "port",
			      p->p.name, "portgroup", p->portgroup, "mac", vm_mac_str(p->mac, mac),
			      "frontend_connected", v->vnet[i] ? vnet_connected(v->vnet[i]) : true);
		json_object_set_new(o, "nic", json_sprintf("ethernet%u", i));
		json_array_append_new(a, o);
	}
	return a;
}

static json_t *
vm_json(const struct vm *v)
{
	struct vsock_stats st = { 0 };
	json_t *o = json_pack("{s:s, s:I, s:I, s:s, s:I, s:I, s:b, s:s, s:s, s:f}", "name",
			      v->cfg.name, "cid", (json_int_t)v->cid, "pid", (json_int_t)v->pid,
			      "accel", v->accel[0] ? v->accel : "probing", "memsize_mib", (json_int_t)v->cfg.mem_mib,
			      "vcpus", (json_int_t)v->cfg.vcpus, "vmci", v->cfg.vmci, "vmx",
			      v->vmx, "console_log", v->serial, "uptime_s",
			      (double)(clock_ns() - v->started_ns) / 1e9);

	if (o)
		json_object_set_new(o, "nics", nics_json(v));
	if (!o || !v->vsock)
		return o;
	json_object_set_new(o, "hybrid_socket", json_string(v->hybrid));
	vsock_dev_stats(v->vsock, &st);
	json_object_set_new(o, "vsock",
			    json_pack("{s:b, s:s?, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
				      "connected", vsock_dev_attached(v->vsock), "dropped_because",
				      vsock_dev_why(v->vsock), "conns", (json_int_t)st.conns,
				      "opened", (json_int_t)st.opened, "refused",
				      (json_int_t)st.refused, "to_guest_bytes",
				      (json_int_t)st.to_guest_bytes, "from_guest_bytes",
				      (json_int_t)st.from_guest_bytes, "resets",
				      (json_int_t)st.resets, "proto_errors",
				      (json_int_t)st.proto_errors, "rx_no_buffers",
				      (json_int_t)st.rx_no_buffers));
	return o;
}

static json_t *
console_tail(const struct vm *v)
{
	char *buf = malloc(CONSOLE_TAIL + 1);
	int fd = open(v->serial, O_RDONLY | O_CLOEXEC);
	off_t end = fd >= 0 ? lseek(fd, 0, SEEK_END) : -1;
	ssize_t n = -1;
	json_t *o = NULL;

	if (buf && end >= 0) {
		off_t from = end > (off_t)CONSOLE_TAIL ? end - (off_t)CONSOLE_TAIL : 0;

		n = pread(fd, buf, CONSOLE_TAIL, from);
	}
	if (n >= 0)
		o = json_pack("{s:s, s:s, s:s%}", "name", v->cfg.name, "path", v->serial, "text",
			      buf, (size_t)n);
	if (fd >= 0)
		close(fd);
	free(buf);
	return o;
}

static json_t *
mgmt_start(struct vms *m, const struct broker_mgmt_req *r)
{
	char why[600] = "", *text = malloc(CONF_MAX_FILE);
	ssize_t n = -1;
	size_t len = 0;
	int err;

	if (text)
		while (len < CONF_MAX_FILE &&
		       (n = pread(r->fd, text + len, CONF_MAX_FILE - len, (off_t)len)) > 0)
			len += (size_t)n;
	if (!text || n < 0) {
		err = text ? -errno : -ENOMEM;
		snprintf(why, sizeof(why), "%s: %s", r->arg, strerror(-err));
	} else if (len == CONF_MAX_FILE) {
		err = -EFBIG;
		snprintf(why, sizeof(why), "%s: larger than %u bytes", r->arg, CONF_MAX_FILE);
	} else {
		err = vms_start(m, text, len, r->arg, why, sizeof(why));
	}
	free(text);
	if (err)
		return json_pack("{s:s, s:i}", "error", why[0] ? why : strerror(-err), "errno",
				 -err);
	return vm_json(m->list); /* the newest is first */
}

int
vms_mgmt(void *ctx, const struct broker_mgmt_req *r, json_t **out)
{
	struct vms *m = ctx;
	bool admin = r->uid == 0 || r->uid == geteuid();
	struct vm *v;

	if (!strcmp(r->cmd, "vm.list")) {
		json_t *a = json_array();

		for (v = m->list; a && v; v = v->next)
			json_array_append_new(a, vm_json(v));
		*out = json_pack("{s:o, s:s, s:s}", "vms", a, "accel", m->accel, "probed",
				 m->probed);
	} else if (!strcmp(r->cmd, "vm.console")) {
		if (!(v = find(m, r->arg)))
			return -ENOENT;
		*out = console_tail(v);
	} else if (!strcmp(r->cmd, "vm.start")) {
		if (!admin)
			return -EPERM;
		if (r->fd < 0)
			return -EINVAL;
		*out = mgmt_start(m, r);
	} else if (!strcmp(r->cmd, "vm.stop")) {
		if (!admin)
			return -EPERM;
		if (!(v = find(m, r->arg)))
			return -ENOENT;
		*out = json_pack("{s:s, s:I}", "stopped", v->cfg.name, "cid", (json_int_t)v->cid);
		vms_stop(m, r->arg);
	} else {
		return -EOPNOTSUPP;
	}
	return *out ? 0 : -ENOMEM;
}

/* ---------------------------------------------------------------------- */
/* Restart by exec */

static void
keep_fd(int fd)
{
	if (fd >= 0)
		fcntl(fd, F_SETFD, 0);
}

static void
unkeep_fd(int fd)
{
	if (fd >= 0)
		fcntl(fd, F_SETFD, FD_CLOEXEC);
}

static json_t *
save_ring(const struct vhu_saved_ring *r)
{
	keep_fd(r->kick);
	keep_fd(r->call);
	keep_fd(r->err);
	return json_pack("{s:I, s:I, s:b, s:b, s:b, s:I, s:I, s:I, s:I, s:I, s:i, s:i, s:i}", "num",
			 (json_int_t)r->num, "last_avail", (json_int_t)r->last_avail, "have_addr",
			 r->have_addr, "have_kick", r->have_kick, "enabled", r->enabled, "flags",
			 (json_int_t)r->addr.flags, "desc", (json_int_t)r->addr.desc_user_addr,
			 "used", (json_int_t)r->addr.used_user_addr, "avail",
			 (json_int_t)r->addr.avail_user_addr, "log",
			 (json_int_t)r->addr.log_guest_addr, "kick", r->kick, "call", r->call, "err",
			 r->err);
}

static json_t *
save_vhu(const struct vhu_saved *s)
{
	json_t *regions = json_array(), *rings = json_array();

	keep_fd(s->sock);
	for (uint32_t i = 0; regions && i < s->nregions; i++) {
		const struct vhu_mem_region *r = &s->regions[i];

		keep_fd(s->region_fds[i]);
		json_array_append_new(regions,
				      json_pack("{s:I, s:I, s:I, s:I, s:i}", "gpa",
						(json_int_t)r->guest_phys_addr, "size",
						(json_int_t)r->memory_size, "uaddr",
						(json_int_t)r->userspace_addr, "offset",
						(json_int_t)r->mmap_offset, "fd", s->region_fds[i]));
	}
	for (uint32_t i = 0; rings && i < s->nrings; i++)
		json_array_append_new(rings, save_ring(&s->rings[i]));
	/* 64-bit values as JSON integers: jansson's are signed 64-bit, bits kept. */
	return json_pack("{s:i, s:I, s:I, s:b, s:o, s:o}", "sock", s->sock, "features",
			 (json_int_t)s->features, "protocol", (json_int_t)s->protocol, "owner",
			 s->owner, "regions", regions, "rings", rings);
}

/*
 * The NICs: their configuration, and an emulated one's socket (QEMU holds
 * the other end). A virtio NIC's connection is not kept: QEMU reconnects
 * to the socket the restarted daemon makes at the same path.
 */
static json_t *
save_nics(const struct vm *v)
{
	json_t *a = json_array();
	char mac[18];

	for (unsigned i = 0; a && i < VM_MAX_NICS; i++) {
		const struct vm_nic *n = &v->cfg.nic[i];
		int fd = v->emu[i] ? v->emu[i]->fd : v->qemu_fd[i] >= 0 ? -2 : -1;

		if (!v->vnet[i] && !v->emu[i])
			continue;
		if (fd >= 0)
			keep_fd(fd);
		json_array_append_new(a, json_pack("{s:I, s:s, s:s, s:s, s:b, s:i}", "index",
						   (json_int_t)i, "virtual_dev", n->virtual_dev,
						   "network", n->network, "mac",
						   vm_mac_str(n->mac, mac), "has_mac", n->has_mac,
						   "fd", fd));
	}
	return a;
}

static void
unkeep_nics(const struct vm *v)
{
	for (unsigned i = 0; i < VM_MAX_NICS; i++)
		if (v->emu[i])
			unkeep_fd(v->emu[i]->fd);
}

/* Put the saved NICs back; 0 or -errno with @why. */
static int
restore_nics(struct vm *v, json_t *a, char *why, size_t whylen)
{
	size_t k;
	json_t *o;

	json_array_foreach(a, k, o) {
		json_int_t i;
		const char *dev, *net, *mac;
		int has_mac, fd, err;
		struct vm_nic *n;

		if (json_unpack(o, "{s:I, s:s, s:s, s:s, s:b, s:i}", "index", &i, "virtual_dev",
				&dev, "network", &net, "mac", &mac, "has_mac", &has_mac, "fd", &fd) ||
		    i < 0 || i >= VM_MAX_NICS)
			return -EINVAL;
		n = &v->cfg.nic[i];
		n->present = true;
		n->has_mac = has_mac;
		snprintf(n->virtual_dev, sizeof(n->virtual_dev), "%s", dev);
		snprintf(n->network, sizeof(n->network), "%s", net);
		if (has_mac && eth_mac_parse(mac, n->mac))
			return -EINVAL;
		if (fd >= 0)
			unkeep_fd(fd);
		if (strcmp(dev, "virtio") && fd < 0) {
			snprintf(why, whylen, "ethernet%d: QEMU had not started", (int)i);
			return -EINVAL;
		}
		if ((err = make_nic(v, (unsigned)i, fd, why, whylen)))
			return err;
	}
	return 0;
}

json_t *
vms_save(struct vms *m)
{
	json_t *a = json_array();

	for (struct vm *v = m->list; a && v; v = v->next) {
		struct vhu_saved s;
		json_t *o = json_pack("{s:s, s:I, s:s, s:s, s:I, s:I, s:b, s:b, s:I, s:i, s:i, s:I}",
				      "name", v->cfg.name, "cid", (json_int_t)v->cid, "vmx", v->vmx,
				      "accel", v->accel, "mem_mib", (json_int_t)v->cfg.mem_mib,
				      "vcpus", (json_int_t)v->cfg.vcpus, "vmci", v->cfg.vmci,
				      "restricted", v->cfg.vmci_restricted, "pid", (json_int_t)v->pid,
				      "pidfd", v->proc.fd, "listen", v->listen.fd, "started_ns",
				      (json_int_t)v->started_ns);

		keep_fd(v->proc.fd);
		keep_fd(v->listen.fd);
		if (o && v->vsock && vsock_dev_save(v->vsock, &s))
			json_object_set_new(o, "vhost", save_vhu(&s));
		if (o)
			json_object_set_new(o, "nics", save_nics(v));
		json_array_append_new(a, o);
	}
	return a;
}

void
vms_save_undo(struct vms *m)
{
	for (struct vm *v = m->list; v; v = v->next) {
		struct vhu_saved s;

		unkeep_fd(v->proc.fd);
		unkeep_fd(v->listen.fd);
		unkeep_nics(v);
		if (!v->vsock || !vsock_dev_save(v->vsock, &s))
			continue;
		unkeep_fd(s.sock);
		for (uint32_t i = 0; i < s.nregions; i++)
			unkeep_fd(s.region_fds[i]);
		for (uint32_t i = 0; i < s.nrings; i++) {
			unkeep_fd(s.rings[i].kick);
			unkeep_fd(s.rings[i].call);
			unkeep_fd(s.rings[i].err);
		}
	}
}

static int
load_ring(json_t *o, struct vhu_saved_ring *r)
{
	json_int_t num, last, flags, desc, used, avail, log;
	int have_addr, have_kick, enabled;

	if (json_unpack(o, "{s:I, s:I, s:b, s:b, s:b, s:I, s:I, s:I, s:I, s:I, s:i, s:i, s:i}",
			"num", &num, "last_avail", &last, "have_addr", &have_addr, "have_kick",
			&have_kick, "enabled", &enabled, "flags", &flags, "desc", &desc, "used",
			&used, "avail", &avail, "log", &log, "kick", &r->kick, "call", &r->call,
			"err", &r->err))
		return -EINVAL;
	r->num = (uint32_t)num;
	r->last_avail = (uint16_t)last;
	r->have_addr = have_addr, r->have_kick = have_kick, r->enabled = enabled;
	r->addr = (struct vhu_vring_addr){ .flags = (uint32_t)flags,
					   .desc_user_addr = (uint64_t)desc,
					   .used_user_addr = (uint64_t)used,
					   .avail_user_addr = (uint64_t)avail,
					   .log_guest_addr = (uint64_t)log };
	return 0;
}

static int
load_vhu(json_t *o, bool crashed, struct vhu_saved *s)
{
	json_t *regions, *rings, *x;
	json_int_t features, protocol;
	int owner;
	size_t i;

	memset(s, 0, sizeof(*s));
	if (json_unpack(o, "{s:i, s:I, s:I, s:b, s:o, s:o}", "sock", &s->sock, "features",
			&features, "protocol", &protocol, "owner", &owner, "regions", &regions,
			"rings", &rings) ||
	    json_array_size(regions) > VHU_MAX_REGIONS || json_array_size(rings) > VHU_MAX_QUEUES)
		return -EINVAL;
	s->features = (uint64_t)features;
	s->protocol = (uint64_t)protocol;
	s->owner = owner;
	s->resync = crashed;
	json_array_foreach(regions, i, x) {
		json_int_t gpa, size, uaddr, off;

		if (json_unpack(x, "{s:I, s:I, s:I, s:I, s:i}", "gpa", &gpa, "size", &size,
				"uaddr", &uaddr, "offset", &off, "fd", &s->region_fds[i]))
			return -EINVAL;
		s->regions[i] = (struct vhu_mem_region){ (uint64_t)gpa, (uint64_t)size,
							 (uint64_t)uaddr, (uint64_t)off };
	}
	s->nregions = (uint32_t)json_array_size(regions);
	json_array_foreach(rings, i, x)
		if (load_ring(x, &s->rings[i]))
			return -EINVAL;
	s->nrings = (uint32_t)json_array_size(rings);
	return 0;
}

/* One VM from its saved state; its QEMU keeps running. */
static int
restore_vm(struct vms *m, json_t *o, bool crashed)
{
	struct vm *v = calloc(1, sizeof(*v));
	const char *name, *vmx, *accel;
	json_int_t cid, mem, vcpus, pid, started;
	int vmci, restricted, err;
	json_t *vh;
	char why[256] = "";

	if (!v)
		return -ENOMEM;
	v->m = m;
	v->listen = (struct loop_src){ .fd = -1, .fn = frontend_connected };
	v->proc = (struct loop_src){ .fd = -1, .fn = proc_exited };
	for (unsigned i = 0; i < VM_MAX_NICS; i++)
		v->qemu_fd[i] = -1;
	if (json_unpack(o, "{s:s, s:I, s:s, s:s, s:I, s:I, s:b, s:b, s:I, s:i, s:i, s:I}", "name",
			&name, "cid", &cid, "vmx", &vmx, "accel", &accel, "mem_mib", &mem, "vcpus",
			&vcpus, "vmci", &vmci, "restricted", &restricted, "pid", &pid, "pidfd",
			&v->proc.fd, "listen", &v->listen.fd, "started_ns", &started)) {
		free(v);
		return -EINVAL;
	}
	snprintf(v->cfg.name, sizeof(v->cfg.name), "%s", name);
	snprintf(v->vmx, sizeof(v->vmx), "%s", vmx);
	snprintf(v->accel, sizeof(v->accel), "%s", accel);
	v->cfg.cid = (uint32_t)cid, v->cfg.mem_mib = (uint64_t)mem, v->cfg.vcpus = (unsigned)vcpus;
	v->cfg.vmci = vmci, v->cfg.vmci_restricted = restricted;
	v->pid = (pid_t)pid;
	v->started_ns = started;
	snprintf(v->dir, sizeof(v->dir), "%s/%s", m->rundir, v->cfg.name);
	snprintf(v->sock_path, sizeof(v->sock_path), "%s/vsock.sock", v->dir);
	snprintf(v->serial, sizeof(v->serial), "%s/console.log", v->dir);
	snprintf(v->hybrid, sizeof(v->hybrid), "%s/hybrid.sock", v->dir);
	unkeep_fd(v->proc.fd);
	unkeep_fd(v->listen.fd);
	v->next = m->list;
	m->list = v;
	m->n++;
	err = claim_cid(v, why, sizeof(why));
	if (!err && loop_add(m->loop, &v->proc, EPOLLIN) < 0)
		err = -errno;
	if (!err && v->listen.fd >= 0)
		err = make_device(v, why, sizeof(why));
	if (!err)
		err = restore_nics(v, json_object_get(o, "nics"), why, sizeof(why));
	vh = json_object_get(o, "vhost");
	if (!err && vh && v->vsock) {
		struct vhu_saved s;

		err = load_vhu(vh, crashed, &s);
		if (!err)
			err = vsock_dev_restore(v->vsock, &s);
	}
	if (err) {
		log_err("vm %s: not restored: %s", v->cfg.name, why[0] ? why : strerror(-err));
		vm_qemu_stop(v->pid, v->proc.fd, STOP_TIMEOUT_MS);
		vm_free(v);
		return err;
	}
	log_info("vm %s (cid %u, pid %d): taken over%s%s%s", v->cfg.name, v->cid, (int)v->pid,
		 vh ? " with its vsock device" : "",
		 json_array_size(json_object_get(o, "nics")) ? " and its NICs" : "",
		 crashed ? " from the fd keeper" : "");
	loop_mark_dirty(m->loop);
	return 0;
}

int
vms_restore(struct vms *m, json_t *saved, bool crashed)
{
	size_t i;
	json_t *o;
	int err = 0;

	if (!json_is_array(saved))
		return -EINVAL;
	json_array_foreach(saved, i, o) {
		int e = restore_vm(m, o, crashed);

		if (!err)
			err = e;
	}
	return err;
}
