#!/usr/bin/env bash
# Whole-process benchmark of kbak's data path against the tools everyone
# knows, on the same data in the same run:
#   upload:   kbak mover upload → local S3 server   vs  tar -cf - DIR | zstd -1 -T0 > FILE
#   download: kbak mover download → empty directory  vs  zstd -dc FILE | tar -xf - -C DIR
# It prints MB/s of source data, the ratio kbak/baseline and peak RSS.
# BENCH_SIZE (default 1GiB) sets the data set size; BENCH_DIR where it lives.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
size=${BENCH_SIZE:-1GiB}
dir=${BENCH_DIR:-/var/tmp/kbak-bench}
port=${BENCH_PORT:-7171}
cd "$repo"

command -v zstd >/dev/null || { apt-get update -qq && apt-get install -y -qq zstd; }
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time; }

mkdir -p "$dir"
data="$dir/data-$size"
if [ ! -f "$data/.complete" ]; then
  rm -rf "$data"
  echo "bench: generating a $size database-like data set in $data"
  go run ./e2e/benchdata --out "$data" --size "$size"
  touch "$data/.complete"
fi
bytes=$(du -sb --exclude=.complete "$data" | cut -f1)
apparent=$(find "$data" -type f ! -name .complete -printf '%s\n' | awk '{s+=$1} END {print s}')

make -s build >/dev/null
gw=$(e2e/s3-build.sh versitygw)
s3dir="$dir/s3"; rm -rf "$s3dir"; mkdir -p "$s3dir/bench"   # a posix bucket is a directory
export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=benchsecret AWS_REGION=us-east-1
"$gw" --access "$AWS_ACCESS_KEY_ID" --secret "$AWS_SECRET_ACCESS_KEY" --port "127.0.0.1:$port" posix "$s3dir" >"$dir/versitygw.log" 2>&1 &
gwpid=$!
trap 'kill $gwpid 2>/dev/null; wait $gwpid 2>/dev/null; rm -rf "$s3dir" "$dir/out" "$dir/baseline.tar.zst"' EXIT
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
repo_url="s3://bench?endpoint=http://127.0.0.1:$port&region=us-east-1&path-style=true"

# Run a command under /usr/bin/time; sets secs and rss_mib. Dirty pages of
# the previous step are written back first, so that no side pays for
# another's writes.
measure() {
  local t0 t1
  sync
  t0=$(date +%s.%N)
  /usr/bin/time -f '%M' -o "$dir/time.out" "$@"
  t1=$(date +%s.%N)
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
  rss_mib=$(( $(tail -1 "$dir/time.out") / 1024 ))
}
rate() { awk -v n="$apparent" -v s="$1" 'BEGIN {printf "%.1f", n / s / 1e6}'; }
ratio() { awk -v base="$1" -v kbak="$2" 'BEGIN {printf "%.2f", base / kbak}'; }

# Warm the page cache so both sides read the same way.
tar -cf - -C "$data" . >/dev/null

measure bash -c "tar -cf - -C '$data' . | zstd -q -1 -T0 > '$dir/baseline.tar.zst'"
base_up=$secs; base_up_rss=$rss_mib
measure bin/kbak mover upload --repo "$repo_url" --source "$data" --key bench/data.tar.zst --size-hint "$apparent" --progress-interval 0
kbak_up=$secs; kbak_up_rss=$rss_mib

rm -rf "$dir/out"; mkdir -p "$dir/out"
measure bash -c "zstd -q -dc '$dir/baseline.tar.zst' | tar -xf - -C '$dir/out'"
base_down=$secs; base_down_rss=$rss_mib
rm -rf "$dir/out"; mkdir -p "$dir/out"
measure bin/kbak mover download --repo "$repo_url" --key bench/data.tar.zst --target "$dir/out" --progress-interval 0
kbak_down=$secs; kbak_down_rss=$rss_mib

stored=$(stat -c %s "$s3dir/bench/bench/data.tar.zst")
baseline_stored=$(stat -c %s "$dir/baseline.tar.zst")
printf '\nbench: %s data set, %d bytes of file content (%d on disk), kbak archive %d bytes (tar|zstd -1: %d)\n' "$size" "$apparent" "$bytes" "$stored" "$baseline_stored"
printf '%-44s %10s %8s %10s\n' "what" "MB/s" "ratio" "peak RSS"
printf '%-44s %10s %8s %7s MiB\n' "tar | zstd -1 -T0 > file" "$(rate "$base_up")" "1.00" "$base_up_rss"
printf '%-44s %10s %8s %7s MiB\n' "kbak mover upload → S3 (loopback)" "$(rate "$kbak_up")" "$(ratio "$base_up" "$kbak_up")" "$kbak_up_rss"
printf '%-44s %10s %8s %7s MiB\n' "zstd -dc file | tar -x" "$(rate "$base_down")" "1.00" "$base_down_rss"
printf '%-44s %10s %8s %7s MiB\n' "kbak mover download ← S3 + extract" "$(rate "$kbak_down")" "$(ratio "$base_down" "$kbak_down")" "$kbak_down_rss"
