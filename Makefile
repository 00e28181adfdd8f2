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

# Debian packages the tests use (bpftool, iproute2, dash, busybox), installed when missing (root).
system-deps:
	@scripts/system-deps.sh

typecheck: deps
	node_modules/.bin/tsc --noEmit

$(BUNDLE): deps $(shell find src commands -name '*.ts') src/capture/capture.sh scripts/build.mjs
	node scripts/build.mjs

build: typecheck $(BUNDLE)

test: build system-deps
	scripts/test.sh

demo: build
	@test -f samples/capture.ndjson || { echo "make demo: samples/capture.ndjson is missing (scripts/record-sample.ts records it)" >&2; exit 4; }
	node $(BUNDLE) report --samples 5 < samples/capture.ndjson || test $$? -eq 1

# Benchmarks (issue 8): BENCH_RUNS=5 runs per figure, BENCH_SCALE=1 for 1,000,000 entries.
# GNU time reads each measured child's CPU and peak RSS: installed from Debian when missing.
bench: build
	@scripts/system-deps.sh --bench
	node_modules/.bin/tsx bench/run.ts

dist: build
	scripts/dist.sh

# Rebuilds the BTF test object from its C source (needs clang); the built object is committed.
bpf-objects:
	$(MAKE) -C test/fixtures/bpf

clean:
	rm -rf dist
