//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/repo"
	"github.com/kbak/kbak/uploader"
)

// A StatefulSet backed up twice with a small change in between, on both
// paths: the second backup reads and adds only about the change; each
// backup restores byte for byte; with the first deleted (and its data
// swept), the second still restores into the cluster.
func TestIncrementalBackups(t *testing.T) {
	t.Parallel() // waits more than it works: beside the other waiters
	e := newEnv(t)
	for _, tc := range []struct{ name, class string }{{"snapshot", e.SnapClass}, {"files", e.NoSnapClass}} {
		t.Run(tc.name, func(t *testing.T) {
			ns := createNamespace(t, e, "inc-"+tc.name)
			sts := applyStatefulSet(t, e, ns, "db", 3, tc.class)
			writeOrdinalData(t, e, ns, sts)
			dir := mountPathOf(t, sts, "data")
			for i := range 3 {
				mustExec(t, e, ns, fmt.Sprintf("db-%d", i), "app", "sh", "-c", "head -c 8388608 /dev/urandom > "+dir+"/big.bin && sync")
			}
			want1 := readStatefulSetData(t, e, ns, sts)
			m1, _ := backupJSON(t, e, ns, "db", 0)
			if m1.Format != catalog.FormatRepo {
				t.Fatalf("a new backup has format %d, want %d", m1.Format, catalog.FormatRepo)
			}
			for _, v := range m1.Volumes {
				if v.ReadBytes != v.RawBytes || v.StoredBytes < 8<<20 || v.Parent != "" {
					t.Errorf("first backup of %s: read %d of %d bytes, added %d, parent %q; want all read and 8 MiB added",
						v.PVC, v.ReadBytes, v.RawBytes, v.StoredBytes, v.Parent)
				}
			}

			for i := range 3 {
				mustExec(t, e, ns, fmt.Sprintf("db-%d", i), "app", "sh", "-c",
					"echo second >> "+dir+"/owned/secret && echo new > "+dir+"/new.txt && sync")
			}
			want2 := readStatefulSetData(t, e, ns, sts)
			m2, _ := backupJSON(t, e, ns, "db", 0)
			for i, v := range m2.Volumes {
				first := m1.Volumes[i]
				t.Logf("%s: second backup read %d of %d bytes, reused %d files, added %d bytes (first added %d: ratio %.4f)",
					v.PVC, v.ReadBytes, v.RawBytes, v.SkippedFiles, v.StoredBytes, first.StoredBytes, float64(v.StoredBytes)/float64(first.StoredBytes))
				if v.Parent != m1.ID || v.SkippedFiles < 4 || v.ReadBytes > 64<<10 || v.StoredBytes > 1<<20 {
					t.Errorf("second backup of %s: parent %q, reused %d files, read %d bytes, added %d; want the change only",
						v.PVC, v.Parent, v.SkippedFiles, v.ReadBytes, v.StoredBytes)
				}
			}
			checkBackedUp(t, e, m1, want1)
			checkBackedUp(t, e, m2, want2)

			if r := runKbak(t, e, "delete", m1.ID, "--yes"); r.code != 0 {
				t.Fatalf("delete the first backup: %s", r)
			}
			deleteStatefulSetAndClaims(t, e, ns, "db", 3)
			res, _ := restoreJSON(t, e, 0, m2.ID, "--create-statefulset")
			if !res.StatefulSetReady {
				t.Fatalf("restored StatefulSet not ready: %+v", res)
			}
			compareRecords(t, want2, readStatefulSetData(t, e, ns, statefulSet(t, e, ns, "db")))
			noLeftovers(t, e, ns, false)
		})
	}
}

// Prune while a backup runs loses nothing: it removes the expired backup's
// manifest and objects, leaves the shared data for later (the backup's lock
// holds it off), and the running backup and the kept one verify, every
// chunk read.
func TestPruneDuringBackup(t *testing.T) {
	e := newEnv(t)
	ns := createNamespace(t, e, "inc-prune")
	old := applyStatefulSet(t, e, ns, "old", 1, e.SnapClass)
	writeOrdinalData(t, e, ns, old)
	o1, _ := backupJSON(t, e, ns, "old", 0)
	o2, _ := backupJSON(t, e, ns, "old", 0)

	applyStatefulSet(t, e, ns, "db", 1, e.SnapClass, withClaims(newClaim("data").Size("2Gi")))
	mustExec(t, e, ns, "db-0", "app", "sh", "-c", "head -c 300000000 /dev/urandom > /data/big.bin && sync")
	cmd, out, errb := kbakCmd(t, e, "backup", "sts/db", "-n", ns, "-o", "json")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	st := store(t, e)
	waitFor(t, "the running backup's lock", 3*time.Minute, func(c context.Context) (string, bool, error) {
		n := 0
		err := st.List(c, repo.Keys.LockPrefix(), func(uploader.ObjectInfo) error { n++; return nil })
		return fmt.Sprintf("%d locks", n), n > 0, err
	})
	r := runKbak(t, e, "prune", "-n", ns, "--statefulset", "old", "--keep-last", "1")
	if r.code != 0 || !strings.Contains(r.stdout, o1.ID) || !strings.Contains(r.stderr, "not freed now") {
		t.Errorf("prune during a backup: want exit 0, %s removed and the data sweep deferred: %s", o1.ID, r)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the backup running during prune: %v\n%s\n%s", err, out, errb)
	}
	for _, want := range []string{o2.ID, backupIDOf(t, out.String())} {
		if r := runKbak(t, e, "verify", want, "--read-data"); r.code != 0 {
			t.Errorf("verify --read-data %s after prune: %s", want, r)
		}
	}
	noLeftovers(t, e, ns, false)
}

// backupIDOf takes the id out of a backup's JSON output (its manifest).
func backupIDOf(t *testing.T, js string) string {
	t.Helper()
	var m catalog.Manifest
	if err := json.Unmarshal([]byte(js), &m); err != nil || m.ID == "" {
		t.Fatalf("no manifest in the backup output (%v): %s", err, js)
	}
	return m.ID
}

// A pack missing from the bucket fails verify and restore with one clear
// line naming what is missing, and the restore leaves nothing behind. The
// test uses a repository of its own (a prefix): packs are shared data.
func TestMissingPackFailsClearly(t *testing.T) {
	e := newEnv(t)
	ns := createNamespace(t, e, "inc-missing")
	url, st := ownRepository(t, e, ns)
	env := []string{"KBAK_REPO=" + url}

	sts := applyStatefulSet(t, e, ns, "db", 1, e.SnapClass)
	writeOrdinalData(t, e, ns, sts)
	r := runKbakEnv(t, e, env, "backup", "sts/db", "-n", ns, "-o", "json")
	if r.code != 0 {
		t.Fatalf("backup: %s", r)
	}
	id := backupIDOf(t, r.stdout)
	var packs []string
	st.List(ctx(t), repo.Keys.PackPrefix(), func(oi uploader.ObjectInfo) error { packs = append(packs, oi.Key); return nil })
	if len(packs) == 0 {
		t.Fatal("the backup wrote no pack")
	}
	if err := st.Delete(ctx(t), packs[0]); err != nil {
		t.Fatal(err)
	}

	r = runKbakEnv(t, e, env, "verify", id)
	if r.code != 1 || !strings.Contains(r.stdout, "missing") {
		t.Fatalf("verify with a pack gone: %s", r)
	}
	lastErrorLine(t, r, "failed the check")

	before := claimNames(t, e, ns)
	r = runKbakEnv(t, e, env, "restore", id, "--to-name", "bad", "--pod-start-timeout", "3m")
	if r.code != 1 {
		t.Fatalf("restore with a pack gone: %s", r)
	}
	lastErrorLine(t, r, "pack")
	if after := claimNames(t, e, ns); len(after) != len(before) {
		t.Errorf("a failed restore left claims: %v -> %v", before, after)
	}
	if _, err := e.Kube.AppsV1().StatefulSets(ns).Get(ctx(t), "bad", metav1.GetOptions{}); err == nil {
		t.Error("a failed restore created the StatefulSet")
	}
	noLeftovers(t, e, ns, false)
}
