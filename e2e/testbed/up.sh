#!/usr/bin/env bash
# Brings up kbak's end-to-end test bed: a single-node Kubernetes cluster whose
# every component is a host process (setsid, pid file and log under the state
# directory ${KBAK_E2E_DIR:-/var/tmp/kbak-e2e}), with the test bed's CSI
# driver in two instances (with and without snapshots), the CSI sidecars, and
# an S3 server on the pod bridge's gateway address. Writes
# $KBAK_E2E_DIR/kubeconfig and $KBAK_E2E_DIR/env.sh. down.sh undoes it all.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
t0=$(date +%s%N)
log() { echo "up.sh: $*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "the test bed needs root (mounts, network, cgroups)"

if [ -f "$D/env.sh" ] && pid_alive kube-apiserver && pid_alive kubelet; then
  log "the test bed is already up: source $D/env.sh"
  exit 0
fi
if [ -e "$D" ]; then
  log "$D holds a test bed that is not fully up: tearing it down first"
  "$here/down.sh"
fi

eval "$("$here/build.sh")"
trap 'rc=$?; [ $rc = 0 ] || log "bring-up failed (logs in $D/logs); down.sh removes what was started"' EXIT
kubectl() { "$KUBECTL" --kubeconfig "$D/kubeconfig" "$@"; }
ctr_() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }

mkdir -p "$D"/{pids,logs,pre,pki,etcd,s3,csi-faults,cni/net.d,cni/ipam,containerd,kubelet,pod-logs,manifests}

# What the machine looks like before: down.sh restores it.
iptables-save >"$D/pre/iptables.v4"
ip6tables-save >"$D/pre/iptables.v6"
nft list tables >"$D/pre/nft-tables" 2>/dev/null || true
sysctl_snapshot >"$D/pre/sysctl"
for p in $OUTSIDE_PATHS; do [ -e "$p" ] && echo "$p"; done >"$D/pre/paths" || true

start() { # name command...
  local name=$1
  shift
  setsid "$@" >"$D/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$D/pids/$name.pid"
}

wait_for() { # what seconds command...
  local what=$1 secs=$2
  shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || die "timed out after ${secs}s waiting for $what (logs in $D/logs)"
    sleep 0.2
  done
}

# --- certificates: one CA; the API server's serving certificate; one admin
# client certificate (group system:masters) that every component uses.
pki=$D/pki
sslconf=$pki/openssl.cnf
cat >"$sslconf" <<EOF
[req]
distinguished_name = dn
[dn]
[server]
basicConstraints = CA:FALSE
keyUsage = digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local, DNS:localhost, DNS:$NODE, IP:$API_SERVICE_IP, IP:$BRIDGE_IP, IP:127.0.0.1
[client]
basicConstraints = CA:FALSE
keyUsage = digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
EOF
ossl() { openssl "$@" 2>>"$D/logs/openssl.log"; }
ossl req -x509 -newkey rsa:2048 -nodes -days 3650 \
  -subj /CN=kbak-e2e-ca -keyout "$pki/ca.key" -out "$pki/ca.crt"
cert() { # name subject extensions
  ossl req -new -newkey rsa:2048 -nodes -subj "$2" \
    -keyout "$pki/$1.key" -out "$pki/$1.csr"
  ossl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 3650 -extfile "$sslconf" -extensions "$3" -out "$pki/$1.crt"
}
cert apiserver /CN=kube-apiserver server
cert admin "/O=system:masters/CN=kbak-e2e-admin" client
ossl genrsa -out "$pki/sa.key" 2048
ossl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub"

"$KUBECTL" config --kubeconfig "$D/kubeconfig" set-cluster kbak-e2e \
  --server "https://$BRIDGE_IP:$API_PORT" --certificate-authority "$pki/ca.crt" --embed-certs >/dev/null
"$KUBECTL" config --kubeconfig "$D/kubeconfig" set-credentials admin \
  --client-certificate "$pki/admin.crt" --client-key "$pki/admin.key" --embed-certs >/dev/null
"$KUBECTL" config --kubeconfig "$D/kubeconfig" set-context kbak-e2e --cluster kbak-e2e --user admin >/dev/null
"$KUBECTL" config --kubeconfig "$D/kubeconfig" use-context kbak-e2e >/dev/null
chmod 600 "$D/kubeconfig"

# --- network: the pod bridge exists before anything binds to its address;
# the CNI bridge plugin adopts it (isGateway gives pods a route to the host).
ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
ip addr replace "$BRIDGE_IP/24" dev "$BRIDGE"
ip link set "$BRIDGE" up
cat >"$D/cni/net.d/10-kbak.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "kbak-e2e",
  "plugins": [{
    "type": "bridge",
    "bridge": "$BRIDGE",
    "isGateway": true,
    "ipMasq": false,
    "hairpinMode": true,
    "ipam": {
      "type": "host-local",
      "ranges": [[{"subnet": "$POD_SUBNET", "gateway": "$BRIDGE_IP"}]],
      "routes": [{"dst": "0.0.0.0/0"}],
      "dataDir": "$D/cni/ipam"
    }
  }]
}
EOF

# --- containerd, everything under the state directory.
cat >"$D/containerd/config.toml" <<EOF
version = 2
root = "$D/containerd/root"
state = "$D/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$D/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "kbak.local/pause:dev"
  # This machine lacks CAP_SYS_RESOURCE: without it every sandbox fails.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$D/cni/net.d"
EOF
start containerd containerd --config "$D/containerd/config.toml"

# --- etcd and the control plane.
start etcd etcd --name kbak-e2e --data-dir "$D/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "kbak-e2e=http://127.0.0.1:$ETCD_PEER_PORT" \
  --quota-backend-bytes 2147483648
wait_for etcd 30 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

start kube-apiserver "$KUBE_APISERVER" \
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address "$BRIDGE_IP" --advertise-address "$BRIDGE_IP" --secure-port "$API_PORT" \
  --service-cluster-ip-range "$SERVICE_CIDR" \
  --client-ca-file "$pki/ca.crt" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --authorization-mode Node,RBAC --allow-privileged=true \
  --kubelet-client-certificate "$pki/admin.crt" --kubelet-client-key "$pki/admin.key" \
  --kubelet-preferred-address-types InternalIP,Hostname \
  --profiling=false --endpoint-reconciler-type lease
wait_for kube-apiserver 60 kubectl get --raw /readyz

start kube-controller-manager "$KUBE_CONTROLLER_MANAGER" \
  --kubeconfig "$D/kubeconfig" --authentication-kubeconfig "$D/kubeconfig" --authorization-kubeconfig "$D/kubeconfig" \
  --bind-address 127.0.0.1 --leader-elect=false \
  --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
  --service-cluster-ip-range "$SERVICE_CIDR" --cluster-cidr "$CLUSTER_CIDR" --profiling=false
# A pod whose claim is bound between two scheduling attempts can miss the
# event that should requeue it; the scheduler then retries it only after
# --pod-max-in-unschedulable-pods-duration (5 min by default, longer than
# the tests wait for a StatefulSet). 20 s keeps that retry in reach.
start kube-scheduler "$KUBE_SCHEDULER" \
  --kubeconfig "$D/kubeconfig" --authentication-kubeconfig "$D/kubeconfig" --authorization-kubeconfig "$D/kubeconfig" \
  --bind-address 127.0.0.1 --leader-elect=false --profiling=false \
  --pod-max-in-unschedulable-pods-duration 20s

# --- the S3 server on the bridge address: reachable from pods and the host.
start s3 "$VERSITYGW" --access "$S3_ACCESS_KEY" --secret "$S3_SECRET_KEY" \
  --port "$BRIDGE_IP:$S3_PORT" posix "$D/s3"

# --- kube-proxy (iptables): in-cluster clients reach the API server through
# the kubernetes Service. It leaves conntrack sysctls and localhost NodePorts
# alone.
start kube-proxy "$KUBE_PROXY" --kubeconfig "$D/kubeconfig" --hostname-override "$NODE" \
  --proxy-mode iptables --cluster-cidr "$CLUSTER_CIDR" \
  --metrics-bind-address 127.0.0.1:10249 --healthz-bind-address 127.0.0.1:10256 \
  --conntrack-max-per-core 0 --conntrack-tcp-timeout-established 0 --conntrack-tcp-timeout-close-wait 0 \
  --iptables-localhost-nodeports=false

# --- the CSI drivers register themselves through the kubelet's plugin
# registry directory; each writes its volumes under the state directory.
if [ -n "$CSIDRIVER" ]; then
  mkdir -p "$D/kubelet/plugins_registry"
  for i in $CSI_INSTANCES; do
    extra=()
    [ "$i" = nosnap ] && extra=(--no-snapshots)
    mkdir -p "$D/csi/$i/state"
    start "csi-$i" "$CSIDRIVER" --endpoint "unix://$D/csi/$i/csi.sock" --name "$i.csi.kbak.io" \
      --node-id "$NODE" --state-dir "$D/csi/$i/state" --registration-dir "$D/kubelet/plugins_registry" \
      --fault-dir "$D/csi-faults" "${extra[@]}"
  done
else
  log "no CSI driver (e2e/csidriver missing or not building): the bed runs without CSI volumes"
fi

wait_for containerd 30 ctr_ version
for tar in "$PAUSE_IMAGE_TAR" "$BUSYBOX_IMAGE_TAR" "$KUBECTL_IMAGE_TAR"; do
  ctr_ images import "$tar" >/dev/null
done
mariadb_image=
if [ -n "${MARIADB_IMAGE_TAR:-}" ]; then
  ctr_ images import "$MARIADB_IMAGE_TAR" >/dev/null
  mariadb_image=kbak.local/mariadb:dev
fi
if grep -q '^image:' "$repo/Makefile" 2>/dev/null; then
  # A dev build, named kbak.local/kbak:dev as KBAK_E2E_KBAK_IMAGE below
  # and as a dev build of the CLI names its movers' image.
  if make -C "$repo" image VERSION=dev >"$D/logs/make-image.log" 2>&1; then :; else
    log "make image failed (see $D/logs/make-image.log): the bed runs without kbak.local/kbak:dev"
  fi
fi
if [ -f "$repo/dist/kbak-image.tar" ]; then
  ctr_ images import "$repo/dist/kbak-image.tar" >/dev/null
fi

# --- kubelet: cgroupfs on this cgroup v1/v2 hybrid without systemd; images
# are never garbage collected (they cannot be pulled again).
cat >"$D/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $BRIDGE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
failSwapOn: false
failCgroupV1: false
podLogsDir: $D/pod-logs
# Pods get no name server: nothing in the test bed resolves names, and no
# query may leave the machine.
resolvConf: $D/kubelet/resolv.conf
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
serializeImagePulls: false
maxPods: 110
EOF
echo "options ndots:1" >"$D/kubelet/resolv.conf"
start kubelet "$KUBELET" --config "$D/kubelet/config.yaml" --kubeconfig "$D/kubeconfig" \
  --root-dir "$D/kubelet" --cert-dir "$D/kubelet/pki" --hostname-override "$NODE" --node-ip "$BRIDGE_IP"

# --- the bucket, created through the S3 API.
wait_for "S3 server" 30 curl -s -o /dev/null "$S3_ENDPOINT/"
# versitygw wants the payload hash header curl does not send by itself (here
# the SHA-256 of an empty body).
curl -fsS -X PUT --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
  -H "x-amz-content-sha256: $(sha256sum </dev/null | cut -d' ' -f1)" \
  "$S3_ENDPOINT/$S3_BUCKET" >/dev/null

# --- snapshots: CRDs and the snapshot controller.
kubectl apply -f "$SNAPSHOT_CRDS" >/dev/null
wait_for "snapshot CRDs" 30 kubectl wait --for condition=established --timeout=1s \
  crd/volumesnapshots.snapshot.storage.k8s.io crd/volumesnapshotclasses.snapshot.storage.k8s.io \
  crd/volumesnapshotcontents.snapshot.storage.k8s.io crd/volumegroupsnapshots.groupsnapshot.storage.k8s.io \
  crd/volumegroupsnapshotclasses.groupsnapshot.storage.k8s.io \
  crd/volumegroupsnapshotcontents.groupsnapshot.storage.k8s.io
start snapshot-controller "$SNAPSHOT_CONTROLLER" --kubeconfig "$D/kubeconfig" --leader-election=false

# --- CSI objects and sidecars (host processes talking to each driver's
# socket). kbak-snap waits for its first consumer, like most cloud default
# classes; kbak-nosnap binds at once, so both binding modes are exercised.
if [ -n "$CSIDRIVER" ]; then
  for i in $CSI_INSTANCES; do
    start "csi-provisioner-$i" "$CSI_PROVISIONER" --kubeconfig "$D/kubeconfig" \
      --csi-address "$D/csi/$i/csi.sock" --extra-create-metadata --leader-election=false \
      --timeout 60s
  done
  start csi-snapshotter-snap "$CSI_SNAPSHOTTER" --kubeconfig "$D/kubeconfig" \
    --csi-address "$D/csi/snap/csi.sock" --extra-create-metadata --leader-election=false --timeout 60s
  cat >"$D/manifests/csi.yaml" <<EOF
apiVersion: storage.k8s.io/v1
kind: CSIDriver
metadata: {name: snap.csi.kbak.io}
spec: {attachRequired: false, podInfoOnMount: false, fsGroupPolicy: File, volumeLifecycleModes: [Persistent]}
---
apiVersion: storage.k8s.io/v1
kind: CSIDriver
metadata: {name: nosnap.csi.kbak.io}
spec: {attachRequired: false, podInfoOnMount: false, fsGroupPolicy: File, volumeLifecycleModes: [Persistent]}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: kbak-snap
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: snap.csi.kbak.io
reclaimPolicy: Delete
volumeBindingMode: WaitForFirstConsumer
allowVolumeExpansion: false
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: kbak-nosnap}
provisioner: nosnap.csi.kbak.io
reclaimPolicy: Delete
volumeBindingMode: Immediate
allowVolumeExpansion: false
---
apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshotClass
metadata:
  name: kbak-snap
  annotations: {snapshot.storage.kubernetes.io/is-default-class: "true"}
driver: snap.csi.kbak.io
deletionPolicy: Delete
---
# snap's driver serves the CSI GroupController; v8.7.0's csi-snapshotter and
# snapshot-controller have group snapshots on by default (GA). nosnap has
# no group class.
apiVersion: groupsnapshot.storage.k8s.io/v1beta2
kind: VolumeGroupSnapshotClass
metadata:
  name: kbak-snap-group
  annotations: {groupsnapshot.storage.kubernetes.io/is-default-class: "true"}
driver: snap.csi.kbak.io
deletionPolicy: Delete
EOF
  kubectl apply -f "$D/manifests/csi.yaml" >/dev/null
fi

# --- ready: the node, the CSI drivers on it, the default ServiceAccount.
wait_for "node $NODE Ready" 120 kubectl wait --for=condition=Ready "node/$NODE" --timeout=1s
if [ -n "$CSIDRIVER" ]; then
  csi_registered() {
    local got
    got=$(kubectl get csinode "$NODE" -o jsonpath='{.spec.drivers[*].name}')
    for i in $CSI_INSTANCES; do [[ " $got " == *" $i.csi.kbak.io "* ]] || return 1; done
  }
  wait_for "CSI drivers registered on $NODE" 60 csi_registered
fi
wait_for "ServiceAccount default/default" 60 kubectl -n default get serviceaccount default
wait_for "kube-root-ca.crt in default" 60 kubectl -n default get configmap kube-root-ca.crt

cat >"$D/env.sh" <<EOF
# kbak end-to-end test bed: source this file.
export KBAK_E2E_DIR=$D
export KUBECONFIG=$D/kubeconfig
export PATH=$D/bin:\$PATH
export KBAK_E2E_S3_ENDPOINT=$S3_ENDPOINT
export KBAK_E2E_BUCKET=$S3_BUCKET
export KBAK_REPO='s3://$S3_BUCKET?endpoint=$S3_ENDPOINT&region=$S3_REGION&path-style=true'
export AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
export AWS_REGION=$S3_REGION
export KBAK_E2E_NODE=$NODE
export KBAK_E2E_CSI_FAULTS=$D/csi-faults
export KBAK_E2E_UTIL_IMAGE=kbak.local/busybox:dev
export KBAK_E2E_KBAK_IMAGE=kbak.local/kbak:dev
export KBAK_E2E_KUBECTL_IMAGE=kbak.local/kubectl:dev
export KBAK_E2E_MARIADB_IMAGE=$mariadb_image
export KBAK_E2E_SNAP_CLASS=kbak-snap
export KBAK_E2E_NOSNAP_CLASS=kbak-nosnap
export KBAK_E2E_SNAPSHOT_CLASS=kbak-snap
export KBAK_E2E_GROUP_SNAPSHOT_CLASS=kbak-snap-group
EOF
mkdir -p "$D/bin"
ln -sf "$KUBECTL" "$D/bin/kubectl"

log "up in $(( ($(date +%s%N) - t0) / 1000000 ))ms: source $D/env.sh"
