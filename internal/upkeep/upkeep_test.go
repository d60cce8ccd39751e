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
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/kube"
	"github.com/kbak/kbak/internal/repo"
	"github.com/kbak/kbak/internal/retention"
)

// kept is the manifest of backup id of StatefulSet db in shop whose
// volumes of ordinals ords kept their VolumeSnapshots, named and recorded
// as a backup run does; one more volume's snapshot was not kept.
func kept(id string, ords ...int) *catalog.Manifest {
	m := &catalog.Manifest{ID: id, Namespace: "shop", StatefulSet: "db"}
	for _, o := range ords {
		m.Volumes = append(m.Volumes, catalog.Volume{ClaimTemplate: "data", Ordinal: o, PVC: kube.ClaimName("data", "db", o),
			Snapshot: &catalog.Snapshot{Namespace: "shop", Name: kube.VolumeObjectName(id, o, "data"), Retained: true}})
	}
	// A snapshot the backup did not keep is never touched.
	m.Volumes = append(m.Volumes, catalog.Volume{ClaimTemplate: "log", PVC: "log-db-0",
		Snapshot: &catalog.Snapshot{Namespace: "shop", Name: kube.VolumeObjectName(id, 0, "log")}})
	return m
}

// keptSnap is the VolumeSnapshot the run of backup id made of ordinal
// ord of template data and kept, with the labels it put on it.
func keptSnap(id string, ord int) *snapv1.VolumeSnapshot {
	l := kube.Labels(id, "db", kube.RoleSnapshot)
	l[kube.LabelRetained] = "true"
	return &snapv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: kube.VolumeObjectName(id, ord, "data"), Labels: l, UID: types.UID("uid-" + id)}}
}

func snapshotNames(t *testing.T, sc *snapfake.Clientset, ns string) []string {
	t.Helper()
	list, err := sc.SnapshotV1().VolumeSnapshots(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range list.Items {
		names = append(names, s.Name)
	}
	slices.Sort(names)
	return names
}

func TestDeleteKeptSnapshots(t *testing.T) {
	notKept := keptSnap("b1", 0)
	notKept.Name = kube.VolumeObjectName("b1", 0, "log")
	sc := snapfake.NewSimpleClientset(keptSnap("b1", 0), notKept, keptSnap("b2", 0))
	done, err := DeleteKeptSnapshots(context.Background(), sc, []*catalog.Manifest{kept("b1", 0, 1), nil, kept("b2", 0)}, 0)
	if err != nil || len(done.Refused) != 0 {
		t.Fatalf("DeleteKeptSnapshots: %+v, %v", done, err)
	}
	var got []string
	for _, s := range done.Deleted {
		got = append(got, s.Name)
	}
	if want := []string{"kbak-b1-0-data", "kbak-b1-1-data", "kbak-b2-0-data"}; !slices.Equal(got, want) {
		t.Errorf("deleted %v, want %v (one already gone)", got, want)
	}
	if left := snapshotNames(t, sc, "shop"); !slices.Equal(left, []string{notKept.Name}) {
		t.Errorf("left %v, want only the snapshot no backup kept", left)
	}
	if _, err := DeleteKeptSnapshots(context.Background(), nil, []*catalog.Manifest{kept("b3", 0)}, 0); err == nil || !strings.Contains(err.Error(), "shop/kbak-b3-0-data") {
		t.Errorf("without a cluster: %v, want an error naming shop/kbak-b3-0-data", err)
	}
}

// A manifest is data in a bucket: one tampered with must not make kbak
// delete a snapshot the backup did not make. A snapshot outside the
// backup's namespace or of another name is refused without a call to the
// cluster; one without the labels the backup put on it is read and left.
// Each refusal is one line of warning, and no error.
func TestDeleteKeptSnapshotsTrustsNoManifest(t *testing.T) {
	const id = "db-20261122T020000Z-3f2a"
	users := &snapv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: kube.VolumeObjectName(id, 1, "data"), Labels: map[string]string{"app": "db"}}}
	system := keptSnap(id, 2)
	system.Namespace = "kube-system"
	others := keptSnap("db-20261121T020000Z-0000", 3)
	others.Name = kube.VolumeObjectName(id, 3, "data")
	precious := &snapv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "precious"}}
	sc := snapfake.NewSimpleClientset(keptSnap(id, 0), users, system, others, precious)

	m := kept(id, 0, 1, 2, 3, 4)
	m.Volumes[2].Snapshot.Namespace = "kube-system" // named where the backup never was
	m.Volumes[4].Snapshot.Name = "precious"         // another name than the backup gave
	done, err := DeleteKeptSnapshots(context.Background(), sc, []*catalog.Manifest{m}, 0)
	if err != nil {
		t.Fatalf("DeleteKeptSnapshots: %v, want refusals as warnings only", err)
	}
	if len(done.Deleted) != 1 || done.Deleted[0].Name != kube.VolumeObjectName(id, 0, "data") {
		t.Errorf("deleted %+v, want only the backup's own snapshot", done.Deleted)
	}
	want := map[string]string{
		"kube-system/" + system.Name: "not in the backup's namespace shop",
		"shop/" + users.Name:         "carries no app.kubernetes.io/managed-by=kbak label",
		"shop/" + others.Name:        "label is \"db-20261121T020000Z-0000\", not the backup's",
		"shop/precious":              "the backup named the snapshot of data-db-4 " + kube.VolumeObjectName(id, 4, "data"),
	}
	if len(done.Refused) != len(want) {
		t.Errorf("refused %+v, want %d", done.Refused, len(want))
	}
	for _, r := range done.Refused {
		w := r.Warning()
		if !strings.Contains(w, want[r.Namespace+"/"+r.Name]) || !strings.HasPrefix(w, "not deleting VolumeSnapshot "+r.Namespace+"/"+r.Name+" that the manifest of backup "+id) || strings.Contains(w, "\n") {
			t.Errorf("warning %q, want one line saying %q", w, want[r.Namespace+"/"+r.Name])
		}
	}
	for _, a := range sc.Actions() {
		if a.GetVerb() == "delete" && (a.GetNamespace() != "shop" || a.(k8stesting.DeleteAction).GetName() != kube.VolumeObjectName(id, 0, "data")) {
			t.Errorf("sent %s %s/%s", a.GetVerb(), a.GetNamespace(), a.(k8stesting.DeleteAction).GetName())
		}
		if a.GetNamespace() == "kube-system" || a.GetVerb() == "get" && a.(k8stesting.GetAction).GetName() == "precious" {
			t.Errorf("asked the cluster about a snapshot refused by the manifest alone: %v", a)
		}
	}
	if left := snapshotNames(t, sc, "kube-system"); len(left) != 1 {
		t.Errorf("kube-system snapshots left %v, want the one there", left)
	}
	if left := snapshotNames(t, sc, "shop"); len(left) != 3 {
		t.Errorf("shop snapshots left %v, want every one but the backup's", left)
	}

	// Refused without a cluster too: the CLI names only the others.
	keptOnes, refused := KeptSnapshots([]*catalog.Manifest{m})
	if len(keptOnes) != 3 || len(refused) != 2 {
		t.Errorf("KeptSnapshots = %v, %v; want 3 to check in the cluster and 2 refused", keptOnes, refused)
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
	return kept(id, 0), nil
}
func (c *memCatalog) SweepData(context.Context, repo.SweepOptions) (*repo.SweepResult, error) {
	return &repo.SweepResult{}, nil
}
func (c *memCatalog) GCNamespace(_ context.Context, ns string, grace time.Duration, now time.Time, dryRun bool) ([]catalog.Orphan, error) {
	var out []catalog.Orphan
	for _, o := range c.orphans {
		if ns == "" || o.Namespace == ns {
			out = append(out, o)
		}
	}
	return out, nil
}

func TestPruneAfter(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	cat := &memCatalog{list: []catalog.Summary{
		{ID: "db-2", Namespace: "shop", StatefulSet: "db", Created: now, Status: catalog.StatusCompleted},
		{ID: "db-1", Namespace: "shop", StatefulSet: "db", Created: now.Add(-time.Hour), Status: catalog.StatusCompleted},
	}}
	sc := snapfake.NewSimpleClientset(keptSnap("db-1", 0), keptSnap("db-2", 0))
	m := &catalog.Manifest{ID: "db-2", Namespace: "shop", StatefulSet: "db"}
	p, err := PruneAfter(context.Background(), cat, sc, m, PruneOptions{Policy: retention.Policy{KeepLast: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cat.deleted, []string{"db-1"}) || len(p.Snapshots) != 1 || p.Snapshots[0].Name != "kbak-db-1-0-data" {
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

// A snapshot a run deleted that the snapshot controller still holds is
// reported as deleting, is no leftover run, and is not deleted again by
// gc after gc; one nobody deleted is a leftover and goes.
func TestGCTellsDeletingSnapshotsFromLeftovers(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	snap := func(name, run string) *snapv1.VolumeSnapshot {
		return &snapv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{
			Namespace: "shop", Name: name, Labels: kube.Labels(run, "db", kube.RoleSnapshot),
			CreationTimestamp: metav1.NewTime(now.Add(-3 * time.Hour)), UID: types.UID("uid-" + name),
		}}
	}
	held := snap("kbak-held", "db-held")
	deleted := metav1.NewTime(now.Add(-2 * time.Hour))
	held.DeletionTimestamp = &deleted
	held.Finalizers = []string{"snapshot.storage.kubernetes.io/volumesnapshot-bound-protection"}
	sc := snapfake.NewSimpleClientset(held, snap("kbak-left", "db-left"))
	var deletes []string
	sc.PrependReactor("delete", "volumesnapshots", func(a k8stesting.Action) (bool, runtime.Object, error) {
		deletes = append(deletes, a.(k8stesting.DeleteAction).GetName())
		return false, nil, nil
	})
	for i := range 2 {
		res, err := GC(context.Background(), &memCatalog{}, GCOptions{Grace: time.Hour, Now: now, Kube: fake.NewClientset(), Snap: sc})
		if err != nil {
			t.Fatal(err)
		}
		var runs []string
		for _, r := range res.Cluster {
			runs = append(runs, r.ID)
		}
		if want := [][]string{{"db-left"}, nil}[i]; !slices.Equal(runs, want) {
			t.Errorf("gc %d: leftover runs %v, want %v", i+1, runs, want)
		}
		if len(res.Deleting) != 1 || res.Deleting[0].Name != "kbak-held" || res.Deleting[0].State != kube.SnapshotDeleting || res.Deleting[0].RunID != "db-held" {
			t.Errorf("gc %d: deleting %+v, want kbak-held", i+1, res.Deleting)
		}
	}
	if !slices.Equal(deletes, []string{"kbak-left"}) {
		t.Errorf("deleted %v, want only kbak-left, once", deletes)
	}
}

// A kept snapshot already being deleted (held by the snapshot controller)
// counts as deleted and gets no second DELETE.
func TestDeleteKeptSnapshotsLeavesDeleting(t *testing.T) {
	vs := keptSnap("b1", 0)
	now := metav1.Now()
	vs.DeletionTimestamp = &now
	vs.Finalizers = []string{"snapshot.storage.kubernetes.io/volumesnapshot-bound-protection"}
	sc := snapfake.NewSimpleClientset(vs)
	deletes := 0
	sc.PrependReactor("delete", "volumesnapshots", func(k8stesting.Action) (bool, runtime.Object, error) {
		deletes++
		return false, nil, nil
	})
	m := kept("b1", 0)
	m.Volumes = m.Volumes[:1]
	done, err := DeleteKeptSnapshots(context.Background(), sc, []*catalog.Manifest{m}, 0)
	if err != nil || len(done.Deleted) != 1 || len(done.Refused) != 0 {
		t.Fatalf("DeleteKeptSnapshots: %+v, %v", done, err)
	}
	if deletes != 0 {
		t.Errorf("%d DELETE calls for a snapshot being deleted, want none", deletes)
	}
}
