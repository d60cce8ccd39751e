#!/usr/bin/env bash
# Whole-process benchmark of kbak against restic and kopia: the same data,
# the same S3 server, the same run. For each S3 server (versitygw and MinIO,
# built by e2e/s3-build.sh) and each run, on a fresh server:
#   1. full backup of a fresh copy of the e2e/benchdata data set: kbak
#      (format 2 encrypted, as kbak repo init makes it), kbak-plain (format 2
#      without encryption: the cost of encryption), kbak format 1 (a .tar.zst
#      key), restic, kopia;
#   2. second backup of the unchanged data set (kbak with --parent);
#   3. the 1 % change (e2e/bench/benchtool change), then another backup;
#   4. restore of the latest backup into a fresh, empty file system;
#   5. backup and restore of a data set of many small files.
# It prints one table of medians with kbak's advantage over restic and
# kopia, and writes the same to bench-results.json.
#
# Every measured command starts with restic's and kopia's caches empty, as
# it would in a new mover pod; kbak keeps no cache. Dirty pages are written
# back before each measurement. Each restore goes to a new ext4 file system
# on a loop device, as a restore into a new claim does (see fresh_fs: on a
# file system that just lost many files, ext4 creates files slowly for
# minutes, and that measured the kernel, not the contenders).
#
#   BENCH_SIZE (1GiB)  BENCH_RUNS (3)  BENCH_SMALL_FILES (200000)
#   BENCH_QUICK=1      128MiB, 1 run, 20000 small files: to try the script
#   BENCH_S3 ("versitygw minio")  BENCH_DIR (/var/tmp/kbak-bench)  BENCH_PORT (7171)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
. e2e/versions.env

if [ "${BENCH_QUICK:-0}" = 1 ]; then
  size=${BENCH_SIZE:-128MiB} runs=${BENCH_RUNS:-1} small_count=${BENCH_SMALL_FILES:-20000}
else
  size=${BENCH_SIZE:-1GiB} runs=${BENCH_RUNS:-3} small_count=${BENCH_SMALL_FILES:-200000}
fi
servers=${BENCH_S3:-versitygw minio}
dir=${BENCH_DIR:-/var/tmp/kbak-bench}
base_port=${BENCH_PORT:-7171}
samples="$dir/samples.tsv"
work="$dir/work"              # the copy that is backed up and changed
restores="$dir/restore"

export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=benchsecret AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR="$dir/cache/restic"
export KOPIA_PASSWORD=bench KOPIA_CONFIG_PATH="$dir/kopia/repository.config"
export KOPIA_CACHE_DIRECTORY="$dir/cache/kopia" KOPIA_CHECK_FOR_UPDATES=false

log() { printf 'bench: %s\n' "$*" >&2; }

setup() {
  command -v zstd >/dev/null || { apt-get update -qq && apt-get install -y -qq zstd; }
  [ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time; }
  mkdir -p "$dir/bin"
  make -s build >/dev/null
  go build -o "$dir/bin/benchtool" ./e2e/bench/benchtool
  kbak=$repo/bin/kbak
  benchtool=$dir/bin/benchtool
  versitygw=$(e2e/s3-build.sh versitygw)
  minio=$(e2e/s3-build.sh minio)
  restic=$(e2e/bench/tools.sh restic)
  kopia=$(e2e/bench/tools.sh kopia)

  data="$dir/data-$size"
  if [ ! -f "$data/.complete" ]; then
    rm -rf "$data"
    log "generating a $size database-like data set in $data"
    go run ./e2e/benchdata --out "$data" --size "$size"
    touch "$data/.complete"
  fi
  small="$dir/small-$small_count"
  if [ ! -f "$small.complete" ]; then
    rm -rf "$small"
    log "generating $small_count small files in $small"
    "$benchtool" smallfiles --out "$small" --count "$small_count"
    touch "$small.complete"
  fi
  : >"$samples"
}

cleanup() {
  release_fs
  stop_server
  rm -rf "$work" "$restores" "$dir/cache" "$dir/kopia" "$dir"/s3-*
}

# settle writes dirty pages back and gives the disk a moment, so that no
# measurement pays for an earlier step's writes or deletions.
settle() { sync; sleep "${BENCH_SETTLE:-2}"; }

# idle_cpu: the share of CPU time (percent) spent idle over half a second.
idle_cpu() {
  local a b
  read -ra a < <(head -1 /proc/stat)
  sleep 0.5
  read -ra b < <(head -1 /proc/stat)
  local total=0 i
  for ((i = 1; i < ${#a[@]}; i++)); do total=$((total + b[i] - a[i])); done
  echo $(( total > 0 ? 100 * (b[4] + b[5] - a[4] - a[5]) / total : 100 ))
}

# quiet waits until the machine is idle (the S3 server's background work
# and the kernel's writeback after the last command included), at most
# BENCH_IDLE_WAIT seconds.
quiet() {
  local i
  for ((i = 0; i < ${BENCH_IDLE_WAIT:-30} * 2; i++)); do
    [ "$(idle_cpu)" -lt 90 ] || return 0
  done
  log "the machine was still busy after ${BENCH_IDLE_WAIT:-30} s; measuring anyway"
}

# measure CMD...: runs CMD once, its stdout to $dir/cmd.out; sets secs and
# rss_mib (peak resident memory of CMD).
measure() {
  local t0 t1
  sync
  quiet
  t0=$(date +%s.%N)
  if ! /usr/bin/time -f '%M' -o "$dir/time.out" "$@" >"$dir/cmd.out" 2>"$dir/cmd.err"; then
    log "failed: $*"; tail -20 "$dir/cmd.err" >&2; exit 1
  fi
  t1=$(date +%s.%N)
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
  rss_mib=$(( $(tail -1 "$dir/time.out") / 1024 ))
}

# record METRIC CONTENDER VALUE: one sample for the report.
record() { printf '%s\t%s\t%s\t%s\n' "$server" "$2" "$1" "$3" >>"$samples"; }

# out_num FIELD: the last number named FIELD in the measured command's output.
out_num() { grep -o "\"$1\": *[0-9]*" "$dir/cmd.out" | tail -1 | grep -o '[0-9]*$'; }
out_str() { grep -o "\"$1\": *\"[^\"]*\"" "$dir/cmd.out" | head -1 | cut -d'"' -f4; }

# tree_stats DIR: "FILES BYTES" of the regular files under DIR.
tree_stats() { find "$1" -type f ! -name .complete -printf '%s\n' | awk '{n++; s += $1} END {printf "%d %d\n", n, s}'; }
mbps() { awk -v n="$1" -v s="$2" 'BEGIN {printf "%.3f", n / s / 1e6}'; }

# rotate N ITEMS...: the items, starting at the Nth, and backwards in even
# runs, so that no contender always goes first or always follows the same
# one (and pays for what that one left the server and the disk to do).
rotate() {
  local n=$1; shift
  local items=("$@") i k=${#@}
  for ((i = 0; i < k; i++)); do
    if ((n % 2)); then echo "${items[(i + n) % k]}"; else echo "${items[(k - 1 - i + n) % k]}"; fi
  done
}

start_server() {
  local i
  s3dir="$dir/s3-$server"
  rm -rf "$s3dir"; mkdir -p "$s3dir"
  case $server in
    versitygw)
      port=$base_port
      "$versitygw" --access "$AWS_ACCESS_KEY_ID" --secret "$AWS_SECRET_ACCESS_KEY" --region us-east-1 \
        --port "127.0.0.1:$port" --quiet posix "$s3dir" >"$dir/$server.log" 2>&1 & ;;
    minio)
      port=$((base_port + 1))
      MINIO_ROOT_USER=$AWS_ACCESS_KEY_ID MINIO_ROOT_PASSWORD=$AWS_SECRET_ACCESS_KEY MINIO_BROWSER=off MINIO_UPDATE=off \
        "$minio" server "$s3dir" --address "127.0.0.1:$port" --quiet >"$dir/$server.log" 2>&1 & ;;
    *) log "unknown S3 server $server (versitygw or minio)"; exit 2 ;;
  esac
  server_pid=$!
  endpoint="http://127.0.0.1:$port"
  for i in $(seq 300); do
    "$benchtool" bucket create --endpoint "$endpoint" --bucket bench-kbak 2>/dev/null && break
    [ "$i" -lt 300 ] || { log "$server did not start; see $dir/$server.log"; exit 1; }
    sleep 0.1
  done
  for b in kbak-plain kbak-f1 restic kopia; do "$benchtool" bucket create --endpoint "$endpoint" --bucket "bench-$b"; done
  restic_cmd=("$restic" -r "s3:$endpoint/bench-restic" -o s3.bucket-lookup=path -o s3.region=us-east-1)
  kopia_cmd=("$kopia" --no-auto-maintenance --disable-file-logging)
}

stop_server() {
  [ -n "${server_pid:-}" ] || return 0
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
  rm -rf "$s3dir"
}

bucket_bytes() { "$benchtool" bucket size --endpoint "$endpoint" --bucket "bench-$1"; }
kbak_repo() { echo "s3://bench-$1?endpoint=$endpoint&region=us-east-1&path-style=true"; }

# init_repos creates restic's and kopia's repositories (not measured); kopia
# compresses with zstd-fastest like kbak's zstd:1 (its default is none).
init_repos() {
  rm -rf "$dir/cache" "$dir/kopia" "$dir/keys"
  # kbak: an encrypted repository, as kbak repo init makes by default;
  # kbak-plain: the same without encryption (made by its first upload).
  mkdir -p "$dir/keys"
  "$kbak" repo init --repo "$(kbak_repo kbak)" --write-key-out "$dir/keys/write.key" --read-key-out "$dir/keys/read.key" >/dev/null
  "${restic_cmd[@]}" init >/dev/null
  "${kopia_cmd[@]}" repository create s3 --bucket bench-kopia --endpoint "127.0.0.1:$port" \
    --disable-tls --region us-east-1 >/dev/null 2>&1
  "${kopia_cmd[@]}" policy set --global --compression=zstd-fastest >/dev/null
}

clear_caches() { rm -rf "$dir/cache"; }

# backup CONTENDER SOURCE NAME: one measured backup of SOURCE (NAME: db or
# small), on top of the contender's last backup of it. Sets secs, rss_mib,
# grown (how much the contender's bucket grew) and added (what the tool says
# it added; kopia says nothing, so its bucket growth).
backup() {
  local who=$1 src=$2 name=$3 before key
  before=$(bucket_bytes "$who")
  clear_caches
  case $who in
    kbak)
      kbak_seq=$((kbak_seq + 1))
      key=$(printf 'kbak/v2/backups/bench/%s/%s-20260101T000000Z-%04d/volumes/data.tree' "$name" "$name" "$kbak_seq")
      measure "$kbak" mover upload --repo "$(kbak_repo kbak)" --key-file "$dir/keys/write.key" --source "$src" --key "$key" \
        ${last[kbak:$name]:+--parent "${last[kbak:$name]}"} --progress-interval 0
      added=$(out_num storedBytes); last[kbak:$name]=$key ;;
    kbak-plain)
      key="kbak/v2/backups/bench/$name/$name-20260101T000000Z-0001/volumes/data.tree"
      measure "$kbak" mover upload --repo "$(kbak_repo kbak-plain)" --source "$src" --key "$key" --progress-interval 0
      added=$(out_num storedBytes); last[kbak-plain:$name]=$key ;;
    kbak-f1)
      key="bench/$name.tar.zst"
      measure "$kbak" mover upload --repo "$(kbak_repo kbak-f1)" --source "$src" --key "$key" \
        --size-hint "$(tree_stats "$src" | cut -d' ' -f2)" --progress-interval 0
      added=$(out_num storedBytes); last[kbak-f1:$name]=$key ;;
    restic)
      measure "${restic_cmd[@]}" backup --json --host bench "$src"
      added=$(out_num data_added_packed); last[restic:$name]="$(out_str snapshot_id):$src" ;;
    kopia)
      measure "${kopia_cmd[@]}" snapshot create --json "$src"
      last[kopia:$name]=$(out_str id) ;;
  esac
  grown=$(( $(bucket_bytes "$who") - before ))
  [ "$who" != kopia ] || added=$grown
}

# fresh_fs TARGET: a new, empty ext4 file system mounted at TARGET, as a
# restore into a new claim gets. Restoring into a directory of a file system
# that just lost many files measures the kernel instead: for minutes after a
# deletion, ext4's inode allocator scans past every recently freed inode of
# a block group (recently_deleted in a profile), and the contender whose
# directories land in those groups pays for it. Without loop devices it
# falls back to a plain directory.
fresh_fs() {
  local target=$1 img=$1.img
  mkdir -p "$target"
  truncate -s 6G "$img"
  if mkfs.ext4 -q -F -N 600000 "$img" && mount -o loop "$img" "$target"; then
    mounts+=("$target")
  else
    log "no loop-mounted file system for $target: restoring into a directory"
    rm -f "$img"
  fi
}

# release_fs: unmount and remove the restores' file systems.
release_fs() {
  local m
  for m in "${mounts[@]}"; do umount "$m" && rm -f "$m.img"; done
  mounts=()
}
mounts=()

# restore CONTENDER NAME TARGET: one measured restore of the contender's last
# backup of NAME into TARGET, a fresh file system.
restore() {
  local who=$1 what=${last[$1:$2]} target=$3
  clear_caches
  fresh_fs "$target"
  sync
  case $who in
    kbak) measure "$kbak" mover download --repo "$(kbak_repo kbak)" --key-file "$dir/keys/read.key" --key "$what" --target "$target" --progress-interval 0 ;;
    kbak-plain | kbak-f1) measure "$kbak" mover download --repo "$(kbak_repo "$who")" --key "$what" --target "$target" --progress-interval 0 ;;
    restic) measure "${restic_cmd[@]}" restore "$what" --target "$target" ;;
    kopia) measure "${kopia_cmd[@]}" snapshot restore "$what" "$target" ;;
  esac
}

# verify DIR WANT: a restore has the files and bytes it should.
verify() {
  local got; got=$(tree_stats "$1")
  [ "$got" = "$2" ] || { log "$1 has $got (files bytes), want $2"; exit 1; }
}

# One run on one server: a fresh server, a fresh copy of the data set, then
# the phases below in order.
bench_run() {
  local run=$1
  declare -gA last=() full_size=()
  kbak_seq=0
  log "$server, run $run of $runs"
  start_server
  rm -rf "$work"; cp -a "$data" "$work"; rm -f "$work/.complete"
  full_stats=$(tree_stats "$work")
  init_repos
  settle
  full_backups "$run"
  second_backups "$run"
  restores_of_latest "$run"
  small_files "$run"
  stop_server
  settle
}

full_backups() {
  local who
  for who in $(rotate "$1" kbak kbak-plain kbak-f1 restic kopia); do
    backup "$who" "$work" db
    record full.mbps "$who" "$(mbps "${full_stats#* }" "$secs")"
    record full.rss "$who" "$rss_mib"
    full_size[$who]=$(bucket_bytes "$who")
    record full.stored "$who" "${full_size[$who]}"
  done
}

# second_backups: one of the unchanged data set, then one after the change.
second_backups() {
  local who
  for who in $(rotate "$1" kbak restic kopia); do
    backup "$who" "$work" db
    record unchanged.secs "$who" "$secs"
    record unchanged.added "$who" "$added"
    record unchanged.bucket "$who" "$grown"
    record unchanged.pct "$who" "$(awk -v a="$grown" -v f="${full_size[$who]}" 'BEGIN {printf "%.4f", 100 * a / f}')"
  done
  "$benchtool" change --dir "$work" --seed "$1" >&2
  changed_stats=$(tree_stats "$work")
  settle
  for who in $(rotate "$1" kbak restic kopia); do
    backup "$who" "$work" db
    record change.secs "$who" "$secs"
    record change.added "$who" "$added"
    record change.bucket "$who" "$grown"
    record change.rss "$who" "$rss_mib"
  done
}

# restores_of_latest: format 1 and kbak-plain have only the full backup; the
# others restore the backup after the change.
restores_of_latest() {
  local who want target
  for who in $(rotate "$1" kbak kbak-plain kbak-f1 restic kopia); do
    want=$changed_stats target="$restores/$server-$1-db-$who"
    [ "$who" != kbak-f1 ] && [ "$who" != kbak-plain ] || want=$full_stats
    restore "$who" db "$target"
    verify "$target" "$want"
    record restore.mbps "$who" "$(mbps "${want#* }" "$secs")"
    record restore.rss "$who" "$rss_mib"
    release_fs
  done
  rm -rf "$restores"; settle
}

small_files() {
  local who want target
  want=$(tree_stats "$small")
  for who in $(rotate "$1" kbak restic kopia); do
    backup "$who" "$small" small
    record small.backup.secs "$who" "$secs"
    record small.backup.rss "$who" "$rss_mib"
  done
  for who in $(rotate "$1" kbak restic kopia); do
    target="$restores/$server-$1-small-$who"
    restore "$who" small "$target"
    verify "$target" "$want"
    record small.restore.secs "$who" "$secs"
    record small.restore.rss "$who" "$rss_mib"
    release_fs
  done
  rm -rf "$restores"
}

report() {
  local full small_stats
  full=$(tree_stats "$data")
  small_stats=$(tree_stats "$small")
  cat >"$dir/meta" <<EOF
date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
size=$size
dataFiles=${full% *}
dataBytes=${full#* }
smallFiles=${small_stats% *}
smallBytes=${small_stats#* }
runs=$runs
servers=${servers// /,}
cpus=$(nproc)
kbak=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
restic=$RESTIC_VERSION
kopia=$KOPIA_VERSION
EOF
  "$benchtool" report --samples "$samples" --meta "$dir/meta" --json "$repo/bench-results.json"
  log "wrote $repo/bench-results.json"
}

setup
trap cleanup EXIT
start=$(date +%s)
for server in $servers; do
  for run in $(seq "$runs"); do bench_run "$run"; done
done
report
log "took $(( $(date +%s) - start ))s"
