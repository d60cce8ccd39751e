//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kbak/kbak/internal/catalog"
)

func volumesByPVC(m *catalog.Manifest) map[string]catalog.Volume {
	out := map[string]catalog.Volume{}
	for _, v := range m.Volumes {
		out[v.PVC] = v
	}
	return out
}

func TestBackupSnapshotThreeReplicas(t *testing.T) {
	t.Parallel() // its own namespace and backups: runs beside the others
	e := newEnv(t)
	ns := createNamespace(t, e, "bk-snap")
	sts := applyStatefulSet(t, e, ns, "db", 3, e.SnapClass)
	want := writeOrdinalData(t, e, ns, sts)

	m, r := backupJSON(t, e, ns, "db", 0)
	if m.Status != catalog.StatusCompleted || len(m.Volumes) != 3 {
		t.Fatalf("manifest status %s with %d volumes, want Completed with 3\n%s", m.Status, len(m.Volumes), r)
	}
	for i := range 3 {
		v, ok := volumesByPVC(m)[fmt.Sprintf("data-db-%d", i)]
		switch {
		case !ok:
			t.Errorf("no volume for ordinal %d", i)
		// The bed's driver has a default VolumeGroupSnapshotClass: --group
		// auto cuts the three claims in one group snapshot.
		case v.Method != catalog.MethodSnapshot || v.Consistency != catalog.ConsistencyGroup:
			t.Errorf("%s: method %s consistency %s, want snapshot and group", v.PVC, v.Method, v.Consistency)
		case v.Snapshot == nil || v.Snapshot.Retained || v.Snapshot.GroupClass != e.GroupSnapshotClass || v.Snapshot.Group == "":
			t.Errorf("%s: snapshot %+v, want a member of a group snapshot of class %s, not retained", v.PVC, v.Snapshot, e.GroupSnapshotClass)
		case v.StorageClass != e.SnapClass || !strings.HasSuffix(v.Key, ".tree") || v.Chunks == 0 || v.ReadBytes != v.RawBytes || v.Files == 0:
			t.Errorf("%s: class %s key %s chunks %d read %d of %d bytes, files %d; want a tree of the deduplicating repository, every byte read",
				v.PVC, v.StorageClass, v.Key, v.Chunks, v.ReadBytes, v.RawBytes, v.Files)
		}
	}
	if m.Spec.Name != "db" || len(m.Spec.Spec.VolumeClaimTemplates) != 1 || m.Spec.UID != "" || m.Spec.ResourceVersion != "" {
		t.Errorf("manifest StatefulSet: name %q, %d templates, uid %q, resourceVersion %q",
			m.Spec.Name, len(m.Spec.Spec.VolumeClaimTemplates), m.Spec.UID, m.Spec.ResourceVersion)
	}
	if m.ClusterID == "" {
		t.Error("manifest has no cluster id")
	}
	checkBackedUp(t, e, m, want)
	noLeftovers(t, e, ns, false)

	// The backup is listed from the repository.
	l := runKbak(t, e, "list", "-n", ns)
	if l.code != 0 || !strings.Contains(l.stdout, m.ID) || !strings.Contains(l.stdout, "Completed") {
		t.Errorf("kbak list does not show %s as Completed: %s", m.ID, l)
	}
}

func TestBackupFilesPath(t *testing.T) {
	t.Parallel() // its own namespace and backups: runs beside the others
	e := newEnv(t)
	ns := createNamespace(t, e, "bk-files")
	sts := applyStatefulSet(t, e, ns, "db", 2, e.NoSnapClass)
	want := writeOrdinalData(t, e, ns, sts)

	m, r := backupJSON(t, e, ns, "db", 0)
	if m.Status != catalog.StatusCompleted || len(m.Volumes) != 2 {
		t.Fatalf("manifest status %s with %d volumes, want Completed with 2\n%s", m.Status, len(m.Volumes), r)
	}
	for _, v := range m.Volumes {
		if v.Method != catalog.MethodFiles || v.Consistency != catalog.ConsistencyLive || v.Snapshot != nil {
			t.Errorf("%s: method %s consistency %s snapshot %+v, want files, live, none", v.PVC, v.Method, v.Consistency, v.Snapshot)
		}
	}
	checkBackedUp(t, e, m, want)
	noLeftovers(t, e, ns, false)

	// Forcing the snapshot method on a driver without snapshots is refused
	// before anything is created.
	r = runKbak(t, e, "backup", "sts/db", "-n", ns, "--method", "snapshot")
	if r.code == 0 {
		t.Fatalf("--method snapshot on %s succeeded: %s", e.NoSnapClass, r)
	}
	lastErrorLine(t, r, "VolumeSnapshotClass", "--method files")
	noLeftovers(t, e, ns, false)
}

func TestBackupTwoClaimTemplates(t *testing.T) {
	t.Parallel() // its own namespace and backups: runs beside the others
	e := newEnv(t)
	ns := createNamespace(t, e, "bk-two")
	sts := applyStatefulSet(t, e, ns, "db", 2, e.SnapClass,
		withClaims(newClaim("data"), newClaim("wal").MountAt("/wal").Class(e.NoSnapClass)))
	want := writeOrdinalData(t, e, ns, sts)

	m, r := backupJSON(t, e, ns, "db", 0)
	if m.Status != catalog.StatusCompleted || len(m.Volumes) != 4 {
		t.Fatalf("manifest status %s with %d volumes, want Completed with 4\n%s", m.Status, len(m.Volumes), r)
	}
	byPVC := volumesByPVC(m)
	for i := range 2 {
		if v := byPVC[fmt.Sprintf("data-db-%d", i)]; v.Method != catalog.MethodSnapshot || v.ClaimTemplate != "data" {
			t.Errorf("data-db-%d: %+v", i, v)
		}
		if v := byPVC[fmt.Sprintf("wal-db-%d", i)]; v.Method != catalog.MethodFiles || v.ClaimTemplate != "wal" {
			t.Errorf("wal-db-%d: method %s template %s, want files and wal", i, v.Method, v.ClaimTemplate)
		}
	}
	checkBackedUp(t, e, m, want)
	noLeftovers(t, e, ns, false)
}

func TestBackupRetainedOrdinal(t *testing.T) {
	t.Parallel() // its own namespace and backups: runs beside the others
	e := newEnv(t)
	ns := createNamespace(t, e, "bk-retained")
	sts := applyStatefulSet(t, e, ns, "db", 3, e.SnapClass)
	want := writeOrdinalData(t, e, ns, sts)
	// Scale down: the claim of ordinal 2 stays (the default retention policy).
	applyStatefulSet(t, e, ns, "db", 2, e.SnapClass)
	waitFor(t, "pod db-2 gone", 2*time.Minute, func(c context.Context) (string, bool, error) {
		_, err := e.Kube.CoreV1().Pods(ns).Get(c, "db-2", metav1.GetOptions{})
		return fmt.Sprint(err), err != nil, nil
	})

	m, r := backupJSON(t, e, ns, "db", 0)
	v := volumesByPVC(m)["data-db-2"]
	if m.Status != catalog.StatusCompleted || v.Status != catalog.VolumeSkipped || !strings.Contains(v.Error, "--include-retained") {
		t.Fatalf("without --include-retained: status %s, data-db-2 %s %q\n%s", m.Status, v.Status, v.Error, r)
	}
	if !strings.Contains(r.stderr, "data-db-2") {
		t.Errorf("the retained claim is not reported on stderr:\n%s", r.stderr)
	}

	m, r = backupJSON(t, e, ns, "db", 0, "--include-retained")
	if m.Status != catalog.StatusCompleted || len(m.Volumes) != 3 || volumesByPVC(m)["data-db-2"].Status != catalog.VolumeCompleted {
		t.Fatalf("with --include-retained: %s\n%s", m.Status, r)
	}
	checkBackedUp(t, e, m, want)
	noLeftovers(t, e, ns, false)
}

// hookLog reads the hook marks a pod collected, in order.
func hookLog(t *testing.T, e *env, ns, pod string) []string {
	t.Helper()
	out, _, err := podExec(ctx(t), e, ns, pod, "app", nil, "sh", "-c", "cat /tmp/hooks 2>/dev/null || true")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(out)
}

func TestBackupHooks(t *testing.T) {
	e := newEnv(t)
	ns := createNamespace(t, e, "bk-hooks")
	applyStatefulSet(t, e, ns, "db", 2, e.SnapClass)

	// Each hook appends a mark to a file in the pod; the file's order is the
	// order the hooks ran in.
	mark := func(name string) string {
		return fmt.Sprintf(`echo %s-$(date +%%s) >> /tmp/hooks`, name)
	}
	m, _ := backupJSON(t, e, ns, "db", 0, "--pre-hook", mark("pre"), "--post-hook", mark("post"))
	for _, v := range m.Volumes {
		if v.Consistency != catalog.ConsistencyQuiesced {
			t.Errorf("%s: consistency %s with hooks, want quiesced", v.PVC, v.Consistency)
		}
	}
	if len(m.Hooks) != 4 {
		t.Errorf("manifest records %d hook runs, want 4 (pre and post in 2 pods): %+v", len(m.Hooks), m.Hooks)
	}
	for _, pod := range []string{"db-0", "db-1"} {
		marks := hookLog(t, e, ns, pod)
		if len(marks) != 2 || !strings.HasPrefix(marks[0], "pre-") || !strings.HasPrefix(marks[1], "post-") {
			t.Errorf("pod %s hook marks %v, want pre then post", pod, marks)
		}
	}
	// The snapshots were cut between the hooks: record times bracket the spread.
	var pre, post time.Time
	for _, h := range m.Hooks {
		if h.Phase == "pre" && h.Finished.After(pre) {
			pre = h.Finished
		}
		if h.Phase == "post" && (post.IsZero() || h.Started.Before(post)) {
			post = h.Started
		}
	}
	if !pre.Before(post) {
		t.Errorf("last pre-hook finished %s, first post-hook started %s: want pre before post", pre, post)
	}
	noLeftovers(t, e, ns, false)

	// A failing pre-hook: no snapshot is cut, the post-hook still runs,
	// nothing is kept.
	r := runKbak(t, e, "backup", "sts/db", "-n", ns, "--pre-hook", mark("pre2")+"; exit 7", "--post-hook", mark("post2"))
	if r.code != 1 {
		t.Fatalf("backup with a failing pre-hook: %s", r)
	}
	lastErrorLine(t, r, "hook")
	for _, pod := range []string{"db-0", "db-1"} {
		if marks := hookLog(t, e, ns, pod); !slices.ContainsFunc(marks, func(s string) bool { return strings.HasPrefix(s, "post2-") }) {
			t.Errorf("pod %s: the post-hook did not run after a failed pre-hook: %v", pod, marks)
		}
	}
	noLeftovers(t, e, ns, false)
	if keys := objectsOf(t, e, ns); len(keys) != countKeys(t, e, m) {
		t.Errorf("a failed backup left objects in the repository: %v", keys)
	}
}

// countKeys is the number of objects backup m keeps in the repository.
func countKeys(t *testing.T, e *env, m *catalog.Manifest) int {
	t.Helper()
	n := 0
	for _, k := range objectsOf(t, e, m.Namespace) {
		if strings.Contains(k, "/"+m.ID+"/") {
			n++
		}
	}
	return n
}

func TestBackupInterrupted(t *testing.T) {
	e := newEnv(t)
	ns := createNamespace(t, e, "bk-sigint")
	applyStatefulSet(t, e, ns, "db", 2, e.SnapClass, withClaims(newClaim("data").Size("2Gi")))
	// Enough incompressible data that the upload is still running when the
	// signal arrives.
	for i := range 2 {
		mustExec(t, e, ns, fmt.Sprintf("db-%d", i), "app", "sh", "-c", "head -c 400000000 /dev/urandom > /data/big.bin && sync")
	}

	cmd, _, errb := kbakCmd(t, e, "backup", "sts/db", "-n", ns, "--parallel", "2")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var uploading atomic.Bool
	r := sigint(t, cmd, func() bool {
		// Interrupt once a mover reports bytes moved.
		if strings.Contains(errb.String(), "/s") {
			uploading.Store(true)
		}
		return uploading.Load()
	})
	t.Logf("kbak stderr:\n%s", indent(errb.String()))
	if r.code != 130 {
		t.Errorf("exit code after SIGINT %d, want 130", r.code)
	}
	noLeftovers(t, e, ns, false)
	if keys := objectsOf(t, e, ns); len(keys) != 0 {
		t.Errorf("an interrupted backup left objects: %v", keys)
	}
	noIncompleteUploads(t, e)
}

func TestBackupErrors(t *testing.T) {
	e := newEnv(t)
	ns := createNamespace(t, e, "bk-errors")
	applyStatefulSet(t, e, ns, "db", 1, e.SnapClass)

	t.Run("unknown StatefulSet", func(t *testing.T) {
		r := runKbak(t, e, "backup", "sts/nope", "-n", ns)
		if r.code != 1 {
			t.Fatalf("%s", r)
		}
		lastErrorLine(t, r, "nope", "not found")
	})
	t.Run("StatefulSet without claim templates", func(t *testing.T) {
		applyStatefulSet(t, e, ns, "plain", 1, e.SnapClass, withClaims())
		r := runKbak(t, e, "backup", "sts/plain", "-n", ns)
		if r.code != 1 {
			t.Fatalf("%s", r)
		}
		lastErrorLine(t, r, "plain", "claim")
	})
	t.Run("unreachable store", func(t *testing.T) {
		r := runKbak(t, e, "backup", "sts/db", "-n", ns, "--repo", "s3://kbak-e2e?endpoint=http://127.0.0.1:9&region=us-east-1")
		if r.code != 1 {
			t.Fatalf("%s", r)
		}
		lastErrorLine(t, r, "127.0.0.1:9")
	})
	t.Run("snapshot error", func(t *testing.T) {
		setFault(t, e, "snapshot-error", ns, "injected: disk on fire")
		r := runKbak(t, e, "backup", "sts/db", "-n", ns)
		if r.code != 1 {
			t.Fatalf("%s", r)
		}
		lastErrorLine(t, r, "disk on fire")
	})
	t.Run("mover image cannot start", func(t *testing.T) {
		r := runKbak(t, e, "backup", "sts/db", "-n", ns, "--mover-image", "kbak.local/no-such-image:1", "--mover-pull-policy", "Never", "--pod-start-timeout", "2m")
		if r.code != 1 {
			t.Fatalf("%s", r)
		}
		lastErrorLine(t, r, "no-such-image")
	})
	noLeftovers(t, e, ns, false)
	if keys := objectsOf(t, e, ns); len(keys) != 0 {
		t.Errorf("failed backups left objects: %v", keys)
	}
}

func TestBackupKeepSnapshots(t *testing.T) {
	e := newEnv(t)
	ns := createNamespace(t, e, "bk-keep")
	applyStatefulSet(t, e, ns, "db", 1, e.SnapClass)
	m, _ := backupJSON(t, e, ns, "db", 0, "--keep-snapshots")
	v := m.Volumes[0]
	if v.Snapshot == nil || !v.Snapshot.Retained {
		t.Fatalf("snapshot %+v, want retained", v.Snapshot)
	}
	if _, err := e.Snap.SnapshotV1().VolumeSnapshots(ns).Get(ctx(t), v.Snapshot.Name, metav1.GetOptions{}); err != nil {
		t.Fatalf("kept snapshot: %v", err)
	}
	noLeftovers(t, e, ns, true)
	// Deleting the backup deletes the snapshot it kept.
	if r := runKbak(t, e, "delete", m.ID, "--yes"); r.code != 0 {
		t.Fatalf("%s", r)
	}
	waitFor(t, "kept snapshot deleted", time.Minute, func(c context.Context) (string, bool, error) {
		_, err := e.Snap.SnapshotV1().VolumeSnapshots(ns).Get(c, v.Snapshot.Name, metav1.GetOptions{})
		return fmt.Sprint(err), err != nil, nil
	})
	noLeftovers(t, e, ns, false)
}
