//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kbak/kbak/internal/catalog"
)

// mariadbHoldHook is the README's --hold-hook recipe for MariaDB, as a user
// types it.
const mariadbHoldHook = `{ echo "FLUSH TABLES WITH READ LOCK;"; echo "SELECT \"kbak: ready\";"; cat; } | mariadb -N -B --unbuffered -uroot -p"$MARIADB_ROOT_PASSWORD"`

// mariadbPassword is the root password of the test's servers.
const mariadbPassword = "kbak e2e 'secret'"

// withMariaDB makes the StatefulSet's pods MariaDB servers (the bed's image
// of Debian's packages) with their data on the claim "data", Ready once
// root logs in with its password.
func withMariaDB(e *env) stsOption {
	return withPodSpec(func(s *corev1.PodSpec) {
		c := &s.Containers[0]
		c.Image, c.Command = e.MariaDBImage, nil
		c.Env = []corev1.EnvVar{{Name: "MARIADB_ROOT_PASSWORD", Value: mariadbPassword}}
		c.ReadinessProbe = &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{
				"sh", "-c", `mariadb -uroot -p"$MARIADB_ROOT_PASSWORD" -e 'SELECT 1'`,
			}}},
			PeriodSeconds: 1, TimeoutSeconds: 10,
		}
	})
}

// mariadbSQL runs statements with the mariadb client in a pod, as root
// over the server's socket, and returns its batch output (tab-separated
// rows without a header).
func mariadbSQL(c context.Context, e *env, ns, pod, sql string) (string, error) {
	out, _, err := podExec(c, e, ns, pod, "app", nil,
		"sh", "-c", `exec mariadb -N -B -uroot -p"$MARIADB_ROOT_PASSWORD" -e "$1"`, "sh", sql)
	return strings.TrimSpace(out), err
}

func mustSQL(t *testing.T, e *env, ns, pod, sql string) string {
	t.Helper()
	out, err := mariadbSQL(ctx(t), e, ns, pod, sql)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// writerScript inserts rows into kbak.w one after another until
// /tmp/stop-writer exists, each with the instant its statement started
// (NOW) and the instant the server computed its values (SYSDATE), which is
// after the INSERT got its table locks: a row whose two instants are far
// apart waited for a lock, such as a FLUSH TABLES WITH READ LOCK.
const writerScript = `while [ ! -e /tmp/stop-writer ]; do
  mariadb -uroot -p"$MARIADB_ROOT_PASSWORD" -e "SET SESSION lock_wait_timeout = 600; INSERT INTO kbak.w (started, done) VALUES (NOW(6), SYSDATE(6))" 2>>/tmp/writer.err
  sleep 0.05
done
touch /tmp/writer-stopped`

// writerRow is one row of kbak.w: its id, how long its INSERT waited and
// when it got its locks.
type writerRow struct {
	id     int
	waited time.Duration
	done   time.Time
}

// writerRows returns the rows of kbak.w after id from.
func writerRows(t *testing.T, e *env, ns, pod string, from int) []writerRow {
	t.Helper()
	out := mustSQL(t, e, ns, pod, fmt.Sprintf(
		"SELECT id, TIMESTAMPDIFF(MICROSECOND, started, done), FLOOR(UNIX_TIMESTAMP(done) * 1000) FROM kbak.w WHERE id > %d ORDER BY id", from))
	var rows []writerRow
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) != 3 {
			t.Fatalf("pod %s: kbak.w row %q", pod, line)
		}
		id, err1 := strconv.Atoi(f[0])
		us, err2 := strconv.ParseInt(f[1], 10, 64)
		ms, err3 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			t.Fatalf("pod %s: kbak.w row %q", pod, line)
		}
		rows = append(rows, writerRow{id: id, waited: time.Duration(us) * time.Microsecond, done: time.UnixMilli(ms)})
	}
	return rows
}

// holdWindow returns when, by a kbak run's log, the last hold session was
// ready and the first one was ended.
func holdWindow(t *testing.T, log string) (ready, ended time.Time) {
	t.Helper()
	at := func(line string) time.Time {
		f := strings.Fields(strings.TrimSpace(line))
		if len(f) == 0 || !strings.HasPrefix(f[0], "time=") {
			t.Fatalf("log line without a time: %s", line)
		}
		ts, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(f[0], "time="))
		if err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		return ts
	}
	for line := range strings.Lines(log) {
		switch {
		case strings.Contains(line, `msg="hold hook ready"`):
			ready = at(line)
		case strings.Contains(line, `msg="ended hold hook"`) && ended.IsZero():
			ended = at(line)
		}
	}
	if ready.IsZero() || !ended.After(ready) {
		t.Fatalf("no hold window in kbak's log (ready %s, ended %s):\n%s", ready, ended, log)
	}
	return ready, ended
}

// longestWait returns the row whose INSERT waited longest, and the waits
// of more than 100ms.
func longestWait(rows []writerRow) (writerRow, []string) {
	var longest writerRow
	var waits []string
	for _, r := range rows {
		if r.waited >= 100*time.Millisecond {
			waits = append(waits, fmt.Sprintf("row %d waited %s", r.id, r.waited))
		}
		if r.waited > longest.waited {
			longest = r
		}
	}
	return longest, waits
}

// lastID returns the id of kbak.w's last row.
func lastID(c context.Context, e *env, ns, pod string) (int, error) {
	out, err := mariadbSQL(c, e, ns, pod, "SELECT COALESCE(MAX(id), 0) FROM kbak.w")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(out)
}

// heldLock is how long an INSERT must wait to have waited for the hold
// kbak is killed in, a second into a copy: those of a server not held wait
// a few milliseconds, under load 100.
const heldLock = 300 * time.Millisecond

// A real MariaDB (Debian's 10.11 packages) held by the README's
// --hold-hook recipe across the snapshot cut of a 2-replica StatefulSet:
// while kbak cuts, FLUSH TABLES WITH READ LOCK blocks a writer that inserts
// rows continuously in each pod, and the restored servers start on data
// holding exactly the rows committed before the lock, not the one that
// waited for it nor any after. The lock ends with the backup: the blocked
// INSERT then commits and the writer goes on.
// Not parallel: it compares how long the writer's INSERTs waited with how
// long kbak held the lock, and under the parallel tests' load the writer's
// next INSERT came late in the hold (once: 367 ms of a 1.2 s hold).
func TestMariaDBHeldLockAcrossTheCut(t *testing.T) {
	e := newEnv(t)
	if e.MariaDBImage == "" {
		t.Fatal("the test bed has no MariaDB image (KBAK_E2E_MARIADB_IMAGE): see e2e/testbed/build.sh's log")
	}
	ns := createNamespace(t, e, "bk-mariadb")
	applyStatefulSet(t, e, ns, "db", 2, e.SnapClass,
		withClaims(newClaim("data").MountAt("/var/lib/mysql").Size("256Mi")), withMariaDB(e))
	pods := []string{"db-0", "db-1"}

	// Rows each ordinal must bring back, and the writers.
	seeded := map[string]string{}
	for _, pod := range pods {
		mustSQL(t, e, ns, pod, fmt.Sprintf(`CREATE DATABASE kbak;
			CREATE TABLE kbak.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64)) ENGINE=InnoDB;
			CREATE TABLE kbak.w (id INT AUTO_INCREMENT PRIMARY KEY, started DATETIME(6), done DATETIME(6)) ENGINE=InnoDB;
			INSERT INTO kbak.t (v) VALUES ('%[1]s-a'), ('%[1]s-b'), ('%[1]s-c');`, pod))
		seeded[pod] = mustSQL(t, e, ns, pod, "SELECT GROUP_CONCAT(v ORDER BY id) FROM kbak.t")
		mustExec(t, e, ns, pod, "app", "sh", "-c", "setsid sh -c '"+strings.ReplaceAll(writerScript, "'", `'\''`)+"' </dev/null >/dev/null 2>&1 &")
	}
	for _, pod := range pods {
		waitFor(t, "the writer's first rows in "+pod, time.Minute, func(c context.Context) (string, bool, error) {
			out, err := mariadbSQL(c, e, ns, pod, "SELECT COUNT(*) FROM kbak.w")
			n, _ := strconv.Atoi(out)
			return out, err == nil && n >= 5, err
		})
	}

	m, r := backupJSON(t, e, ns, "db", 0, "--hold-hook", mariadbHoldHook)
	// The lock is held from the last session's ready to the first one's
	// end, as kbak logs them: the INSERT it blocked waited about that
	// long (kbak ends the hold soon after the cut, in a quarter of a second
	// on a quiet bed).
	ready, ended := holdWindow(t, r.stderr)
	held := ended.Sub(ready)
	if holds := holdHooks(m); holds != 2 {
		t.Errorf("manifest hooks %+v, want 2 hold hooks without error", m.Hooks)
	}
	for _, v := range m.Volumes {
		if v.Consistency != catalog.ConsistencyQuiesced {
			t.Errorf("%s: consistency %s, want quiesced", v.PVC, v.Consistency)
		}
	}

	// The lock is gone with the backup: the INSERT it blocked commits and
	// the writer goes on.
	blocked := map[string]writerRow{}
	for _, pod := range pods {
		last, err := lastID(ctx(t), e, ns, pod)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the writer going on in "+pod+" after the backup", time.Minute, func(c context.Context) (string, bool, error) {
			n, err := lastID(c, e, ns, pod)
			return fmt.Sprintf("last row %d", n), err == nil && n >= last+3, err
		})
		// The INSERT the hold blocked is the one that waited longest, for
		// the whole hold (FLUSH TABLES WITH READ LOCK waits for the INSERT
		// running when it comes; the writer's next one waits for the lock).
		rows := writerRows(t, e, ns, pod, 0)
		longest, waits := longestWait(rows)
		if longest.waited < held/2 {
			t.Fatalf("pod %s: none of the writer's %d INSERTs waited for the lock kbak held %s (longest: row %d, %s): the hold hook did not hold one across the backup",
				pod, len(rows), held, longest.id, longest.waited)
		}
		blocked[pod] = longest
		t.Logf("pod %s: %d rows; %s", pod, len(rows), strings.Join(waits, ", "))
	}

	// The restored servers start on the snapshots' data: the rows of
	// before the lock, none of during or after it.
	res, _ := restoreJSON(t, e, 0, m.ID, "--to-name", "restored", "--create-statefulset")
	if !res.StatefulSetCreated || !res.StatefulSetReady {
		t.Fatalf("restored StatefulSet created %v ready %v", res.StatefulSetCreated, res.StatefulSetReady)
	}
	for i, pod := range pods {
		rpod := fmt.Sprintf("restored-%d", i)
		for _, tbl := range []string{"kbak.t", "kbak.w"} {
			if out := mustSQL(t, e, ns, rpod, "CHECK TABLE "+tbl); !strings.HasSuffix(out, "status\tOK") {
				t.Errorf("pod %s: CHECK TABLE %s: %q, want status OK", rpod, tbl, out)
			}
		}
		if got := mustSQL(t, e, ns, rpod, "SELECT GROUP_CONCAT(v ORDER BY id) FROM kbak.t"); got != seeded[pod] {
			t.Errorf("pod %s: kbak.t holds %q, want %s's %q", rpod, got, pod, seeded[pod])
		}
		want := blocked[pod].id - 1
		got := mustSQL(t, e, ns, rpod, "SELECT COUNT(*), COALESCE(MAX(id), 0) FROM kbak.w")
		if got != fmt.Sprintf("%d\t%d", want, want) {
			t.Errorf("pod %s: kbak.w holds (count, last id) %q, want rows 1..%d: those of %s committed before the lock, not row %d that waited %s for it",
				rpod, got, want, pod, blocked[pod].id, blocked[pod].waited)
		}
	}
	noLeftovers(t, e, ns, false)

	// kbak dies while the sessions hold the lock (live files being
	// copied): the lock goes with it, at the latest at the deadman's 40s.
	from := map[string]int{}
	for _, pod := range pods {
		n, err := lastID(ctx(t), e, ns, pod)
		if err != nil {
			t.Fatal(err)
		}
		from[pod] = n
	}
	// Killed a second into the copy (which takes a few): the lock was
	// held for that second when kbak died.
	killed, stderr := killMoving(t, e, ns, time.Second, "backup", "sts/db", "-n", ns, "--method", "files",
		"--hold-hook", mariadbHoldHook, "--hook-timeout", "10s", "--hook-deadman", "40s")
	if strings.Contains(stderr, "ended hold hook") {
		t.Fatalf("kbak ended the hold hooks before it was killed: the copy was quicker than a second")
	}
	for _, pod := range pods {
		var held writerRow
		waitFor(t, "the lock's end in "+pod+" after kbak was killed", 90*time.Second, func(c context.Context) (string, bool, error) {
			n, err := lastID(c, e, ns, pod)
			if err != nil {
				return "", false, err
			}
			held, _ = longestWait(writerRows(t, e, ns, pod, from[pod]))
			return fmt.Sprintf("last row %d, longest wait: row %d, %s", n, held.id, held.waited), held.waited >= heldLock && n > held.id, nil
		})
		if held.done.Before(killed.Add(-50*time.Millisecond)) || held.done.After(killed.Add(45*time.Second)) {
			t.Errorf("pod %s: the INSERT the hold blocked (row %d, waited %s) got its lock at %s, kbak was killed at %s: want the lock held until kbak died and gone within the deadman's 40s",
				pod, held.id, held.waited, held.done.Format(time.RFC3339Nano), killed.Format(time.RFC3339Nano))
		}
		t.Logf("pod %s: the lock went %s after kbak was killed (row %d waited %s)", pod, held.done.Sub(killed).Round(10*time.Millisecond), held.id, held.waited)
	}
	for _, pod := range pods {
		mustExec(t, e, ns, pod, "app", "sh", "-c", "touch /tmp/stop-writer; for i in $(seq 100); do [ -e /tmp/writer-stopped ] && exit 0; sleep 0.1; done; exit 1")
		if out := mustExec(t, e, ns, pod, "app", "sh", "-c", "cat /tmp/writer.err 2>/dev/null || true"); strings.TrimSpace(out) != "" {
			t.Errorf("pod %s: the writer's errors:\n%s", pod, indent(out))
		}
	}
}
