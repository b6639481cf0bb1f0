/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the host configuration's meaning, as the daemon loads it
 * (src/daemon/main.c): process contexts (vmci_reg_load, src/vmci/ctx.c),
 * then switches, port groups, uplinks, VMkernel adapters and vhost-user
 * ports (vsw_dp_load, src/switch/dp.c), then RDMA devices paired with
 * those uplinks (rdma_devs_load, src/rdma/device.c). fuzz-conf covers the
 * key = value syntax. The dataplane is loaded, never started: no
 * interface, TAP or socket is made, so what runs is the parsing and
 * validation alone. Then the listings the management API makes of what
 * was loaded (vmci.context.list, network.*.list, rdma.device.list).
 *
 * Checked: a refused file leaves a printable message with a line within
 * the file, and the context registry as it was; an accepted one is
 * consistent (CIDs unique and sorted, none reserved; names unique; every
 * port group, uplink and adapter on a switch that exists; every RDMA
 * device paired with an uplink that exists, no uplink or adapter twice);
 * and every listing answers with every object loaded (none silently left
 * out); then everything is freed (descriptors counted, memory:
 * LeakSanitizer).
 *
 * Input: the configuration's text.
 */
#include "common/log.h"
#include "host.h"

/* What the daemon does with a configuration (load_config() in src/daemon/main.c). */
static void
load(struct vmci_broker *b, struct conf *c, const uint8_t *text, size_t len)
{
	struct conf_error e;
	size_t before = b->reg.n;
	int r;

	memset(&e, 0, sizeof(e));
	if ((r = vmci_reg_load(&b->reg, c, &e))) {
		check_refused(r, &e, text, len);
		FZ_CHECK(b->reg.n == before); /* a failing file adds nothing */
		return;
	}
	check_reg(&b->reg);
	if ((r = vsw_dp_load(&b->dp, c, &e))) {
		check_refused(r, &e, text, len);
		FZ_CHECK(b->dp.nsw == 0 && b->dp.nuplink == 0 && b->dp.nvmk == 0);
		return;
	}
	check_dp(&b->dp);
	if ((r = rdma_devs_load(&b->rdma_devs, c, &b->dp, NULL, &e))) {
		check_refused(r, &e, text, len);
		FZ_CHECK(b->rdma_devs.n == 0 && !b->rdma_devs.dev);
	} else {
		check_rdma(&b->rdma_devs, &b->dp);
		check_lists(b);
	}
	for (size_t i = conf_first_unused(c, 0, &e); i < conf_count(c);
	     i = conf_first_unused(c, i + 1, &e))
		FZ_CHECK(e.line == conf_line(c, i) && e.msg[0]);
	vsw_dp_stop(&b->dp);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vmci_broker *b = calloc(1, sizeof(*b));
	int fds_before = fz_count_fds();
	struct conf_error e;
	struct conf *c;

	FZ_CHECK(b != NULL);
	log_set_level(getenv("FUZZ_DEBUG") ? LOG_LVL_DEBUG : LOG_LVL_ERR);
	if (conf_parse("host.cfg", (const char *)data, size, &c, &e) < 0) {
		free(b);
		return 0; /* the syntax: fuzz-conf */
	}
	snprintf(b->path, sizeof(b->path), "vmfabric.sock");
	FZ_CHECK(vmci_reg_init(&b->reg) == 0);
	load(b, c, data, size);
	rdma_devs_free(&b->rdma_devs);
	vmci_reg_free(&b->reg);
	conf_free(c);
	free(b);
	FZ_CHECK(fz_count_fds() == fds_before); /* a descriptor leaked */
	return 0;
}
