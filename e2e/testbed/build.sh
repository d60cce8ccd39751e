#!/usr/bin/env bash
# Builds every binary and image the end-to-end test bed runs, and installs the
# Debian packages it needs. Go binaries come from the Go module proxy through
# the wrapper modules next to this script and are cached by version under
# ${KBAK_CACHE:-$HOME/.cache/kbak}, outside the repository, so a run with
# nothing changed rebuilds nothing.
#
# Prints shell assignments (NAME=path) of everything built on stdout, for
# `eval "$(build.sh)"`; progress goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
e2e=$(dirname "$here")
# shellcheck source=../versions.env
. "$e2e/versions.env"
cache=${KBAK_CACHE:-$HOME/.cache/kbak}
bin=$cache/bin
img=$cache/images
mkdir -p "$bin" "$img"

log() { echo "build.sh: $*" >&2; }

# Debian packages: the container runtime, etcd, networking tools and the
# busybox the utility image is made of.
packages="etcd-server containerd runc containernetworking-plugins busybox-static
  iptables nftables conntrack iproute2 procps util-linux zstd openssl curl ca-certificates"
missing=()
for p in $packages; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update >&2
  apt-get install -y --no-install-recommends "${missing[@]}" >&2
fi

# ldflags stamping Kubernetes' version packages; without them binaries report
# v0.0.0-master and kubectl warns about version skew.
kube_ldflags() { # version
  local v=$1 minor
  minor=$(echo "$v" | cut -d. -f2)
  local ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  echo "$ld"
}

# require_module fails when a wrapper module does not pin the version that
# versions.env asks for: the module must be updated along with it.
require_module() { # dir module version
  if ! grep -q "^[[:space:]]*$2 $3\$\|^require $2 $3\$" "$here/$1/go.mod"; then
    log "$1/go.mod does not require $2 $3 (versions.env); update it: cd e2e/testbed/$1 && go get -tool $2/cmd/...@$3"
    exit 1
  fi
}

# build_group builds the named commands of one wrapper module in a single go
# build (they share most packages), each into $bin/NAME-VERSION.
build_group() { # dir version ldflags pkg...
  local dir=$1 version=$2 ldflags=$3
  shift 3
  local todo=()
  for pkg in "$@"; do
    [ -x "$bin/$(basename "$pkg")-$version" ] || todo+=("$pkg")
  done
  [ ${#todo[@]} -eq 0 ] && return 0
  log "building ${todo[*]} at $version (first time only: minutes)"
  local tmp
  tmp=$(mktemp -d)
  (cd "$here/$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$tmp/" "${todo[@]}") >&2
  for pkg in "${todo[@]}"; do
    mv "$tmp/$(basename "$pkg")" "$bin/$(basename "$pkg")-$version"
  done
  rm -rf "$tmp"
}

require_module kubernetes k8s.io/kubernetes "$KUBERNETES_VERSION"
require_module snapshotter github.com/kubernetes-csi/external-snapshotter/v8 "$SNAPSHOTTER_VERSION"
require_module provisioner github.com/kubernetes-csi/external-provisioner/v6 "$PROVISIONER_VERSION"

kube_cmds=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
build_group kubernetes "$KUBERNETES_VERSION" "$(kube_ldflags "$KUBERNETES_VERSION")" \
  "${kube_cmds[@]/#/k8s.io/kubernetes/cmd/}"
build_group snapshotter "$SNAPSHOTTER_VERSION" "-s -w -X main.version=$SNAPSHOTTER_VERSION" \
  github.com/kubernetes-csi/external-snapshotter/v8/cmd/snapshot-controller \
  github.com/kubernetes-csi/external-snapshotter/v8/cmd/csi-snapshotter
build_group provisioner "$PROVISIONER_VERSION" "-s -w -X main.version=$PROVISIONER_VERSION" \
  github.com/kubernetes-csi/external-provisioner/v6/cmd/csi-provisioner

# The VolumeSnapshot and VolumeGroupSnapshot CRDs of the same snapshotter
# release (without the group ones the snapshot controller waits for them with
# a backoff before it starts).
crd_dir=$cache/crd/snapshot-crds-$SNAPSHOTTER_VERSION
if [ ! -d "$crd_dir" ]; then
  src=$(cd "$here/snapshotter" && go mod download github.com/kubernetes-csi/external-snapshotter/client/v8 &&
    go list -m -f '{{with .Replace}}{{.Dir}}{{else}}{{.Dir}}{{end}}' github.com/kubernetes-csi/external-snapshotter/client/v8)
  mkdir -p "$crd_dir.tmp"
  cp "$src"/config/crd/*snapshot.storage.k8s.io_*.yaml "$crd_dir.tmp/"
  chmod -R u+w "$crd_dir.tmp"
  mv "$crd_dir.tmp" "$crd_dir"
fi

versitygw=$("$e2e/s3-build.sh" versitygw)

# tree_hash names a build of in-repository sources by their content.
tree_hash() { # path...
  find "$@" -type f ! -name '*_test.go' -print0 | sort -z | xargs -0 sha256sum |
    sed "s#  $e2e/#  #" | sha256sum | cut -c1-12
}

# The test bed's CSI driver, when its module exists.
csidriver=
if [ -f "$e2e/csidriver/go.mod" ]; then
  h=$(tree_hash "$e2e/csidriver")
  csidriver=$bin/kbak-csidriver-$h
  if [ ! -x "$csidriver" ]; then
    log "building the CSI driver"
    if (cd "$e2e/csidriver" && CGO_ENABLED=0 go build -trimpath -o "$csidriver.tmp" .) >&2; then
      mv "$csidriver.tmp" "$csidriver"
      # Builds of older sources are never used again.
      find "$bin" -maxdepth 1 -name 'kbak-csidriver-*' ! -name "$(basename "$csidriver")" -delete
    else
      log "the CSI driver does not build; the test bed runs without it"
      csidriver=
    fi
  fi
fi

# Images: the pod sandbox (pause) and the busybox utility image.
tools_hash=$(tree_hash "$here/mkimage" "$here/pause" "$here/go.mod" "$here/go.sum")
mkimage=$bin/kbak-mkimage-$tools_hash
if [ ! -x "$mkimage" ]; then
  (cd "$here" && CGO_ENABLED=0 go build -trimpath -o "$mkimage" ./mkimage) >&2
fi
pause_tar=$img/pause-$tools_hash.tar
if [ ! -f "$pause_tar" ]; then
  tmp=$(mktemp -d)
  (cd "$here" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp/pause" ./pause) >&2
  "$mkimage" --out "$pause_tar.tmp" --ref kbak.local/pause:dev --file "$tmp/pause:/pause:0755" --entrypoint /pause
  mv "$pause_tar.tmp" "$pause_tar"
  rm -rf "$tmp"
fi
bb_version=$(dpkg-query -W -f='${Version}' busybox-static | tr ':~+' '___')
busybox_tar=$img/busybox-$bb_version-$tools_hash.tar
if [ ! -f "$busybox_tar" ]; then
  args=(--out "$busybox_tar.tmp" --ref kbak.local/busybox:dev --file /bin/busybox:/bin/busybox:0755
    --dir /tmp:1777 --dir /root:0700 --cmd sh)
  # Every applet busybox has, at the path it lists for it.
  for a in $(/bin/busybox --list-full); do
    [ "/$a" = /bin/busybox ] || args+=(--symlink "/bin/busybox:/$a")
  done
  "$mkimage" "${args[@]}"
  mv "$busybox_tar.tmp" "$busybox_tar"
fi

# kubectl as an image: an in-cluster API client (ServiceAccount token, the
# kubernetes Service) for checks from inside pods.
kubectl_tar=$img/kubectl-$KUBERNETES_VERSION-$tools_hash.tar
if [ ! -f "$kubectl_tar" ]; then
  "$mkimage" --out "$kubectl_tar.tmp" --ref kbak.local/kubectl:dev \
    --file "$bin/kubectl-$KUBERNETES_VERSION:/kubectl:0755" --dir /tmp:1777 --entrypoint /kubectl
  mv "$kubectl_tar.tmp" "$kubectl_tar"
fi

# MariaDB as an image, for tests of a real database held across the cut:
# Debian's mariadb-server-core and mariadb-client-core with the libraries
# they need, unpacked (not installed) into a root file system, busybox for
# a shell, and the entrypoint and configuration in mariadb/. Keyed by the
# package version: a new Debian release rebuilds it, nothing else does.
mariadb_tar=
mariadb_version() { apt-cache policy mariadb-server-core 2>/dev/null | awk '$1 == "Candidate:" { print $2 }'; }
mdb_version=$(mariadb_version)
if [ -z "$mdb_version" ] || [ "$mdb_version" = "(none)" ]; then
  apt-get update >&2 || true
  mdb_version=$(mariadb_version)
fi
if [ -n "$mdb_version" ] && [ "$mdb_version" != "(none)" ]; then
  mdb_hash=$(tree_hash "$here/mariadb")
  mariadb_tar=$img/mariadb-$(echo "$mdb_version" | tr ':~+' '___')-$bb_version-$tools_hash-$mdb_hash.tar
  if [ ! -f "$mariadb_tar" ]; then
    log "building the MariaDB image from Debian's packages $mdb_version (first time only)"
    if ! "$here/mariadb/build-image.sh" "$mkimage" "$mariadb_tar.tmp" >&2; then
      rm -f "$mariadb_tar.tmp"
      apt-get update >&2 || true
      "$here/mariadb/build-image.sh" "$mkimage" "$mariadb_tar.tmp" >&2 || rm -f "$mariadb_tar.tmp"
    fi
    if [ -f "$mariadb_tar.tmp" ]; then
      mv "$mariadb_tar.tmp" "$mariadb_tar"
      find "$img" -maxdepth 1 -name 'mariadb-*.tar' ! -name "$(basename "$mariadb_tar")" -delete
    else
      log "the MariaDB image does not build; the test bed runs without it"
      mariadb_tar=
    fi
  fi
else
  log "no mariadb-server-core package known to apt; the test bed runs without the MariaDB image"
fi

for c in "${kube_cmds[@]}"; do
  echo "$(echo "$c" | tr a-z- A-Z_)=$bin/$c-$KUBERNETES_VERSION"
done
echo "SNAPSHOT_CONTROLLER=$bin/snapshot-controller-$SNAPSHOTTER_VERSION"
echo "CSI_SNAPSHOTTER=$bin/csi-snapshotter-$SNAPSHOTTER_VERSION"
echo "CSI_PROVISIONER=$bin/csi-provisioner-$PROVISIONER_VERSION"
echo "SNAPSHOT_CRDS=$crd_dir"
echo "VERSITYGW=$versitygw"
echo "CSIDRIVER=$csidriver"
echo "MKIMAGE=$mkimage"
echo "PAUSE_IMAGE_TAR=$pause_tar"
echo "BUSYBOX_IMAGE_TAR=$busybox_tar"
echo "KUBECTL_IMAGE_TAR=$kubectl_tar"
echo "MARIADB_IMAGE_TAR=$mariadb_tar"
