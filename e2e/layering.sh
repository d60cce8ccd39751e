#!/usr/bin/env bash
# Enforces kbak's package layering: the byte path (archive, repo, uploader) and
# the words of advice (hint) know nothing of Kubernetes, and only cmd/kbak
# imports the CLI library.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
deps() { go list -deps "$1" 2>/dev/null; }
for pkg in ./internal/archive ./uploader ./internal/repo ./internal/mover ./internal/hint; do
  if deps "$pkg" | grep -qE '^k8s\.io/|external-snapshotter'; then
    echo "layering: $pkg must not import Kubernetes packages"; fail=1
  fi
done
for pkg in $(go list ./... | grep -v '/cmd/kbak$'); do
  if go list -f '{{join .Imports "\n"}}' "$pkg" | grep -q '^github.com/urfave/cli'; then
    echo "layering: only cmd/kbak may import urfave/cli, not $pkg"; fail=1
  fi
done
[ $fail -eq 0 ] && echo "layering: ok"
exit $fail
