# SPDX-License-Identifier: MIT
# Thin wrapper around Meson so that each entry point works as the first
# command on a fresh Debian 12 machine: it installs what it needs, builds,
# then does its job.
#
#   make          build into build/
#   make run      the main job: the end-to-end demo
#   make check    the whole test suite (plain, ASan+UBSan, TSan, fuzz corpora)
#   make bench    every benchmark (bench/run NAME for one)
#   make bench-report  every benchmark (BENCH_ARGS, default --quick), then
#                 docs/PERFORMANCE.md with plots (gnuplot) from their results
#   make fuzz     run the fuzz targets under libFuzzer (FUZZ_SECONDS each)
#   make soak     everything at once for SOAK_SECONDS, bytes checked, leaks watched
#   make guest    build the guest image (Debian cloud kernel + busybox)
#   make install  install under PREFIX (default /usr/local), staged in DESTDIR if set

BUILD ?= build
FUZZ_SECONDS ?= 60
SOAK_SECONDS ?= 300
BENCH_ARGS ?= --quick
PREFIX ?= /usr/local
MESON_OPTS ?=

.PHONY: all deps run check bench bench-report fuzz soak install guest boot-smoke clean

all: deps
	@test -f $(BUILD)/build.ninja || meson setup $(BUILD) $(MESON_OPTS) >/dev/null
	@ninja -C $(BUILD) --quiet

deps:
	@tools/setup-deps build

run: all guest
	@tools/setup-deps run
	@tools/run-demo

check:
	@tools/setup-deps check
	@tests/check

bench: all
	@bench/run all

install: all
	@meson configure $(BUILD) -Dprefix=$(PREFIX) >/dev/null
	@ninja -C $(BUILD) --quiet
	@DESTDIR=$(DESTDIR) meson install -C $(BUILD) --no-rebuild --quiet
	@echo "installed under $(DESTDIR)$(PREFIX); systemd: systemctl daemon-reload && systemctl enable --now vmfabricd"

soak: all
	@mkdir -p bench/results
	@build/bench/vmf-soak --seconds $(SOAK_SECONDS) --out bench/results/soak.jsonl

bench-report: all
	@tools/setup-deps report
	@bench/run all $(BENCH_ARGS)
	@$(BUILD)/bench/vmf-bench-report bench/results docs/PERFORMANCE.md docs/perf
	@echo "docs/PERFORMANCE.md and docs/perf/*.png written"

fuzz:
	@tools/setup-deps fuzz
	@tools/fuzz $(FUZZ_SECONDS)

guest:
	@tools/setup-deps vm
	@guest/build-image $(BUILD)/guest

boot-smoke: guest
	@guest/boot-smoke $(BUILD)/guest

clean:
	rm -rf build build-asan build-tsan build-fuzz
