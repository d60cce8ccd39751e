package schedule

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapfake "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/fake"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kbak/kbak/backup"
	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/kube"
	"github.com/kbak/kbak/internal/repo"
	"github.com/kbak/kbak/uploader"
)

// memCatalog keeps whole manifests, as the store would.
type memCatalog struct {
	manifests []*catalog.Manifest
}

var _ RunnerCatalog = &memCatalog{}

func (c *memCatalog) WriteManifest(_ context.Context, m *catalog.Manifest) error {
	c.manifests = append(c.manifests, m)
	return nil
}

func (c *memCatalog) List(_ context.Context, f catalog.Filter) ([]catalog.Summary, error) {
	var out []catalog.Summary
	for _, m := range c.manifests {
		if f.Match(m.Namespace, m.StatefulSet) {
			sum := catalog.Summary{ID: m.ID, Namespace: m.Namespace, StatefulSet: m.StatefulSet, Created: m.Created, Finished: m.Finished, Status: m.Status}
			for _, v := range m.Volumes {
				sum.StoredBytes += v.StoredBytes
			}
			out = append(out, sum)
		}
	}
	return out, nil
}

func (c *memCatalog) Delete(_ context.Context, id string) (*catalog.Manifest, error) {
	for i, m := range c.manifests {
		if m.ID == id {
			c.manifests = slices.Delete(c.manifests, i, i+1)
			return m, nil
		}
	}
	return nil, catalog.ErrBackupNotFound
}

// Latest returns the newest Completed manifest.
func (c *memCatalog) Latest(_ context.Context, f catalog.Filter) (*catalog.Manifest, error) {
	for i := len(c.manifests) - 1; i >= 0; i-- {
		if m := c.manifests[i]; m.Status == catalog.StatusCompleted && f.Match(m.Namespace, m.StatefulSet) {
			return m, nil
		}
	}
	return nil, catalog.ErrBackupNotFound
}

// SweepData has no shared data to free: the manifests are all there is.
func (c *memCatalog) SweepData(context.Context, repo.SweepOptions) (*repo.SweepResult, error) {
	return nil, nil
}

func (c *memCatalog) ids() []string {
	var out []string
	for _, m := range c.manifests {
		out = append(out, m.ID)
	}
	return out
}

func TestBackupRunner(t *testing.T) {
	start := utc("2026-11-22T00:00:00Z")
	// Runs 1..5 each an hour apart; run 3 partly fails.
	outcomes := []catalog.Status{catalog.StatusCompleted, catalog.StatusCompleted, catalog.StatusPartiallyFailed, catalog.StatusCompleted, catalog.StatusCompleted}
	cat := &memCatalog{}
	snaps := snapfake.NewSimpleClientset()
	n := 0
	var gotOpts []backup.Options
	r := BackupRunner{
		OpenCatalog: func(_ context.Context, repo string, lock uploader.Retention) (RunnerCatalog, error) {
			if repo != "s3://bkt" || lock != (uploader.Retention{Days: 30, Mode: uploader.RetentionGovernance}) {
				return nil, fmt.Errorf("unexpected repo %s or retention %+v", repo, lock)
			}
			return cat, nil
		},
		Defaults: backup.Options{Image: "img", Parallel: 3, ID: "must-not-leak"},
		Deps:     backup.Deps{Snap: snaps},
		backup: func(ctx context.Context, deps backup.Deps, opts backup.Options) (*catalog.Manifest, error) {
			gotOpts = append(gotOpts, opts)
			id := fmt.Sprintf("db-%d", n+1)
			status := outcomes[n]
			created := start.Add(time.Duration(n) * time.Hour)
			n++
			// The snapshot a backup run keeps: named and labelled by it.
			snapName := kube.VolumeObjectName(id, 0, "data")
			labels := kube.Labels(id, "db", kube.RoleSnapshot)
			labels[kube.LabelRetained] = "true"
			if _, err := snaps.SnapshotV1().VolumeSnapshots("shop").Create(ctx, &snapv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: snapName, Labels: labels}}, metav1.CreateOptions{}); err != nil {
				return nil, err
			}
			m := &catalog.Manifest{ID: id, Namespace: "shop", StatefulSet: "db", Created: created, Status: status,
				Volumes: []catalog.Volume{{ClaimTemplate: "data", PVC: "data-db-0", StoredBytes: 100, Snapshot: &catalog.Snapshot{Namespace: "shop", Name: snapName, Retained: true}}}}
			if err := deps.Catalog.WriteManifest(ctx, m); err != nil {
				return nil, err
			}
			if status != catalog.StatusCompleted {
				return m, fmt.Errorf("%w: one volume failed", backup.ErrPartiallyFailed)
			}
			return m, nil
		},
	}
	spec := ScheduleSpec{Name: "s", Namespace: "shop", StatefulSet: "db", Repo: "s3://bkt", Secret: "store", KeepLast: 2, PreHook: "sync", Method: "snapshot",
		LockDays: 30, LockMode: "governance"}
	ctx := context.Background()
	wantAfter := [][]string{
		{"db-1"},
		{"db-1", "db-2"},
		{"db-1", "db-2", "db-3"}, // a partial run prunes nothing
		{"db-2", "db-4"},         // db-3 is not successful and older than db-4; db-1 is beyond the last 2
		{"db-4", "db-5"},
	}
	for i, want := range wantAfter {
		res, err := r.Run(ctx, spec)
		if outcomes[i] == catalog.StatusCompleted {
			if err != nil {
				t.Fatalf("run %d: %v", i+1, err)
			}
			if res.Bytes != 100 || res.BackupID != fmt.Sprintf("db-%d", i+1) {
				t.Errorf("run %d: result %+v", i+1, res)
			}
		} else if !errors.Is(err, backup.ErrPartiallyFailed) {
			t.Fatalf("run %d: error %v, want a partial failure", i+1, err)
		}
		if got := cat.ids(); !slices.Equal(got, want) {
			t.Errorf("after run %d the repository holds %v, want %v", i+1, got, want)
		}
	}
	// The snapshots kept by pruned backups go with them.
	l, err := snaps.SnapshotV1().VolumeSnapshots("shop").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, s := range l.Items {
		left = append(left, s.Labels[kube.LabelBackupID])
	}
	slices.Sort(left)
	if want := []string{"db-4", "db-5"}; !slices.Equal(left, want) {
		t.Errorf("kept snapshots %v, want those of %v", left, want)
	}
	o := gotOpts[0]
	if o.Namespace != "shop" || o.StatefulSet != "db" || o.Repo != "s3://bkt" || o.SecretName != "store" || o.ID != "" ||
		o.Image != "img" || o.Parallel != 3 || o.Method != backup.MethodSnapshot || !slices.Equal(o.PreHook, []string{"/bin/sh", "-c", "sync"}) ||
		o.LockDays != 30 || o.LockMode != "governance" {
		t.Errorf("backup options %+v", o)
	}
}

// appendOnly is a catalog whose store may write but not delete.
type appendOnly struct{ *memCatalog }

func (appendOnly) Delete(_ context.Context, id string) (*catalog.Manifest, error) {
	return nil, fmt.Errorf("delete backup %s: delete manifest.json: %w: api error AccessDenied: Access Denied.", id, uploader.ErrAccessDenied)
}

// A schedule whose credentials may not delete (append-only, pruned
// elsewhere) succeeds, and warns once that pruning was denied.
func TestBackupRunnerPruneDenied(t *testing.T) {
	cat := appendOnly{&memCatalog{}}
	var log bytes.Buffer
	n := 0
	r := BackupRunner{
		OpenCatalog: func(context.Context, string, uploader.Retention) (RunnerCatalog, error) { return cat, nil },
		Deps:        backup.Deps{Snap: snapfake.NewSimpleClientset(), Log: slog.New(slog.NewTextHandler(&log, nil))},
		backup: func(ctx context.Context, deps backup.Deps, opts backup.Options) (*catalog.Manifest, error) {
			n++
			m := &catalog.Manifest{ID: fmt.Sprintf("db-%d", n), Namespace: "shop", StatefulSet: "db", Status: catalog.StatusCompleted,
				Created: utc("2026-11-22T00:00:00Z").Add(time.Duration(n) * time.Hour)}
			return m, deps.Catalog.WriteManifest(ctx, m)
		},
	}
	spec := ScheduleSpec{Name: "s", Namespace: "shop", StatefulSet: "db", Repo: "s3://bkt", KeepLast: 1}
	for i := range 2 {
		if _, err := r.Run(context.Background(), spec); err != nil {
			t.Fatalf("run %d: %v, want success: the backup is whole", i+1, err)
		}
	}
	if got := cat.ids(); !slices.Equal(got, []string{"db-1", "db-2"}) {
		t.Errorf("repository holds %v, want both backups (nothing could be deleted)", got)
	}
	if c := strings.Count(log.String(), "pruning was denied"); c != 1 || strings.Contains(log.String(), "msg=pruned") {
		t.Errorf("log, want one warning that pruning was denied and nothing logged as pruned:\n%s", log.String())
	}
}

// InitData finds the repository there: manifests are all there is.
func (c *memCatalog) InitData(context.Context, string) (bool, error) { return false, nil }
func (c *memCatalog) WriteKeyFile(context.Context) ([]byte, error)   { return nil, nil }

// LastSuccess is the newest Completed backup of the schedule's own
// StatefulSet, whatever the order of the listing.
func TestBackupRunnerLastSuccess(t *testing.T) {
	m := func(id, ns, sts string, finished string, status catalog.Status, bytes int64) *catalog.Manifest {
		return &catalog.Manifest{ID: id, Namespace: ns, StatefulSet: sts, Finished: utc(finished), Status: status,
			Volumes: []catalog.Volume{{PVC: "data-" + sts + "-0", StoredBytes: bytes}}}
	}
	cat := &memCatalog{manifests: []*catalog.Manifest{
		m("db-2", "shop", "db", "2026-11-21T02:00:00Z", catalog.StatusCompleted, 20),
		m("db-3", "shop", "db", "2026-11-22T02:00:00Z", catalog.StatusPartiallyFailed, 30),
		m("db-1", "shop", "db", "2026-11-20T02:00:00Z", catalog.StatusCompleted, 10),
		m("other", "shop", "other", "2026-11-23T02:00:00Z", catalog.StatusCompleted, 99),
		m("db-x", "blog", "db", "2026-11-23T02:00:00Z", catalog.StatusCompleted, 98),
	}}
	r := BackupRunner{OpenCatalog: func(context.Context, string, uploader.Retention) (RunnerCatalog, error) { return cat, nil }}
	at, bytes, err := r.LastSuccess(context.Background(), ScheduleSpec{Name: "s", Namespace: "shop", StatefulSet: "db", Repo: "s3://bkt"})
	if err != nil || !at.Equal(utc("2026-11-21T02:00:00Z")) || bytes != 20 {
		t.Errorf("LastSuccess = %s, %d, %v; want db-2's 2026-11-21T02:00:00Z and 20 bytes", at, bytes, err)
	}
	at, _, err = r.LastSuccess(context.Background(), ScheduleSpec{Name: "s", Namespace: "none", StatefulSet: "db"})
	if err != nil || !at.IsZero() {
		t.Errorf("no backup: LastSuccess = %s, %v; want the zero time", at, err)
	}
}
