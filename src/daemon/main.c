/* SPDX-License-Identifier: MIT */
/*
 * vmfabricd: the daemon. Loads the host configuration (or the built-in
 * one), starts the VMCI broker on its control socket, and runs the event
 * loop until SIGTERM or SIGINT. This is the only place in the project that
 * exits the process.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "common/conf.h"
#include "common/log.h"
#include "common/loop.h"
#include "keeper.h"
#include "vm/qemu.h"
#include "vm/vms.h"
#include "vmci/broker.h"
#include "vmfabric/qp.h"

#ifndef VMFABRIC_VERSION
#define VMFABRIC_VERSION "0.1.0"
#endif

#define DEFAULT_SOCKET "/run/vmfabric/vmfabricd.sock"

/* The configuration vmfabricd runs with when given none. */
static const char default_config[] =
	"# vmfabricd built-in configuration (vmfabricd --print-default-config)\n"
	".encoding = \"UTF-8\"\n"
	"vmfabricd.socket = \"" DEFAULT_SOCKET "\"\n"
	"vmfabricd.log_level = \"info\"\n"
	"\n"
	"# Two process contexts for the demo; only root may act as them.\n"
	"# VMCI is off for a context unless vmci0.present is TRUE. They get the\n"
	"# lowest free CIDs (3, 4); the demo's guests bring their own contexts,\n"
	"# VMCI on at CIDs 10 and 11, from examples/demo-a.vmx and demo-b.vmx.\n"
	"context0.name = \"demo-a\"\n"
	"context0.uid = \"0\"\n"
	"context0.vmci0.present = \"TRUE\"\n"
	"context1.name = \"demo-b\"\n"
	"context1.uid = \"0\"\n"
	"context1.vmci0.present = \"TRUE\"\n"
	"\n"
	"# A standard switch with VMQ classification on, and its port group.\n"
	"vswitch0.name = \"vSwitch0\"\n"
	"vswitch0.mtu = \"1500\"\n"
	"vswitch0.vmq = \"TRUE\"\n"
	"portgroup0.name = \"VM Network\"\n"
	"portgroup0.vswitch = \"vSwitch0\"\n"
	"portgroup0.vlan = \"0\"\n"
	"\n"
	"# The demo's uplink: the host end of a veth pair that make run creates\n"
	"# (its other end is in a network namespace). Without that interface the\n"
	"# daemon starts with a warning and leaves the uplink out.\n"
	"uplink0.name = \"vmnic1\"\n"
	"uplink0.device = \"vmfdemo0\"\n"
	"uplink0.vswitch = \"vSwitch0\"\n"
	"\n"
	"# The RDMA device paired with vmnic1. Verbs between processes of this\n"
	"# host need nothing more; RoCE to other hosts would need it bound to a\n"
	"# VMkernel adapter with an IP (vmkN.*, rdma0.vmknic).\n"
	"rdma0.name = \"vmrdma0\"\n"
	"rdma0.uplink = \"vmnic1\"\n";

struct daemon {
	struct loop loop;
	struct vmci_broker broker;
	struct vms vms;
	char accel[8];
	char **argv;	/* as started, for a restart by exec */
	char self[4096]; /* the executable's path */
	int restore_fd;	 /* --restore: the state the previous process saved */
	bool restart;	 /* SIGHUP: exec after the loop */
	struct loop_src sig;
	struct keeper keeper; /* holds what a restart after a crash needs */
	bool ran;	      /* the loop ran: a stop now is a clean one */
	struct conf *conf;
	const char *config_path;
	char socket_path[108];
	bool log_level_given; /* -l: wins over vmfabricd.log_level, as -s and --accel do */
};

static void
usage(FILE *f)
{
	fprintf(f,
		"usage: vmfabricd [options]\n"
		"The vmfabric daemon: the vhost-user backend of the QEMU VMs it starts\n"
		"(virtio-vsock into VMCI, virtio-net on its virtual switches) and the broker\n"
		"of VMCI sockets, process vNICs and RDMA verbs for host processes, over one\n"
		"control socket.\n\n"
		"  -c, --config FILE        host configuration (default: the built-in one)\n"
		"  -s, --socket PATH        control socket (default: %s,\n"
		"                           or vmfabricd.socket in the configuration)\n"
		"  -l, --log-level LEVEL    error, warn, info or debug (default: info, or\n"
		"                           vmfabricd.log_level in the configuration)\n"
		"      --accel auto|kvm|tcg how VMs run (default: vmfabricd.accel, else auto:\n"
		"                           KVM if a probe boot shows it can run Linux)\n"
		"      --print-default-config  print the built-in configuration and exit\n"
		"      --probe-accel KERNEL [INITRD]  boot KERNEL briefly with KVM and print\n"
		"                           kvm if it ran, else tcg (the reason on stderr)\n"
		"      --check-config       load the configuration, report errors, and exit\n"
		"  -h, --help               this text\n"
		"  -V, --version            the version\n\n"
		"Signals: SIGTERM or SIGINT stop the daemon cleanly (and its VMs); SIGHUP\n"
		"restarts it in place (exec of the same path: an upgrade or a new\n"
		"configuration), keeping the control socket and the running VMs.\n\n"
		"Crashes: vmfabricd starts a companion process, " KEEPER_NAME ", that holds\n"
		"the control socket and the VMs' devices (the vsock device's vhost-user\n"
		"connection, memory and rings; QEMU's pidfd; emulated NICs' sockets). If\n"
		"the daemon is killed (kill -9, a crash), running it again on the same\n"
		"control socket takes them from the keeper: the VMs keep running and keep\n"
		"their devices. A clean stop ends the keeper too.\n",
		DEFAULT_SOCKET);
}

static void
on_signal(struct loop_src *s, uint32_t events)
{
	struct daemon *d = (struct daemon *)((char *)s - offsetof(struct daemon, sig));
	struct signalfd_siginfo si;

	(void)events;
	while (read(s->fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			log_info("SIGHUP: restarting (configuration and binary read again; VMs keep "
				 "running)");
			d->restart = true;
			d->loop.stop = true;
			continue;
		}
		log_info("%s: stopping", strsignal((int)si.ssi_signo));
		d->loop.stop = true;
	}
}

static int
report(const char *path, const struct conf_error *e)
{
	char buf[700];
	struct conf_error c = *e;

	if (!c.file[0])
		snprintf(c.file, sizeof(c.file), "%s", path);
	log_err("configuration: %s", conf_error_str(&c, buf, sizeof(buf)));
	return -EINVAL;
}

/* Read the configuration: daemon keys, then contexts; warn of unknown keys. */
static int
load_config(struct daemon *d)
{
	const char *name = d->config_path ? d->config_path : "(built-in)";
	struct conf_error e = { 0 };
	const char *v;
	enum log_level lvl;
	int err;

	if (d->config_path)
		err = conf_load(d->config_path, &d->conf, &e);
	else
		err = conf_parse(name, default_config, sizeof(default_config) - 1, &d->conf, &e);
	if (err)
		return report(name, &e);
	conf_mark_used(d->conf, ".encoding");
	if (conf_mark_used(d->conf, "vmfabricd.log_level")) {
		v = conf_get(d->conf, "vmfabricd.log_level");
		if (log_parse_level(v, &lvl) < 0) {
			log_err("configuration: %s: vmfabricd.log_level: \"%s\" is not one of error, "
				"warn, info, debug", name, v);
			return -EINVAL;
		}
		if (!d->log_level_given)
			log_set_level(lvl);
	}
	/* -s overrides the key: used either way, never "unknown". */
	if (conf_mark_used(d->conf, "vmfabricd.socket") && !d->socket_path[0]) {
		v = conf_get(d->conf, "vmfabricd.socket");
		if (strlen(v) >= sizeof(d->socket_path)) {
			log_err("configuration: %s: vmfabricd.socket: longer than %zu bytes (a UNIX "
				"socket's path)", name, sizeof(d->socket_path) - 1);
			return -ENAMETOOLONG;
		}
		snprintf(d->socket_path, sizeof(d->socket_path), "%s", v);
	} else if (!d->socket_path[0]) {
		v = DEFAULT_SOCKET;
		snprintf(d->socket_path, sizeof(d->socket_path), "%s", v);
	}
	if (!d->accel[0]) {
		v = conf_mark_used(d->conf, "vmfabricd.accel") ? conf_get(d->conf, "vmfabricd.accel")
								: "auto";
		snprintf(d->accel, sizeof(d->accel), "%s", v);
		if (strcmp(v, "auto") && strcmp(v, "kvm") && strcmp(v, "tcg")) {
			log_err("configuration: %s: vmfabricd.accel: \"%s\" is not one of auto, kvm, "
				"tcg", name, v);
			return -EINVAL;
		}
	}
	if ((err = vmci_reg_init(&d->broker.reg)))
		return err;
	if ((err = vmci_reg_load(&d->broker.reg, d->conf, &e)))
		return report(name, &e);
	if ((err = vsw_dp_load(&d->broker.dp, d->conf, &e)))
		return report(name, &e);
	d->broker.dp_loaded = true;
	/* After the switches: a device names its paired uplink and VMkernel adapter. */
	if ((err = rdma_devs_load(&d->broker.rdma_devs, d->conf, &d->broker.dp, d->config_path,
				  &e)))
		return report(name, &e);
	for (size_t i = conf_first_unused(d->conf, 0, &e); i < conf_count(d->conf);
	     i = conf_first_unused(d->conf, i + 1, &e)) {
		char buf[700];
		if (!e.file[0])
			snprintf(e.file, sizeof(e.file), "%s", name);
		log_warn("configuration: %s (ignored)", conf_error_str(&e, buf, sizeof(buf)));
	}
	d->broker.config_name = name;
	return 0;
}

static void
log_contexts(const struct vmci_reg *r)
{
	for (size_t i = 0; i < r->n; i++) {
		const struct vmci_ctx *x = &r->ctx[i];
		log_info("context %u \"%s\"%s: VMCI %s", x->cid, x->name,
			 x->assigned ? " (CID assigned)" : "",
			 !x->present ? "off" : x->restricted ? "on, host only" : "on");
	}
}

static int
setup_signals(struct daemon *d)
{
	sigset_t set;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -errno;
	d->sig.fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	d->sig.fn = on_signal;
	if (d->sig.fd < 0)
		return -errno;
	return loop_add(&d->loop, &d->sig, EPOLLIN);
}

static void
raise_fd_limit(void)
{
	struct rlimit r;

	/* Every socket is a connection here: take all the descriptors allowed. */
	if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
		r.rlim_cur = r.rlim_max;
		setrlimit(RLIMIT_NOFILE, &r);
	}
}

/* VMs get their directories next to the control socket. */
static int
start_vms(struct daemon *d, json_t *saved, bool crashed)
{
	char dir[sizeof(d->socket_path) + 4];
	char *slash;
	int err;

	snprintf(dir, sizeof(dir), "%s", d->socket_path);
	slash = strrchr(dir, '/');
	if (!slash)
		snprintf(dir, sizeof(dir), "vms");
	else if ((size_t)(slash - dir) + 5 > sizeof(dir))
		return -ENAMETOOLONG;
	else
		strcpy(slash, "/vms");
	err = vms_init(&d->vms, &d->loop, &d->broker, dir, d->accel);
	if (err) {
		log_err("VM directory %s: %s", dir, strerror(-err));
		broker_stop(&d->broker);
		return err;
	}
	d->broker.mgmt_ext = vms_mgmt;
	d->broker.mgmt_ctx = &d->vms;
	if (saved)
		vms_restore(&d->vms, json_object_get(saved, "vms"), crashed); /* failures logged */
	return 0;
}

/* The control socket: a new one, or the one the previous process had. */
static int
start_broker(struct daemon *d, json_t *saved)
{
	json_int_t fd;

	if (saved && !json_unpack(saved, "{s:I}", "listen", &fd) && fd >= 0) {
		log_info("restarted: taking over %s%s", d->socket_path,
			 d->keeper.inherited ? " from the fd keeper" : "");
		return broker_start_fd(&d->broker, &d->loop, d->socket_path, (int)fd);
	}
	return broker_start(&d->broker, &d->loop, d->socket_path);
}

/*
 * What a restart needs (by exec, or from the fd keeper after a crash): the
 * listening socket and every VM's descriptors, named in JSON; vms_save()
 * clears their close-on-exec flags.
 */
static json_t *
state_doc(struct daemon *d)
{
	return json_pack("{s:i, s:i, s:o}", "version", 1, "listen", d->broker.listen.fd, "vms",
			 vms_save(&d->vms));
}

static json_t *
keeper_snapshot(struct keeper *k)
{
	return state_doc((struct daemon *)((char *)k - offsetof(struct daemon, keeper)));
}

/* The keeper has its copies: our descriptors close on exec again. */
static void
keeper_snapshot_done(struct keeper *k)
{
	vms_save_undo(&((struct daemon *)((char *)k - offsetof(struct daemon, keeper)))->vms);
}

static void
on_dirty(struct loop *l)
{
	keeper_update(&((struct daemon *)((char *)l - offsetof(struct daemon, loop)))->keeper);
}

static void
status_ext(struct vmci_broker *b, json_t *status)
{
	struct daemon *d = (struct daemon *)((char *)b - offsetof(struct daemon, broker));

	json_object_set_new(status, "keeper", keeper_status(&d->keeper));
}

/*
 * The fd keeper: the one the previous process had (SIGHUP), else the one
 * of this control socket (it holds a crashed daemon's state: *@saved), else
 * a new one. Without one the daemon still runs (logged).
 */
static void
start_keeper(struct daemon *d, json_t **saved, bool *crashed)
{
	d->keeper.snapshot = keeper_snapshot;
	d->keeper.snapshot_done = keeper_snapshot_done;
	if (*saved) {
		keeper_adopt(&d->keeper, &d->loop, d->self, d->socket_path,
			     json_object_get(*saved, "keeper"));
	} else {
		keeper_open(&d->keeper, &d->loop, d->self, d->socket_path, saved);
		*crashed = *saved != NULL;
	}
	d->loop.on_dirty = on_dirty;
	d->broker.status_ext = status_ext;
}

/*
 * Restart by exec: the listening socket and every VM's descriptors stay
 * open; what they are goes to the new process as JSON in a memfd. Returns
 * only if the exec failed (the daemon then goes on as it was).
 */
static void
reexec(struct daemon *d)
{
	json_t *doc = state_doc(d);
	char *text;
	int fd = memfd_create("vmfabricd-restart", 0), argc = 0;
	char fdarg[24], **argv;
	size_t len;

	if (doc) /* the keeper stays: its connection goes across exec too */
		json_object_set_new(doc, "keeper", keeper_save(&d->keeper));
	text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
	len = text ? strlen(text) : 0;
	json_decref(doc);
	while (d->argv[argc])
		argc++;
	argv = calloc((size_t)argc + 3, sizeof(*argv));
	if (fd >= 0 && text && argv && write(fd, text, len) == (ssize_t)len &&
	    fcntl(d->broker.listen.fd, F_SETFD, 0) == 0) {
		int n = 0;

		for (int i = 0; i < argc; i++)
			if (strncmp(d->argv[i], "--restore", 9))
				argv[n++] = d->argv[i];
		snprintf(fdarg, sizeof(fdarg), "--restore=%d", fd);
		argv[n++] = fdarg;
		log_info("restarting: exec %s", d->self);
		execv(d->self, argv);
	}
	log_err("restart failed (%s): going on as before", strerror(errno));
	fcntl(d->broker.listen.fd, F_SETFD, FD_CLOEXEC);
	vms_save_undo(&d->vms);
	keeper_save_undo(&d->keeper);
	if (fd >= 0)
		close(fd);
	free(text);
	free(argv);
}

/* --restore: what the previous process saved (the VMs are restored later). */
static json_t *
read_saved(int fd)
{
	json_error_t e;
	json_t *doc;

	lseek(fd, 0, SEEK_SET);
	doc = json_loadfd(fd, 0, &e);
	close(fd);
	if (!doc)
		log_err("--restore: %s (line %d)", e.text, e.line);
	return doc;
}

static int
run(struct daemon *d)
{
	int err;

	log_info("vmfabricd %s listening on %s (configuration: %s)", VMFABRIC_VERSION,
		 d->socket_path, d->broker.config_name);
	log_contexts(&d->broker.reg);
	keeper_update(&d->keeper); /* what we run with now, restored or new */
	d->ran = true;
	for (;;) {
		err = loop_run(&d->loop);
		if (err || !d->restart)
			break;
		reexec(d); /* returns if it failed */
		d->restart = d->loop.stop = false;
	}
	vms_fini(&d->vms);
	broker_stop(&d->broker);
	log_info("stopped");
	return err;
}

/* --probe-accel: what `vm start` would pick with vmfabricd.accel = "auto". */
static int
probe_accel(const char *kernel, const char *initrd)
{
	char accel[8], why[160];

	vm_accel_probe(NULL, kernel, initrd, VM_PROBE_TIMEOUT_MS, accel, why, sizeof(why));
	printf("%s\n", accel);
	fprintf(stderr, "vmfabricd: %s\n", why);
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "socket", required_argument, NULL, 's' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "accel", required_argument, NULL, 'A' },
		{ "print-default-config", no_argument, NULL, 'P' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "probe-accel", required_argument, NULL, 'K' },
		{ "restore", required_argument, NULL, 'R' },
		{ "keeper", required_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	struct daemon d = { .restore_fd = -1 };
	json_t *saved = NULL;
	enum log_level lvl;
	bool check = false, crashed = false;
	int o, err, keep[2] = { -1, -1 };

	while ((o = getopt_long(argc, argv, "c:s:l:hV", opts, NULL)) != -1) {
		switch (o) {
		case 'c':
			d.config_path = optarg;
			break;
		case 's':
			if (strlen(optarg) >= sizeof(d.socket_path)) {
				fprintf(stderr, "vmfabricd: -s: longer than %zu bytes (a UNIX socket's "
						"path)\n", sizeof(d.socket_path) - 1);
				return 2;
			}
			snprintf(d.socket_path, sizeof(d.socket_path), "%s", optarg);
			break;
		case 'l':
			if (log_parse_level(optarg, &lvl) < 0) {
				fprintf(stderr, "vmfabricd: unknown log level '%s'\n", optarg);
				return 2;
			}
			log_set_level(lvl);
			d.log_level_given = true;
			break;
		case 'A':
			if (strcmp(optarg, "auto") && strcmp(optarg, "kvm") && strcmp(optarg, "tcg")) {
				fprintf(stderr, "vmfabricd: --accel: auto, kvm or tcg, not '%s'\n",
					optarg);
				return 2;
			}
			snprintf(d.accel, sizeof(d.accel), "%s", optarg);
			break;
		case 'P':
			fputs(default_config, stdout);
			return 0;
		case 'C':
			check = true;
			break;
		case 'K':
			return probe_accel(optarg, optind < argc ? argv[optind] : NULL);
		case 'R':
			d.restore_fd = atoi(optarg);
			break;
		case 'k': /* the daemon starts its fd keeper so: not for users */
			if (sscanf(optarg, "%d,%d", &keep[0], &keep[1]) != 2)
				return 2;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("vmfabricd %s\n", VMFABRIC_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "vmfabricd: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (keep[0] >= 0)
		keeper_main(keep[0], keep[1], d.socket_path);
	saved = d.restore_fd >= 0 ? read_saved(d.restore_fd) : NULL;
	d.argv = argv;
	if (!realpath("/proc/self/exe", d.self))
		snprintf(d.self, sizeof(d.self), "%s", argv[0]);
	d.loop.ep = d.sig.fd = d.keeper.conn.fd = d.keeper.proc.fd = -1;
	if (load_config(&d) < 0) {
		err = -EINVAL;
	} else if (check) {
		log_contexts(&d.broker.reg);
		printf("configuration OK\n");
		err = 0;
	} else {
		raise_fd_limit();
		qp_guard_wakeups(); /* no client can make a wakeup block the daemon */
		if ((err = loop_init(&d.loop)) || (err = setup_signals(&d))) {
			log_err("startup: %s", strerror(-err));
		} else {
			start_keeper(&d, &saved, &crashed);
			if (!(err = start_broker(&d, saved)) && !(err = start_vms(&d, saved, crashed)))
				err = run(&d);
		}
		/*
		 * A start that failed leaves a crashed daemon's state, or what a
		 * restart by exec brought (saved), to the next try.
		 */
		keeper_close(&d.keeper, d.ran || (!d.keeper.inherited && !saved));
	}
	json_decref(saved);
	vsw_dp_stop(&d.broker.dp); /* stopped with the broker, or never started */
	rdma_devs_free(&d.broker.rdma_devs);
	vmci_reg_free(&d.broker.reg);
	conf_free(d.conf);
	if (d.sig.fd >= 0)
		close(d.sig.fd);
	loop_free(&d.loop);
	return err ? 1 : 0;
}
