// Package kubetest builds Kubernetes fixtures for tests of discovery, backup
// and restore.
package kubetest

import (
	"fmt"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// StatefulSetBuilder builds a StatefulSet.
type StatefulSetBuilder struct{ sts *appsv1.StatefulSet }

// StatefulSet starts a StatefulSet ns/name with one replica, no claim
// templates and one container "app".
func StatefulSet(ns, name string) *StatefulSetBuilder {
	one := int32(1)
	return &StatefulSetBuilder{sts: &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name)},
		Spec: appsv1.StatefulSetSpec{
			Replicas: &one,
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}}},
		},
	}}
}

// Replicas sets the replica count.
func (b *StatefulSetBuilder) Replicas(n int32) *StatefulSetBuilder {
	b.sts.Spec.Replicas = &n
	return b
}

// Claim adds a volumeClaimTemplate.
func (b *StatefulSetBuilder) Claim(name, class, size string) *StatefulSetBuilder {
	b.sts.Spec.VolumeClaimTemplates = append(b.sts.Spec.VolumeClaimTemplates, corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: &class,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
		},
	})
	return b
}

// Result returns the StatefulSet.
func (b *StatefulSetBuilder) Result() *appsv1.StatefulSet { return b.sts }

// ClaimBuilder builds a PVC and, when bound, its PV.
type ClaimBuilder struct {
	pvc *corev1.PersistentVolumeClaim
	pv  *corev1.PersistentVolume
}

// Claim starts an unbound ReadWriteOnce 1Gi claim ns/name of class.
func Claim(ns, name, class string) *ClaimBuilder {
	return &ClaimBuilder{pvc: &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: &class,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
		Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending},
	}}
}

// Bound binds the claim to a PV "pv-<name>" of CSI driver (none when "").
func (b *ClaimBuilder) Bound(driver string) *ClaimBuilder {
	name := "pv-" + b.pvc.Name
	b.pvc.Spec.VolumeName = name
	b.pvc.Status.Phase = corev1.ClaimBound
	b.pvc.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: b.pvc.Spec.Resources.Requests[corev1.ResourceStorage]}
	b.pvc.Status.AccessModes = b.pvc.Spec.AccessModes
	b.pv = &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:         b.pvc.Status.Capacity,
			AccessModes:      b.pvc.Spec.AccessModes,
			StorageClassName: *b.pvc.Spec.StorageClassName,
			ClaimRef:         &corev1.ObjectReference{Namespace: b.pvc.Namespace, Name: b.pvc.Name},
		},
		Status: corev1.PersistentVolumeStatus{Phase: corev1.VolumeBound},
	}
	if driver != "" {
		b.pv.Spec.CSI = &corev1.CSIPersistentVolumeSource{Driver: driver, VolumeHandle: "h-" + b.pvc.Name}
	} else {
		b.pv.Spec.HostPath = &corev1.HostPathVolumeSource{Path: "/tmp/" + b.pvc.Name}
	}
	return b
}

// AccessModes replaces the access modes.
func (b *ClaimBuilder) AccessModes(m ...corev1.PersistentVolumeAccessMode) *ClaimBuilder {
	b.pvc.Spec.AccessModes = m
	if b.pv != nil {
		b.pv.Spec.AccessModes = m
	}
	return b
}

// Size sets the requested and bound size.
func (b *ClaimBuilder) Size(q string) *ClaimBuilder {
	b.pvc.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse(q)
	if b.pvc.Status.Capacity != nil {
		b.pvc.Status.Capacity[corev1.ResourceStorage] = resource.MustParse(q)
	}
	return b
}

// Block makes it a raw block claim.
func (b *ClaimBuilder) Block() *ClaimBuilder {
	m := corev1.PersistentVolumeBlock
	b.pvc.Spec.VolumeMode = &m
	return b
}

// Result returns the claim.
func (b *ClaimBuilder) Result() *corev1.PersistentVolumeClaim { return b.pvc }

// PV returns the bound volume, nil when unbound.
func (b *ClaimBuilder) PV() *corev1.PersistentVolume { return b.pv }

// PodBuilder builds a StatefulSet's pod.
type PodBuilder struct{ pod *corev1.Pod }

// Pod starts the Running pod of ordinal of StatefulSet ns/sts on node.
func Pod(ns, sts string, ordinal int, node string) *PodBuilder {
	return &PodBuilder{pod: &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: fmt.Sprintf("%s-%d", sts, ordinal),
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: sts, UID: types.UID("uid-" + sts)}},
		},
		Spec:   corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "app", Image: "app"}, {Name: "sidecar", Image: "sidecar"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}}
}

// Phase sets the pod phase.
func (b *PodBuilder) Phase(p corev1.PodPhase) *PodBuilder {
	b.pod.Status.Phase = p
	return b
}

// Result returns the pod.
func (b *PodBuilder) Result() *corev1.Pod { return b.pod }

// SnapshotClass builds a VolumeSnapshotClass of driver, marked default when
// def is true.
func SnapshotClass(name, driver string, def bool) *snapv1.VolumeSnapshotClass {
	c := &snapv1.VolumeSnapshotClass{
		ObjectMeta:     metav1.ObjectMeta{Name: name},
		Driver:         driver,
		DeletionPolicy: snapv1.VolumeSnapshotContentDelete,
	}
	if def {
		c.Annotations = map[string]string{"snapshot.storage.kubernetes.io/is-default-class": "true"}
	}
	return c
}
