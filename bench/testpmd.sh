#!/bin/bash
# SPDX-License-Identifier: MIT
# bench/testpmd.sh: DPDK's testpmd as a peer of vmfabric's vhost-user ports,
# for the vswitch benchmark and the interop test (docs/BENCHMARKS.md,
# "DPDK testpmd").
#
#   bench/testpmd.sh loop  [-s SECONDS] [--burst N] [--cpus VHOST,VIRTIO]
#       The reference: testpmd A with two net_vhost ports (the "switch"),
#       testpmd B with two net_virtio_user ports connected to them, both in io
#       forwarding, one forwarding lcore each. B sends one burst on each port
#       first (--tx-first); the frames then circle B0 -> A0 -> A1 -> B1 -> B0
#       (and the other way round) for good.
#   bench/testpmd.sh fwd SOCK0 SOCK1 [-s SECONDS] [--system NAME] [--cpu N]
#                        [--burst N] [--flood] [--mac0 MAC] [--mac1 MAC]
#       One testpmd with two net_virtio_user ports connected to two
#       vhost-user sockets (a vmfabricd's vhostuser0.path and vhostuser1.path),
#       io forwarding, the same loop with the backend in A's place.
#   bench/testpmd.sh check SOCK0 SOCK1 [-n FRAMES] [--all] [--cpu N]
#                          [--mac0 MAC] [--mac1 MAC]
#       Functional check: FRAMES frames (default 32, at most 256) sent from
#       the port on SOCK0, counted on the port on SOCK1. Exit 0 if any (with
#       --all: all) arrived, 1 if not.
#   bench/testpmd.sh vhost SOCK0 SOCK1 [-s SECONDS] [--cpu N]
#       A stand-in for vmfabricd: testpmd A alone (two net_vhost servers at
#       SOCK0 and SOCK1, io forwarding between them on CPU N, default 1) for
#       SECONDS (default 60) or until killed; to try fwd and check with.
#
# loop and fwd print one JSON line ({"bench":"vswitch_testpmd","system":…,
# "mpps":…}) and one human line. The figure is the sum over both ports of
# the virtio_user testpmd's received packets per second (each is forwarded
# back), the median of one-second samples after two seconds of warm-up.
# check prints {"bench":"testpmd_check",…} and a human line.
#
# Environment: VMF_TESTPMD (default dpdk-testpmd), VMF_TESTPMD_MEM (MiB of
# memory per testpmd, default 256; this is what the backend maps), and
# VMF_TESTPMD_KEEP=1 keeps the logs' directory (its name goes to stderr).
#
# Frames: testpmd's txonly frames, 64 bytes (IPv4/UDP), source MAC the
# sending port's, destination the --eth-peer of that port. io forwarding
# never rewrites them. Through a learning switch (fwd), a frame sent on port
# 0 always enters the switch at SOCK0 and leaves at SOCK1 (port 1 hands it
# back to port 0): so port 0's peer is port 1's MAC and the other way round,
# and both are learned from the first burst; --flood keeps testpmd's default
# peers (02:00:00:00:00:0N, never a source), so every frame is flooded as
# unknown unicast. macswap would not work through a switch: the frame
# would come back in at SOCK0 with port 1's MAC as its source.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
testpmd=${VMF_TESTPMD:-dpdk-testpmd}
mem=${VMF_TESTPMD_MEM:-256}
warmup=2
mac0_def=02:74:70:00:00:00
mac1_def=02:74:70:00:00:01

usage() {
	sed -n '/^#   bench/,/^# loop and fwd/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
}

die() { echo "testpmd.sh: $*" >&2; exit 2; }

# --- processes and cleanup ---------------------------------------------------

work=""
pids=""
prefixes="vmf-testpmd-$$-a vmf-testpmd-$$-b vmf-testpmd-$$-c"

cleanup() {
	local p
	for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
	for p in $pids; do wait "$p" 2>/dev/null || true; done
	pids=""
	# EAL makes its runtime directory even with --no-shconf: remove ours.
	for p in $prefixes; do rm -rf "${rundir:?}/$p"; done
	if [ -n "$work" ]; then
		if [ "${VMF_TESTPMD_KEEP:-0}" = 1 ]; then
			echo "testpmd.sh: logs kept in $work" >&2
		else
			rm -rf "$work"
		fi
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$(id -u)" -eq 0 ]; then rundir=/var/run/dpdk; else rundir=${XDG_RUNTIME_DIR:-/tmp}/dpdk; fi

setup() {
	if ! command -v "$testpmd" >/dev/null 2>&1; then
		"$here/../tools/setup-deps" dpdk >&2 || die "no $testpmd (tools/setup-deps dpdk)"
		command -v "$testpmd" >/dev/null 2>&1 || die "no $testpmd (tools/setup-deps dpdk)"
	fi
	work=$(mktemp -d "${TMPDIR:-/tmp}/vmf-testpmd.XXXXXX")
}

# eal_args NAME MAIN_CPU FWD_CPU: EAL options for one testpmd (its file
# prefix is vmf-testpmd-PID-NAME, listed for cleanup up front since this
# runs in a command substitution). Lcore 0, the main lcore, which sleeps (it
# only prints the statistics every second or waits for commands), on
# MAIN_CPU; lcore 1, the one that polls, on FWD_CPU.
# --no-huge: memory is a memfd, which is what the backend is given to map;
# --no-shconf: no shared files, any number of testpmds side by side.
eal_args() {
	local prefix="vmf-testpmd-$$-$1"
	echo "--lcores=0@$2,1@$3 --no-huge -m $mem --no-pci --no-shconf --file-prefix=$prefix"
}

# Start a command in the background with a time limit; its pid is last_pid.
# stdbuf -oL: testpmd's printf output otherwise comes in 4 KiB blocks, out
# of order with its prompt and too late to be waited for.
start_bg() {
	local log=$1 limit=$2
	shift 2
	timeout -k 5 "$limit" stdbuf -oL "$@" >"$log" 2>&1 </dev/null &
	last_pid=$!
	pids="$pids $last_pid"
}

# wait_for LOG PATTERN COUNT SECONDS PID: until PATTERN occurs COUNT times in
# LOG (occurrences, not lines: two prompts can share a line); fails when PID
# has exited or SECONDS have passed.
wait_for() {
	local log=$1 pat=$2 count=$3 limit=$4 pid=$5 i=0 n
	while [ "$i" -lt $((limit * 10)) ]; do
		n=$(grep -o -- "$pat" "$log" 2>/dev/null | wc -l)
		[ "${n:-0}" -ge "$count" ] && return 0
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

wait_socket() {
	local i=0
	while [ ! -S "$1" ]; do
		[ "$i" -ge 100 ] && die "no vhost-user socket at $1 after 10 s"
		sleep 0.1
		i=$((i + 1))
	done
}

# stop PID: testpmd stops forwarding, prints its totals and closes its
# ports on SIGTERM (SIGINT likewise).
stop() {
	kill -TERM "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
	pids=$(echo "$pids" | tr ' ' '\n' | grep -vx "$1" | tr '\n' ' ' || true)
}

fail_log() {
	echo "testpmd.sh: $1; the last lines of $2:" >&2
	grep -v -e 'pps:' -e '####' -e '^ *$' -e 'RX-' -e 'TX-' -e 'Throughput' -e 'Port statistics' "$2" | tail -20 >&2
	exit 1
}

# samples LOG NPORTS: one line per --stats-period print, the sum of the
# ports' Rx-pps, the first $warmup prints (the first is always 0) left out.
samples() {
	awk -v np="$2" -v skip="$warmup" '
		/Rx-pps:/ { s += $2; n++; if (n % np == 0) { k++; if (k > skip) print s; s = 0 } }
	' "$1"
}

# report SYSTEM MODE LOG NPORTS SECONDS [EXTRA_JSON]
report() {
	local system=$1 mode=$2 log=$3 np=$4 secs=$5 extra=${6:-}
	samples "$log" "$np" | head -n "$secs" | sort -n | awk \
		-v sys="$system" -v mode="$mode" -v extra="$extra" '
		{ v[NR] = $1 }
		END {
			if (NR == 0) { print "testpmd.sh: no samples" > "/dev/stderr"; exit 1 }
			med = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
			printf "{\"bench\":\"vswitch_testpmd\",\"system\":\"%s\",\"msg_bytes\":64,\"mode\":\"%s\",\"metric\":\"mpps\",\"value\":%.3f,\"mpps\":%.3f,\"min\":%.3f,\"max\":%.3f,\"samples\":%d%s}\n", \
				sys, mode, med / 1e6, med / 1e6, v[1] / 1e6, v[NR] / 1e6, NR, extra
			printf "vswitch_testpmd %s: %.2f Mpps, 64 B frames, %s (median of %d one-second samples, %.2f-%.2f)\n", \
				sys, med / 1e6, mode, NR, v[1] / 1e6, v[NR] / 1e6
		}'
}

# --- options -------------------------------------------------------------------

secs=10
burst=32
system=vmfabric
cpu=0
cpus=1,0
flood=0
frames=32
all=0
mac0=$mac0_def
mac1=$mac1_def
socks=()
secs_set=0
cpu_set=0

parse() {
	while [ $# -gt 0 ]; do
		case $1 in
		-s | --seconds) secs=$2; secs_set=1; shift ;;
		--burst) burst=$2; shift ;;
		--system) system=$2; shift ;;
		--cpu) cpu=$2; cpu_set=1; shift ;;
		--cpus) cpus=$2; shift ;;
		--flood) flood=1 ;;
		-n | --frames) frames=$2; shift ;;
		--all) all=1 ;;
		--mac0) mac0=$2; shift ;;
		--mac1) mac1=$2; shift ;;
		-h | --help) usage ;;
		-*) die "unknown option $1" ;;
		*) socks+=("$1") ;;
		esac
		shift
	done
	case $secs in '' | *[!0-9]* | 0) die "--seconds wants a positive integer" ;; esac
	case $burst in '' | *[!0-9]* | 0) die "--burst wants 1 to 512" ;; esac
	[ "$burst" -le 512 ] || die "--burst wants 1 to 512"
	# One burst, at most the 256 descriptors of a virtio_user ring.
	case $frames in '' | *[!0-9]* | 0) die "--frames wants 1 to 256" ;; esac
	[ "$frames" -le 256 ] || die "--frames wants 1 to 256"
}

# The other CPU (where the sleeping main lcore goes). The machine's CPUs, not
# nproc's: a caller pinned to one CPU (taskset) would make it say 1, and EAL
# pins its lcores itself.
other_cpu() {
	if [ "$(getconf _NPROCESSORS_ONLN)" -ge 2 ] && [ "$1" -eq 0 ]; then echo 1; else echo 0; fi
}

# --- loop: DPDK vhost <-> DPDK virtio_user ------------------------------------

cmd_loop() {
	[ ${#socks[@]} -eq 0 ] || die "loop takes no sockets"
	local a_cpu=${cpus%,*} b_cpu=${cpus#*,} limit=$((secs + warmup + 30))
	setup
	local s0=$work/a0.sock s1=$work/a1.sock
	# A: the vhost-user backends (servers), io forwarding between them.
	# shellcheck disable=SC2046
	start_bg "$work/a.log" "$((limit + 10))" "$testpmd" $(eal_args a "$(other_cpu "$a_cpu")" "$a_cpu") \
		--vdev "net_vhost0,iface=$s0,queues=1" --vdev "net_vhost1,iface=$s1,queues=1" \
		-- --forward-mode=io --nb-cores=1 --stats-period=1 --total-num-mbufs=16384 --burst="$burst"
	local a=$last_pid
	wait_for "$work/a.log" 'binding succeeded' 2 15 "$a" || fail_log "testpmd A (net_vhost) did not start" "$work/a.log"
	# B: the virtio_user frontends, a burst on each port first.
	# shellcheck disable=SC2046
	start_bg "$work/b.log" "$limit" "$testpmd" $(eal_args b "$(other_cpu "$b_cpu")" "$b_cpu") \
		--vdev "net_virtio_user0,path=$s0,queues=1,mac=$mac0" \
		--vdev "net_virtio_user1,path=$s1,queues=1,mac=$mac1" \
		-- --forward-mode=io --nb-cores=1 --stats-period=1 --total-num-mbufs=16384 --burst="$burst" --tx-first
	local b=$last_pid
	wait_for "$work/b.log" 'Rx-pps:' $(((secs + warmup + 1) * 2)) "$limit" "$b" ||
		fail_log "testpmd B (net_virtio_user) stopped early" "$work/b.log"
	stop "$b"
	stop "$a"
	report dpdk_vhost io_loop "$work/b.log" 2 "$secs" ",\"burst\":$burst,\"vhost_cpu\":$a_cpu,\"virtio_cpu\":$b_cpu"
}

# --- fwd: DPDK virtio_user <-> a vhost-user backend ---------------------------

cmd_fwd() {
	[ ${#socks[@]} -eq 2 ] || die "fwd wants two vhost-user sockets"
	local limit=$((secs + warmup + 30)) peers=""
	setup
	wait_socket "${socks[0]}"
	wait_socket "${socks[1]}"
	[ "$flood" = 1 ] || peers="--eth-peer=0,$mac1 --eth-peer=1,$mac0"
	# shellcheck disable=SC2046,SC2086
	start_bg "$work/b.log" "$limit" "$testpmd" $(eal_args b "$(other_cpu "$cpu")" "$cpu") \
		--vdev "net_virtio_user0,path=${socks[0]},queues=1,mac=$mac0" \
		--vdev "net_virtio_user1,path=${socks[1]},queues=1,mac=$mac1" \
		-- --forward-mode=io --nb-cores=1 --stats-period=1 --total-num-mbufs=16384 --burst="$burst" --tx-first $peers
	local b=$last_pid
	wait_for "$work/b.log" 'Rx-pps:' $(((secs + warmup + 1) * 2)) "$limit" "$b" ||
		fail_log "testpmd (net_virtio_user) stopped early" "$work/b.log"
	stop "$b"
	local dst=known
	[ "$flood" = 1 ] && dst=unknown
	report "$system" io_loop "$work/b.log" 2 "$secs" ",\"burst\":$burst,\"cpu\":$cpu,\"dst_mac\":\"$dst\""
}

# --- vhost: testpmd A alone, standing in for a vhost-user backend ------------

cmd_vhost() {
	[ ${#socks[@]} -eq 2 ] || die "vhost wants two socket paths"
	setup
	echo "testpmd.sh vhost: net_vhost servers at ${socks[0]} and ${socks[1]} for $secs s" >&2
	# shellcheck disable=SC2046
	timeout -k 5 "$secs" stdbuf -oL "$testpmd" $(eal_args a "$(other_cpu "$cpu")" "$cpu") \
		--vdev "net_vhost0,iface=${socks[0]},queues=1" --vdev "net_vhost1,iface=${socks[1]},queues=1" \
		-- --forward-mode=io --nb-cores=1 --stats-period=1 --total-num-mbufs=16384 --burst="$burst" \
		>"$work/a.log" 2>&1 </dev/null &
	last_pid=$!
	pids="$pids $last_pid"
	wait "$last_pid" || true
	grep -q 'binding succeeded' "$work/a.log" || fail_log "testpmd A (net_vhost) did not start" "$work/a.log"
}

# --- check: N frames from SOCK0's port, counted on SOCK1's --------------------

cmd_check() {
	[ ${#socks[@]} -eq 2 ] || die "check wants two vhost-user sockets"
	setup
	wait_socket "${socks[0]}"
	wait_socket "${socks[1]}"
	local log=$work/check.log in=$work/in
	mkfifo "$in"
	# Interactive, commands through a FIFO: the main lcore sleeps in read().
	# The port topology "loop" makes port 0 its own stream's TX port, so that
	# "set portlist 0" + "start tx_first" sends one burst on port 0 only.
	# --no-flush-rx: "start" would otherwise drain the receive queues
	# unseen; this way rxonly receives them and "set verbose 1" prints each.
	# shellcheck disable=SC2046
	timeout -k 5 150 stdbuf -oL "$testpmd" $(eal_args c "$(other_cpu "$cpu")" "$cpu") \
		--vdev "net_virtio_user0,path=${socks[0]},queues=1,mac=$mac0" \
		--vdev "net_virtio_user1,path=${socks[1]},queues=1,mac=$mac1" \
		-- -i --port-topology=loop --forward-mode=rxonly --nb-cores=1 --total-num-mbufs=8192 \
		--no-flush-rx --eth-peer="0,$mac1" --eth-peer="1,$mac0" <"$in" >"$log" 2>&1 &
	local c=$!
	pids="$pids $c"
	exec 3>"$in"
	# say CMD: send a command, wait for the prompt after it.
	local n=0
	say() {
		echo "$1" >&3
		n=$((n + 1))
		wait_for "$log" 'testpmd> ' "$((n + 1))" 20 "$c" || fail_log "testpmd stopped at '$1'" "$log"
	}
	wait_for "$log" 'testpmd> ' 1 20 "$c" || fail_log "testpmd (net_virtio_user) did not start" "$log"
	say "set burst $frames"
	say "set portlist 0"
	# The ring messages virtio_user sends are not acknowledged: a backend
	# may still be starting port 1's rings (a busy machine) when the burst
	# goes out, and would rightly drop it as for a port that is down.
	sleep 1
	say "start tx_first"
	sleep 0.5
	say "stop"
	say "set verbose 1"
	say "set portlist 0,1"
	say "start"
	# Give a slow backend a second.
	sleep 1
	say "stop"
	say "show port stats all"
	echo quit >&3
	exec 3>&-
	wait "$c" 2>/dev/null || true
	pids=$(echo "$pids" | tr ' ' '\n' | grep -vx "$c" | tr '\n' ' ' || true)
	# sent: port 0's TX-packets; received: the frames port 1 received from
	# port 0 (source mac0, destination mac1, from the verbose dump: not
	# frames a backend kept from an earlier connection); total: port 1's
	# RX-packets. (The dump's headers may follow a prompt on the same line.)
	local sent got total
	sent=$(awk '/NIC statistics for port 0/ { p = 1 } /NIC statistics for port 1/ { p = 0 } p && /TX-packets:/ { v = $2 } END { print v + 0 }' "$log")
	total=$(awk '/NIC statistics for port 1/ { p = 1 } /NIC statistics for port 0/ { p = 0 } p && /RX-packets:/ { v = $2 } END { print v + 0 }' "$log")
	got=$(awk -v want="src=$mac0 - dst=$mac1" '
		BEGIN { want = toupper(want) }
		/port [0-9]+\/queue [0-9]+: (received|sent)/ { rx1 = ($0 ~ /port 1\/queue [0-9]+: received/) }
		rx1 && index(toupper($0), want) { k++ }
		END { print k + 0 }' "$log")
	local ok=false
	if [ "$all" = 1 ]; then [ "$got" -ge "$frames" ] && ok=true; else [ "$got" -gt 0 ] && ok=true; fi
	printf '{"bench":"testpmd_check","frames":%d,"sent":%d,"received":%d,"received_total":%d,"ok":%s}\n' \
		"$frames" "$sent" "$got" "$total" "$ok"
	printf 'testpmd check: %d frames asked, %d sent on port 0 (%s), %d of them received on port 1 (%s, %d frames in all): %s\n' \
		"$frames" "$sent" "${socks[0]}" "$got" "${socks[1]}" "$total" "$([ $ok = true ] && echo ok || echo FAILED)"
	[ $ok = true ]
}

[ $# -ge 1 ] || usage
sub=$1
shift
parse "$@"
case $sub in
loop) cmd_loop ;;
fwd) cmd_fwd ;;
check) cmd_check ;;
vhost)
	[ "$secs_set" = 1 ] || secs=60
	[ "$cpu_set" = 1 ] || cpu=1
	cmd_vhost
	;;
*) usage ;;
esac
