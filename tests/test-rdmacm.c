/* SPDX-License-Identifier: MIT */
/*
 * The RDMA connection manager between hosts (vrdma_connect_addr(),
 * vmci/rdma_cm_net.c, rdma/cm_wire.h). Two hosts are network namespaces
 * joined by a veth pair, each with its own vmfabricd (vSwitch0, uplink
 * vmnic1 on its end of the veth, vmk1 on "VM Network", vmrdma0 paired with
 * vmnic1 and bound to vmk1); the processes that use the verbs stay in the
 * test's namespace and reach their daemon by its socket. The CM's RTR of
 * a QP towards another host goes through the test seam
 * vrdma__cm_rtr_seam (lib/verbs.h), which keeps the attributes and skips
 * the RoCE data path: what is checked is what the daemons exchanged and
 * the QPs' queried attributes.
 *
 *   rdmacm_hosts      connect by IP, accept, private data both ways, the
 *                     QPs' attributes (QPNs, PSNs, depths, global address,
 *                     the smaller path MTU), reject, nobody listening, a
 *                     listener outside the host context, a timeout and a
 *                     late accept, a restricted context, an unreachable
 *                     IP, a device not bound, the TCP service's refusals
 *                     (another address, another version, garbage), no
 *                     descriptor left behind, a peer daemon killed;
 *   rdmacm_peer_wire  one daemon against a peer written here, byte by
 *                     byte: the REQ it sends, REP (and the RTU after it),
 *                     REJ, a peer that closes, is silent or answers
 *                     nonsense, nothing on port 4791, IPv6.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "daemon.h"
#include "harness.h"
#include "lib/verbs.h"
#include "rdma/cm_wire.h"
#include "vmfabric/vrdma.h"

#define CM_HOST(dev, ip, mtu)                                                                      \
	TD_CONTEXTS                                                                                \
	"vswitch0.name = \"vSwitch0\"\nvswitch0.mtu = \"" mtu "\"\n"                               \
	"portgroup0.name = \"VM Network\"\nportgroup0.vswitch = \"vSwitch0\"\n"                    \
	"uplink0.name = \"vmnic1\"\nuplink0.device = \"" dev "\"\n"                                \
	"vmk0.name = \"vmk1\"\nvmk0.portgroup = \"VM Network\"\nvmk0.ip = \"" ip "/24\"\n"         \
	"rdma0.name = \"vmrdma0\"\nrdma0.uplink = \"vmnic1\"\nrdma0.vmknic = \"vmk1\"\n"

static void
need_root(void)
{
	if (geteuid() != 0)
		SKIP("needs root (network namespaces, a veth pair, TAP interfaces)");
	if (td_sh("command -v ip >/dev/null 2>&1"))
		SKIP("no ip command (iproute2)");
	if (access("/dev/net/tun", R_OK | W_OK))
		SKIP("no /dev/net/tun");
}

/* Namespaces @a and @b (hosts) joined by a veth pair: @ua in @a, @ub in @b. */
static void
netns_pair(const char *a, const char *ua, const char *b, const char *ub)
{
	(void)td_sh("ip netns del %s 2>/dev/null; ip netns del %s 2>/dev/null", a, b);
	if (td_sh("ip netns add %s", a))
		SKIP("ip netns does not work here (no network namespaces)");
	ASSERT_EQ(td_sh("ip netns add %s && "
		     "ip -n %s link add %s type veth peer name %s netns %s && "
		     "ip -n %s link set dev %s up && ip -n %s link set dev %s up && "
		     "ip -n %s link set dev lo up && ip -n %s link set dev lo up",
		     b, a, ua, ub, b, a, ua, b, ub, a, b),
		  0);
}

/* Wait until @d's log has @needle (the daemon says what it does). */
static void
wait_log(const struct tdaemon *d, const char *needle)
{
	for (int i = 0; i < 500; i++) {
		char buf[1 << 16];
		int fd = open(d->log, O_RDONLY | O_CLOEXEC);
		ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

		if (fd >= 0)
			close(fd);
		if (n > 0) {
			buf[n] = 0;
			if (strstr(buf, needle))
				return;
		}
		usleep(10000);
	}
	th_fail(__FILE__, __LINE__, "%s never logged \"%s\"", d->log, needle);
}

/* The daemon's device can carry RoCE (the XDP program bounces the veth's carrier as it loads). */
static void
wait_usable(struct tdaemon *d)
{
	for (int t = 0; t < 500; t++) {
		char *json = td_mgmt(d, "rdma.device.vmknic.list");
		bool up = strstr(json, "\"roce_usable\":true") != NULL;

		free(json);
		if (up)
			return;
		usleep(10000);
	}
	th_fail(__FILE__, __LINE__, "vmrdma0 never became usable for RoCE");
}

static int
pid_fds(pid_t pid)
{
	char path[64], cmd[128], out[64];

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	snprintf(cmd, sizeof(cmd), "ls %s | wc -l", path);
	ASSERT_EQ(td_run(cmd, out, sizeof(out)), 0);
	return atoi(out);
}

/* @pid's descriptors come back to @want (closing is not instant). */
static void
fds_settle(pid_t pid, int want)
{
	int n = 0;

	for (int i = 0; i < 300 && (n = pid_fds(pid)) != want; i++)
		usleep(10000);
	ASSERT_EQ(n, want);
}

static void
reap(pid_t pid)
{
	int st;

	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	ASSERT(WIFEXITED(st));
	ASSERT_EQ(WEXITSTATUS(st), 0);
}

static int64_t
ms_since(int64_t t0)
{
	return (clock_ns() - t0) / 1000000;
}

/* ---------------------------------------------------------------------- */
/* A verbs end: device, PD, CQ, QP */

struct side {
	struct vrdma_context *ctx;
	struct vrdma_pd *pd;
	struct vrdma_cq *cq;
	struct vrdma_qp *qp;
};

static void
side_open(struct side *s, const struct tdaemon *d, const char *ctx)
{
	struct vrdma_qp_init_attr ia = { .qp_type = VRDMA_QPT_RC,
					 .cap = { .max_send_wr = 16, .max_recv_wr = 16 } };

	ASSERT_OK(vmci_set_daemon(d->sock));
	ASSERT_OK(vmci_set_context(ctx ? ctx : ""));
	ASSERT_OK(vrdma_open_device("vmrdma0", &s->ctx));
	ASSERT_OK(vrdma_alloc_pd(s->ctx, &s->pd));
	ASSERT_OK(vrdma_create_cq(s->ctx, 64, NULL, NULL, &s->cq));
	ia.send_cq = ia.recv_cq = s->cq;
	ASSERT_OK(vrdma_create_qp(s->pd, &ia, &s->qp));
}

static void
side_reset(struct side *s)
{
	struct vrdma_qp_attr a = { .qp_state = VRDMA_QPS_RESET };

	ASSERT_OK(vrdma_modify_qp(s->qp, &a, VRDMA_QP_STATE));
}

static void
side_close(struct side *s)
{
	ASSERT_OK(vrdma_destroy_qp(s->qp));
	ASSERT_OK(vrdma_destroy_cq(s->cq));
	ASSERT_OK(vrdma_dealloc_pd(s->pd));
	ASSERT_OK(vrdma_close_device(s->ctx));
}

/*
 * The seam: what vrdma_modify_qp() keeps of INIT -> RTR, without handing
 * the QP to the RoCE data path.
 */
static int
rtr_no_data_path(struct vrdma_qp *qp, struct vrdma_qp_attr *a, int mask)
{
	int err = 0;

	ASSERT(a->ah_attr.is_global);
	ASSERT_EQ(mask, VRDMA_QP_STATE | VRDMA_QP_AV | VRDMA_QP_PATH_MTU | VRDMA_QP_DEST_QPN |
			    VRDMA_QP_RQ_PSN | VRDMA_QP_MAX_DEST_RD_ATOMIC | VRDMA_QP_MIN_RNR_TIMER);
	pthread_mutex_lock(&qp->sq_lock);
	pthread_mutex_lock(&qp->rq_lock);
	if (atomic_load(&qp->state) != VRDMA_QPS_INIT || a->qp_state != VRDMA_QPS_RTR) {
		err = -EINVAL;
	} else {
		qp->attr.ah_attr = a->ah_attr;
		qp->attr.path_mtu = a->path_mtu;
		qp->attr.dest_qp_num = a->dest_qp_num;
		qp->attr.rq_psn = a->rq_psn & 0xffffff;
		qp->attr.max_dest_rd_atomic = a->max_dest_rd_atomic;
		qp->attr.min_rnr_timer = a->min_rnr_timer;
		qp->attr.qp_state = VRDMA_QPS_RTR;
		atomic_store(&qp->state, VRDMA_QPS_RTR);
	}
	pthread_mutex_unlock(&qp->rq_lock);
	pthread_mutex_unlock(&qp->sq_lock);
	return err;
}

static struct sockaddr_in
ip4(const char *ip, unsigned port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };

	ASSERT_EQ(inet_pton(AF_INET, ip, &a.sin_addr), 1);
	return a;
}

static int
connect_ip(struct side *s, const char *ip, unsigned port, const struct vrdma_conn_param *p,
	   void *reply, int timeout_ms)
{
	struct sockaddr_in a = ip4(ip, port);

	return vrdma_connect_addr(s->qp, (struct sockaddr *)&a, sizeof(a), p, reply, timeout_ms);
}

/* IPv4 @ip as the IPv4-mapped GID ::ffff:a.b.c.d. */
static void
mapped_gid(const char *ip, uint8_t gid[16])
{
	memset(gid, 0, 16);
	gid[10] = gid[11] = 0xff;
	ASSERT_EQ(inet_pton(AF_INET, ip, gid + 12), 1);
}

/* ---------------------------------------------------------------------- */
/* The listening host, in a child process */

enum lis_action {
	LIS_ACCEPT,	 /* accept with private data */
	LIS_REJECT,	 /* reject */
	LIS_LATE,	 /* wait for the parent's go, then accept: -ECONNABORTED */
	LIS_KILL_DAEMON, /* kill the daemon and go */
};

/* What the listening child saw and did, for the parent to compare. */
struct lis_report {
	struct vrdma_conn_req req;
	struct vrdma_qp_attr attr;
	uint32_t qpn;
	int accept_rc;
};

struct lis {
	pid_t pid;
	int report; /* read end: struct lis_report */
	int go;	    /* write end: a byte lets LIS_LATE go on */
};

static void
write_all(int fd, const void *p, size_t n)
{
	ASSERT_EQ(write(fd, p, n), (ssize_t)n);
}

static void
read_all(int fd, void *p, size_t n)
{
	struct pollfd pf = { .fd = fd, .events = POLLIN };

	ASSERT_EQ(poll(&pf, 1, 20000), 1);
	ASSERT_EQ(read(fd, p, n), (ssize_t)n);
}

/*
 * Fork a listener on @d's port @port acting as @ctx (NULL: the host), which
 * takes one request and does @act; returns when it listens.
 */
static struct lis
lis_start(struct tdaemon *d, const char *ctx, unsigned port, enum lis_action act)
{
	int rep[2], go[2], ready[2];
	struct lis l;
	char c;

	ASSERT_OK(pipe2(rep, O_CLOEXEC));
	ASSERT_OK(pipe2(go, O_CLOEXEC));
	ASSERT_OK(pipe2(ready, O_CLOEXEC));
	l.pid = fork();
	ASSERT_GE(l.pid, 0);
	if (l.pid == 0) {
		static const char reply[] = "private data from B";
		struct vrdma_conn_param p = { .private_data = reply,
					      .private_data_len = sizeof(reply),
					      .responder_resources = 6,
					      .initiator_depth = 2 };
		struct lis_report r = { 0 };
		struct vrdma_listener *vl;
		struct side s;

		close(rep[0]), close(go[1]), close(ready[0]);
		vrdma__cm_rtr_seam = rtr_no_data_path;
		side_open(&s, d, ctx);
		ASSERT_OK(vrdma_listen(s.ctx, port, &vl));
		write_all(ready[1], "r", 1);
		ASSERT_OK(vrdma_get_request(vl, &r.req, 15000));
		if (act == LIS_REJECT) {
			ASSERT_OK(vrdma_reject(vl, &r.req));
		} else if (act == LIS_KILL_DAEMON) {
			kill(d->pid, SIGKILL);
			_exit(0);
		} else {
			if (act == LIS_LATE)
				read_all(go[0], &c, 1);
			r.accept_rc = vrdma_accept(vl, &r.req, s.qp, &p);
			r.qpn = vrdma_qp_num(s.qp);
			ASSERT_OK(vrdma_query_qp(s.qp, &r.attr, 0, NULL));
		}
		write_all(rep[1], &r, sizeof(r));
		vrdma_listener_close(vl);
		side_close(&s);
		_exit(0);
	}
	close(rep[1]), close(go[0]), close(ready[1]);
	read_all(ready[0], &c, 1);
	close(ready[0]);
	l.report = rep[0];
	l.go = go[1];
	return l;
}

static void
lis_end(struct lis *l, struct lis_report *r)
{
	if (r)
		read_all(l->report, r, sizeof(*r));
	reap(l->pid);
	close(l->report);
	close(l->go);
}

/* ---------------------------------------------------------------------- */
/* Raw TCP to a daemon's CM service, from inside a namespace */

/* In a child in @ns: connect to @ip:4791, send @len bytes, read what comes until EOF into @out. */
static ssize_t
raw_exchange(const char *ns, const char *ip, const void *msg, size_t len, uint8_t *out, size_t max,
	     int *connect_err)
{
	int p[2], st;
	pid_t pid;
	ssize_t n = 0;

	ASSERT_OK(pipe2(p, O_CLOEXEC));
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		char path[64];
		struct sockaddr_in a = ip4(ip, RCM_PORT);
		int nsfd, fd, err = 0;
		uint8_t buf[256];
		ssize_t k, got = 0;

		snprintf(path, sizeof(path), "/run/netns/%s", ns);
		nsfd = open(path, O_RDONLY | O_CLOEXEC);
		ASSERT_GE(nsfd, 0);
		ASSERT_OK(setns(nsfd, CLONE_NEWNET));
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		ASSERT_GE(fd, 0);
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
			err = errno;
		write_all(p[1], &err, sizeof(err));
		if (!err) {
			struct timeval tv = { .tv_sec = 10 };

			setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
			write_all(fd, msg, len);
			while ((k = read(fd, buf + got, sizeof(buf) - (size_t)got)) > 0)
				got += k;
			write_all(p[1], &got, sizeof(got));
			write_all(p[1], buf, (size_t)got);
		}
		_exit(0);
	}
	close(p[1]);
	read_all(p[0], connect_err, sizeof(*connect_err));
	if (!*connect_err) {
		read_all(p[0], &n, sizeof(n));
		ASSERT_LE(n, (ssize_t)max);
		if (n)
			read_all(p[0], out, (size_t)n);
	}
	close(p[0]);
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	return n;
}

/* ---------------------------------------------------------------------- */

static void
check_connected(struct side *a, const struct lis_report *r, const char *ip_a, const char *ip_b,
		const char *reply)
{
	struct vrdma_qp_attr qa;
	uint8_t gid[16];

	ASSERT_OK(r->accept_rc);
	ASSERT_OK(vrdma_query_qp(a->qp, &qa, 0, NULL));
	/* The request as the listener saw it. */
	ASSERT_EQ(r->req.remote, 1);
	ASSERT_EQ(r->req.src_cid, VRDMA_CID_REMOTE);
	ASSERT_EQ(r->req.src_addr.ss_family, AF_INET);
	{
		const struct sockaddr_in *s = (const struct sockaddr_in *)&r->req.src_addr;
		char txt[INET_ADDRSTRLEN];

		ASSERT_EQ(s->sin_port, 0);
		ASSERT(inet_ntop(AF_INET, &s->sin_addr, txt, sizeof(txt)));
		ASSERT(!strcmp(txt, ip_a));
	}
	ASSERT_EQ(r->req.src_qpn, vrdma_qp_num(a->qp));
	ASSERT_EQ(r->req.psn, qa.sq_psn);
	ASSERT_EQ(r->req.responder_resources, 8);
	ASSERT_EQ(r->req.initiator_depth, 4);
	ASSERT_EQ(r->req.private_data_len, 14);
	ASSERT_MEM_EQ(r->req.private_data, "from A to B!!", 14);
	ASSERT_EQ(r->req.path_mtu, VRDMA_MTU_1024);
	/* Both QPs in RTS, each towards the other. */
	ASSERT_EQ(qa.qp_state, VRDMA_QPS_RTS);
	ASSERT_EQ(r->attr.qp_state, VRDMA_QPS_RTS);
	ASSERT_EQ(qa.dest_qp_num, r->qpn);
	ASSERT_EQ(r->attr.dest_qp_num, vrdma_qp_num(a->qp));
	ASSERT_EQ(qa.rq_psn, r->attr.sq_psn);
	ASSERT_EQ(r->attr.rq_psn, qa.sq_psn);
	ASSERT_LE(qa.sq_psn, 0xffffffu);
	/* Global addresses: each the other's vmk1 address, IPv4-mapped. */
	ASSERT_EQ(qa.ah_attr.is_global, 1);
	ASSERT_EQ(r->attr.ah_attr.is_global, 1);
	mapped_gid(ip_b, gid);
	ASSERT_MEM_EQ(qa.ah_attr.dgid, gid, 16);
	mapped_gid(ip_a, gid);
	ASSERT_MEM_EQ(r->attr.ah_attr.dgid, gid, 16);
	/* The smaller path MTU: A's 4096 (MTU 9000), B's 1024 (1500). */
	ASSERT_EQ(qa.path_mtu, VRDMA_MTU_1024);
	ASSERT_EQ(r->attr.path_mtu, VRDMA_MTU_1024);
	/* RDMA read depths: each side's initiator depth is the other's responder limit. */
	ASSERT_EQ(qa.max_rd_atomic, 4);
	ASSERT_EQ(qa.max_dest_rd_atomic, 2);
	ASSERT_EQ(r->attr.max_rd_atomic, 2);
	ASSERT_EQ(r->attr.max_dest_rd_atomic, 4);
	ASSERT_EQ(qa.rnr_retry, 5);
	ASSERT(!strcmp(reply, "private data from B"));
}

TEST(rdmacm_hosts)
{
	static const char priv[14] = "from A to B!!";
	struct vrdma_conn_param p = { .private_data = priv,
				      .private_data_len = sizeof(priv),
				      .responder_resources = 8,
				      .initiator_depth = 4,
				      .rnr_retry_count = 5 };
	struct tdaemon da, db;
	struct vrdma_device_attr attr;
	struct lis_report r;
	struct side a;
	struct lis l;
	char reply[VRDMA_PRIVATE_DATA + 1] = { 0 }, cmd[1024], out[4096];
	uint8_t buf[256];
	int fds_a, fds_b, lib_fds, cerr;
	int64_t t0;
	ssize_t n;

	need_root();
	netns_pair("vmfc-a", "vmfc-ua", "vmfc-b", "vmfc-ub");
	/* Host A with jumbo frames (path MTU 4096), host B with 1500 (1024). */
	ASSERT_EQ(td_sh("ip -n vmfc-a link set dev vmfc-ua mtu 9000 && "
		     "ip -n vmfc-b link set dev vmfc-ub mtu 9000"),
		  0);
	td_start_ns(&da, CM_HOST("vmfc-ua", "10.77.0.1", "9000"), "vmfc-a");
	td_start_ns(&db, CM_HOST("vmfc-ub", "10.77.0.2", "1500"), "vmfc-b");
	wait_usable(&da);
	wait_usable(&db);
	ASSERT_EQ(td_sh("ip -n vmfc-a link set dev vmk1 mtu 9000"), 0);
	wait_log(&db, "rdma cm: vmrdma0: listening on 10.77.0.2:4791");
	wait_log(&da, "rdma cm: vmrdma0: listening on 10.77.0.1:4791");
	vrdma__cm_rtr_seam = rtr_no_data_path;

	/* Connect by IP, accept: private data both ways, both QPs' attributes. */
	l = lis_start(&db, NULL, 7000, LIS_ACCEPT);
	side_open(&a, &da, NULL);
	ASSERT_OK(vrdma_query_device(a.ctx, &attr));
	ASSERT_EQ(attr.active_mtu, 4096u);
	ASSERT_OK(connect_ip(&a, "10.77.0.2", 7000, &p, reply, 5000));
	lis_end(&l, &r);
	check_connected(&a, &r, "10.77.0.1", "10.77.0.2", reply);
	side_close(&a);
	th_log("connected by IP");

	/* From here, nothing may be left behind in either daemon or in this process. */
	fds_a = pid_fds(da.pid);
	fds_b = pid_fds(db.pid);
	lib_fds = th_count_fds();
	side_open(&a, &da, NULL);

	/* Rejected; nobody listening; a listener of another context than the host. */
	l = lis_start(&db, NULL, 7000, LIS_REJECT);
	ASSERT_EQ(connect_ip(&a, "10.77.0.2", 7000, &p, NULL, 5000), -ECONNREFUSED);
	lis_end(&l, &r);
	ASSERT_EQ(r.req.remote, 1);
	ASSERT_EQ(connect_ip(&a, "10.77.0.2", 7001, NULL, NULL, 5000), -ECONNREFUSED);
	l = lis_start(&db, "a", 7002, LIS_ACCEPT);
	ASSERT_EQ(connect_ip(&a, "10.77.0.2", 7002, NULL, NULL, 1000), -ECONNREFUSED);
	kill(l.pid, SIGKILL);
	waitpid(l.pid, NULL, 0);
	close(l.report), close(l.go);
	th_log("refusals");

	/* No answer in time: -ETIMEDOUT; the accept that comes later finds nobody. */
	l = lis_start(&db, NULL, 7000, LIS_LATE);
	t0 = clock_ns();
	ASSERT_EQ(connect_ip(&a, "10.77.0.2", 7000, NULL, NULL, 500), -ETIMEDOUT);
	ASSERT_LT(ms_since(t0), 2000);
	write_all(l.go, "g", 1);
	lis_end(&l, &r);
	ASSERT_EQ(r.accept_rc, -ECONNABORTED);
	ASSERT_EQ(atomic_load(&a.qp->state), VRDMA_QPS_RESET);
	th_log("timeout");

	/* An address nobody has: quickly -EHOSTUNREACH (no ARP answer) or -ETIMEDOUT. */
	t0 = clock_ns();
	cerr = connect_ip(&a, "10.77.0.9", 7000, NULL, NULL, 1500);
	ASSERT(cerr == -EHOSTUNREACH || cerr == -ETIMEDOUT);
	ASSERT_LT(ms_since(t0), 4000);
	/* Malformed arguments. */
	{
		struct sockaddr_in bad = ip4("10.77.0.2", 7000);

		ASSERT_EQ(vrdma_connect_addr(a.qp, (struct sockaddr *)&bad, sizeof(bad) - 1, NULL,
					     NULL, 100),
			  -EINVAL);
		bad.sin_family = AF_UNIX;
		ASSERT_EQ(
		    vrdma_connect_addr(a.qp, (struct sockaddr *)&bad, sizeof(bad), NULL, NULL, 100),
		    -EINVAL);
	}
	side_close(&a);

	/* A context restricted to the host may not reach other hosts. */
	side_open(&a, &da, "r");
	ASSERT_EQ(connect_ip(&a, "10.77.0.2", 7000, NULL, NULL, 1000), -EACCES);
	side_close(&a);

	/* A device that is not bound: -ENETUNREACH, and the daemon says why. */
	snprintf(cmd, sizeof(cmd), "%s --socket %s rdma device vmknic unbind --device=vmrdma0",
		 VMFABRIC_CLI_PATH, da.sock);
	ASSERT_EQ(td_run(cmd, out, sizeof(out)), 0);
	side_open(&a, &da, NULL);
	ASSERT_EQ(connect_ip(&a, "10.77.0.2", 7001, NULL, NULL, 1000), -ENETUNREACH);
	wait_log(&da, "rdma: vmrdma0 cannot reach 10.77.0.2: not bound to a VMkernel adapter");
	wait_log(&da, "rdma cm: vmrdma0: no connections from other hosts: not bound");
	snprintf(cmd, sizeof(cmd),
		 "%s --socket %s rdma device vmknic bind --device=vmrdma0 --nic=vmk1",
		 VMFABRIC_CLI_PATH, da.sock);
	ASSERT_EQ(td_run(cmd, out, sizeof(out)), 0);
	ASSERT_EQ(connect_ip(&a, "10.77.0.2", 7001, NULL, NULL, 1000), -ECONNREFUSED);
	side_close(&a);
	th_log("not bound");

	/*
	 * The TCP service itself, from the other namespace: only on the
	 * adapter's address; another version is told which one we speak;
	 * garbage ends the connection; a REQ for a port nobody listens on
	 * gets REJ "no listener".
	 */
	ASSERT_EQ(td_sh("ip -n vmfc-b addr add 10.77.0.22/24 dev vmk1"), 0);
	raw_exchange("vmfc-a", "10.77.0.22", "", 0, buf, sizeof(buf), &cerr);
	ASSERT_EQ(cerr, ECONNREFUSED);
	raw_exchange("vmfc-b", "127.0.0.1", "", 0, buf, sizeof(buf), &cerr);
	ASSERT_EQ(cerr, ECONNREFUSED);
	{
		static const uint8_t v2[8] = { 'V', 'R', 'C', 'M', 2, 1, 0, 80 };
		static const uint8_t rej_version[12] = {
			'V', 'R', 'C', 'M', 1, 3, 0, 4, 0, 0, 0, 4
		};

		n = raw_exchange("vmfc-a", "10.77.0.2", v2, sizeof(v2), buf, sizeof(buf), &cerr);
		ASSERT_EQ(cerr, 0);
		ASSERT_EQ(n, 12);
		ASSERT_MEM_EQ(buf, rej_version, 12);
	}
	n = raw_exchange("vmfc-a", "10.77.0.2", "GET / HTTP/1.0\r\n\r\n", 18, buf, sizeof(buf),
			 &cerr);
	ASSERT_EQ(cerr, 0);
	ASSERT_EQ(n, 0);
	{
		struct rcm_msg m = { .type = RCM_REQ,
				     .u.req = { .port = 7001,
						.qpn = 5,
						.psn = 7,
						.mtu = 1024,
						.timeout_ms = 1000 } };
		uint8_t req[RCM_MAX];
		size_t len = rcm_build(&m, req);
		struct rcm_msg got;

		n = raw_exchange("vmfc-a", "10.77.0.2", req, len, buf, sizeof(buf), &cerr);
		ASSERT_EQ(cerr, 0);
		ASSERT_EQ(rcm_parse(buf, (size_t)n, &got, NULL), 12);
		ASSERT_EQ(got.type, RCM_REJ);
		ASSERT_EQ(got.u.reason, RCM_REJ_NO_LISTENER);
	}
	th_log("TCP service");

	/* Nothing left behind: descriptors of both daemons and of this process. */
	fds_settle(da.pid, fds_a);
	fds_settle(db.pid, fds_b);
	ASSERT_EQ(th_count_fds(), lib_fds);

	/* The peer's daemon dies while the request waits for its listener. */
	l = lis_start(&db, NULL, 7000, LIS_KILL_DAEMON);
	side_open(&a, &da, NULL);
	t0 = clock_ns();
	cerr = connect_ip(&a, "10.77.0.2", 7000, NULL, NULL, 3000);
	ASSERT(cerr == -ETIMEDOUT || cerr == -ECONNRESET);
	ASSERT_LT(ms_since(t0), 6000);
	lis_end(&l, NULL);
	side_close(&a);
	ASSERT_EQ(waitpid(db.pid, NULL, 0), db.pid);
	db.pid = 0;
	fds_settle(da.pid, fds_a);

	td_stop(&da);
	td_cleanup(&da);
	td_cleanup(&db);
	(void)td_sh("ip netns del vmfc-a; ip netns del vmfc-b");
}

/* ---------------------------------------------------------------------- */
/* One daemon against a peer written here */

enum fake_act {
	FAKE_REP,     /* REP (MTU 512), then expect the RTU */
	FAKE_REJ,     /* REJ */
	FAKE_CLOSE,   /* read the REQ and close */
	FAKE_SILENT,  /* read the REQ, say nothing until the requester closes */
	FAKE_BAD_MTU, /* a REP whose path MTU is 300 */
	FAKE_V2,      /* a REP of another version */
};

/* What the fake peer checks of each REQ; the parent tells it before each connect. */
struct fake_case {
	int act;
	uint32_t qpn;
	uint32_t timeout_ms;
	int v6;
};

/*
 * The fake peer: in namespace @ns, listening on @ip4 and @ip6 port 4791;
 * for each case read from @ctl, accept one connection on the case's
 * family, check the REQ byte by byte, answer, and write 0 (or the line of
 * a failed check) to @res.
 */
static void
fake_peer(const char *ns, int ctl, int res)
{
	char path[64];
	struct sockaddr_in a4 = ip4("10.77.1.2", RCM_PORT);
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_port = htons(RCM_PORT) };
	int nsfd, l4, l6, one = 1;
	struct fake_case fc;

	snprintf(path, sizeof(path), "/run/netns/%s", ns);
	nsfd = open(path, O_RDONLY | O_CLOEXEC);
	ASSERT_GE(nsfd, 0);
	ASSERT_OK(setns(nsfd, CLONE_NEWNET));
	ASSERT_EQ(inet_pton(AF_INET6, "fd00:77:1::2", &a6.sin6_addr), 1);
	l4 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	l6 = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	setsockopt(l4, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(l6, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(l6, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	ASSERT_OK(bind(l4, (struct sockaddr *)&a4, sizeof(a4)));
	ASSERT_OK(bind(l6, (struct sockaddr *)&a6, sizeof(a6)));
	ASSERT_OK(listen(l4, 4));
	ASSERT_OK(listen(l6, 4));
	write_all(res, &one, sizeof(one)); /* listening */
	while (read(ctl, &fc, sizeof(fc)) == sizeof(fc)) {
		uint8_t req[RCM_MAX], ans[RCM_MAX], rtu[16];
		struct rcm_msg m;
		struct timeval tv = { .tv_sec = 10 };
		int fd = accept4(fc.v6 ? l6 : l4, NULL, NULL, SOCK_CLOEXEC), line = 0;
		size_t got = 0;
		ssize_t k;

		ASSERT_GE(fd, 0);
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		while (got < RCM_MAX && (k = read(fd, req + got, RCM_MAX - got)) > 0)
			got += (size_t)k;
#define FAKE_CHECK(c)                                                                              \
	do {                                                                                       \
		if (!line && !(c))                                                                 \
			line = __LINE__;                                                           \
	} while (0)
		/* The REQ, byte by byte: header, then the fields (cm_wire.h). */
		FAKE_CHECK(got == 88);
		FAKE_CHECK(!memcmp(req, "VRCM\x01\x01\x00\x50", 8));
		FAKE_CHECK(!memcmp(req + 8, "\x00\x00\x1b\x58", 4)); /* port 7000 */
		FAKE_CHECK(((uint32_t)req[12] << 24 | (uint32_t)req[13] << 16 |
			    (uint32_t)req[14] << 8 | req[15]) == fc.qpn);
		FAKE_CHECK(req[16] == 0);				  /* PSN: 24 bits */
		FAKE_CHECK(!memcmp(req + 20, "\x04\x00", 2));		  /* path MTU 1024 */
		FAKE_CHECK(req[22] == 8 && req[23] == 4 && req[24] == 5); /* depths, RNR retry */
		FAKE_CHECK(req[25] == 5 && !memcmp(req + 32, "hello", 5));
		FAKE_CHECK(req[26] == 0 && req[27] == 0); /* reserved */
		FAKE_CHECK(((uint32_t)req[28] << 24 | (uint32_t)req[29] << 16 |
			    (uint32_t)req[30] << 8 | req[31]) == fc.timeout_ms);
		for (size_t i = 32 + 5; i < 88; i++)
			FAKE_CHECK(req[i] == 0);
		FAKE_CHECK(rcm_parse(req, got, &m, NULL) == 88 && m.type == RCM_REQ);
		memset(&m, 0, sizeof(m));
		m.type = RCM_REP;
		m.u.rep = (struct rcm_rep){ .qpn = 0x123456,
					    .psn = 0xabcdef,
					    .mtu = 512,
					    .resp_res = 3,
					    .init_depth = 5,
					    .rnr_retry = 6,
					    .priv_len = 4 };
		memcpy(m.u.rep.priv, "fake", 4);
		switch (fc.act) {
		case FAKE_REP:
			write_all(fd, ans, rcm_build(&m, ans));
			/* The RTU, then the requester closes. */
			got = 0;
			while ((k = read(fd, rtu + got, sizeof(rtu) - got)) > 0)
				got += (size_t)k;
			FAKE_CHECK(got == 12 && !memcmp(rtu, "VRCM\x01\x04\x00\x04", 8));
			break;
		case FAKE_REJ:
			m.type = RCM_REJ;
			m.u.reason = RCM_REJ_CONSUMER;
			write_all(fd, ans, rcm_build(&m, ans));
			break;
		case FAKE_SILENT:
			k = read(fd, rtu, sizeof(rtu)); /* until the requester gives up */
			FAKE_CHECK(k == 0);
			break;
		case FAKE_BAD_MTU:
			rcm_build(&m, ans);
			ans[RCM_HDR + 8] = 0x01, ans[RCM_HDR + 9] = 0x2c; /* 300 */
			write_all(fd, ans, RCM_HDR + 72);
			break;
		case FAKE_V2:
			rcm_build(&m, ans);
			ans[4] = 2;
			write_all(fd, ans, RCM_HDR + 72);
			break;
		default:
			break;
		}
#undef FAKE_CHECK
		close(fd);
		write_all(res, &line, sizeof(line));
	}
	_exit(0);
}

TEST(rdmacm_peer_wire)
{
	static const char hello[5] = "hello";
	struct vrdma_conn_param p = { .private_data = hello,
				      .private_data_len = 5,
				      .responder_resources = 8,
				      .initiator_depth = 4,
				      .rnr_retry_count = 5 };
	static const int acts[] = { FAKE_REP,	 FAKE_REJ,     FAKE_CLOSE,
				    FAKE_SILENT, FAKE_BAD_MTU, FAKE_V2 };
	static const int want[] = { 0, -ECONNREFUSED, -ECONNRESET, -ETIMEDOUT, -EPROTO, -EPROTO };
	struct tdaemon d;
	struct side a;
	struct vrdma_qp_attr qa;
	char reply[VRDMA_PRIVATE_DATA] = { 0 };
	uint8_t gid[16];
	int ctl[2], res[2], line, fds, rc;
	pid_t fake;

	need_root();
	if (td_sh("command -v ethtool >/dev/null 2>&1"))
		SKIP("no ethtool (tools/setup-deps check)");
	netns_pair("vmfc-c", "vmfc-uc", "vmfc-d", "vmfc-ud");
	/*
	 * The peer is the namespace's own stack on its veth end: what it sends
	 * must carry its checksums (no offload), since the switch hands frames
	 * to vmk1 as they came.
	 */
	ASSERT_EQ(td_sh("ip netns exec vmfc-d ethtool -K vmfc-ud tx off >/dev/null"), 0);
	ASSERT_EQ(td_sh("ip -n vmfc-d addr add 10.77.1.2/24 dev vmfc-ud && "
		     "ip -n vmfc-d addr add fd00:77:1::2/64 dev vmfc-ud nodad"),
		  0);
	td_start_ns(&d, CM_HOST("vmfc-uc", "10.77.1.1", "1500"), "vmfc-c");
	wait_usable(&d);
	ASSERT_EQ(td_sh("ip -n vmfc-c addr add fd00:77:1::1/64 dev vmk1 nodad"), 0);
	wait_log(&d, "rdma cm: vmrdma0: listening on 10.77.1.1:4791, [fd00:77:1::1]:4791");
	vrdma__cm_rtr_seam = rtr_no_data_path;
	side_open(&a, &d, NULL);

	/* Nothing on port 4791 there: the peer's daemon cannot be reached. */
	ASSERT_EQ(connect_ip(&a, "10.77.1.2", 7000, &p, NULL, 2000), -EHOSTUNREACH);

	ASSERT_OK(pipe2(ctl, O_CLOEXEC));
	ASSERT_OK(pipe2(res, O_CLOEXEC));
	fake = fork();
	ASSERT_GE(fake, 0);
	if (fake == 0) {
		close(ctl[1]), close(res[0]);
		fake_peer("vmfc-d", ctl[0], res[1]);
	}
	close(ctl[0]), close(res[1]);
	read_all(res[0], &line, sizeof(line));
	fds = pid_fds(d.pid);

	for (size_t i = 0; i < sizeof(acts) / sizeof(acts[0]); i++) {
		struct fake_case fc = { .act = acts[i],
					.qpn = vrdma_qp_num(a.qp),
					.timeout_ms = acts[i] == FAKE_SILENT ? 800 : 2000 };
		int64_t t0 = clock_ns();

		th_log("case %zu", i);
		write_all(ctl[1], &fc, sizeof(fc));
		rc = connect_ip(&a, "10.77.1.2", 7000, &p, reply, (int)fc.timeout_ms);
		ASSERT_EQ(rc, want[i]);
		/* A silent peer: the daemon answers at the connector's limit. */
		if (acts[i] == FAKE_SILENT)
			ASSERT(ms_since(t0) >= 750 && ms_since(t0) < 1500);
		read_all(res[0], &line, sizeof(line));
		ASSERT_EQ(line, 0);
		if (rc)
			continue;
		ASSERT_OK(vrdma_query_qp(a.qp, &qa, 0, NULL));
		ASSERT_EQ(qa.qp_state, VRDMA_QPS_RTS);
		ASSERT_EQ(qa.dest_qp_num, 0x123456u);
		ASSERT_EQ(qa.rq_psn, 0xabcdefu);
		ASSERT_EQ(qa.path_mtu, VRDMA_MTU_512); /* the peer's, smaller than 1024 */
		ASSERT_EQ(qa.max_dest_rd_atomic, 5);   /* the peer's initiator depth */
		mapped_gid("10.77.1.2", gid);
		ASSERT_EQ(qa.ah_attr.is_global, 1);
		ASSERT_MEM_EQ(qa.ah_attr.dgid, gid, 16);
		ASSERT_MEM_EQ(reply, "fake", 4);
		side_reset(&a);
	}

	/* IPv6, and IPv4 given as an IPv4-mapped IPv6 address. */
	{
		struct sockaddr_in6 s6 = { .sin6_family = AF_INET6, .sin6_port = htons(7000) };
		struct fake_case fc = {
			.act = FAKE_REP, .qpn = vrdma_qp_num(a.qp), .timeout_ms = 2000, .v6 = 1
		};

		ASSERT_EQ(inet_pton(AF_INET6, "fd00:77:1::2", &s6.sin6_addr), 1);
		write_all(ctl[1], &fc, sizeof(fc));
		ASSERT_OK(
		    vrdma_connect_addr(a.qp, (struct sockaddr *)&s6, sizeof(s6), &p, NULL, 2000));
		read_all(res[0], &line, sizeof(line));
		ASSERT_EQ(line, 0);
		ASSERT_OK(vrdma_query_qp(a.qp, &qa, 0, NULL));
		ASSERT_EQ(qa.ah_attr.is_global, 1);
		ASSERT_MEM_EQ(qa.ah_attr.dgid, &s6.sin6_addr, 16);
		side_reset(&a);

		ASSERT_EQ(inet_pton(AF_INET6, "::ffff:10.77.1.2", &s6.sin6_addr), 1);
		fc.v6 = 0;
		write_all(ctl[1], &fc, sizeof(fc));
		ASSERT_OK(
		    vrdma_connect_addr(a.qp, (struct sockaddr *)&s6, sizeof(s6), &p, NULL, 2000));
		read_all(res[0], &line, sizeof(line));
		ASSERT_EQ(line, 0);
		ASSERT_OK(vrdma_query_qp(a.qp, &qa, 0, NULL));
		ASSERT_MEM_EQ(qa.ah_attr.dgid, &s6.sin6_addr, 16);
		side_reset(&a);
	}
	close(ctl[1]);
	reap(fake);
	close(res[0]);
	fds_settle(d.pid, fds);
	side_close(&a);
	td_stop(&d);
	td_cleanup(&d);
	(void)td_sh("ip netns del vmfc-c; ip netns del vmfc-d");
}
