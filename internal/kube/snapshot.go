package kube

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/kbak/kbak/internal/hint"
)

// DefaultSnapshotClassAnnotation marks a driver's default VolumeSnapshotClass.
const DefaultSnapshotClassAnnotation = "snapshot.storage.kubernetes.io/is-default-class"

// ErrNoSnapshotClass is wrapped when no VolumeSnapshotClass serves a driver.
var ErrNoSnapshotClass = errors.New("no VolumeSnapshotClass")

// FindSnapshotClass returns the VolumeSnapshotClass to use for driver: the one
// named by name when not empty (it must belong to driver), otherwise the
// driver's default class. The error for a driver without one says what to do.
func FindSnapshotClass(ctx context.Context, sc snapclient.Interface, driver, name string) (*snapv1.VolumeSnapshotClass, error) {
	if driver == "" {
		return nil, advised(ErrNoSnapshotClass, "volume is not provisioned by a CSI driver, so it cannot be snapshotted", "use %s", hint.Set(hint.Method, "files"))
	}
	if name != "" {
		c, err := sc.SnapshotV1().VolumeSnapshotClasses().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, advised(ErrNoSnapshotClass, fmt.Sprintf("VolumeSnapshotClass %s not found", name), "check %s", hint.Of(hint.SnapshotClass))
		}
		if err != nil {
			return nil, fmt.Errorf("get VolumeSnapshotClass %s: %w", name, err)
		}
		if c.Driver != driver {
			return nil, advised(ErrNoSnapshotClass, fmt.Sprintf("VolumeSnapshotClass %s is for driver %s, not %s", name, c.Driver, driver), "name a class of %s or use %s", driver, hint.Set(hint.Method, "files"))
		}
		return c, nil
	}
	list, err := sc.SnapshotV1().VolumeSnapshotClasses().List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) {
		// The CRD itself is missing: the cluster has no snapshot support.
		return nil, advised(ErrNoSnapshotClass, fmt.Sprintf("no VolumeSnapshotClass for driver %s (the snapshot CRDs are not installed)", driver), "install the CSI snapshotter or use %s", hint.Set(hint.Method, "files"))
	}
	if err != nil {
		return nil, fmt.Errorf("list VolumeSnapshotClasses: %w", err)
	}
	i, defaults, others := defaultClass(list.Items, driver, func(c *snapv1.VolumeSnapshotClass) (string, string, bool) {
		return c.Name, c.Driver, c.Annotations[DefaultSnapshotClassAnnotation] == "true"
	})
	switch {
	case i >= 0:
		return &list.Items[i], nil
	case len(defaults) > 1:
		return nil, advised(ErrNoSnapshotClass, fmt.Sprintf("several default VolumeSnapshotClasses for driver %s (%s)", driver, strings.Join(defaults, ", ")), "choose one with %s", hint.Of(hint.SnapshotClass))
	case len(others) > 0:
		return nil, advised(ErrNoSnapshotClass, fmt.Sprintf("no default VolumeSnapshotClass for driver %s (%s exist but none is annotated %s=true)", driver, strings.Join(others, ", "), DefaultSnapshotClassAnnotation), "choose one with %s", hint.Of(hint.SnapshotClass))
	}
	return nil, advised(ErrNoSnapshotClass, fmt.Sprintf("no VolumeSnapshotClass for driver %s", driver), "create one or use %s", hint.Set(hint.Method, "files"))
}

// defaultClass finds, among the classes in items (of VolumeSnapshotClass or
// VolumeGroupSnapshotClass; of reads a class's name, driver and default
// mark), the only default class of driver: its index, or -1 with the
// sorted names of the driver's default classes and of its others.
func defaultClass[T any](items []T, driver string, of func(*T) (name, driver string, isDefault bool)) (int, []string, []string) {
	chosen := -1
	var defaults, others []string
	for i := range items {
		name, d, isDefault := of(&items[i])
		switch {
		case d != driver:
		case isDefault:
			defaults = append(defaults, name)
			chosen = i
		default:
			others = append(others, name)
		}
	}
	if len(defaults) != 1 {
		chosen = -1
	}
	sort.Strings(defaults)
	sort.Strings(others)
	return chosen, defaults, others
}

// NewVolumeSnapshot renders a VolumeSnapshot of claim ns/pvc.
func NewVolumeSnapshot(ns, name, pvc, class string, labels map[string]string) *snapv1.VolumeSnapshot {
	src := pvc
	vs := &snapv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: snapv1.VolumeSnapshotSpec{
			Source: snapv1.VolumeSnapshotSource{PersistentVolumeClaimName: &src},
		},
	}
	if class != "" {
		c := class
		vs.Spec.VolumeSnapshotClassName = &c
	}
	return vs
}

// CreateVolumeSnapshot creates vs, or returns the existing one of the same
// name when it was made by the same run (a retry), so the cut is not repeated.
func CreateVolumeSnapshot(ctx context.Context, sc snapclient.Interface, vs *snapv1.VolumeSnapshot) (*snapv1.VolumeSnapshot, error) {
	api := sc.SnapshotV1().VolumeSnapshots(vs.Namespace)
	got, err := api.Create(ctx, vs, metav1.CreateOptions{})
	if err == nil {
		return got, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create VolumeSnapshot %s/%s: %w", vs.Namespace, vs.Name, err)
	}
	got, err = api.Get(ctx, vs.Name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get VolumeSnapshot %s/%s: %w", vs.Namespace, vs.Name, err)
	}
	if err := sameRun(got.ObjectMeta, vs.ObjectMeta); err != nil {
		return nil, fmt.Errorf("create VolumeSnapshot %s/%s: %w", vs.Namespace, vs.Name, err)
	}
	return got, nil
}

// sameRun refuses to adopt an object of the same name that another run or
// another tool made.
func sameRun(got, want metav1.ObjectMeta) error {
	gotID, gotRestore := RunOf(got.Labels)
	wantID, wantRestore := RunOf(want.Labels)
	if gotID != wantID || gotRestore != wantRestore || got.Labels[LabelManagedBy] != ManagedByValue {
		return fmt.Errorf("an object of that name exists and was not made by this kbak run")
	}
	return nil
}

// SnapshotError returns the snapshot's status error as a Go error, or nil.
func SnapshotError(vs *snapv1.VolumeSnapshot) error {
	if vs.Status == nil || vs.Status.Error == nil {
		return nil
	}
	msg := "unknown error"
	if vs.Status.Error.Message != nil && *vs.Status.Error.Message != "" {
		msg = *vs.Status.Error.Message
	}
	return fmt.Errorf("VolumeSnapshot %s/%s: %s", vs.Namespace, vs.Name, msg)
}

// SnapshotCut reports whether the storage system has taken the snapshot
// (creationTime is set), which is when a quiesced application may resume;
// uploading it may still be in progress.
func SnapshotCut(vs *snapv1.VolumeSnapshot) bool {
	return vs.Status != nil && (vs.Status.CreationTime != nil || (vs.Status.ReadyToUse != nil && *vs.Status.ReadyToUse))
}

// SnapshotReady reports whether the snapshot can be restored from.
func SnapshotReady(vs *snapv1.VolumeSnapshot) bool {
	return vs.Status != nil && vs.Status.ReadyToUse != nil && *vs.Status.ReadyToUse
}

// WaitSnapshot polls ns/name every interval until done reports true, the
// snapshot reports an error (returned at once with its message), or timeout.
func WaitSnapshot(ctx context.Context, sc snapclient.Interface, ns, name string, done func(*snapv1.VolumeSnapshot) bool, interval, timeout time.Duration) (*snapv1.VolumeSnapshot, error) {
	var last *snapv1.VolumeSnapshot
	var lastErr error
	err := wait.PollUntilContextTimeout(ctx, interval, timeout, true, func(ctx context.Context) (bool, error) {
		vs, err := sc.SnapshotV1().VolumeSnapshots(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			err = fmt.Errorf("get VolumeSnapshot %s/%s: %w", ns, name, err)
			if permanent(err) {
				return false, err
			}
			lastErr = err
			return false, nil
		}
		last = vs
		if err := SnapshotError(vs); err != nil {
			return false, err
		}
		return done(vs), nil
	})
	if err != nil {
		if wait.Interrupted(err) && ctx.Err() == nil {
			if lastErr != nil {
				return last, fmt.Errorf("wait for VolumeSnapshot %s/%s: not done after %s (last error: %w)", ns, name, timeout, lastErr)
			}
			return last, fmt.Errorf("wait for VolumeSnapshot %s/%s: not done after %s", ns, name, timeout)
		}
		return last, err
	}
	return last, nil
}

// SnapshotHandle returns the storage system's id of a bound snapshot, or ""
// when its VolumeSnapshotContent does not say yet.
func SnapshotHandle(ctx context.Context, sc snapclient.Interface, vs *snapv1.VolumeSnapshot) (string, error) {
	if vs.Status == nil || vs.Status.BoundVolumeSnapshotContentName == nil {
		return "", nil
	}
	name := *vs.Status.BoundVolumeSnapshotContentName
	c, err := sc.SnapshotV1().VolumeSnapshotContents().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("get VolumeSnapshotContent %s: %w", name, err)
	}
	if c.Status == nil || c.Status.SnapshotHandle == nil {
		return "", nil
	}
	return *c.Status.SnapshotHandle, nil
}

// NewClaimFromSnapshot renders a temporary PVC restored from snapshot, with
// the source claim's class, size, access modes and volume mode.
func NewClaimFromSnapshot(ns, name, snapshot string, src Claim, labels map[string]string) *corev1.PersistentVolumeClaim {
	apiGroup := snapv1.GroupName
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: append([]corev1.PersistentVolumeAccessMode(nil), src.AccessModes...),
			Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: src.Size.DeepCopy()},
			},
			DataSource: &corev1.TypedLocalObjectReference{
				APIGroup: &apiGroup,
				Kind:     "VolumeSnapshot",
				Name:     snapshot,
			},
		},
	}
	if src.StorageClass != "" {
		c := src.StorageClass
		pvc.Spec.StorageClassName = &c
	}
	if src.VolumeMode != "" {
		m := src.VolumeMode
		pvc.Spec.VolumeMode = &m
	}
	return pvc
}

// CreateClaim creates pvc, or returns the one a previous try of the same run
// made.
func CreateClaim(ctx context.Context, kc kubernetes.Interface, pvc *corev1.PersistentVolumeClaim) (*corev1.PersistentVolumeClaim, error) {
	api := kc.CoreV1().PersistentVolumeClaims(pvc.Namespace)
	got, err := api.Create(ctx, pvc, metav1.CreateOptions{})
	if err == nil {
		return got, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create persistentvolumeclaim %s/%s: %w", pvc.Namespace, pvc.Name, err)
	}
	got, err = api.Get(ctx, pvc.Name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get persistentvolumeclaim %s/%s: %w", pvc.Namespace, pvc.Name, err)
	}
	if err := sameRun(got.ObjectMeta, pvc.ObjectMeta); err != nil {
		return nil, fmt.Errorf("create persistentvolumeclaim %s/%s: %w", pvc.Namespace, pvc.Name, err)
	}
	return got, nil
}
