# Shared settings of up.sh, down.sh and check-clean.sh. Sourced, not run.
# shellcheck shell=bash
# shellcheck disable=SC2034 # used by the scripts that source it

D=${KBAK_E2E_DIR:-/var/tmp/kbak-e2e}
NODE=kbak-node
BRIDGE=kbak0
BRIDGE_IP=10.244.0.1
POD_SUBNET=10.244.0.0/24
CLUSTER_CIDR=10.244.0.0/16
SERVICE_CIDR=10.96.0.0/16
API_SERVICE_IP=10.96.0.1
API_PORT=6443
ETCD_PORT=23790
ETCD_PEER_PORT=23800
S3_PORT=7070
S3_ENDPOINT=http://$BRIDGE_IP:$S3_PORT
S3_BUCKET=kbak-e2e
S3_REGION=us-east-1
S3_ACCESS_KEY=kbak-e2e-access
S3_SECRET_KEY=kbak-e2e-secret-not-for-production
CONTAINERD_SOCK=$D/containerd/containerd.sock
# Two instances of the test bed's CSI driver: one with snapshots, one without.
CSI_INSTANCES="snap nosnap"

# Paths outside the state directory that kubelet, containerd and the CNI
# plugins write to whatever their flags say. down.sh removes those that did not
# exist before up.sh.
OUTSIDE_PATHS="/var/lib/kubelet /var/log/containers /var/log/pods /run/containerd
  /var/run/containerd /var/lib/cni /etc/cni /run/netns /opt/containerd
  /var/lib/containerd /opt/cni"

# Kernel settings the kubelet, kube-proxy and the CNI bridge plugin change:
# saved by up.sh, restored by down.sh, compared by check-clean.sh.
SYSCTL_PATTERN='^(vm\.overcommit_memory|vm\.panic_on_oom|kernel\.panic|kernel\.panic_on_oops|kernel\.keys\.root_maxkeys|kernel\.keys\.root_maxbytes|net\.bridge\..*|net\.ipv4\.ip_forward|net\.ipv4\.conf\.(all|default)\..*|net\.ipv6\.conf\.(all|default)\.(forwarding|disable_ipv6|accept_ra)|net\.netfilter\.nf_conntrack_(max|tcp_timeout_established|tcp_timeout_close_wait|tcp_be_liberal)|net\.core\.somaxconn|fs\.inotify\.max_user_(instances|watches)|kernel\.pid_max) = '

# Long-running components in start order; down.sh stops them in reverse.
COMPONENTS="containerd etcd kube-apiserver kube-controller-manager kube-scheduler
  s3 kube-proxy csi-snap csi-nosnap kubelet snapshot-controller
  csi-provisioner-snap csi-provisioner-nosnap csi-snapshotter-snap"

sysctl_snapshot() { sysctl -a 2>/dev/null | grep -E "$SYSCTL_PATTERN" | sort || true; }

# running: the process exists and is not a zombie waiting for init to reap it.
running() { # pid
  local st
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}

pid_alive() { # name
  local f=$D/pids/$1.pid
  [ -f "$f" ] && running "$(cat "$f")"
}

# mounts_under prints mount points under a directory, deepest first.
mounts_under() { # dir
  awk -v d="$1" '{ gsub(/\\040/, " ", $5); if ($5 == d || index($5, d "/") == 1) print $5 }' /proc/self/mountinfo | sort -r
}
