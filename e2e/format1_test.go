//go:build e2e

package e2e

import (
	"strings"
	"testing"

	"github.com/kbak/kbak/internal/catalog"
)

// A backup of format 1 (one tar+zstd archive a volume, what kbak wrote
// before the deduplicating repository) stays restorable into the cluster
// beside format 2 backups of the same StatefulSet, and the first format 2
// backup after it reads every file (a format 1 backup is no parent).
func TestFormat1BackupRestores(t *testing.T) {
	t.Parallel() // its own namespace and backups: runs beside the others
	e := newEnv(t)
	ns := createNamespace(t, e, "inc-f1")
	sts := applyStatefulSet(t, e, ns, "db", 2, e.SnapClass)
	want := writeOrdinalData(t, e, ns, sts)
	m1, _ := backupJSON(t, e, ns, "db", 0, "--format", "1")
	for _, v := range m1.Volumes {
		if m1.Format != 0 || !strings.HasSuffix(v.Key, ".tar.zst") || v.SHA256 == "" {
			t.Fatalf("--format 1 backup: format %d, volume %s key %s sha256 %q", m1.Format, v.PVC, v.Key, v.SHA256)
		}
	}
	m2, _ := backupJSON(t, e, ns, "db", 0)
	for _, v := range m2.Volumes {
		if m2.Format != catalog.FormatRepo || v.Parent != "" || v.ReadBytes != v.RawBytes {
			t.Errorf("format 2 backup after a format 1 one: %s parent %q, read %d of %d", v.PVC, v.Parent, v.ReadBytes, v.RawBytes)
		}
	}
	if r := runKbak(t, e, "verify", m1.ID); r.code != 0 {
		t.Fatalf("verify the format 1 backup: %s", r)
	}
	deleteStatefulSetAndClaims(t, e, ns, "db", 2)
	res, _ := restoreJSON(t, e, 0, m1.ID, "--create-statefulset")
	if !res.StatefulSetReady {
		t.Fatalf("restored StatefulSet not ready: %+v", res)
	}
	compareRecords(t, want, readStatefulSetData(t, e, ns, statefulSet(t, e, ns, "db")))
	noLeftovers(t, e, ns, false)
}
