#!/usr/bin/env bash
# Checks that a running test bed does what kbak's end-to-end tests rely on:
# a pod with a PVC on kbak-snap runs and writes; a VolumeSnapshot of it
# becomes readyToUse and restores into a new PVC with the same data; a PVC on
# kbak-nosnap binds; a pod reaches the S3 server; a pod reaches the API server
# through the kubernetes Service's ClusterIP with its ServiceAccount token.
# Leaves nothing behind (namespace kbak-smoke is deleted).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck disable=SC1091
. "$D/env.sh"
ns=kbak-smoke
log() { echo "smoke.sh: $(date +%T) $*" >&2; }
fail() {
  log "FAIL: $*"
  kubectl -n $ns get pods,pvc,volumesnapshots -o wide >&2 || true
  kubectl -n $ns describe pods >&2 || true
  exit 1
}
k() { kubectl -n $ns "$@"; }

cleanup() {
  k delete pods --all --grace-period=0 --force --wait=true >/dev/null 2>&1 || true
  kubectl delete namespace $ns --wait=true --timeout=60s >/dev/null 2>&1 || true
}
trap cleanup EXIT
kubectl create namespace $ns >/dev/null

pod() { # name pvc-or-empty command [image]
  local vol="" mount=""
  if [ -n "$2" ]; then
    vol="volumes: [{name: data, persistentVolumeClaim: {claimName: $2}}]"
    mount="volumeMounts: [{name: data, mountPath: /data}]"
  fi
  k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $1}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 0
  containers:
  - name: main
    image: ${4:-$KBAK_E2E_UTIL_IMAGE}
    imagePullPolicy: Never
    command: $3
    $mount
  $vol
EOF
}
pvc() { # name class [snapshot]
  local src=""
  [ -n "${3:-}" ] && src="dataSource: {name: $3, kind: VolumeSnapshot, apiGroup: snapshot.storage.k8s.io}"
  k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: $1}
spec:
  storageClassName: $2
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 64Mi}}
  $src
EOF
}
succeeded() { # pod seconds
  k wait --for=jsonpath='{.status.phase}'=Succeeded "pod/$1" --timeout="$2s" >/dev/null ||
    fail "pod $1 did not succeed: $(k logs "$1" 2>&1 | tail -5)"
}

log "pod with a PVC on kbak-snap"
pvc data kbak-snap
pod writer data '[sh, -c, "echo kbak-smoke >/data/file && sync && sleep 3600"]'
k wait --for=condition=Ready pod/writer --timeout=60s >/dev/null || fail "writer not ready"

log "VolumeSnapshot of it"
k apply -f - >/dev/null <<EOF
apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshot
metadata: {name: snap}
spec:
  volumeSnapshotClassName: kbak-snap
  source: {persistentVolumeClaimName: data}
EOF
k wait --for=jsonpath='{.status.readyToUse}'=true volumesnapshot/snap --timeout=60s >/dev/null ||
  fail "snapshot not readyToUse"

log "PVC restored from the snapshot"
pvc restored kbak-snap snap
pod reader restored '[sh, -c, "test \"$(cat /data/file)\" = kbak-smoke"]'
succeeded reader 60

log "PVC on kbak-nosnap binds"
pvc plain kbak-nosnap
k wait --for=jsonpath='{.status.phase}'=Bound pvc/plain --timeout=60s >/dev/null || fail "kbak-nosnap PVC not bound"

log "S3 server from a pod"
pod s3 "" "[sh, -c, 'wget -S -O /dev/null $KBAK_E2E_S3_ENDPOINT/ 2>&1 | grep \"HTTP/1.1 \"']"
succeeded s3 60

log "API server through the kubernetes Service ClusterIP"
# kubectl in a pod uses the in-cluster configuration: the kubernetes Service's
# ClusterIP (KUBERNETES_SERVICE_HOST) and the pod's ServiceAccount token.
pod api "" "[/kubectl, get, --raw, /api]" "$KBAK_E2E_KUBECTL_IMAGE"
succeeded api 60
ip=$(kubectl -n default get service kubernetes -o jsonpath='{.spec.clusterIP}')
k logs api | grep -q '"APIVersions"' || fail "pod api: no API versions from $ip: $(k logs api)"

log "all checks passed"
