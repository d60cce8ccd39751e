//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/kube"
	"github.com/kbak/kbak/internal/upkeep"
)

const boundProtection = "snapshot.storage.kubernetes.io/volumesnapshot-bound-protection"

// A CSI driver slow to delete snapshots keeps a backup's VolumeSnapshot
// under the snapshot controller's finalizers after kbak deleted it. The
// backup waits for it within --snapshot-gone-timeout; past that it reports
// it as still deleting (a warning, exit 0). The leftover check and kbak gc
// tell it from a leftover: gc lists it apart, not as a run to remove. With
// the default bound the backup outlasts a shorter delay and leaves nothing.
func TestBackupReportsSnapshotsStillDeleting(t *testing.T) {
	t.Parallel() // waits more than it works: beside the other waiters
	e := newEnv(t)
	ns := createNamespace(t, e, "snap-gone")
	sts := applyStatefulSet(t, e, ns, "db", 1, e.SnapClass)
	want := writeOrdinalData(t, e, ns, sts)
	setFault(t, e, "snapshot-delete-slow", ns, "40")

	// A single snapshot, by the name kbak gives it: gc lists it by that.
	m, r := backupJSON(t, e, ns, "db", 0, "--snapshot-gone-timeout", "5s", "--group", "never")
	if m.Status != catalog.StatusCompleted || m.Volumes[0].Method != catalog.MethodSnapshot {
		t.Fatalf("backup: status %s method %s, want a Completed snapshot backup\n%s", m.Status, m.Volumes[0].Method, r)
	}
	checkBackedUp(t, e, m, want)
	snap := kube.VolumeObjectName(m.ID, 0, "data")
	warned := false
	for line := range strings.Lines(r.stderr) {
		if strings.Contains(line, "VolumeSnapshots still deleting") {
			warned = true
			for _, w := range []string{ns + "/" + snap, boundProtection, "waited=5s"} {
				if !strings.Contains(line, w) {
					t.Errorf("still-deleting line does not name %q: %s", w, line)
				}
			}
		}
	}
	if !warned {
		t.Fatalf("backup does not report its snapshot as still deleting:\n%s", r)
	}
	left, deleting := leftovers(t, e, ns, false)
	if len(left) > 0 || !slices.Contains(deleting, "volumesnapshot/"+snap) {
		t.Fatalf("after the backup: left %v, deleting %v; want %s deleting and nothing left", left, deleting, snap)
	}

	// gc, with a grace shorter than the snapshot's age: under the old
	// rules its run would be a leftover and the snapshot deleted again.
	vs, err := e.Snap.SnapshotV1().VolumeSnapshots(ns).Get(ctx(t), snap, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for time.Since(vs.CreationTimestamp.Time) < 3*time.Second {
		time.Sleep(time.Second)
	}
	// Against a repository of its own, empty: the cluster is what this
	// test checks, and gc's prune of the shared repository waits for no
	// upload, so the backups of the tests running beside this one made it
	// fail with "repository is locked".
	own, _ := ownRepository(t, e, ns)
	g := runKbakEnv(t, e, []string{"KBAK_REPO=" + own}, "gc", "-n", ns, "--grace", "2s", "-o", "json")
	if g.code != 0 {
		t.Fatalf("gc: %s", g)
	}
	var res upkeep.GCResult
	if err := json.Unmarshal([]byte(g.stdout), &res); err != nil {
		t.Fatalf("decode gc output: %v\n%s", err, g.stdout)
	}
	for _, run := range res.Cluster {
		if run.Namespace == ns {
			t.Errorf("gc took run %s in %s for a leftover: its only object is a snapshot being deleted", run.ID, ns)
		}
	}
	var found *kube.SnapshotStatus
	for i, d := range res.Deleting {
		if d.Namespace == ns && d.Name == snap {
			found = &res.Deleting[i]
		}
	}
	switch {
	case found == nil:
		t.Errorf("gc does not list %s/%s as deleting: %+v", ns, snap, res.Deleting)
	case found.State != kube.SnapshotDeleting || found.RunID != m.ID || !slices.Contains(found.Finalizers, boundProtection) || found.Since.IsZero():
		t.Errorf("gc lists %+v, want it deleting, of run %s, held by %s", *found, m.ID, boundProtection)
	}
	table := runKbakEnv(t, e, []string{"KBAK_REPO=" + own}, "gc", "-n", ns, "--grace", "2s")
	if table.code != 0 || !strings.Contains(table.stdout, "volumesnapshot/"+snap) || !strings.Contains(table.stdout, "still deleting") {
		t.Errorf("gc table does not show %s as still deleting: %s", snap, table)
	}
	after, err := e.Snap.SnapshotV1().VolumeSnapshots(ns).Get(ctx(t), snap, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the snapshot went before the driver's delay was over: %v", err)
	}
	if !after.DeletionTimestamp.Equal(vs.DeletionTimestamp) {
		t.Errorf("deletion timestamp moved from %v to %v", vs.DeletionTimestamp, after.DeletionTimestamp)
	}
	content := kube.RefOf(after).Content
	waitFor(t, "VolumeSnapshot "+snap+" and its content gone", 3*time.Minute, func(c context.Context) (string, bool, error) {
		_, err := e.Snap.SnapshotV1().VolumeSnapshots(ns).Get(c, snap, metav1.GetOptions{})
		_, cerr := e.Snap.SnapshotV1().VolumeSnapshotContents().Get(c, content, metav1.GetOptions{})
		return fmt.Sprintf("snapshot: %v; content: %v", err, cerr), apierrors.IsNotFound(err) && apierrors.IsNotFound(cerr), nil
	})
	noLeftovers(t, e, ns, false)

	// Within the default bound (2m) the run waits the driver's 15 s out:
	// when it exits its snapshot is gone, content and all. This run cuts a
	// group snapshot (the bed's default): it waits for the group's member
	// as for a snapshot of its own.
	setFault(t, e, "snapshot-delete-slow", ns, "15")
	start := time.Now()
	m2, r2 := backupJSON(t, e, ns, "db", 0)
	if strings.Contains(r2.stderr, "still deleting") {
		t.Errorf("backup within the default bound reports a snapshot still deleting:\n%s", r2)
	}
	if d := time.Since(start); d < 15*time.Second {
		t.Errorf("backup took %s, less than the driver's 15 s delete: it did not wait", d)
	}
	snap2 := m2.Volumes[0].Snapshot.Name
	if m2.Volumes[0].Snapshot.Group == "" {
		t.Errorf("second backup: snapshot %+v, want a member of a group snapshot", m2.Volumes[0].Snapshot)
	}
	if _, err := e.Snap.SnapshotV1().VolumeSnapshots(ns).Get(ctx(t), snap2, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("snapshot %s after the backup: %v, want gone", snap2, err)
	}
	if left, deleting := leftovers(t, e, ns, false); len(left)+len(deleting) > 0 {
		t.Errorf("after a backup that waited: left %v, deleting %v", left, deleting)
	}
}

// sparseScript writes $1, a file of 1 GiB apparent size holding 6 MiB of
// random data at four offsets (one at the very end) and holes elsewhere,
// and prints its sha256.
const sparseScript = `set -e
f=$1
dd if=/dev/urandom of="$f" bs=1M count=2 seek=0 conv=notrunc 2>/dev/null
dd if=/dev/urandom of="$f" bs=1M count=1 seek=100 conv=notrunc 2>/dev/null
dd if=/dev/urandom of="$f" bs=1M count=2 seek=600 conv=notrunc 2>/dev/null
dd if=/dev/urandom of="$f" bs=1M count=1 seek=1023 conv=notrunc 2>/dev/null
truncate -s 1G "$f"
sync
sha256sum "$f"
`

// sparseStat is a file's apparent size, allocated bytes and sha256 as a pod
// sees them.
type sparseStat struct {
	size, alloc int64
	sum         string
}

func statSparse(t *testing.T, e *env, ns, pod, path string) sparseStat {
	t.Helper()
	out := mustExec(t, e, ns, pod, "app", "sh", "-c", `stat -c '%s %b %B' "$1"; sha256sum "$1"`, "stat", path)
	f := strings.Fields(out)
	if len(f) < 4 {
		t.Fatalf("stat of %s: %q", path, out)
	}
	size, err1 := strconv.ParseInt(f[0], 10, 64)
	blocks, err2 := strconv.ParseInt(f[1], 10, 64)
	unit, err3 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		t.Fatalf("stat of %s: %q", path, out)
	}
	return sparseStat{size: size, alloc: blocks * unit, sum: f[3]}
}

// allocatedUnder sums the bytes the file system allocated to the files
// under dir, and their apparent sizes.
func allocatedUnder(t *testing.T, dir string) (alloc, apparent int64) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		alloc += st.Blocks * 512
		if d.Type().IsRegular() {
			apparent += st.Size
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return alloc, apparent
}

// A volume with a 1 GiB sparse file backed up through a CSI snapshot and
// restored: the restored file has the same content and stays sparse, and
// the snapshot costs the bed's disk its data, not its apparent size.
func TestSparseFileSnapshotRoundTrip(t *testing.T) {
	t.Parallel() // its own namespace and backups: runs beside the others
	const gib = 1 << 30
	e := newEnv(t)
	ns := createNamespace(t, e, "sparse-snap")
	applyStatefulSet(t, e, ns, "db", 1, e.SnapClass, withClaims(newClaim("data").Size("2Gi")))
	path := "/data/sparse.img"
	mustExec(t, e, ns, "db-0", "app", "sh", "-c", sparseScript, "sparse", path)
	src := statSparse(t, e, ns, "db-0", path)
	if src.size != gib || src.alloc > 16<<20 {
		t.Fatalf("source file: %d bytes, %d allocated; want 1 GiB with a few MiB allocated", src.size, src.alloc)
	}

	// Kept, so the driver's copy of the volume can be measured.
	m, r := backupJSON(t, e, ns, "db", 0, "--method", "snapshot", "--keep-snapshots")
	if m.Status != catalog.StatusCompleted {
		t.Fatalf("backup: %s\n%s", m.Status, r)
	}
	v := m.Volumes[0]
	if v.Method != catalog.MethodSnapshot || v.Snapshot == nil || v.Snapshot.Handle == "" {
		t.Fatalf("volume %s: method %s snapshot %+v, want a kept snapshot with its handle", v.PVC, v.Method, v.Snapshot)
	}
	// The mover reads a claim made from the snapshot: only its data, when
	// the claim kept the holes.
	if v.RawBytes > 64<<20 {
		t.Errorf("the mover read %d bytes of the 1 GiB file's 6 MiB of data: the claim made from the snapshot lost its holes", v.RawBytes)
	}
	snapDir := filepath.Join(e.Dir, "csi", "snap", "state", "snapshots", v.Snapshot.Handle)
	alloc, apparent := allocatedUnder(t, snapDir)
	t.Logf("snapshot %s: %d bytes allocated for %d apparent (%.4f)", v.Snapshot.Handle, alloc, apparent, float64(alloc)/float64(apparent))
	if apparent < gib || alloc > 64<<20 {
		t.Errorf("snapshot of the volume allocates %d bytes for %d apparent: it is not sparse", alloc, apparent)
	}
	noLeftovers(t, e, ns, true)

	deleteStatefulSetAndClaims(t, e, ns, "db", 1)
	restoreJSON(t, e, 0, m.ID, "--create-statefulset")
	got := statSparse(t, e, ns, "db-0", path)
	if got.sum != src.sum || got.size != src.size {
		t.Errorf("restored file: %d bytes sha256 %s, want %d bytes sha256 %s", got.size, got.sum, src.size, src.sum)
	}
	t.Logf("restored file: %d bytes allocated of %d (source %d)", got.alloc, got.size, src.alloc)
	if got.alloc > 64<<20 {
		t.Errorf("restored file allocates %d bytes of its 1 GiB for 6 MiB of data: not sparse", got.alloc)
	}
	noLeftovers(t, e, ns, true)

	// Deleting the backup takes its kept snapshot with it.
	if d := runKbak(t, e, "delete", m.ID, "--yes"); d.code != 0 {
		t.Fatalf("delete %s: %s", m.ID, d)
	}
	noLeftovers(t, e, ns, false)
}
