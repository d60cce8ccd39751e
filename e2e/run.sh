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
go test -tags e2e -count=1 -timeout 50m -v ${E2E_RUN:+-run "$E2E_RUN"} ./e2e/
rc=$?
teardown || rc=1
echo "e2e: finished in $(( $(date +%s) - start ))s (exit $rc)"
exit $rc
