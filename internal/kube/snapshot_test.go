package kube

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapfake "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kbak/kbak/internal/hint"
	"github.com/kbak/kbak/internal/hint/hinttest"
	"github.com/kbak/kbak/internal/kube/kubetest"
)

func TestFindSnapshotClass(t *testing.T) {
	tests := []struct {
		name    string
		classes []runtime.Object
		driver  string
		named   string
		want    string // class name, or a substring of the error
		wantErr bool
	}{
		{"default of the driver", []runtime.Object{kubetest.SnapshotClass("a", "d1", false), kubetest.SnapshotClass("b", "d1", true), kubetest.SnapshotClass("c", "d2", true)}, "d1", "", "b", false},
		{"named", []runtime.Object{kubetest.SnapshotClass("a", "d1", false), kubetest.SnapshotClass("b", "d1", true)}, "d1", "a", "a", false},
		{"named for another driver", []runtime.Object{kubetest.SnapshotClass("c", "d2", true)}, "d1", "c", "is for driver d2, not d1", true},
		{"named missing", nil, "d1", "x", "VolumeSnapshotClass x not found", true},
		{"none", []runtime.Object{kubetest.SnapshotClass("c", "d2", true)}, "d1", "", "no VolumeSnapshotClass for driver d1: create one or use --method files", true},
		{"no default", []runtime.Object{kubetest.SnapshotClass("a", "d1", false)}, "d1", "", "a exist but none is annotated", true},
		{"two defaults", []runtime.Object{kubetest.SnapshotClass("a", "d1", true), kubetest.SnapshotClass("b", "d1", true)}, "d1", "", "several default VolumeSnapshotClasses for driver d1 (a, b)", true},
		{"not csi", nil, "", "", "not provisioned by a CSI driver", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := FindSnapshotClass(context.Background(), snapfake.NewSimpleClientset(tt.classes...), tt.driver, tt.named)
			if tt.wantErr {
				// As the command line shows it.
				if err == nil || !errors.Is(err, ErrNoSnapshotClass) || !strings.Contains(hint.Render(err, hinttest.Flags), tt.want) {
					t.Fatalf("err = %v, want ErrNoSnapshotClass containing %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Name != tt.want {
				t.Errorf("class = %s, want %s", c.Name, tt.want)
			}
		})
	}
}

func snapshot(name string, status *snapv1.VolumeSnapshotStatus) *snapv1.VolumeSnapshot {
	vs := NewVolumeSnapshot(ns, name, "data-db-0", "c", Labels("id", "db", RoleSnapshot))
	vs.Status = status
	return vs
}

func TestWaitSnapshot(t *testing.T) {
	yes := true
	msg := "driver says no"
	now := metav1.Now()
	tests := []struct {
		name    string
		status  *snapv1.VolumeSnapshotStatus
		done    func(*snapv1.VolumeSnapshot) bool
		wantErr string
	}{
		{"ready", &snapv1.VolumeSnapshotStatus{ReadyToUse: &yes}, SnapshotReady, ""},
		{"cut before ready", &snapv1.VolumeSnapshotStatus{CreationTime: &now}, SnapshotCut, ""},
		{"cut is not ready", &snapv1.VolumeSnapshotStatus{CreationTime: &now}, SnapshotReady, "not done after"},
		{"no status yet", nil, SnapshotCut, "not done after"},
		{"error fails at once", &snapv1.VolumeSnapshotStatus{Error: &snapv1.VolumeSnapshotError{Message: &msg}}, SnapshotReady, "driver says no"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := snapfake.NewSimpleClientset(snapshot("s", tt.status))
			timeout := 30 * time.Millisecond
			if tt.wantErr == "driver says no" {
				timeout = time.Hour // must not be waited for
			}
			_, err := WaitSnapshot(context.Background(), sc, ns, "s", tt.done, time.Millisecond, timeout)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestCreateVolumeSnapshotRetry(t *testing.T) {
	mine := snapshot("s", nil)
	other := snapshot("s", nil)
	other.Labels = nil
	tests := []struct {
		name     string
		existing *snapv1.VolumeSnapshot
		wantErr  bool
	}{
		{"first try", nil, false},
		{"retry adopts its own", mine, false},
		{"foreign object refused", other, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := snapfake.NewSimpleClientset()
			if tt.existing != nil {
				sc = snapfake.NewSimpleClientset(tt.existing)
			}
			_, err := CreateVolumeSnapshot(context.Background(), sc, snapshot("s", nil))
			if (err != nil) != tt.wantErr {
				t.Errorf("err = %v, want error %v", err, tt.wantErr)
			}
		})
	}
}

func TestNewClaimFromSnapshot(t *testing.T) {
	block := corev1.PersistentVolumeBlock
	src := Claim{
		Name: "data-db-0", StorageClass: "fast", Size: resource.MustParse("5Gi"),
		AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOncePod}, VolumeMode: block,
	}
	pvc := NewClaimFromSnapshot(ns, "tmp", "snap", src, Labels("id", "db", RoleTempClaim))
	ds := pvc.Spec.DataSource
	if ds == nil || ds.Kind != "VolumeSnapshot" || ds.Name != "snap" || ds.APIGroup == nil || *ds.APIGroup != "snapshot.storage.k8s.io" {
		t.Errorf("dataSource = %+v", ds)
	}
	if *pvc.Spec.StorageClassName != "fast" || *pvc.Spec.VolumeMode != block || pvc.Spec.AccessModes[0] != corev1.ReadWriteOncePod {
		t.Errorf("spec = %+v", pvc.Spec)
	}
	if q := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; q.String() != "5Gi" {
		t.Errorf("size = %s", q.String())
	}
	if pvc.Labels[LabelManagedBy] != "kbak" || pvc.Labels[LabelBackupID] != "id" {
		t.Errorf("labels = %v", pvc.Labels)
	}
}
