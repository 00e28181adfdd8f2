#!/usr/bin/env bash
# Installs the Debian packages the tests (and the benchmark) use, when they are missing:
# bpftool (real eBPF maps), iproute2 (ip netns), dash and busybox (the capture script's shells),
# jq (the README's jq recipes are run against the sample), strace (which threads end how, at exit),
# GNU time with --bench (peak RSS of measured children). One apt-get update, one install.
# Not root or no apt-get: says what is missing; the tests that need it then skip (or fail in CI).
set -u
want=(bpftool:bpftool ip:iproute2 dash:dash busybox:busybox jq:jq strace:strace)
[ "${1:-}" = --bench ] && want+=(/usr/bin/time:time)
missing=()
for pair in "${want[@]}"; do
  cmd=${pair%%:*} pkg=${pair##*:}
  if [ "${cmd#/}" != "$cmd" ]; then [ -x "$cmd" ] && continue; else command -v "$cmd" >/dev/null 2>&1 && continue; fi
  missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "missing and not installable here (not root, or no apt-get): ${missing[*]}; the tests that need them will skip" >&2
  exit 0
fi
echo "installing Debian packages: ${missing[*]}"
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
