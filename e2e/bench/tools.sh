#!/usr/bin/env bash
# Builds the backup tools e2e/bench.sh compares kbak with (restic, kopia)
# from the Go module proxy into the version cache and prints their paths.
# Each is built in its own module under e2e/bench/tools, with exactly the
# dependency versions its release pins. Idempotent: a cached binary is reused.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/../versions.env
. "$here/../versions.env"
cache=${KBAK_CACHE:-$HOME/.cache/kbak}

build() { # name module package version
  local out="$cache/bin/$1-$4" mod="$here/tools/$1" pinned
  if [ ! -x "$out" ]; then
    pinned=$(cd "$mod" && go list -m -f '{{.Version}}' "$2")
    if [ "$pinned" != "$4" ]; then
      echo "tools.sh: e2e/versions.env wants $1 $4 but $mod/go.mod pins $pinned;" \
        "run: (cd e2e/bench/tools/$1 && go get -tool $3@$4 && go mod tidy)" >&2
      exit 1
    fi
    echo "building $1 $4 (first time only, a few minutes)" >&2
    local tmp; tmp=$(mktemp -d)
    (cd "$mod" && CGO_ENABLED=0 go build -trimpath -o "$tmp/$1" "$3") >&2
    mkdir -p "$cache/bin"
    mv "$tmp/$1" "$out"
    rm -rf "$tmp"
  fi
  echo "$out"
}

[ $# -gt 0 ] || set -- restic kopia
for name in "$@"; do
  case $name in
    restic) build restic github.com/restic/restic github.com/restic/restic/cmd/restic "$RESTIC_VERSION" ;;
    kopia) build kopia github.com/kopia/kopia github.com/kopia/kopia "$KOPIA_VERSION" ;;
    *) echo "tools.sh: unknown tool $name (restic or kopia)" >&2; exit 2 ;;
  esac
done
