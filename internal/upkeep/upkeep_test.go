package upkeep

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapfake "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/kube"
	"github.com/kbak/kbak/internal/repo"
	"github.com/kbak/kbak/internal/retention"
)

func kept(id string, names ...string) *catalog.Manifest {
	m := &catalog.Manifest{ID: id, Namespace: "shop", StatefulSet: "db"}
	for _, n := range names {
		m.Volumes = append(m.Volumes, catalog.Volume{Snapshot: &catalog.Snapshot{Namespace: "shop", Name: n, Retained: true}})
	}
	// A snapshot the backup did not keep is never touched.
	m.Volumes = append(m.Volumes, catalog.Volume{Snapshot: &catalog.Snapshot{Namespace: "shop", Name: "not-kept-" + id}})
	return m
}

func snapshot(name string) *snapv1.VolumeSnapshot {
	return &snapv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name}}
}

func TestDeleteKeptSnapshots(t *testing.T) {
	sc := snapfake.NewSimpleClientset(snapshot("a"), snapshot("not-kept-b1"), snapshot("c"))
	done, err := DeleteKeptSnapshots(context.Background(), sc, []*catalog.Manifest{kept("b1", "a", "gone"), nil, kept("b2", "c")}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range done {
		got = append(got, s.Name)
	}
	if want := []string{"a", "gone", "c"}; !slices.Equal(got, want) {
		t.Errorf("deleted %v, want %v (one already gone)", got, want)
	}
	left, _ := sc.SnapshotV1().VolumeSnapshots("shop").List(context.Background(), metav1.ListOptions{})
	if len(left.Items) != 1 || left.Items[0].Name != "not-kept-b1" {
		t.Errorf("left %v, want only the snapshot no backup kept", left.Items)
	}
	if _, err := DeleteKeptSnapshots(context.Background(), nil, []*catalog.Manifest{kept("b3", "d")}, 0); err == nil || !strings.Contains(err.Error(), "shop/d") {
		t.Errorf("without a cluster: %v, want an error naming shop/d", err)
	}
}

// memCatalog is a catalog of summaries whose manifests keep snapshots.
type memCatalog struct {
	list    []catalog.Summary
	deleted []string
	orphans []catalog.Orphan
}

func (c *memCatalog) List(context.Context, catalog.Filter) ([]catalog.Summary, error) {
	return c.list, nil
}
func (c *memCatalog) Delete(_ context.Context, id string) (*catalog.Manifest, error) {
	c.deleted = append(c.deleted, id)
	return kept(id, "snap-"+id), nil
}
func (c *memCatalog) SweepData(context.Context, repo.SweepOptions) (*repo.SweepResult, error) {
	return &repo.SweepResult{}, nil
}
func (c *memCatalog) GC(_ context.Context, grace time.Duration, now time.Time, dryRun bool) ([]catalog.Orphan, error) {
	return c.orphans, nil
}

func TestPruneAfter(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	cat := &memCatalog{list: []catalog.Summary{
		{ID: "db-2", Namespace: "shop", StatefulSet: "db", Created: now, Status: catalog.StatusCompleted},
		{ID: "db-1", Namespace: "shop", StatefulSet: "db", Created: now.Add(-time.Hour), Status: catalog.StatusCompleted},
	}}
	sc := snapfake.NewSimpleClientset(snapshot("snap-db-1"), snapshot("snap-db-2"))
	m := &catalog.Manifest{ID: "db-2", Namespace: "shop", StatefulSet: "db"}
	p, err := PruneAfter(context.Background(), cat, sc, m, PruneOptions{Policy: retention.Policy{KeepLast: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cat.deleted, []string{"db-1"}) || len(p.Snapshots) != 1 || p.Snapshots[0].Name != "snap-db-1" {
		t.Errorf("deleted %v and snapshots %v, want db-1 and its kept snapshot", cat.deleted, p.Snapshots)
	}
	_, err = PruneAfter(context.Background(), cat, sc, m, PruneOptions{})
	if err == nil || !strings.Contains(err.Error(), "backup db-2 completed, but pruning failed") {
		t.Errorf("empty policy: %v", err)
	}
}

func TestGC(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	old := metav1.NewTime(now.Add(-3 * time.Hour))
	kc := fake.NewClientset(
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "mover", Labels: kube.Labels("crashed", "db", kube.RoleMover), CreationTimestamp: old}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "dr", Name: "restore-mover", Labels: kube.RestoreLabels("crashed-restore", "db", kube.RoleMover), CreationTimestamp: old}},
	)
	cat := &memCatalog{orphans: []catalog.Orphan{{ID: "db-x"}}}
	for _, dry := range []bool{true, false} {
		res, err := GC(context.Background(), cat, GCOptions{Grace: time.Hour, Now: now, DryRun: dry, Kube: kc, Log: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Store) != 1 || len(res.Cluster) != 2 || res.Data == nil || res.ClusterSkipped != "" {
			t.Errorf("dry run %v: %+v", dry, res)
		}
		pods, _ := kc.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{})
		if want := map[bool]int{true: 2, false: 0}[dry]; len(pods.Items) != want {
			t.Errorf("dry run %v: %d pods left, want %d", dry, len(pods.Items), want)
		}
	}
	res, err := GC(context.Background(), cat, GCOptions{Grace: time.Hour, Now: now, ClusterSkipped: "--no-cluster"})
	if err != nil || res.ClusterSkipped != "--no-cluster" || res.Cluster == nil {
		t.Errorf("without a cluster: %+v, %v", res, err)
	}
}
