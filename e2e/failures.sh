#!/usr/bin/env bash
# failures.sh LOG: for each test that failed in LOG (go test -v output, the
# tests running in parallel), the last lines it logged: what it said when it
# failed, without the other tests' lines that -v interleaves with them.
# Each t.Log entry is one line naming FILE_test.go:LINE, with at most 3 of
# its further lines, all cut at 300 characters; the last 8 entries a test.
set -euo pipefail
awk '
  /^=== (RUN|CONT|NAME|PAUSE) / { cur = $3; next }
  /^ *--- FAIL: / { if (!($3 in failed)) { failed[$3] = 1; order[++nf] = $3 }; next }
  /^ *--- (PASS|SKIP): / || /^(PASS|FAIL|ok|FAIL\t)/ { next }
  cur == "" { next }
  /^ +[A-Za-z0-9_]+_test\.go:[0-9]+: / { e = ++n[cur]; line[cur, e % 8] = substr($0, 1, 300); more[cur, e % 8] = 0; next }
  n[cur] > 0 { k = n[cur] % 8; if (more[cur, k] < 3) { more[cur, k]++; line[cur, k] = line[cur, k] "\n" substr($0, 1, 300) } }
  END {
    if (nf == 0) exit
    print "e2e: what the failed tests logged last:"
    for (i = 1; i <= nf; i++) {
      t = order[i]
      print "--- " t
      for (e = (n[t] > 8 ? n[t] - 7 : 1); e <= n[t]; e++) print line[t, e % 8]
    }
  }
' "$1"
