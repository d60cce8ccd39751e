#!/usr/bin/env bash
# Tears down the test bed up.sh brought up and leaves the machine as it found
# it: pods stopped through the kubelet (so volumes are unpublished and pod
# networks torn down by CNI), then every process stopped and waited for,
# leftover containers killed through containerd, mounts, network namespaces,
# the bridge, iptables rules, sysctls, cgroups and files outside the state
# directory removed or restored, and finally the state directory itself.
# Runs check-clean.sh at the end and fails if anything is left. Idempotent.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
t0=$(date +%s%N)
log() { echo "down.sh: $(( ($(date +%s%N) - t0) / 1000000 ))ms $*" >&2; }

[ "$(id -u)" = 0 ] || { log "needs root"; exit 1; }
if [ ! -d "$D" ]; then
  log "no test bed at $D"
  exec "$here/check-clean.sh"
fi

kubectl_bin=$(readlink "$D/bin/kubectl" 2>/dev/null || true)
kubectl() { "$kubectl_bin" --kubeconfig "$D/kubeconfig" --request-timeout 10s "$@"; }
ctr_() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }

stop() { # seconds name...: SIGTERM to all at once, wait, then SIGKILL
  local secs=$1 name f pid
  shift
  local pids=()
  for name in "$@"; do
    f=$D/pids/$name.pid
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    if running "$pid"; then
      kill -TERM "$pid" 2>/dev/null
      pids+=("$name:$pid")
    fi
    rm -f "$f"
  done
  local end=$((SECONDS + secs)) np
  for np in "${pids[@]}"; do
    name=${np%%:*} pid=${np#*:}
    while running "$pid" && [ $SECONDS -lt $end ]; do sleep 0.05; done
    if running "$pid"; then
      log "$name did not stop in ${secs}s: killing it"
      kill -KILL "$pid" 2>/dev/null
      while running "$pid"; do sleep 0.05; done
    fi
    [ -n "${KBAK_E2E_TRACE:-}" ] && log "stopped $name"
  done
  return 0
}

# 1. No controller may replace what is deleted now; then every pod goes
# through the kubelet, which stops its sandbox (CNI teardown) and unpublishes
# its CSI volumes while the drivers still run.
stop 20 kube-controller-manager kube-scheduler
if [ -n "$kubectl_bin" ] && pid_alive kube-apiserver && pid_alive kubelet; then
  kubectl delete pods --all-namespaces --all --grace-period=0 --force --wait=false >/dev/null 2>&1
  end=$((SECONDS + 60))
  while [ $SECONDS -lt $end ]; do
    tasks=$(ctr_ tasks ls -q 2>/dev/null | wc -l)
    vols=$(mounts_under "$D/kubelet/pods" | wc -l)
    [ "$tasks" = 0 ] && [ "$vols" = 0 ] && break
    sleep 0.5
  done
  [ "$tasks" = 0 ] && [ "$vols" = 0 ] || log "pods still running after 60s ($tasks tasks, $vols volume mounts): forcing"
fi

log "step: The node agent first"
# 2. The node agent first, then everything else.
stop 30 kubelet
stop 20 csi-snapshotter-snap csi-provisioner-nosnap csi-provisioner-snap snapshot-controller kube-proxy s3
# The API server drains open requests (clients of tests still running) for up
# to a minute; its data goes with the state directory, so it gets 3 s.
stop 3 kube-apiserver
stop 20 etcd csi-nosnap csi-snap

# 3. Containers the kubelet did not stop: kill their tasks and remove them
# through containerd, before containerd itself stops.
if pid_alive containerd; then
  for id in $(ctr_ tasks ls -q 2>/dev/null); do
    ctr_ tasks kill -s SIGKILL "$id" >/dev/null 2>&1
  done
  for id in $(ctr_ tasks ls -q 2>/dev/null); do
    for _ in $(seq 50); do ctr_ tasks delete "$id" >/dev/null 2>&1 && break; sleep 0.1; done
  done
  for id in $(ctr_ containers ls -q 2>/dev/null); do
    ctr_ containers delete "$id" >/dev/null 2>&1
  done
fi
stop 30 containerd
# Shims outlive containerd: stop the ones serving this state directory.
for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" || true); do
  kill -KILL "$pid" 2>/dev/null
done
# shellcheck disable=SC2086 # a list of names
stop 5 $COMPONENTS

# 4. Container processes left in the kubelet's cgroups.
for procs in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/unified/kubepods; do
  [ -d "$procs" ] || continue
  find "$procs" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u | xargs -r kill -KILL 2>/dev/null
done
sleep 0.2

log "step: Mounts"
# 5. Mounts: pod volumes, CSI bind mounts, container root filesystems and shm.
for m in $(mounts_under "$D"); do
  umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "cannot unmount $m"
done
# The kubelet also bind-mounts its own root directory in some versions.
for m in $(mounts_under "$D"); do umount -l "$m" 2>/dev/null; done

# 6. Network: pod network namespaces, veths, the bridge.
for ns in /run/netns/cni-*; do
  [ -e "$ns" ] || continue
  umount "$ns" 2>/dev/null || umount -l "$ns" 2>/dev/null
  rm -f "$ns"
done
for v in $(ip -o link show type veth 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
  if ip -o link show "$v" | grep -q "master $BRIDGE"; then ip link del "$v" 2>/dev/null; fi
done
ip link del "$BRIDGE" 2>/dev/null

log "step: iptables"
# 7. iptables: restore what was there; tables absent before are emptied
# (iptables-restore flushes every table it is given).
# Tables that did not exist before are deleted (iptables-nft keeps them as
# nftables tables); the others get their saved rules back.
restore_tables() { # save-file restore-cmd save-cmd nft-family
  local saved=$1 restore=$2 current=$3 family=$4 t
  [ -f "$saved" ] || return 0
  for t in $($current 2>/dev/null | sed -n 's/^\*//p'); do
    if ! grep -q "^\*$t\$" "$saved"; then
      printf '*%s\nCOMMIT\n' "$t" | $restore
      nft delete table "$family" "$t" 2>/dev/null
    fi
  done
  grep -q '^\*' "$saved" && { $restore <"$saved" || log "$restore failed"; }
  return 0
}
restore_tables "$D/pre/iptables.v4" iptables-restore iptables-save ip
restore_tables "$D/pre/iptables.v6" ip6tables-restore ip6tables-save ip6
# Any other nftables table that appeared goes too.
if [ -f "$D/pre/nft-tables" ]; then
  nft list tables 2>/dev/null | while read -r _ fam t; do
    grep -qx "table $fam $t" "$D/pre/nft-tables" || nft delete table "$fam" "$t" 2>/dev/null
  done
fi

# 8. sysctls: back to their values before up.sh.
if [ -f "$D/pre/sysctl" ]; then
  diff <(sysctl_snapshot) "$D/pre/sysctl" | sed -n 's/^> //p' | while IFS= read -r line; do
    key=${line%% = *} val=${line#* = }
    sysctl -q -w "$key=$val" >/dev/null 2>&1 || log "cannot restore sysctl $key"
  done
fi

# 9. cgroups the kubelet created (cgroupfs driver), deepest first.
for root in /sys/fs/cgroup/*/; do
  [ -d "$root/kubepods" ] || continue
  find "$root/kubepods" -depth -type d -exec rmdir {} \; 2>/dev/null
done

log "step: Files outside"
# 10. Files outside the state directory that did not exist before.
for p in $OUTSIDE_PATHS; do
  [ -e "$p" ] || continue
  grep -qx "$p" "$D/pre/paths" 2>/dev/null && continue
  if [ -n "$(mounts_under "$p")" ]; then
    for m in $(mounts_under "$p"); do umount -l "$m" 2>/dev/null; done
  fi
  rm -rf --one-file-system "$p"
done

# 11. The state directory, once nothing is mounted in it; the baseline goes
# to check-clean first.
base=$(mktemp -d)
cp -a "$D/pre/." "$base/" 2>/dev/null
if [ -n "$(mounts_under "$D")" ]; then
  log "mounts remain under $D: leaving it in place"
else
  rm -rf --one-file-system "$D"
fi
log "down in $(( ($(date +%s%N) - t0) / 1000000 ))ms"
"$here/check-clean.sh" --baseline "$base"
rc=$?
rm -rf "$base"
exit $rc
