//go:build e2e

package e2e

import (
	"maps"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kbak/kbak/internal/catalog"
)

// claimLabels records the labels of every claim in ns, to show that a
// backup changed nothing of the source claims.
func claimLabels(t *testing.T, e *env, ns string) map[string]map[string]string {
	t.Helper()
	l, err := e.Kube.CoreV1().PersistentVolumeClaims(ns).List(ctx(t), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]string{}
	for _, p := range l.Items {
		out[p.Name] = p.Labels
	}
	return out
}

func sameClaimLabels(t *testing.T, before, after map[string]map[string]string) {
	t.Helper()
	for name, l := range before {
		if !maps.Equal(l, after[name]) {
			t.Errorf("claim %s: labels %v before the backup, %v after", name, l, after[name])
		}
	}
}

// A StatefulSet with two claim templates and three replicas is cut in one
// VolumeGroupSnapshot of six members, which feed the movers as single
// snapshots do; it restores to the same data and nothing is left.
func TestGroupSnapshotBackupRestore(t *testing.T) {
	t.Parallel() // waits more than it works: beside the other waiters
	e := newEnv(t)
	ns := createNamespace(t, e, "grp")
	sts := applyStatefulSet(t, e, ns, "db", 3, e.SnapClass,
		withClaims(newClaim("data"), newClaim("wal").MountAt("/wal")))
	want := writeOrdinalData(t, e, ns, sts)
	before := claimLabels(t, e, ns)

	m, r := backupJSON(t, e, ns, "db", 0, "--group", "always")
	if m.Status != catalog.StatusCompleted || len(m.Volumes) != 6 {
		t.Fatalf("manifest status %s with %d volumes, want Completed with 6\n%s", m.Status, len(m.Volumes), r)
	}
	groups := map[string]int{}
	members := map[string]bool{}
	for _, v := range m.Volumes {
		if v.Method != catalog.MethodSnapshot || v.Consistency != catalog.ConsistencyGroup || v.Snapshot == nil {
			t.Fatalf("%s: method %s consistency %s snapshot %+v, want a group member", v.PVC, v.Method, v.Consistency, v.Snapshot)
		}
		if v.Snapshot.GroupClass != e.GroupSnapshotClass || v.Snapshot.Retained {
			t.Errorf("%s: group class %q retained %v, want %s and not kept", v.PVC, v.Snapshot.GroupClass, v.Snapshot.Retained, e.GroupSnapshotClass)
		}
		groups[v.Snapshot.Group]++
		members[v.Snapshot.Name] = true
	}
	if len(groups) != 1 || groups[m.Volumes[0].Snapshot.Group] != 6 || len(members) != 6 {
		t.Fatalf("group snapshots %v with %d distinct members, want one group of 6", groups, len(members))
	}
	// The driver gives every member the group's creation time.
	if m.SnapshotSpread.Duration != 0 {
		t.Errorf("snapshot spread %s, want 0 for one group snapshot", m.SnapshotSpread.Duration)
	}
	checkBackedUp(t, e, m, want)
	sameClaimLabels(t, before, claimLabels(t, e, ns))
	noLeftovers(t, e, ns, false)

	ns2 := createNamespace(t, e, "grp-to")
	res, _ := restoreJSON(t, e, 0, m.ID, "--to-namespace", ns2, "--create-statefulset")
	if !res.StatefulSetReady {
		t.Fatalf("restored StatefulSet not ready: %+v", res)
	}
	compareRecords(t, want, readStatefulSetData(t, e, ns2, statefulSet(t, e, ns2, "db")))
	noLeftovers(t, e, ns2, false)
}

// --group always on a driver without a VolumeGroupSnapshotClass is one
// line and exit 2, before anything is created.
func TestGroupAlwaysRefusedWithoutGroupClass(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ns := createNamespace(t, e, "grp-no")
	applyStatefulSet(t, e, ns, "db", 1, e.NoSnapClass)
	before := claimLabels(t, e, ns)
	r := runKbak(t, e, "backup", "sts/db", "-n", ns, "--group", "always")
	if r.code != 2 {
		t.Fatalf("want exit 2, got %s", r)
	}
	lastErrorLine(t, r, "--group always", "data-db-0")
	sameClaimLabels(t, before, claimLabels(t, e, ns))
	noLeftovers(t, e, ns, false)
	if keys := objectsOf(t, e, ns); len(keys) != 0 {
		t.Errorf("a refused backup wrote objects: %v", keys)
	}
	// An unknown mode is refused the same way.
	if r := runKbak(t, e, "backup", "sts/db", "-n", ns, "--group", "sometimes"); r.code != 2 {
		t.Errorf("--group sometimes: %s", r)
	}
}

// A group snapshot the storage fails fails the backup with the driver's
// message and leaves nothing: no group snapshot, no member, no content,
// no label on the claims, no objects in the store.
func TestGroupSnapshotErrorLeavesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ns := createNamespace(t, e, "grp-err")
	applyStatefulSet(t, e, ns, "db", 2, e.SnapClass)
	before := claimLabels(t, e, ns)
	setFault(t, e, "group-snapshot-error", ns, "injected: group on fire")
	r := runKbak(t, e, "backup", "sts/db", "-n", ns)
	if r.code != 1 {
		t.Fatalf("want exit 1, got %s", r)
	}
	lastErrorLine(t, r, "group on fire")
	sameClaimLabels(t, before, claimLabels(t, e, ns))
	noLeftovers(t, e, ns, false)
	if keys := objectsOf(t, e, ns); len(keys) != 0 {
		t.Errorf("a failed backup left objects: %v", keys)
	}
	// With --group never the same storage cuts single snapshots.
	m, r := backupJSON(t, e, ns, "db", 0, "--group", "never")
	for _, v := range m.Volumes {
		if v.Consistency != catalog.ConsistencyCrash || v.Snapshot == nil || v.Snapshot.Group != "" {
			t.Errorf("%s with --group never: consistency %s snapshot %+v\n%s", v.PVC, v.Consistency, v.Snapshot, r)
		}
	}
	noLeftovers(t, e, ns, false)
}
