#!/usr/bin/env bash
# make dist: everything a person needs on a customer box, in dist/:
#   usm-leak-detector.cjs   the esbuild bundle; runs with any Node 18+ and no node_modules (it
#                           carries koffi's native modules for Linux x64/arm64, glibc and musl)
#   usm-leak-detector       a standalone Linux executable: a Node single-executable application
#                           made from this machine's own node binary (stripped) and postject;
#                           koffi's native module for this platform is a SEA asset; nothing is
#                           downloaded
#   capture.sh              the POSIX sh capture script (usm-leak-detector capture-script)
# Then prints the executable's size, the newest glibc symbol version it needs, and its start-up time.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

node scripts/build.mjs
bundle=dist/usm-leak-detector.cjs
exe=dist/usm-leak-detector

node "$bundle" capture-script > dist/capture.sh.part
chmod 755 dist/capture.sh.part
mv dist/capture.sh.part dist/capture.sh

work=$(mktemp -d "${TMPDIR:-/tmp}/usmld-sea.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The SEA gets its own bundle (a CommonJS file with every dependency inside: a SEA's require()
# reaches only Node's builtins) whose FFI native module is an asset rather than text inside the
# code (src/sys/native.ts checks its SHA-256, writes it into a fresh 0700 directory, dlopens it).
# Its main script is a loader: the code and the code cache build.mjs trained for it are assets
# too (made by the node binary the executable is made from, so V8 takes it). No useCodeCache: SEA's
# own cache covers only the main script's top level (here a few lines), and when V8 refuses it
# (NODE_OPTIONS with a V8 flag) Node prints "Code cache data rejected" on stderr.
node scripts/build.mjs --sea "$work"
cat > "$work/sea-config.json" <<EOF
{
  "main": "$work/bundle.cjs",
  "output": "$work/sea.blob",
  "disableExperimentalSEAWarning": true,
  "assets": $(cat "$work/assets.json")
}
EOF
node --experimental-sea-config "$work/sea-config.json" >"$work/sea.log" 2>&1 || { cat "$work/sea.log" >&2; exit 1; }

node_bin=$(node -p process.execPath)
cp "$node_bin" "$work/exe"
chmod u+w "$work/exe"
# Strip before injecting: the blob goes into a note section strip would not keep.
if command -v strip >/dev/null 2>&1; then
  # binutils warns about node's many .note sections; only a failure matters.
  strip "$work/exe" 2>"$work/strip.log" || { cat "$work/strip.log" >&2; exit 1; }
else
  echo "dist.sh: strip not found; the executable keeps node's debug symbols" >&2
fi
node_modules/.bin/postject "$work/exe" NODE_SEA_BLOB "$work/sea.blob" \
  --sentinel-fuse NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2 >"$work/postject.log" 2>&1 ||
  { cat "$work/postject.log" >&2; exit 1; }
mv "$work/exe" "$exe.part"
chmod 755 "$exe.part"
mv "$exe.part" "$exe"

# Facts for the README, measured on what was just built (USMLD_DIST_MEASURE=0 skips them).
"$exe" --version >/dev/null
if [ "${USMLD_DIST_MEASURE:-1}" = 0 ]; then
  exit 0
fi
size=$(stat -c %s "$exe")
glibc=unknown
if command -v objdump >/dev/null 2>&1; then
  glibc=$(objdump -T "$exe" 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*' | sort -t. -k1,1 -k2,2n -k3,3n -u | tail -1)
fi
runs=10
start=$(date +%s%N)
for _ in $(seq "$runs"); do "$exe" --version >/dev/null; done
end=$(date +%s%N)
startup_ms=$(( (end - start) / runs / 1000000 ))
start=$(date +%s%N)
for _ in $(seq "$runs"); do node "$bundle" --version >/dev/null; done
end=$(date +%s%N)
bundle_ms=$(( (end - start) / runs / 1000000 ))

echo "dist/usm-leak-detector.cjs  $(stat -c %s "$bundle") bytes, node $bundle --version: ${bundle_ms} ms"
echo "dist/usm-leak-detector      $size bytes ($(( size / 1048576 )) MiB), $(gzip -c "$exe" | wc -c | awk '{printf "%d MiB", $1 / 1048576}') gzipped, needs $glibc, node $(node -p process.version) $(node -p process.arch), --version: ${startup_ms} ms"
echo "dist/capture.sh             $(stat -c %s dist/capture.sh) bytes"
