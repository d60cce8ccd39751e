package restore

import (
	"fmt"
	"strings"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/kube"
	"github.com/kbak/kbak/internal/kube/kubetest"
)

const (
	backupID = "db-20261122T020000Z-3f2a"
	driver   = "csi.example.com"
)

// volumeBuilder builds one manifest volume: template "data" of class
// "fast", 1Gi, backed up to the store.
type volumeBuilder struct{ v catalog.Volume }

func vol(template string, ordinal int) *volumeBuilder {
	pvc := kube.ClaimName(template, "db", ordinal)
	class := "fast"
	size := resource.MustParse("1Gi")
	l := catalog.Layout{Namespace: "shop", StatefulSet: "db", ID: backupID}
	return &volumeBuilder{v: catalog.Volume{
		ClaimTemplate: template, Ordinal: ordinal, PVC: pvc,
		ClaimSpec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: &class,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
		},
		StorageClass: class, AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		VolumeMode:    corev1.PersistentVolumeFilesystem,
		RequestedSize: size, Capacity: size, CSIDriver: driver,
		Method: catalog.MethodFiles, Consistency: catalog.ConsistencyLive,
		Key: l.VolumeKey(pvc), RawBytes: 100 + int64(ordinal), Files: 10 + int64(ordinal),
		SHA256: strings.Repeat("a", 64), Status: catalog.VolumeCompleted,
	}}
}

func (b *volumeBuilder) class(c string) *volumeBuilder {
	b.v.StorageClass = c
	if c == "" {
		b.v.ClaimSpec.StorageClassName = nil
	} else {
		b.v.ClaimSpec.StorageClassName = &c
	}
	return b
}

func (b *volumeBuilder) sizes(requested, capacity string) *volumeBuilder {
	b.v.RequestedSize = resource.MustParse(requested)
	b.v.Capacity = resource.MustParse(capacity)
	return b
}

func (b *volumeBuilder) failed(why string) *volumeBuilder {
	b.v.Status, b.v.Error, b.v.Key, b.v.SHA256 = catalog.VolumeFailed, why, "", ""
	return b
}

// kept records a retained snapshot "snap-<ordinal>" in ns.
func (b *volumeBuilder) kept(ns string) *volumeBuilder {
	b.v.Method = catalog.MethodSnapshot
	b.v.Snapshot = &catalog.Snapshot{Name: fmt.Sprintf("snap-%d", b.v.Ordinal), Namespace: ns, Class: "snapclass", Retained: true}
	return b
}

func (b *volumeBuilder) block() *volumeBuilder {
	b.v.VolumeMode = corev1.PersistentVolumeBlock
	return b
}

// manifest builds backup backupID of shop/db with the volumes given.
func manifest(vols ...*volumeBuilder) *catalog.Manifest {
	sts := kubetest.StatefulSet("shop", "db").Replicas(3).Claim("data", "fast", "1Gi").Result()
	sts.Spec.ServiceName = "db"
	m := &catalog.Manifest{
		ID: backupID, Namespace: "shop", StatefulSet: "db",
		Created: time.Date(2026, 11, 22, 2, 0, 0, 0, time.UTC),
		Spec:    catalog.StripStatefulSet(sts),
	}
	for _, v := range vols {
		m.Volumes = append(m.Volumes, v.v)
	}
	m.Status = catalog.OverallStatus(m.Volumes)
	return m
}

func namespace(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

func storageClass(name, provisioner string, def bool) *storagev1.StorageClass {
	c := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Provisioner: provisioner}
	if def {
		c.Annotations = map[string]string{DefaultStorageClassAnnotation: "true"}
	}
	return c
}

// keptSnapshot is the VolumeSnapshot the backup kept for ordinal, ready
// unless told otherwise.
func keptSnapshot(ns string, ordinal int, ready bool) *snapv1.VolumeSnapshot {
	vs := kube.NewVolumeSnapshot(ns, fmt.Sprintf("snap-%d", ordinal), kube.ClaimName("data", "db", ordinal), "snapclass", kube.Labels(backupID, "db", kube.RoleSnapshot))
	vs.Labels[kube.LabelRetained] = "true"
	size := resource.MustParse("1Gi")
	vs.Status = &snapv1.VolumeSnapshotStatus{ReadyToUse: &ready, RestoreSize: &size}
	return vs
}
