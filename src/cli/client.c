/* SPDX-License-Identifier: MIT */
/*
 * The CLI's side of the control protocol: connect to vmfabricd's control
 * socket, send one WIRE_MGMT request, wait up to CLI_TIMEOUT_MS for the
 * reply and read the JSON document out of the memfd that comes with it.
 *
 * The reply is untrusted input: wire_recv() checks its framing and
 * descriptor count; here we check that it answers our request, that its
 * status is 0 or a plausible -errno, and that the descriptor is a regular
 * file. out_len is believed only up to the file's real size and never
 * beyond CLI_MAX_REPLY; the file is read with pread(), not mapped, so that
 * a daemon truncating it under us cannot raise SIGBUS.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/wire_io.h"
#include "cli.h"

void
cli_error(const struct cli_ctx *cx, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, CLI_NAME ": ");
	if (cx && cx->what)
		fprintf(stderr, "%s: ", cx->what);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static int
cli_connect(const struct cli_ctx *cx)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	/* A full backlog blocks connect() for at most this long. */
	struct timeval tv = { .tv_sec = CLI_TIMEOUT_MS / 1000 };
	const char *hint = "";
	int err, s;

	if (strlen(cx->socket) >= sizeof(sa.sun_path)) {
		cli_error(NULL, "cannot reach vmfabricd at %s: %s", cx->socket,
			  strerror(ENAMETOOLONG));
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, cx->socket);
	s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (s < 0) {
		err = -errno;
		cli_error(NULL, "socket: %s", strerror(-err));
		return err;
	}
	if (setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == 0 &&
	    connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return s;
	err = -errno;
	close(s);
	if (err == -EAGAIN || err == -EINPROGRESS) {
		cli_error(NULL, "vmfabricd at %s did not accept the connection within %d s",
			  cx->socket, CLI_TIMEOUT_MS / 1000);
		return -ETIMEDOUT;
	}
	if (err == -ENOENT || err == -ECONNREFUSED)
		hint = " — is the daemon running?";
	cli_error(NULL, "cannot reach vmfabricd at %s: %s%s", cx->socket, strerror(-err), hint);
	return err;
}

static int
cli_send(const struct cli_ctx *cx, int s, const char *cmd, const char *arg, int fd)
{
	struct wire_hdr h = { .type = fd >= 0 ? WIRE_MGMT_FD : WIRE_MGMT,
			      .len = sizeof(struct wire_mgmt),
			      .seq = 1 };
	struct wire_mgmt m;
	ssize_t n;

	memset(&m, 0, sizeof(m));
	if (strlen(cmd) >= sizeof(m.cmd) || strlen(arg) >= sizeof(m.arg)) {
		cli_error(cx, "argument too long");
		return -ENAMETOOLONG;
	}
	strcpy(m.cmd, cmd);
	strcpy(m.arg, arg);
	n = wire_send(s, &h, &m, fd >= 0 ? &fd : NULL, fd >= 0 ? 1 : 0);
	if (n < 0) {
		cli_error(NULL, "sending to vmfabricd at %s: %s", cx->socket, strerror((int)-n));
		return (int)n;
	}
	return 0;
}

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for the reply until CLI_TIMEOUT_MS after the request was sent. */
static int
cli_wait(const struct cli_ctx *cx, int s, struct wire_msg *msg)
{
	long long deadline = now_ms() + CLI_TIMEOUT_MS;

	for (;;) {
		struct pollfd p = { .fd = s, .events = POLLIN };
		long long left = deadline - now_ms();
		ssize_t n;
		int r;

		r = poll(&p, 1, left > 0 ? (int)left : 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			r = -errno;
			cli_error(NULL, "poll: %s", strerror(-r));
			return r;
		}
		if (r == 0) {
			cli_error(cx, "vmfabricd at %s did not answer within %d s", cx->socket,
				  CLI_TIMEOUT_MS / 1000);
			return -ETIMEDOUT;
		}
		n = wire_recv(s, msg, MSG_DONTWAIT);
		if (n == -ECONNRESET) /* closed with our request unread: its answer may still wait */
			n = wire_recv(s, msg, MSG_DONTWAIT);
		if (n == -EAGAIN)
			continue;
		if (n == 0) {
			cli_error(cx, "vmfabricd closed the connection without answering");
			return -ECONNRESET;
		}
		if (n == -EPROTO) {
			cli_error(cx, "malformed reply from vmfabricd");
			return -EPROTO;
		}
		if (n < 0) {
			cli_error(cx, "receiving from vmfabricd: %s", strerror((int)-n));
			return (int)n;
		}
		return 0;
	}
}

/*
 * A refusal's reason, which the daemon writes into the reply's arg: shown
 * only if it is one line of printable text (the reply is untrusted).
 */
static bool
cli_reason(const struct wire_mgmt *m)
{
	size_t n = strnlen(m->arg, sizeof(m->arg));

	if (!n || n == sizeof(m->arg))
		return false;
	for (size_t i = 0; i < n; i++)
		if (m->arg[i] < 0x20 || m->arg[i] > 0x7e)
			return false;
	return true;
}

/* Is @msg the answer to our request? On success it holds one descriptor. */
static int
cli_check_reply(const struct cli_ctx *cx, const struct wire_msg *msg)
{
	const struct wire_hdr *h = &msg->hdr;

	/* A connection the daemon could not take (out of memory) is answered so. */
	if (h->type == WIRE_HELLO && (h->flags & WIRE_F_REPLY) && h->status < 0 &&
	    h->status >= -4095) {
		cli_error(cx, "vmfabricd could not take the connection: %s", strerror(-h->status));
		return h->status;
	}
	if ((h->type != WIRE_MGMT && h->type != WIRE_MGMT_FD) || !(h->flags & WIRE_F_REPLY) || h->seq != 1 || h->status > 0 ||
	    h->status < -4095 || (h->status == 0 && msg->nfds != 1)) {
		cli_error(cx, "malformed reply from vmfabricd");
		return -EPROTO;
	}
	if (h->status == -EACCES && cli_reason(&msg->body.mgmt)) {
		cli_error(cx, "%s (%s)", msg->body.mgmt.arg, strerror(EACCES));
		return h->status;
	}
	if (h->status) {
		cli_error(cx, "%s", strerror(-h->status));
		return h->status;
	}
	return 0;
}

/* Read at most @out_len bytes of the reply's memfd into a new buffer. */
static int
cli_read_memfd(const struct cli_ctx *cx, int fd, uint64_t out_len, char **buf, size_t *len)
{
	struct stat st;
	size_t want, got = 0;
	char *b;

	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		cli_error(cx, "vmfabricd's reply is not a file");
		return -EPROTO;
	}
	if (out_len > (uint64_t)st.st_size)
		out_len = (uint64_t)st.st_size;
	if (out_len > CLI_MAX_REPLY) {
		cli_error(cx, "reply of %llu bytes exceeds the limit of %u MiB",
			  (unsigned long long)out_len, CLI_MAX_REPLY >> 20);
		return -EFBIG;
	}
	want = (size_t)out_len;
	b = malloc(want ? want : 1);
	if (!b) {
		cli_error(cx, "%s", strerror(ENOMEM));
		return -ENOMEM;
	}
	while (got < want) {
		ssize_t n = pread(fd, b + got, want - got, (off_t)got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int err = -errno;

			cli_error(cx, "reading the reply: %s", strerror(-err));
			free(b);
			return err;
		}
		if (n == 0)
			break; /* shrank under us: the parser judges what is left */
		got += (size_t)n;
	}
	*buf = b;
	*len = got;
	return 0;
}

static int
cli_parse(const struct cli_ctx *cx, const char *buf, size_t len, json_t **out)
{
	json_error_t e;
	json_t *doc = json_loadb(buf, len, 0, &e);

	if (!doc) {
		cli_error(cx, "vmfabricd's reply is not valid JSON: %s (line %d, column %d)",
			  e.text, e.line, e.column);
		return -EPROTO;
	}
	if (!json_is_object(doc)) {
		cli_error(cx, "vmfabricd's reply is not a JSON object");
		json_decref(doc);
		return -EPROTO;
	}
	*out = doc;
	return 0;
}

int
cli_call(const struct cli_ctx *cx, const char *cmd, const char *arg, json_t **out)
{
	return cli_call_fd(cx, cmd, arg, -1, out);
}

int
cli_call_fd(const struct cli_ctx *cx, const char *cmd, const char *arg, int fd, json_t **out)
{
	struct wire_msg msg;
	char *buf = NULL;
	size_t len = 0;
	int s, err;

	s = cli_connect(cx);
	if (s < 0)
		return s;
	err = cli_send(cx, s, cmd, arg, fd);
	if (!err)
		err = cli_wait(cx, s, &msg);
	close(s);
	if (err)
		return err;
	err = cli_check_reply(cx, &msg);
	if (!err)
		err = cli_read_memfd(cx, msg.fds[0], msg.body.mgmt.out_len, &buf, &len);
	wire_msg_close_fds(&msg);
	if (err)
		return err;
	err = cli_parse(cx, buf, len, out);
	free(buf);
	return err;
}
