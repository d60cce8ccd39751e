package backup

import (
	"context"
	"errors"
	"strings"
	"testing"

	groupv1beta2 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumegroupsnapshot/v1beta2"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/kube"
	"github.com/kbak/kbak/internal/kube/kubetest"
)

func groupClass(name, drv string, def bool) *groupv1beta2.VolumeGroupSnapshotClass {
	c := &groupv1beta2.VolumeGroupSnapshotClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Driver: drv}
	if def {
		c.Annotations = map[string]string{kube.DefaultGroupSnapshotClassAnnotation: "true"}
	}
	return c
}

// A group snapshot the storage fails fails every volume of the group with
// its message; the claims carried the group's label only while it was cut,
// and nothing of the run is left.
func TestRunGroupSnapshotError(t *testing.T) {
	f := newFixture(2, []int{0, 1}, kubetest.SnapshotClass("snap", driver, true), groupClass("group", driver, true))
	var selected []string
	f.sc.PrependReactor("create", "volumegroupsnapshots", func(a k8stesting.Action) (bool, runtime.Object, error) {
		vgs := a.(k8stesting.CreateAction).GetObject().(*groupv1beta2.VolumeGroupSnapshot)
		sel, err := metav1.LabelSelectorAsSelector(vgs.Spec.Source.Selector)
		if err != nil {
			return true, nil, err
		}
		claims, _ := f.kc.CoreV1().PersistentVolumeClaims(ns).List(context.Background(), metav1.ListOptions{LabelSelector: sel.String()})
		for _, c := range claims.Items {
			selected = append(selected, c.Name)
		}
		f.log.add("group " + vgs.Name + " class " + *vgs.Spec.VolumeGroupSnapshotClassName)
		msg := "group on fire"
		vgs.Status = &groupv1beta2.VolumeGroupSnapshotStatus{Error: &snapv1.VolumeSnapshotError{Message: &msg}}
		return false, nil, nil
	})
	f.sc.PrependReactor("create", "volumesnapshots", func(k8stesting.Action) (bool, runtime.Object, error) {
		t.Error("a single VolumeSnapshot was created beside the group")
		return false, nil, nil
	})
	m, err := Run(context.Background(), f.deps(), opts())
	if !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "group on fire") {
		t.Fatalf("err = %v, want ErrFailed with the group snapshot's message", err)
	}
	if strings.Count(err.Error(), "group on fire") != 1 || !strings.Contains(err.Error(), "data-db-0, data-db-1: ") {
		t.Errorf("err = %v, want the group's message once, for both claims", err)
	}
	if strings.Join(selected, ",") != "data-db-0,data-db-1" {
		t.Errorf("the group snapshot selected %v, want both claims", selected)
	}
	if lines := f.log.all(); len(lines) != 1 || lines[0] != "group "+kube.GroupSnapshotName(id, 0)+" class group" {
		t.Errorf("journal %q, want one group snapshot of class group", lines)
	}
	for _, v := range m.Volumes {
		if v.Status != catalog.VolumeFailed || v.Snapshot == nil || v.Snapshot.Group == "" {
			t.Errorf("%s: status %s snapshot %+v", v.PVC, v.Status, v.Snapshot)
		}
	}
	if left := f.leftovers(t); len(left) != 0 {
		t.Errorf("left in the cluster: %v", left)
	}
	// Nothing but the label came and went: the claims are as they were.
	for _, name := range []string{"data-db-0", "data-db-1"} {
		c, err := f.kc.CoreV1().PersistentVolumeClaims(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := c.Labels[kube.LabelGroup]; ok {
			t.Errorf("%s keeps label %s", name, kube.LabelGroup)
		}
	}
}

// --group never, and auto with --keep-snapshots, cut single snapshots
// even where the driver has a group class.
func TestRunGroupNotUsed(t *testing.T) {
	for _, edit := range []func(*Options){
		func(o *Options) { o.Group = GroupNever },
		func(o *Options) { o.KeepSnapshots = true },
	} {
		f := newFixture(1, []int{0}, kubetest.SnapshotClass("snap", driver, true), groupClass("group", driver, true))
		f.sc.PrependReactor("create", "volumegroupsnapshots", func(k8stesting.Action) (bool, runtime.Object, error) {
			t.Error("a VolumeGroupSnapshot was created")
			return true, nil, errors.New("no")
		})
		f.sc.PrependReactor("create", "volumesnapshots", func(a k8stesting.Action) (bool, runtime.Object, error) {
			vs := a.(k8stesting.CreateAction).GetObject().(*snapv1.VolumeSnapshot)
			f.log.add("snapshot " + *vs.Spec.Source.PersistentVolumeClaimName)
			msg := "stop here"
			vs.Status = &snapv1.VolumeSnapshotStatus{Error: &snapv1.VolumeSnapshotError{Message: &msg}}
			return false, nil, nil
		})
		o := opts()
		edit(&o)
		_, _ = Run(context.Background(), f.deps(), o)
		if lines := f.log.all(); len(lines) != 1 || lines[0] != "snapshot data-db-0" {
			t.Errorf("journal %q, want one single snapshot", lines)
		}
	}
}
