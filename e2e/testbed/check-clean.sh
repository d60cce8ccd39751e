#!/usr/bin/env bash
# Checks that no trace of the test bed is left on the machine: processes,
# mounts, network namespaces, links, iptables rules, nftables tables, sysctls,
# cgroups and files outside the state directory. With --baseline DIR (the
# state up.sh saved before it started, as down.sh passes it) iptables, nftables,
# sysctls and outside paths are compared with it; without, they are checked
# for what the test bed is known to add. Exits non-zero listing leftovers.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
base=
if [ "${1:-}" = --baseline ]; then base=${2:?--baseline needs a directory}; fi
cache=${KBAK_CACHE:-$HOME/.cache/kbak}

left=()
leftover() { left+=("$*"); }

# Processes: the built binaries, and containerd, its shims, etcd and anything
# else started on the state directory.
for p in /proc/[0-9]*; do
  pid=${p#/proc/}
  [ "$pid" = $$ ] && continue
  exe=$(readlink "$p/exe" 2>/dev/null) || continue
  cmd=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null)
  case $exe in
  "$cache"/bin/kube* | "$cache"/bin/csi-* | "$cache"/bin/snapshot-controller-* | "$cache"/bin/kbak-csidriver-*)
    leftover "process $pid: $cmd" ;;
  # The S3 servers also serve other tests: only ours count.
  */containerd | */containerd-shim* | */etcd | */runc | "$cache"/bin/*)
    [[ $cmd == *"$D"* ]] && leftover "process $pid: $cmd" ;;
  esac
done

# Mounts.
while read -r m; do
  [ -n "$m" ] && leftover "mount $m"
done < <(awk '{print $5}' /proc/self/mountinfo | grep -E "^$D(/|$)|kubelet|containerd|/run/netns/cni-" || true)

# Network namespaces, links.
for ns in /run/netns/cni-*; do [ -e "$ns" ] && leftover "network namespace $ns"; done
ip link show "$BRIDGE" >/dev/null 2>&1 && leftover "bridge $BRIDGE"
ip link show cni0 >/dev/null 2>&1 && leftover "bridge cni0"
for v in $(ip -o link show type veth 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
  leftover "veth $v"
done

# iptables and nftables.
norm() { grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]/[0:0]/'; }
for v in 4 6; do
  save=iptables-save
  [ $v = 6 ] && save=ip6tables-save
  if [ -n "$base" ] && [ -f "$base/iptables.v$v" ]; then
    d=$(diff <(norm <"$base/iptables.v$v") <($save 2>/dev/null | norm) | grep '^[<>]')
    [ -n "$d" ] && leftover "iptables v$v differs from before:"$'\n'"$d"
  else
    d=$($save 2>/dev/null | grep -E 'KUBE-|CNI-')
    [ -n "$d" ] && leftover "iptables v$v chains of Kubernetes or CNI:"$'\n'"$d"
  fi
done
if [ -n "$base" ] && [ -f "$base/nft-tables" ]; then
  d=$(diff "$base/nft-tables" <(nft list tables 2>/dev/null) | grep '^[<>]')
  [ -n "$d" ] && leftover "nftables tables differ from before:"$'\n'"$d"
fi

# sysctls.
if [ -n "$base" ] && [ -f "$base/sysctl" ]; then
  d=$(diff "$base/sysctl" <(sysctl_snapshot) | grep '^[<>]')
  [ -n "$d" ] && leftover "sysctls differ from before (< before, > now):"$'\n'"$d"
fi

# cgroups.
for c in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
  [ -d "$c" ] && leftover "cgroup $c"
done

# Files outside the state directory, and the state directory itself.
for p in $OUTSIDE_PATHS; do
  [ -e "$p" ] || continue
  if [ -n "$base" ]; then
    grep -qx "$p" "$base/paths" 2>/dev/null || leftover "path $p"
  else
    case $p in
    /var/lib/kubelet | /var/log/containers | /var/log/pods | /run/containerd | /var/lib/cni) leftover "path $p" ;;
    esac
  fi
done
[ -e "$D" ] && [ -n "$base" ] && leftover "state directory $D"

if [ ${#left[@]} -gt 0 ]; then
  echo "check-clean.sh: the test bed left traces:" >&2
  printf '  %s\n' "${left[@]}" >&2
  exit 1
fi
echo "check-clean.sh: clean" >&2
