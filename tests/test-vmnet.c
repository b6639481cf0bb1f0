/* SPDX-License-Identifier: MIT */
/*
 * Guests on the virtual switch, end to end: QEMU guests with virtio-net
 * over vhost-user (the daemon is the device) and with an emulated vmxnet3
 * (QEMU's device model on a stream netdev), configured from their .vmx
 * files. Busybox's ip and ping, and vmf-tcp (the pattern checked byte for
 * byte) in the guests. Skips when QEMU or the guest image is missing; the
 * uplink test needs root and network namespaces.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon.h"
#include "guests.h"
#include "harness.h"

#define NIC(dev, net)                                                                   \
	"ethernet0.present = \"TRUE\"\nethernet0.virtualDev = \"" dev "\"\n"            \
	"ethernet0.networkName = \"" net "\"\n"
/* The guest's eth0 up with @ip/24 (a shell command for vmf.cmd). */
#define UP(ip) "ip addr add " ip "/24 dev eth0; ip link set eth0 up; "

/* Where port @name starts in the JSON text of `network port list`, or NULL. */
static const char *
port_entry(const char *json, const char *name)
{
	char key[64];

	snprintf(key, sizeof(key), "\"name\":\"%s\"", name);
	return strstr(json, key);
}

/* A counter of port @name from `network port list` (the first "@key": after its name). */
static long long
port_counter(struct vt *t, const char *name, const char *key)
{
	char *json = td_mgmt(&t->d, "network.port.list");
	const char *p = port_entry(json, name);
	char k[64];
	long long v;

	ASSERT(p);
	snprintf(k, sizeof(k), "\"%s\":", key);
	p = strstr(p, k);
	ASSERT(p);
	v = strtoll(p + strlen(k), NULL, 10);
	free(json);
	return v;
}

/* A bulk TCP transfer from @sender to @receiver (vmf-tcp results), checked. */
static void
check_transfer(struct vt *t, const char *sender, const char *receiver, unsigned long long bytes)
{
	char s[1024], r[1024];

	vt_wait_console(t, sender, "op=send", s, sizeof(s));
	vt_wait_console(t, receiver, "op=recv", r, sizeof(r));
	th_log("%s: %s", sender, s);
	th_log("%s: %s", receiver, r);
	ASSERT(strstr(s, " ok=1"));
	ASSERT(strstr(r, " ok=1"));
	ASSERT_EQ(vt_result_u64(r, "bytes"), bytes);
	ASSERT_EQ(vt_result_u64(r, "sum"), vt_result_u64(s, "sum"));
	ASSERT_EQ(vt_result_u64(s, "peer_sum"), vt_result_u64(s, "sum"));
}

/* Stop guest @name (they stay up after their work so that their ports can be looked at). */
static void
vm_stop(struct vt *t, const char *name)
{
	char *out;

	ASSERT_EQ(vt_cli(t, &out, "vm stop %s", name), 0);
	free(out);
}

/* Two virtio-net guests: ARP, ping, a checked TCP transfer; the ports' counters. */
TEST(vmnet_virtio_pair)
{
	struct vt t;
	char line[1024], *json;

	vt_start(&t, NULL);
	ASSERT_GE(vt_vm_start(&t, "na", NIC("virtio", "VM Network"),
			      UP("10.0.0.1") "vmf-tcp recv 7000; sleep 60", NULL, 0),
		  3);
	vt_wait_console(&t, "na", "VMF-READY", line, sizeof(line));
	ASSERT_GE(vt_vm_start(&t, "nb", NIC("virtio", "VM Network"),
			      UP("10.0.0.2") "ping -c 3 -W 5 10.0.0.1 && vmf-tcp send 10.0.0.1 7000 16M; "
					      "sleep 60",
			      NULL, 0),
		  3);
	vt_wait_console(&t, "nb", "packets transmitted", line, sizeof(line));
	th_log("ping: %s", line);
	ASSERT(strstr(line, "3 packets received"));
	check_transfer(&t, "nb", "na", 16u << 20);
	json = td_mgmt(&t.d, "network.port.list");
	th_log("%s", json);
	ASSERT(port_entry(json, "na.eth0"));
	ASSERT(strstr(port_entry(json, "na.eth0"), "\"kind\":\"virtio\""));
	free(json);
	/* 16 MiB in frames of at most 1514 bytes: more than 11,000 into na. */
	ASSERT_GT(port_counter(&t, "na.eth0", "tx_packets"), 11000);
	ASSERT_GT(port_counter(&t, "nb.eth0", "rx_packets"), 11000);
	json = td_mgmt(&t.d, "vm.list");
	ASSERT(strstr(json, "\"port\":\"na.eth0\""));
	free(json);
	/* The CLI's per-port, per-queue view. */
	ASSERT_EQ(vt_cli(&t, &json, "network port stats --port=na.eth0"), 0);
	th_log("%s", json);
	ASSERT(strstr(json, "na.eth0 (virtio, VM Network, VLAN 0)"));
	ASSERT(strstr(json, "  queue rx: running yes"));
	ASSERT(strstr(json, "  queue tx: running yes"));
	free(json);
	ASSERT_NE(vt_cli(&t, &json, "network port stats --port=nosuch 2>&1"), 0);
	ASSERT(strstr(json, "no port named \"nosuch\""));
	free(json);
	vm_stop(&t, "na");
	vm_stop(&t, "nb");
	td_stop(&t.d);
	td_cleanup(&t.d);
}

#define VLAN_GROUPS                                                                    \
	"portgroup1.name = \"VLAN 10\"\nportgroup1.vswitch = \"vSwitch0\"\n"           \
	"portgroup1.vlan = \"10\"\n"                                                   \
	"portgroup2.name = \"VLAN 20\"\nportgroup2.vswitch = \"vSwitch0\"\n"           \
	"portgroup2.vlan = \"20\"\n"

/*
 * An emulated NIC (vmxnet3) and a virtio-net guest on VLAN 10 reach each
 * other; a guest on VLAN 20 with an address in the same subnet sees none
 * of it.
 */
TEST(vmnet_vlans_emulated)
{
	struct vt t;
	char line[1024];

	vt_start(&t, VLAN_GROUPS);
	ASSERT_GE(vt_vm_start(&t, "v20", NIC("virtio", "VLAN 20"),
			      UP("10.0.10.3") "echo VMF-READY v20; sleep 60", NULL, 0),
		  3);
	ASSERT_GE(vt_vm_start(&t, "v10a", NIC("virtio", "VLAN 10"),
			      UP("10.0.10.1") "vmf-tcp recv 7000; sleep 60", NULL, 0),
		  3);
	vt_wait_console(&t, "v20", "VMF-READY", line, sizeof(line));
	vt_wait_console(&t, "v10a", "VMF-READY", line, sizeof(line));
	ASSERT_GE(vt_vm_start(&t, "v10e", NIC("vmxnet3", "VLAN 10"),
			      UP("10.0.10.2") "ping -c 2 -W 2 10.0.10.3; ping -c 3 -W 5 10.0.10.1 "
					      "&& vmf-tcp send 10.0.10.1 7000 4M; sleep 60",
			      NULL, 0),
		  3);
	vt_wait_console(&t, "v10e", "10.0.10.3 ping statistics", line, sizeof(line));
	vt_wait_console(&t, "v10e", "2 packets transmitted", line, sizeof(line));
	th_log("ping across VLANs: %s", line);
	ASSERT(strstr(line, "0 packets received"));
	vt_wait_console(&t, "v10e", "3 packets transmitted", line, sizeof(line));
	th_log("ping within VLAN 10: %s", line);
	ASSERT(strstr(line, "3 packets received"));
	check_transfer(&t, "v10e", "v10a", 4u << 20);
	{
		char *json = td_mgmt(&t.d, "network.port.list");

		th_log("%s", json);
		ASSERT(strstr(port_entry(json, "v10e.eth0"), "\"kind\":\"emulated\""));
		free(json);
	}
	/* Nothing of VLAN 10 (not even its broadcasts) was delivered to VLAN 20. */
	ASSERT_EQ(port_counter(&t, "v20.eth0", "tx_packets"), 0);
	ASSERT_GT(port_counter(&t, "v10a.eth0", "tx_packets"), 2800);
	vm_stop(&t, "v10e");
	vm_stop(&t, "v10a");
	vm_stop(&t, "v20");
	td_stop(&t.d);
	td_cleanup(&t.d);
}

/*
 * A guest reaches a remote host (a network namespace behind an uplink, over
 * a veth pair) and the host's VMkernel adapter (a TAP interface, moved into
 * another namespace so that the test leaves the host's own stack alone).
 */
TEST(vmnet_uplink_vmk)
{
	struct vt t;
	char line[1024];

	if (geteuid() != 0)
		SKIP("needs root (network namespaces, a veth pair, a TAP interface)");
	if (td_sh("command -v ip >/dev/null 2>&1"))
		SKIP("no ip command (iproute2)");
	if (access("/dev/net/tun", R_OK | W_OK))
		SKIP("no /dev/net/tun");
	(void)td_sh("ip netns del vmft-gr 2>/dev/null; ip netns del vmft-gh 2>/dev/null; "
		 "ip link del vmft-gu 2>/dev/null");
	ASSERT_EQ(td_sh("ip netns add vmft-gr && ip netns add vmft-gh && "
		     "ip link add vmft-gu type veth peer name vmft-gr0 netns vmft-gr && "
		     "ip link set dev vmft-gu up && "
		     "ip -n vmft-gr addr add 10.0.52.2/24 dev vmft-gr0 && "
		     "ip -n vmft-gr link set dev vmft-gr0 up && ip -n vmft-gr link set dev lo up"),
		  0);
	/*
	 * What a veth hands to the uplink is what its peer sent: with the
	 * peer's offloads on, TCP segments of 64 KiB with checksums left to
	 * hardware that is not there. A wire delivers neither.
	 */
	if (td_sh("command -v ethtool >/dev/null 2>&1"))
		SKIP("no ethtool (tools/setup-deps check)");
	ASSERT_EQ(td_sh("ip netns exec vmft-gr ethtool -K vmft-gr0 tx off tso off gso off >/dev/null"), 0);
	vt_start(&t, "uplink0.name = \"vmnic1\"\nuplink0.device = \"vmft-gu\"\n"
		     "vmk0.name = \"vmft-gvmk\"\nvmk0.portgroup = \"VM Network\"\n");
	free(td_mgmt(&t.d, "network.port.list")); /* the switches are set up */
	ASSERT_EQ(td_sh("ip link set dev vmft-gvmk netns vmft-gh && "
		     "ip -n vmft-gh addr add 10.0.52.1/24 dev vmft-gvmk && "
		     "ip -n vmft-gh link set dev vmft-gvmk up"),
		  0);
	ASSERT_EQ(td_sh("(ip netns exec vmft-gr " VMFABRIC_BUILD_DIR "/tools/vmf-tcp recv 7000 "
		     "--timeout 90 >" "/dev/null 2>&1 &)"),
		  0);
	ASSERT_GE(vt_vm_start(&t, "up", NIC("virtio", "VM Network"),
			      UP("10.0.52.10") "ping -c 3 -W 5 10.0.52.1; ping -c 3 -W 5 10.0.52.2 "
					       "&& vmf-tcp send 10.0.52.2 7000 8M; sleep 60",
			      NULL, 0),
		  3);
	vt_wait_console(&t, "up", "10.0.52.1 ping statistics", line, sizeof(line));
	vt_wait_console(&t, "up", "3 packets transmitted", line, sizeof(line));
	th_log("ping of the VMkernel adapter: %s", line);
	ASSERT(strstr(line, "3 packets received"));
	vt_wait_console(&t, "up", "op=send", line, sizeof(line));
	th_log("to the remote host: %s", line);
	ASSERT(strstr(line, " ok=1"));
	ASSERT_EQ(vt_result_u64(line, "peer_sum"), vt_result_u64(line, "sum"));
	ASSERT_GT(port_counter(&t, "vmnic1", "rx_packets"), 100);
	vm_stop(&t, "up");
	td_stop(&t.d);
	td_cleanup(&t.d);
	(void)td_sh("ip netns del vmft-gr; ip netns del vmft-gh; ip link del vmft-gu 2>/dev/null");
}

/*
 * A daemon restart (SIGHUP: exec in place) under a ping between a virtio
 * guest and a vmxnet3 guest: QEMU reconnects its vhost-user netdev to the
 * socket the new daemon makes at the same path, the emulated NIC's socket
 * is handed across the exec; the guests lose at most the pings of the
 * moment and the last ones get through.
 */
TEST(vmnet_daemon_restart)
{
	struct vt t;
	char line[1024];

	vt_start(&t, NULL);
	ASSERT_GE(vt_vm_start(&t, "rv", NIC("virtio", "VM Network"),
			      UP("10.0.0.1") "echo VMF-READY rv; sleep 90", NULL, 0),
		  3);
	vt_wait_console(&t, "rv", "VMF-READY", line, sizeof(line));
	ASSERT_GE(vt_vm_start(&t, "re", NIC("vmxnet3", "VM Network"),
			      UP("10.0.0.2") "ping -c 40 -i 0.5 -W 1 10.0.0.1; sleep 60", NULL, 0),
		  3);
	vt_wait_console(&t, "re", "seq=4 ", line, sizeof(line));
	ASSERT_OK(kill(t.d.pid, SIGHUP)); /* it execs itself: the same pid */
	vt_wait_console(&t, "re", "packets transmitted", line, sizeof(line));
	th_log("ping across the restart: %s", line);
	ASSERT(strstr(line, "40 packets transmitted"));
	{
		const char *p = strstr(line, "transmitted, ");
		long got = p ? strtol(p + 13, NULL, 10) : -1;

		ASSERT_GE(got, 30);
	}
	vt_wait_console(&t, "re", "seq=39 ", line, sizeof(line)); /* after the restart */
	vm_stop(&t, "re");
	vm_stop(&t, "rv");
	td_stop(&t.d);
	td_cleanup(&t.d);
}
