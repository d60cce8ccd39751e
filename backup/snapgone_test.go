package backup

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kbak/kbak/internal/kube"
)

// syncBuffer is a log a test reads while the run may still write.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// holdSnapshotDeletes has the fake act as the snapshot controller does on a
// delete: the snapshot stays, marked deleted and held by its bound-protection
// finalizer, until the finalizer goes after releaseAfter gets of it (0:
// never).
func holdSnapshotDeletes(t *testing.T, f *fixture, releaseAfter int32) (deletes *atomic.Int32) {
	t.Helper()
	deletes = new(atomic.Int32)
	gvr := snapv1.SchemeGroupVersion.WithResource("volumesnapshots")
	f.sc.PrependReactor("delete", "volumesnapshots", func(a k8stesting.Action) (bool, runtime.Object, error) {
		deletes.Add(1)
		o, err := f.sc.Tracker().Get(gvr, a.GetNamespace(), a.(k8stesting.DeleteAction).GetName())
		if err != nil {
			return true, nil, err
		}
		vs := o.(*snapv1.VolumeSnapshot).DeepCopy()
		now := metav1.Now()
		vs.DeletionTimestamp = &now
		vs.Finalizers = []string{"snapshot.storage.kubernetes.io/volumesnapshot-bound-protection"}
		return true, nil, f.sc.Tracker().Update(gvr, vs, a.GetNamespace())
	})
	var gets atomic.Int32
	f.sc.PrependReactor("get", "volumesnapshots", func(a k8stesting.Action) (bool, runtime.Object, error) {
		o, err := f.sc.Tracker().Get(gvr, a.GetNamespace(), a.(k8stesting.GetAction).GetName())
		if err != nil || o.(*snapv1.VolumeSnapshot).DeletionTimestamp == nil {
			return false, nil, nil
		}
		if releaseAfter > 0 && gets.Add(1) == releaseAfter {
			if err := f.sc.Tracker().Delete(gvr, a.GetNamespace(), a.(k8stesting.GetAction).GetName()); err != nil {
				t.Error(err)
			}
		}
		return false, nil, nil
	})
	return deletes
}

// snapshotRun is a run of backup id that made one snapshot (not kept), and
// its log.
func snapshotRun(t *testing.T, f *fixture, goneTimeout time.Duration) (*run, *syncBuffer) {
	t.Helper()
	o := opts()
	o.SnapshotGoneTimeout = goneTimeout
	o.setDefaults()
	logs := &syncBuffer{}
	d := f.deps()
	d.Log = slog.New(slog.NewTextHandler(logs, nil))
	name := kube.VolumeObjectName(id, 0, "data")
	vs := kube.NewVolumeSnapshot(ns, name, "data-db-0", "snap", kube.Labels(id, "db", kube.RoleSnapshot))
	vs.UID = "uid-0"
	if _, err := f.sc.SnapshotV1().VolumeSnapshots(ns).Create(context.Background(), vs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return &run{deps: d, opts: o, id: id, log: d.Log}, logs
}

// A snapshot the snapshot controller holds for a while after kbak deleted
// it: the run waits until it is gone and says nothing of it.
func TestCleanupWaitsForSnapshotsToGo(t *testing.T) {
	f := newFixture(1, []int{0})
	deletes := holdSnapshotDeletes(t, f, 5)
	r, logs := snapshotRun(t, f, time.Minute)
	start := time.Now()
	if err := r.deleteObjects(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("cleanup took %s: it waited for the timeout, not for the snapshot", d)
	}
	if left := f.leftovers(t); len(left) != 0 {
		t.Errorf("left after cleanup: %v", left)
	}
	if n := deletes.Load(); n != 1 {
		t.Errorf("%d DELETE calls, want 1", n)
	}
	if strings.Contains(logs.String(), "still deleting") {
		t.Errorf("a snapshot that went is reported as still deleting:\n%s", logs)
	}
}

// A snapshot the controller does not let go within the bound: the run ends
// at the bound, reports it as still deleting (a warning naming it and what
// holds it), and that is no error.
func TestCleanupReportsSnapshotsStillDeleting(t *testing.T) {
	f := newFixture(1, []int{0})
	deletes := holdSnapshotDeletes(t, f, 0)
	r, logs := snapshotRun(t, f, 50*time.Millisecond)
	start := time.Now()
	if err := r.deleteObjects(context.Background()); err != nil {
		t.Fatalf("a snapshot still deleting is no error: %v", err)
	}
	if d := time.Since(start); d < 50*time.Millisecond || d > 30*time.Second {
		t.Errorf("cleanup took %s, want the 50ms bound", d)
	}
	out := logs.String()
	name := kube.VolumeObjectName(id, 0, "data")
	for _, want := range []string{"level=WARN", "VolumeSnapshots still deleting", ns + "/" + name, "volumesnapshot-bound-protection"} {
		if !strings.Contains(out, want) {
			t.Errorf("log does not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "not deleted") {
		t.Errorf("a snapshot being deleted is reported as left behind:\n%s", out)
	}
	// A second cleanup (a retry) does not delete it again.
	if err := r.deleteObjects(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := deletes.Load(); n != 1 {
		t.Errorf("%d DELETE calls, want 1", n)
	}
}
