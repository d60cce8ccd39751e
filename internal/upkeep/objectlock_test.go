package upkeep

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	snapfake "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/fake"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/catalog/catalogtest"
	"github.com/kbak/kbak/internal/kube"
	"github.com/kbak/kbak/internal/repo"
	"github.com/kbak/kbak/internal/retention"
	"github.com/kbak/kbak/internal/seal"
	"github.com/kbak/kbak/uploader"
)

var lockT0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// writeArchiveBackup stores a one-volume backup of format 1 that kept a
// VolumeSnapshot, created hoursAgo before lockT0.
func writeArchiveBackup(t *testing.T, s catalog.Store, hoursAgo int) *catalog.Manifest {
	t.Helper()
	ctx := context.Background()
	created := lockT0.Add(-time.Duration(hoursAgo) * time.Hour)
	id := fmt.Sprintf("db-%s-%04x", created.Format("20060102T150405Z"), hoursAgo)
	l := catalog.Layout{Namespace: "shop", StatefulSet: "db", ID: id}
	data := []byte("archive of " + id)
	if err := s.Put(ctx, l.VolumeKey("data-db-0"), bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	m := &catalog.Manifest{ID: id, Namespace: "shop", StatefulSet: "db", Created: created, Started: created, Finished: created,
		Status: catalog.StatusCompleted, Volumes: []catalog.Volume{{
			ClaimTemplate: "data", PVC: "data-db-0", Method: catalog.MethodSnapshot, Consistency: catalog.ConsistencyCrash,
			Key: l.VolumeKey("data-db-0"), StoredBytes: int64(len(data)), SHA256: fmt.Sprintf("%x", sha256.Sum256(data)), Status: catalog.VolumeCompleted,
			Snapshot: &catalog.Snapshot{Namespace: "shop", Name: kube.VolumeObjectName(id, 0, "data"), Retained: true},
		}}}
	if err := catalog.New(s, seal.Key{}).WriteManifest(ctx, m); err != nil {
		t.Fatal(err)
	}
	return m
}

// deniedStore may write but not delete, as the credentials of an
// append-only schedule.
type deniedStore struct{ catalog.Store }

func (deniedStore) Delete(_ context.Context, key string) error {
	return fmt.Errorf("delete %s: %w: api error AccessDenied: Access Denied.", key, uploader.ErrAccessDenied)
}

// Pruning after a backup leaves a backup that Object Lock keeps whole,
// listed and with its kept snapshot, and says so; a store that denies the
// deletes makes a warning, not a failure.
func TestPruneAfterObjectLock(t *testing.T) {
	ctx := context.Background()
	s := catalogtest.NewMemStore(func() time.Time { return lockT0 })
	old := writeArchiveBackup(t, s, 3)
	mid := writeArchiveBackup(t, s, 2)
	newest := writeArchiveBackup(t, s, 1)
	until := lockT0.Add(30 * 24 * time.Hour)
	for _, k := range s.Keys() {
		if strings.Contains(k, "/"+mid.ID+"/") {
			s.Retain(k, until)
		}
	}
	sc := snapfake.NewSimpleClientset(keptSnap(old.ID, 0), keptSnap(mid.ID, 0), keptSnap(newest.ID, 0))
	cat := catalog.New(s, seal.Key{})

	p, err := PruneAfter(ctx, cat, sc, newest, PruneOptions{Policy: retention.Policy{KeepLast: 1}})
	if err != nil {
		t.Fatalf("prune with a locked backup: %v, want no error", err)
	}
	lb, ok := p.LockedBackup(mid.ID)
	if !ok || !lb.Listed || !lb.Until.Equal(until) || len(p.Locked) != 1 {
		t.Errorf("locked %+v, want %s kept whole until %v", p.Locked, mid.ID, until)
	}
	list, _ := cat.List(ctx, catalog.Filter{})
	var ids []string
	for _, sum := range list {
		ids = append(ids, sum.ID)
	}
	if want := []string{newest.ID, mid.ID}; !slices.Equal(ids, want) {
		t.Errorf("listed %v after pruning, want %v: the old one pruned, the locked one kept", ids, want)
	}
	snaps, _ := sc.SnapshotV1().VolumeSnapshots("shop").List(ctx, metav1.ListOptions{})
	var left []string
	for _, sn := range snaps.Items {
		left = append(left, sn.Name)
	}
	slices.Sort(left)
	if want := []string{kube.VolumeObjectName(mid.ID, 0, "data"), kube.VolumeObjectName(newest.ID, 0, "data")}; !slices.Equal(left, want) {
		t.Errorf("snapshots left %v, want %v: a kept backup keeps its snapshot", left, want)
	}

	p, err = PruneAfter(ctx, catalog.New(deniedStore{s}, seal.Key{}), sc, newest, PruneOptions{Policy: retention.Policy{KeepLast: 1}})
	if err != nil {
		t.Fatalf("prune denied by the store: %v, want a warning only", err)
	}
	if !strings.Contains(p.Denied, "pruning was denied") || !strings.Contains(p.Denied, newest.ID+" completed") || strings.Contains(p.Denied, "\n") {
		t.Errorf("Denied = %q, want one line saying the backup completed and pruning was denied", p.Denied)
	}
	if len(s.Keys()) == 0 || len(p.Deleted) != 0 {
		t.Errorf("a denied prune deleted %v", p.Deleted)
	}
	// Any other failure is still one.
	if _, err := PruneAfter(ctx, catalog.New(&failingStore{s}, seal.Key{}), sc, newest, PruneOptions{Policy: retention.Policy{KeepLast: 1}}); err == nil {
		t.Error("prune through a failing store succeeded")
	}
}

type failingStore struct{ catalog.Store }

func (*failingStore) Delete(context.Context, string) error {
	return errors.New("connection reset by peer")
}

// fakeUploads is a store's incomplete multipart uploads.
type fakeUploads struct {
	ups     []uploader.IncompleteUpload
	aborted []string // prefix and age of AbortStaleUploads calls
}

func (f *fakeUploads) IncompleteUploads(_ context.Context, prefix string) ([]uploader.IncompleteUpload, error) {
	if f.ups == nil {
		return nil, fmt.Errorf("list multipart uploads under %s: %w: api error AccessDenied", prefix, uploader.ErrAccessDenied)
	}
	return f.ups, nil
}

func (f *fakeUploads) AbortStaleUploads(_ context.Context, prefix string, olderThan time.Duration) (int, error) {
	f.aborted = append(f.aborted, fmt.Sprintf("%s %s", prefix, olderThan))
	return 1, nil
}

// gc reports what Object Lock keeps as locked, not as an error, and
// aborts the multipart uploads older than the upload grace (a dry run
// counts them).
func TestGCObjectLockAndUploads(t *testing.T) {
	until := lockT0.Add(time.Hour)
	cat := &memCatalog{orphans: []catalog.Orphan{{ID: "db-x", Objects: 3, Locked: repo.LockedObjects{Objects: 3, Until: until}}}}
	ups := &fakeUploads{ups: []uploader.IncompleteUpload{
		{Key: "kbak/v2/data/aa/aa", Initiated: lockT0.Add(-48 * time.Hour)},
		{Key: "kbak/v2/data/bb/bb", Initiated: lockT0.Add(-time.Hour)},
	}}
	res, err := GC(context.Background(), cat, GCOptions{Now: lockT0, DryRun: true, Uploads: ups})
	if err != nil || res.StaleUploads != 1 || len(ups.aborted) != 0 {
		t.Errorf("dry run: %+v, %v, aborted %v; want one stale upload counted and none aborted", res, err, ups.aborted)
	}
	if l := res.Locked(); l.Objects != 3 || !l.Until.Equal(until) {
		t.Errorf("locked %+v, want 3 objects until %v", l, until)
	}
	res, err = GC(context.Background(), cat, GCOptions{Now: lockT0, Uploads: ups, UploadGrace: 6 * time.Hour})
	if err != nil || res.StaleUploads != 1 || !slices.Equal(ups.aborted, []string{"kbak/ 6h0m0s"}) {
		t.Errorf("gc: %+v, %v, aborted %v; want the uploads under kbak/ older than 6h aborted", res, err, ups.aborted)
	}
	// Credentials that may not list uploads: said, not failed.
	res, err = GC(context.Background(), cat, GCOptions{Now: lockT0, DryRun: true, Uploads: &fakeUploads{}})
	if err != nil || !strings.Contains(res.UploadsSkipped, "access denied") {
		t.Errorf("gc with uploads denied: %+v, %v; want them skipped with the reason, and no error", res, err)
	}
}
