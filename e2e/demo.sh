#!/usr/bin/env bash
# make demo: bring up the local test bed, deploy a 3-replica StatefulSet with
# distinct data per ordinal, back it up with kbak and list the backups.
# The bed stays up afterwards: `source /var/tmp/kbak-e2e/env.sh` to explore,
# `make e2e-down` to stop it.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${KBAK_E2E_DIR:-/var/tmp/kbak-e2e}
cd "$repo"
start=$(date +%s)

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "test bed (first run builds Kubernetes from source: allow 20-40 minutes)"
e2e/testbed/up.sh
# shellcheck disable=SC1091
. "$dir/env.sh"
make -s build

step "demo StatefulSet kbak-demo/db, 3 replicas on kbak-snap"
kubectl apply -f e2e/demo/statefulset.yaml
kubectl -n kbak-demo rollout status sts/db --timeout=180s
for i in 0 1 2; do kubectl -n kbak-demo exec "db-$i" -- cat /var/lib/db/identity; done

step "kbak backup sts/db -n kbak-demo"
bin/kbak backup sts/db -n kbak-demo --mover-image "$KBAK_E2E_KBAK_IMAGE"

step "kbak list -n kbak-demo"
bin/kbak list -n kbak-demo

echo
echo "demo done in $(( $(date +%s) - start ))s. Explore: source $dir/env.sh; bin/kbak describe ID. Stop: make e2e-down"
