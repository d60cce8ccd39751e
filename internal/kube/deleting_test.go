package kube

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync/atomic"
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
)

const (
	boundFinalizer  = "snapshot.storage.kubernetes.io/volumesnapshot-bound-protection"
	sourceFinalizer = "snapshot.storage.kubernetes.io/volumesnapshot-as-source-protection"
	contentFinal    = "snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection"
)

// snapshotOf builds a kbak snapshot of run id with a UID, bound to its
// content when bound is set.
func snapshotOf(name, id string, bound bool) *snapv1.VolumeSnapshot {
	vs := NewVolumeSnapshot(ns, name, "data-db-0", "c", Labels(id, "db", RoleSnapshot))
	vs.UID = types.UID("uid-" + name)
	if bound {
		c := "snapcontent-uid-" + name
		vs.Status = &snapv1.VolumeSnapshotStatus{BoundVolumeSnapshotContentName: &c}
	}
	return vs
}

// deleting marks o deleted and held by finalizers.
func deleting[T interface{ GetObjectMeta() metav1.Object }](o T, finalizers ...string) T {
	t := metav1.NewTime(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	o.GetObjectMeta().SetDeletionTimestamp(&t)
	o.GetObjectMeta().SetFinalizers(finalizers)
	return o
}

func contentOf(vs *snapv1.VolumeSnapshot) *snapv1.VolumeSnapshotContent {
	return &snapv1.VolumeSnapshotContent{
		ObjectMeta: metav1.ObjectMeta{Name: "snapcontent-" + string(vs.UID)},
		Spec: snapv1.VolumeSnapshotContentSpec{
			VolumeSnapshotRef: corev1.ObjectReference{Namespace: vs.Namespace, Name: vs.Name, UID: vs.UID},
			DeletionPolicy:    snapv1.VolumeSnapshotContentDelete,
		},
	}
}

func TestClassifySnapshot(t *testing.T) {
	vs := snapshotOf("kbak-db-1-0-data", "db-1", true)
	ref := RefOf(vs)
	if ref.Content != "snapcontent-uid-kbak-db-1-0-data" {
		t.Fatalf("content of a bound snapshot: %q", ref.Content)
	}
	unbound := snapshotOf("kbak-db-1-1-data", "db-1", false)
	if got := RefOf(unbound).Content; got != "snapcontent-uid-kbak-db-1-1-data" {
		t.Errorf("content of an unbound snapshot of a claim: %q, want the controller's name for it", got)
	}
	other := contentOf(vs)
	other.Spec.VolumeSnapshotRef.UID = "another"
	tests := []struct {
		name       string
		vs         *snapv1.VolumeSnapshot
		content    *snapv1.VolumeSnapshotContent
		want       SnapshotState
		finalizers []string
	}{
		{"not deleted is left behind", vs, contentOf(vs), SnapshotLeft, nil},
		{"not deleted, content deleting, is still left", vs, deleting(contentOf(vs), contentFinal), SnapshotLeft, nil},
		{"deleted, held by bound-protection", deleting(vs.DeepCopy(), boundFinalizer), contentOf(vs), SnapshotDeleting, []string{boundFinalizer}},
		{"deleted, held as a claim's source", deleting(vs.DeepCopy(), sourceFinalizer, boundFinalizer), nil, SnapshotDeleting, []string{sourceFinalizer, boundFinalizer}},
		{"gone, content deleting", nil, deleting(contentOf(vs), contentFinal), SnapshotDeleting, nil},
		{"gone, content kept by its policy", nil, contentOf(vs), SnapshotLeft, nil},
		{"gone, content of another snapshot of that name", nil, deleting(other, contentFinal), SnapshotGone, nil},
		{"gone with its content", nil, nil, SnapshotGone, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ClassifySnapshot(ref, tt.vs, tt.content)
			if got.State != tt.want {
				t.Fatalf("state %s, want %s", got.State, tt.want)
			}
			if !slices.Equal(got.Finalizers, tt.finalizers) {
				t.Errorf("finalizers %v, want %v", got.Finalizers, tt.finalizers)
			}
			if got.Name != vs.Name || got.Content != ref.Content {
				t.Errorf("names %s and %s, want %s and %s", got.Name, got.Content, vs.Name, ref.Content)
			}
			if (got.State == SnapshotDeleting) == got.Since.IsZero() {
				t.Errorf("since %v for state %s", got.Since, got.State)
			}
			if tt.vs != nil && got.RunID != "db-1" {
				t.Errorf("run %q, want db-1", got.RunID)
			}
		})
	}
}

// holdDeletes makes sc act as the snapshot controller does on a delete: the
// snapshot stays, marked deleted and held by bound-protection, until
// release is called.
func holdDeletes(t *testing.T, sc *snapfake.Clientset) (deletes *atomic.Int32, release func(name string)) {
	t.Helper()
	deletes = new(atomic.Int32)
	gvr := snapv1.SchemeGroupVersion.WithResource("volumesnapshots")
	sc.PrependReactor("delete", "volumesnapshots", func(a k8stesting.Action) (bool, runtime.Object, error) {
		deletes.Add(1)
		name := a.(k8stesting.DeleteAction).GetName()
		o, err := sc.Tracker().Get(gvr, a.GetNamespace(), name)
		if err != nil {
			return true, nil, err
		}
		vs := deleting(o.(*snapv1.VolumeSnapshot).DeepCopy(), boundFinalizer)
		return true, nil, sc.Tracker().Update(gvr, vs, a.GetNamespace())
	})
	return deletes, func(name string) {
		if err := sc.Tracker().Delete(gvr, ns, name); err != nil {
			t.Errorf("release %s: %v", name, err)
		}
	}
}

func TestDeleteRunLeavesDeletingSnapshots(t *testing.T) {
	kc := fake.NewClientset()
	sc := snapfake.NewSimpleClientset(snapshotOf("a", "db-1", true))
	deletes, _ := holdDeletes(t, sc)
	log := slog.New(slog.DiscardHandler)
	o := CleanupOptions{Namespace: ns, BackupID: "db-1", Interval: 1, NoSecrets: true}
	for range 3 {
		if err := DeleteRun(context.Background(), kc, sc, log, o); err != nil {
			t.Fatal(err)
		}
	}
	if n := deletes.Load(); n != 1 {
		t.Errorf("%d DELETE calls for a snapshot held by a finalizer, want 1", n)
	}
}

func TestWaitSnapshotsGone(t *testing.T) {
	freed := snapshotOf("freed", "db-1", true)
	held := snapshotOf("held", "db-1", true)
	sc := snapfake.NewSimpleClientset(freed, held, contentOf(freed), contentOf(held))
	deletes, release := holdDeletes(t, sc)
	refs := []SnapshotRef{RefOf(freed), RefOf(held)}
	log := slog.New(slog.DiscardHandler)
	if err := DeleteRun(context.Background(), fake.NewClientset(), sc, log, CleanupOptions{Namespace: ns, BackupID: "db-1", Interval: 1, NoSecrets: true}); err != nil {
		t.Fatal(err)
	}
	if deletes.Load() != 2 {
		t.Fatalf("%d deletes, want 2", deletes.Load())
	}

	// The controller lets "freed" go after a few polls; its content is
	// deleted, then goes too. "held" stays.
	var polls atomic.Int32
	contents := snapv1.SchemeGroupVersion.WithResource("volumesnapshotcontents")
	sc.PrependReactor("get", "volumesnapshots", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.(k8stesting.GetAction).GetName() != "freed" {
			return false, nil, nil
		}
		switch polls.Add(1) {
		case 3:
			release("freed")
			c := deleting(contentOf(freed), contentFinal)
			if err := sc.Tracker().Update(contents, c, ""); err != nil {
				t.Error(err)
			}
		case 6:
			if err := sc.Tracker().Delete(contents, "", "snapcontent-uid-freed"); err != nil {
				t.Error(err)
			}
		}
		return false, nil, nil
	})
	left, err := WaitSnapshotsGone(context.Background(), sc, refs, time.Millisecond, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if polls.Load() < 6 {
		t.Fatalf("the wait ended after %d polls, before the content of freed went", polls.Load())
	}
	if len(left) != 1 || left[0].Name != "held" || left[0].State != SnapshotDeleting {
		t.Fatalf("left %+v, want only held, deleting", left)
	}
	if !slices.Equal(left[0].Finalizers, []string{boundFinalizer}) {
		t.Errorf("finalizers of held: %v", left[0].Finalizers)
	}
	if s := left[0].String(); s != "shop/held (held by snapshot: "+boundFinalizer+")" {
		t.Errorf("String() = %q", s)
	}

	// Once the controller lets it go too, the wait ends with nothing left.
	release("held")
	if err := sc.Tracker().Delete(contents, "", "snapcontent-uid-held"); err != nil {
		t.Fatal(err)
	}
	left, err = WaitSnapshotsGone(context.Background(), sc, refs, time.Millisecond, time.Second)
	if err != nil || len(left) != 0 {
		t.Fatalf("left %+v, %v; want nothing", left, err)
	}
}

// A snapshot nobody deleted is left behind, not deleting, when the wait
// ends.
func TestWaitSnapshotsGoneReportsLeft(t *testing.T) {
	vs := snapshotOf("kept-by-mistake", "db-1", false)
	sc := snapfake.NewSimpleClientset(vs)
	left, err := WaitSnapshotsGone(context.Background(), sc, []SnapshotRef{RefOf(vs)}, time.Millisecond, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 1 || left[0].State != SnapshotLeft {
		t.Fatalf("left %+v, want one left behind", left)
	}
}

// A request refused at the wait's own deadline (the client's rate limiter
// refuses one that would end after it) is no failure to ask the cluster:
// the wait looks once more in the caller's time.
func TestWaitSnapshotsGoneAtItsDeadline(t *testing.T) {
	vs := deleting(snapshotOf("slow", "db-1", true), boundFinalizer)
	sc := snapfake.NewSimpleClientset(vs, contentOf(vs))
	const timeout = 100 * time.Millisecond
	start := time.Now()
	sc.PrependReactor("get", "volumesnapshots", func(k8stesting.Action) (bool, runtime.Object, error) {
		if e := time.Since(start); e >= timeout-40*time.Millisecond && e < timeout {
			return true, nil, errors.New("client rate limiter Wait returned an error: rate: Wait(n=1) would exceed context deadline")
		}
		return false, nil, nil
	})
	left, err := WaitSnapshotsGone(context.Background(), sc, []SnapshotRef{RefOf(vs)}, time.Millisecond, timeout)
	if err != nil {
		t.Fatalf("error %v, want none: the cluster answered after the wait", err)
	}
	if len(left) != 1 || left[0].State != SnapshotDeleting {
		t.Fatalf("left %+v, want slow, deleting", left)
	}
}

func TestStaleRunsAndDeletingSnapshots(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	old := func(vs *snapv1.VolumeSnapshot) *snapv1.VolumeSnapshot {
		vs.CreationTimestamp = metav1.NewTime(now.Add(-3 * time.Hour))
		return vs
	}
	held := old(deleting(snapshotOf("held", "db-held", true), boundFinalizer))
	sc := snapfake.NewSimpleClientset(
		held, deleting(contentOf(held), contentFinal),
		old(snapshotOf("left", "db-left", false)),
	)
	runs, err := StaleRuns(context.Background(), fake.NewClientset(), sc, now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || runs[0].ID != "db-left" {
		t.Errorf("stale runs %+v, want only db-left: a snapshot being deleted is no leftover", runs)
	}
	del, err := DeletingSnapshots(context.Background(), sc, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(del) != 1 || del[0].Name != "held" || del[0].RunID != "db-held" || del[0].State != SnapshotDeleting ||
		!slices.Equal(del[0].ContentFinalizers, []string{contentFinal}) {
		t.Errorf("deleting %+v, want held with its content's finalizer", del)
	}
}
