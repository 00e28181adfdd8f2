# usm-leak-detector: make (build), make test, make demo, make bench, make dist.
SHELL := /bin/bash
.DEFAULT_GOAL := build
NPM_STAMP := node_modules/.install-stamp
BIN := ./bin/usm-leak-detector
BUNDLE := dist/usm-leak-detector.cjs

.PHONY: build deps system-deps typecheck test demo bench dist bpf-objects clean

# Dependencies from the lockfile, installed when missing or when the lockfile changed.
$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

deps: $(NPM_STAMP)

# Tests use real eBPF maps through bpftool: install Debian's package when it is missing (root only).
system-deps:
	@if ! command -v bpftool >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing bpftool (Debian package)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bpftool >/dev/null; \
	  else \
	    echo "bpftool is missing and cannot be installed here (not root, or no apt-get): BPF tests will skip"; \
	  fi; \
	fi
	@# The capture script's tests run it under dash and busybox sh.
	@for shell in dash busybox; do \
	  if ! command -v $$shell >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing $$shell (Debian package)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$shell >/dev/null || true; \
	  fi; \
	done

typecheck: deps
	node_modules/.bin/tsc --noEmit

$(BUNDLE): deps $(shell find src commands -name '*.ts') src/capture/capture.sh scripts/build.mjs
	node scripts/build.mjs

build: typecheck $(BUNDLE)

test: build system-deps
	scripts/test.sh

demo: build
	@test -f samples/capture.ndjson || { echo "make demo: samples/capture.ndjson is not recorded yet (issue 6)" >&2; exit 4; }
	node $(BUNDLE) report --samples 5 < samples/capture.ndjson || test $$? -eq 1

# Benchmarks (issue 8): BENCH_RUNS=5 runs per figure, BENCH_SCALE=1 for 1,000,000 entries.
# GNU time reads each measured child's CPU and peak RSS: installed from Debian when missing.
bench: build system-deps
	@if [ ! -x /usr/bin/time ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing GNU time (Debian package)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; \
	  fi; \
	fi
	node_modules/.bin/tsx bench/run.ts

dist: build
	@test -f scripts/dist.sh || { echo "make dist: not built yet (issue 7)" >&2; exit 4; }
	scripts/dist.sh

# Rebuilds the BTF test object from its C source (needs clang); the built object is committed.
bpf-objects:
	@test -f test/fixtures/bpf/Makefile || { echo "no BPF sources yet (issue 3)" >&2; exit 4; }
	$(MAKE) -C test/fixtures/bpf

clean:
	rm -rf dist
