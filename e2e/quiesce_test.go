//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kbak/kbak/backup"
	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/kube"
)

// markAt returns the second a hook mark name-SECONDS was written at, or -1.
func markAt(marks []string, name string) int64 {
	for _, m := range marks {
		if s, ok := strings.CutPrefix(m, name+"-"); ok {
			if n, err := strconv.ParseInt(s, 10, 64); err == nil {
				return n
			}
		}
	}
	return -1
}

func countMarks(marks []string, name string) int {
	return len(slices.DeleteFunc(slices.Clone(marks), func(m string) bool { return !strings.HasPrefix(m, name+"-") }))
}

// A kbak killed with SIGKILL while the application is quiesced does not
// leave it so: the deadman the pre-hook left in each pod runs the post-hook
// at its deadline. A kbak that lives cancels the deadman: the post-hook runs
// once, by kbak, as the manifest records.
func TestHookDeadman(t *testing.T) {
	t.Parallel() // waits more than it works: beside the other waiters
	e := newEnv(t)
	ns := createNamespace(t, e, "bk-deadman")
	applyStatefulSet(t, e, ns, "db", 2, e.SnapClass)
	mark := func(name string) string { return fmt.Sprintf(`echo %s-$(date +%%s) >> /tmp/hooks`, name) }
	pods := []string{"db-0", "db-1"}
	const deadman = 20 * time.Second
	hookArgs := func(n string) []string {
		return []string{"--pre-hook", mark("pre" + n), "--post-hook", mark("post" + n), "--hook-timeout", "5s", "--hook-deadman", deadman.String()}
	}

	// kbak lives: its post-hook runs, the deadman never does.
	m, _ := backupJSON(t, e, ns, "db", 0, hookArgs("1")...)
	var pres, posts int
	for _, h := range m.Hooks {
		if h.Phase == "pre" && h.DeadmanSeconds == int64(deadman/time.Second) {
			pres++
		}
		if h.Phase == "post" && h.ThawedBy == backup.ThawedByKbak {
			posts++
		}
	}
	if pres != 2 || posts != 2 {
		t.Errorf("manifest hooks %+v: want 2 pre-hooks with a %s deadman and 2 post-hooks thawed by kbak", m.Hooks, deadman)
	}
	for _, v := range m.Volumes {
		if v.Consistency != catalog.ConsistencyQuiesced {
			t.Errorf("%s: consistency %s, want quiesced", v.PVC, v.Consistency)
		}
	}
	time.Sleep(deadman + 3*time.Second)
	for _, pod := range pods {
		if marks := hookLog(t, e, ns, pod); countMarks(marks, "post1") != 1 {
			t.Errorf("pod %s: marks %v %s after the backup, want one post1 (kbak's; the deadman cancelled)", pod, marks, deadman)
		}
	}

	// kbak dies while the live files are copied, the application quiesced.
	killed := killOnceMoving(t, e, ns, append([]string{"backup", "sts/db", "-n", ns, "--method", "files"}, hookArgs("2")...)...)
	for _, pod := range pods {
		marks := hookLog(t, e, ns, pod)
		if markAt(marks, "pre2") < 0 || countMarks(marks, "post2") != 0 {
			t.Fatalf("pod %s when kbak was killed: marks %v, want pre2 and no post2", pod, marks)
		}
	}
	for _, pod := range pods {
		waitFor(t, "the deadman's post-hook in "+pod, deadman+30*time.Second, func(context.Context) (string, bool, error) {
			marks := hookLog(t, e, ns, pod)
			return strings.Join(marks, " "), countMarks(marks, "post2") == 1, nil
		})
		marks := hookLog(t, e, ns, pod)
		// The deadman counts from the start of the pre-hook's wrapper.
		if d := markAt(marks, "post2") - markAt(marks, "pre2"); d < int64(deadman/time.Second)-1 || d > int64(deadman/time.Second)+5 {
			t.Errorf("pod %s: post2 %ds after pre2, want the deadman's %s", pod, d, deadman)
		}
	}
	t.Logf("the deadman thawed both pods %s after kbak was killed", time.Since(killed).Round(time.Second))
}

// A pre-hook that passes --hook-timeout is killed in the pod, with its
// children, before the post-hook runs: it takes no effect later.
func TestHookTimeoutStopsHook(t *testing.T) {
	t.Parallel() // waits more than it works: beside the other waiters
	e := newEnv(t)
	ns := createNamespace(t, e, "bk-hooktimeout")
	applyStatefulSet(t, e, ns, "db", 2, e.SnapClass)
	r := runKbak(t, e, "backup", "sts/db", "-n", ns, "--hook-timeout", "3s",
		"--pre-hook", `sleep 8; echo late-$(date +%s) >> /tmp/hooks`,
		"--post-hook", `echo post-$(date +%s) >> /tmp/hooks`)
	if r.code != 1 {
		t.Fatalf("backup with a pre-hook past its timeout: %s", r)
	}
	lastErrorLine(t, r, "no answer within 3s, stopped")
	time.Sleep(8 * time.Second)
	for _, pod := range []string{"db-0", "db-1"} {
		marks := hookLog(t, e, ns, pod)
		if len(marks) != 1 || countMarks(marks, "post") != 1 {
			t.Errorf("pod %s: marks %v 8s later, want the post-hook's alone (the timed out pre-hook took effect)", pod, marks)
		}
		if out := mustExec(t, e, ns, pod, "app", "sh", "-c", "ps -o pid,args | grep 'sleep 8' | grep -v grep || true"); strings.TrimSpace(out) != "" {
			t.Errorf("pod %s: the timed out hook still runs: %s", pod, out)
		}
	}
	noLeftovers(t, e, ns, false)
}

// A hold hook is a session kbak keeps open in every pod across the cut of
// every ordinal: kbak cuts only once each said "kbak: ready", and ends them
// all after the last cut by closing their stdin. A SIGKILLed kbak does not
// leave the session holding.
func TestHoldHookAcrossTheCut(t *testing.T) {
	t.Parallel() // waits more than it works: beside the other waiters
	e := newEnv(t)
	ns := createNamespace(t, e, "bk-hold")
	applyStatefulSet(t, e, ns, "db", 2, e.SnapClass)
	pods := []string{"db-0", "db-1"}
	// Ready only 3 seconds in: a cut before then would be before "held".
	hold := func(n string) string {
		return fmt.Sprintf(`sleep 3; echo held%s-$(date +%%s) >> /tmp/hooks; echo "kbak: ready"; cat > /dev/null; echo released%s-$(date +%%s) >> /tmp/hooks`, n, n)
	}
	m, _ := backupJSON(t, e, ns, "db", 0, "--hold-hook", hold("1"), "--keep-snapshots", "--hook-timeout", "10s")
	if holds := holdHooks(m); holds != 2 {
		t.Errorf("manifest hooks %+v, want 2 hold hooks without error", m.Hooks)
	}
	var firstCut, lastCut int64
	for _, v := range m.Volumes {
		if v.Consistency != catalog.ConsistencyQuiesced || v.Snapshot == nil {
			t.Fatalf("%s: consistency %s, snapshot %v: want a quiesced snapshot", v.PVC, v.Consistency, v.Snapshot)
		}
		vs, err := e.Snap.SnapshotV1().VolumeSnapshots(ns).Get(ctx(t), v.Snapshot.Name, metav1.GetOptions{})
		if err != nil || vs.Status == nil || vs.Status.CreationTime == nil {
			t.Fatalf("snapshot %s: %v %+v", v.Snapshot.Name, err, vs.Status)
		}
		c := vs.Status.CreationTime.Unix()
		if firstCut == 0 || c < firstCut {
			firstCut = c
		}
		lastCut = max(lastCut, c)
	}
	for _, pod := range pods {
		marks := hookLog(t, e, ns, pod)
		held, released := markAt(marks, "held1"), markAt(marks, "released1")
		if held < 0 || released < 0 || held > firstCut || released < lastCut {
			t.Errorf("pod %s: marks %v, cuts %d..%d: want held before the first cut, released after the last", pod, marks, firstCut, lastCut)
		}
	}
	deleteKeptSnapshots(t, e, ns, m)

	// kbak dies while the sessions hold (live files being copied).
	killed := killOnceMoving(t, e, ns, "backup", "sts/db", "-n", ns, "--method", "files", "--hold-hook", hold("2"), "--hook-timeout", "10s", "--hook-deadman", "40s")
	for _, pod := range pods {
		if marks := hookLog(t, e, ns, pod); markAt(marks, "held2") < 0 {
			t.Fatalf("pod %s when kbak was killed: marks %v, want held2", pod, marks)
		}
		// Ended by its stdin's end (it then writes released2) or killed by
		// the timer at the deadman's 40s.
		waitFor(t, "the hold's end in "+pod, 70*time.Second, func(c context.Context) (string, bool, error) {
			out, _, err := podExec(c, e, ns, pod, "app", nil, "sh", "-c", "ps -o args | grep '[h]eld2' || true")
			return strings.TrimSpace(out), err == nil && strings.TrimSpace(out) == "", err
		})
		t.Logf("pod %s: the hold ended %s after kbak was killed; marks %v", pod, time.Since(killed).Round(time.Second), hookLog(t, e, ns, pod))
	}
}

// deleteKeptSnapshots deletes the snapshots a backup kept.
func deleteKeptSnapshots(t *testing.T, e *env, ns string, m *catalog.Manifest) {
	t.Helper()
	for _, v := range m.Volumes {
		if v.Snapshot != nil {
			if err := e.Snap.SnapshotV1().VolumeSnapshots(ns).Delete(ctx(t), v.Snapshot.Name, metav1.DeleteOptions{}); err != nil {
				t.Errorf("delete kept snapshot %s: %v", v.Snapshot.Name, err)
			}
		}
	}
}

// killOnceMoving starts kbak with args, SIGKILLs it as soon as one of its
// pods exists in ns (the application quiesced, its files being copied),
// and returns when it was killed.
func killOnceMoving(t *testing.T, e *env, ns string, args ...string) time.Time {
	t.Helper()
	killed, _ := killMoving(t, e, ns, 0, args...)
	return killed
}

// killMoving starts kbak with args, SIGKILLs it after one of its pods has
// existed in ns for after, and returns the instant right before the kill
// and kbak's stderr.
func killMoving(t *testing.T, e *env, ns string, after time.Duration, args ...string) (time.Time, string) {
	t.Helper()
	cmd, _, errb := kbakCmd(t, e, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	waitFor(t, "a mover pod of the backup", 2*time.Minute, func(c context.Context) (string, bool, error) {
		list, err := e.Kube.CoreV1().Pods(ns).List(c, metav1.ListOptions{LabelSelector: kube.ManagedSelector()})
		if err != nil {
			return "", false, err
		}
		return fmt.Sprintf("%d kbak pods", len(list.Items)), len(list.Items) > 0, nil
	})
	time.Sleep(after)
	killed := time.Now()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	t.Logf("killed kbak; its stderr:\n%s", indent(errb.String()))
	return killed, errb.String()
}

// holdHooks counts the hold hooks m records as run without error.
func holdHooks(m *catalog.Manifest) int {
	n := 0
	for _, h := range m.Hooks {
		if h.Phase == "hold" && h.Error == "" {
			n++
		}
	}
	return n
}
