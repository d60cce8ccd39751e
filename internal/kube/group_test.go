package kube

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	groupv1beta2 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumegroupsnapshot/v1beta2"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapfake "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// What a backup killed during its group cut leaves: a VolumeGroupSnapshot
// and the label on the source claims. gc finds the run by the group
// snapshot and removes both; another run's label and the claims'
// own labels stay.
func TestGCRemovesGroupSnapshotsAndClaimLabels(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	old := metav1.NewTime(now.Add(-3 * time.Hour))
	group := GroupSnapshotName("db-old", 0)
	claim := func(name, groupLabel string) *corev1.PersistentVolumeClaim {
		l := map[string]string{"app": "db"}
		if groupLabel != "" {
			l[LabelGroup] = groupLabel
		}
		return &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: l}}
	}
	kc := fake.NewClientset(claim("data-db-0", group), claim("data-db-1", group),
		claim("data-other-0", GroupSnapshotName("db-live", 0)), claim("plain", ""))
	vgs := NewVolumeGroupSnapshot("shop", group, "g", Labels("db-old", "db", RoleGroup))
	vgs.CreationTimestamp = old
	foreign := &groupv1beta2.VolumeGroupSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "users", CreationTimestamp: old}}
	sc := snapfake.NewSimpleClientset(vgs, foreign)
	ctx := context.Background()

	runs, err := StaleRuns(ctx, kc, sc, now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || runs[0].ID != "db-old" {
		t.Fatalf("stale runs %+v, want db-old found by its group snapshot", runs)
	}
	if err := DeleteRun(ctx, kc, sc, slog.New(slog.DiscardHandler), runs[0].CleanupOptions()); err != nil {
		t.Fatal(err)
	}
	left, err := sc.GroupsnapshotV1beta2().VolumeGroupSnapshots("shop").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(left.Items) != 1 || left.Items[0].Name != "users" {
		t.Errorf("group snapshots left: %+v, want only the user's", left.Items)
	}
	for name, want := range map[string]string{"data-db-0": "", "data-db-1": "", "data-other-0": GroupSnapshotName("db-live", 0), "plain": ""} {
		c, err := kc.CoreV1().PersistentVolumeClaims("shop").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if c.Labels[LabelGroup] != want || c.Labels["app"] != "db" {
			t.Errorf("%s: labels %v, want %s=%q and app=db", name, c.Labels, LabelGroup, want)
		}
	}
}

func TestFindGroupSnapshotClass(t *testing.T) {
	class := func(name, driver string, def bool) *groupv1beta2.VolumeGroupSnapshotClass {
		c := &groupv1beta2.VolumeGroupSnapshotClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Driver: driver}
		if def {
			c.Annotations = map[string]string{DefaultGroupSnapshotClassAnnotation: "true"}
		}
		return c
	}
	sc := snapfake.NewSimpleClientset(class("a", "d1", true), class("b", "d1", false), class("c", "d2", false))
	ctx := context.Background()
	for _, tt := range []struct{ driver, name, want, wantErr string }{
		{"d1", "", "a", ""},
		{"d1", "b", "b", ""},
		{"d1", "c", "", "VolumeGroupSnapshotClass c is for driver d2, not d1"},
		{"d2", "", "", "no default VolumeGroupSnapshotClass for driver d2 (c exist"},
		{"d3", "", "", "no VolumeGroupSnapshotClass for driver d3"},
	} {
		c, err := FindGroupSnapshotClass(ctx, sc, tt.driver, tt.name)
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s/%s: err %v, want %q", tt.driver, tt.name, err, tt.wantErr)
			}
		case err != nil || c.Name != tt.want:
			t.Errorf("%s/%s: %v, %v; want %s", tt.driver, tt.name, c, err, tt.want)
		}
	}
}

// A passing error in the group snapshot's status (the controller's
// conflicting update) is waited out; one that stays fails the wait.
func TestWaitGroupSnapshotOutlastsPassingErrors(t *testing.T) {
	ctx := context.Background()
	msg := "the object has been modified"
	vgs := NewVolumeGroupSnapshot("shop", "g", "c", nil)
	vgs.Status = &groupv1beta2.VolumeGroupSnapshotStatus{Error: &snapv1.VolumeSnapshotError{Message: &msg}}
	sc := snapfake.NewSimpleClientset(vgs)
	polls := 0
	sc.PrependReactor("get", "volumegroupsnapshots", func(k8stesting.Action) (bool, runtime.Object, error) {
		polls++
		got := vgs.DeepCopy()
		if polls >= 3 {
			now := metav1.Now()
			got.Status = &groupv1beta2.VolumeGroupSnapshotStatus{CreationTime: &now}
		}
		return true, got, nil
	})
	if _, _, err := WaitGroupSnapshot(ctx, sc, "shop", "g", time.Millisecond, time.Minute); err != nil {
		t.Fatalf("a passing error failed the wait: %v", err)
	}

	stuck := snapfake.NewSimpleClientset(vgs)
	start := time.Now()
	_, _, err := WaitGroupSnapshot(ctx, stuck, "shop", "g", time.Millisecond, 50*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), msg) || time.Since(start) > 5*time.Second {
		t.Fatalf("a lasting error: %v after %s, want it within the timeout", err, time.Since(start))
	}
}

// A controller that cannot make the member snapshots of a cut group says
// so in the group's status: the wait ends with that error once it has
// lasted GroupErrorGrace, not at the snapshot timeout. Without an error it
// waits to the timeout and names the claims without a member.
func TestWaitGroupMembersEndsOnLastingGroupError(t *testing.T) {
	defer func(g time.Duration) { GroupErrorGrace = g }(GroupErrorGrace)
	GroupErrorGrace = 20 * time.Millisecond
	msg := "failed to create volume snapshot for data-db-1: quota exceeded"
	vgs := NewVolumeGroupSnapshot("shop", "g", "c", nil)
	vgs.Status = &groupv1beta2.VolumeGroupSnapshotStatus{Error: &snapv1.VolumeSnapshotError{Message: &msg}}
	_, err := WaitGroupMembers(t.Context(), snapfake.NewSimpleClientset(vgs), vgs, []string{"data-db-0", "data-db-1"}, time.Millisecond, time.Minute)
	if err == nil || !strings.Contains(err.Error(), msg) || !strings.Contains(err.Error(), "member snapshots were not made") {
		t.Fatalf("a lasting error in the group's status: %v, want it named at once", err)
	}

	healthy := NewVolumeGroupSnapshot("shop", "g", "c", nil)
	_, err = WaitGroupMembers(t.Context(), snapfake.NewSimpleClientset(healthy), healthy, []string{"data-db-0"}, time.Millisecond, 50*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "no member snapshot of data-db-0 after") {
		t.Fatalf("no members and no error: %v, want the timeout naming data-db-0", err)
	}
}

// The group is cut when its content says so: the sidecar sets the
// content's status as soon as the driver has cut the group, while the
// controller sets the group's own only after making every member. Where
// the content may not be read, the group's own status tells.
func TestWaitGroupSnapshotCutFromItsContent(t *testing.T) {
	ctx := context.Background()
	cut := metav1.NewTime(time.Date(2026, 12, 1, 4, 0, 0, 0, time.UTC))
	content := "groupsnapcontent-1"
	vgs := NewVolumeGroupSnapshot("shop", "g", "c", nil)
	vgs.Status = &groupv1beta2.VolumeGroupSnapshotStatus{BoundVolumeGroupSnapshotContentName: &content}
	vgsc := &groupv1beta2.VolumeGroupSnapshotContent{
		ObjectMeta: metav1.ObjectMeta{Name: content},
		Status:     &groupv1beta2.VolumeGroupSnapshotContentStatus{CreationTime: &cut},
	}
	sc := snapfake.NewSimpleClientset(vgs, vgsc)
	got, at, err := WaitGroupSnapshot(ctx, sc, "shop", "g", time.Millisecond, time.Second)
	if err != nil || got == nil || !at.Equal(cut.Time) {
		t.Fatalf("cut at %s, %v; want the content's creation time %s", at, err, cut.Time)
	}

	// No permission to read contents: the wait goes by the group alone.
	forbidden := snapfake.NewSimpleClientset(vgs, vgsc)
	forbidden.PrependReactor("get", "volumegroupsnapshotcontents", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(groupv1beta2.SchemeGroupVersion.WithResource("volumegroupsnapshotcontents").GroupResource(), content, errors.New("no"))
	})
	polls := 0
	forbidden.PrependReactor("get", "volumegroupsnapshots", func(k8stesting.Action) (bool, runtime.Object, error) {
		polls++
		g := vgs.DeepCopy()
		if polls >= 5 {
			g.Status.CreationTime = &cut
		}
		return true, g, nil
	})
	if _, at, err := WaitGroupSnapshot(ctx, forbidden, "shop", "g", time.Millisecond, time.Second); err != nil || !at.Equal(cut.Time) || polls < 5 {
		t.Fatalf("without the content: cut at %s after %d polls, %v; want the group's own time after 5", at, polls, err)
	}
}
