#!/usr/bin/env bash
# make e2e: bring the test bed up, run the end-to-end tests, bring it down
# again even when tests fail, and check that the machine is left clean.
# A bed that was already up before (make e2e-up) is left running.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${KBAK_E2E_DIR:-/var/tmp/kbak-e2e}

was_up=false
alive() { [ -f "$dir/pids/$1.pid" ] && kill -0 "$(cat "$dir/pids/$1.pid")" 2>/dev/null; }
[ -f "$dir/env.sh" ] && alive kube-apiserver && alive kubelet && was_up=true

# down.sh runs check-clean.sh and fails when anything is left on the machine.
teardown() {
  $was_up && return 0
  "$here/testbed/down.sh"
}

start=$(date +%s)
if ! "$here/testbed/up.sh"; then
  echo "e2e: test bed did not come up; logs are in $dir/logs" >&2
  teardown
  exit 1
fi
echo "e2e: test bed up in $(( $(date +%s) - start ))s"
# shellcheck disable=SC1091
. "$dir/env.sh"

trap 'teardown; exit 130' INT TERM
# -parallel 8: the tests that mostly wait (a CronJob's minute, a deadman,
# a slow snapshot deletion) and the round trips that only touch their own
# namespaces and backups (t.Parallel) run together, after the others: those
# that change what all share (the repository's data, a prune of it, gc -A).
# The output also goes to $log: its summary of failures comes last, where a
# reader of a long log looks first.
log=${KBAK_E2E_LOG:-/var/tmp/kbak-e2e-last.log}
: >"$log"
gotest() {
  go test -tags e2e -count=1 -p 1 -parallel 8 -timeout 50m -v "$@" 2>&1 | tee -a "$log"
  return "${PIPESTATUS[0]}"
}
# ./backup holds the library-level end-to-end tests of a backup run.
gotest ${E2E_RUN:+-run "$E2E_RUN"} -skip '^TestDR' ./e2e/ ./backup/
rc=$?

# Disaster recovery: back up, keep nothing but the bucket's objects, bring up
# a brand-new cluster and restore from the bucket alone. It replaces the bed,
# so a bed that was up before is left alone unless E2E_DR=1.
if [ -z "${E2E_RUN:-}" ] && { ! $was_up || [ "${E2E_DR:-}" = 1 ]; }; then
  dr=$(mktemp -d /var/tmp/kbak-dr.XXXXXX)
  export KBAK_E2E_DR_DIR=$dr
  bucket="$dir/s3/$KBAK_E2E_BUCKET"
  if gotest -run '^TestDRPrepare$' ./e2e/ && cp -a "$bucket" "$dr/bucket" &&
     "$here/testbed/down.sh" && "$here/testbed/up.sh"; then
    # shellcheck disable=SC1091
    . "$dir/env.sh"
    cp -a "$dr/bucket/." "$bucket/"
    gotest -run '^TestDRRestore$' ./e2e/ || rc=1
  else
    echo "e2e: the disaster-recovery phase could not run" >&2
    rc=1
  fi
  rm -rf "$dr"
fi
teardown || rc=1
[ "$rc" = 0 ] || "$here/failures.sh" "$log"
echo "e2e: finished in $(( $(date +%s) - start ))s (exit $rc); the tests' whole output: $log"
exit $rc
