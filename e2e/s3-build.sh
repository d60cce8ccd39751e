#!/usr/bin/env bash
# Builds the S3-compatible test servers (versitygw, MinIO) from the Go module
# proxy into the version cache and prints their paths. Idempotent: a cached
# binary is reused.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
cache=${KBAK_CACHE:-$HOME/.cache/kbak}

build() { # name package version
  local out="$cache/bin/$1-$3"
  if [ ! -x "$out" ]; then
    echo "building $1 $3 (first time only, a few minutes)" >&2
    local tmp; tmp=$(mktemp -d)
    GOBIN="$tmp" CGO_ENABLED=0 GOFLAGS=-trimpath go install "$2@$3" >&2
    mkdir -p "$cache/bin"
    mv "$tmp/$(basename "$2")" "$out"
    rm -rf "$tmp"
  fi
  echo "$out"
}

[ $# -gt 0 ] || set -- versitygw minio
for name in "$@"; do
  case $name in
    versitygw) build versitygw github.com/versity/versitygw/cmd/versitygw "$VERSITYGW_VERSION" ;;
    minio) build minio github.com/minio/minio "$MINIO_VERSION" ;;
    *) echo "s3-build.sh: unknown server $name (versitygw or minio)" >&2; exit 2 ;;
  esac
done
