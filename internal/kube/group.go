package kube

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	groupv1beta2 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumegroupsnapshot/v1beta2"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/kbak/kbak/internal/hint"
)

// kbak speaks groupsnapshot.storage.k8s.io/v1beta2: external-snapshotter
// v8.7.0 serves it beside v1 (same schema, no conversion webhook), and it
// is what the client module kbak builds with carries.

// DefaultGroupSnapshotClassAnnotation marks a driver's default
// VolumeGroupSnapshotClass.
const DefaultGroupSnapshotClassAnnotation = "groupsnapshot.storage.kubernetes.io/is-default-class"

// ErrNoGroupSnapshotClass is wrapped when no VolumeGroupSnapshotClass
// serves a driver.
var ErrNoGroupSnapshotClass = errors.New("no VolumeGroupSnapshotClass")

// FindGroupSnapshotClass returns the VolumeGroupSnapshotClass to use for
// driver: the one named by name when not empty (it must belong to driver),
// otherwise the driver's only default class.
func FindGroupSnapshotClass(ctx context.Context, sc snapclient.Interface, driver, name string) (*groupv1beta2.VolumeGroupSnapshotClass, error) {
	if driver == "" {
		return nil, fmt.Errorf("%w: the volume is not provisioned by a CSI driver", ErrNoGroupSnapshotClass)
	}
	api := sc.GroupsnapshotV1beta2().VolumeGroupSnapshotClasses()
	if name != "" {
		c, err := api.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, advised(ErrNoGroupSnapshotClass, fmt.Sprintf("VolumeGroupSnapshotClass %s not found", name), "check %s", hint.Of(hint.GroupSnapshotClass))
		}
		if err != nil {
			return nil, fmt.Errorf("get VolumeGroupSnapshotClass %s: %w", name, err)
		}
		if c.Driver != driver {
			return nil, advised(ErrNoGroupSnapshotClass, fmt.Sprintf("VolumeGroupSnapshotClass %s is for driver %s, not %s", name, c.Driver, driver), "name a class of %s", driver)
		}
		return c, nil
	}
	list, err := api.List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("%w for driver %s (the group snapshot CRDs are not installed)", ErrNoGroupSnapshotClass, driver)
	}
	if err != nil {
		return nil, fmt.Errorf("list VolumeGroupSnapshotClasses: %w", err)
	}
	i, defaults, others := defaultClass(list.Items, driver, func(c *groupv1beta2.VolumeGroupSnapshotClass) (string, string, bool) {
		return c.Name, c.Driver, c.Annotations[DefaultGroupSnapshotClassAnnotation] == "true"
	})
	switch {
	case i >= 0:
		return &list.Items[i], nil
	case len(defaults) > 1:
		return nil, advised(ErrNoGroupSnapshotClass, fmt.Sprintf("several default VolumeGroupSnapshotClasses for driver %s (%s)", driver, strings.Join(defaults, ", ")), "choose one with %s", hint.Of(hint.GroupSnapshotClass))
	case len(others) > 0:
		return nil, advised(ErrNoGroupSnapshotClass, fmt.Sprintf("no default VolumeGroupSnapshotClass for driver %s (%s exist but none is annotated %s=true)", driver, strings.Join(others, ", "), DefaultGroupSnapshotClassAnnotation), "choose one with %s", hint.Of(hint.GroupSnapshotClass))
	}
	return nil, fmt.Errorf("%w for driver %s", ErrNoGroupSnapshotClass, driver)
}

// MaxGroups bounds the group snapshots of one backup run: one a CSI
// driver of its claims.
const MaxGroups = 16

// GroupSnapshotName is the name of the i-th VolumeGroupSnapshot of backup
// run id, and the value of LabelGroup on its claims while it is cut.
func GroupSnapshotName(id string, i int) string {
	return Name("kbak", id, "group", strconv.Itoa(i))
}

// NewVolumeGroupSnapshot renders a VolumeGroupSnapshot of the claims in ns
// that carry LabelGroup=name.
func NewVolumeGroupSnapshot(ns, name, class string, labels map[string]string) *groupv1beta2.VolumeGroupSnapshot {
	vgs := &groupv1beta2.VolumeGroupSnapshot{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: groupv1beta2.VolumeGroupSnapshotSpec{
			Source: groupv1beta2.VolumeGroupSnapshotSource{
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{LabelGroup: name}},
			},
		},
	}
	if class != "" {
		c := class
		vgs.Spec.VolumeGroupSnapshotClassName = &c
	}
	return vgs
}

// CreateVolumeGroupSnapshot creates vgs, or returns the existing one of the
// same name when the same run made it.
func CreateVolumeGroupSnapshot(ctx context.Context, sc snapclient.Interface, vgs *groupv1beta2.VolumeGroupSnapshot) (*groupv1beta2.VolumeGroupSnapshot, error) {
	api := sc.GroupsnapshotV1beta2().VolumeGroupSnapshots(vgs.Namespace)
	got, err := api.Create(ctx, vgs, metav1.CreateOptions{})
	if err == nil {
		return got, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create VolumeGroupSnapshot %s/%s: %w", vgs.Namespace, vgs.Name, err)
	}
	got, err = api.Get(ctx, vgs.Name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get VolumeGroupSnapshot %s/%s: %w", vgs.Namespace, vgs.Name, err)
	}
	if err := sameRun(got.ObjectMeta, vgs.ObjectMeta); err != nil {
		return nil, fmt.Errorf("create VolumeGroupSnapshot %s/%s: %w", vgs.Namespace, vgs.Name, err)
	}
	return got, nil
}

// GroupSnapshotError returns the group snapshot's status error, or nil.
func GroupSnapshotError(vgs *groupv1beta2.VolumeGroupSnapshot) error {
	if vgs.Status == nil || vgs.Status.Error == nil {
		return nil
	}
	msg := "unknown error"
	if vgs.Status.Error.Message != nil && *vgs.Status.Error.Message != "" {
		msg = *vgs.Status.Error.Message
	}
	return fmt.Errorf("VolumeGroupSnapshot %s/%s: %s", vgs.Namespace, vgs.Name, msg)
}

// GroupSnapshotCut reports whether the storage system has cut the group
// (creationTime set, or ready), when a quiesced application may resume.
func GroupSnapshotCut(vgs *groupv1beta2.VolumeGroupSnapshot) bool {
	return vgs.Status != nil && (vgs.Status.CreationTime != nil || (vgs.Status.ReadyToUse != nil && *vgs.Status.ReadyToUse))
}

// GroupErrorGrace is how long a group snapshot's status error must last
// before WaitGroupSnapshot or WaitGroupMembers gives up: the snapshot
// controller also records passing errors there (a conflicting update of the
// group's content) and clears them on its next try. A variable for tests.
var GroupErrorGrace = 10 * time.Second

// lasting tells a status error that has stayed for a grace period from a
// passing one.
type lasting struct{ since time.Time }

// over records err (nil: the status reports none now) and reports whether
// it has been reported for grace.
func (l *lasting) over(err error, grace time.Duration) bool {
	switch {
	case err == nil:
		l.since = time.Time{}
	case l.since.IsZero():
		l.since = time.Now()
	default:
		return time.Since(l.since) >= grace
	}
	return false
}

// WaitGroupSnapshot polls ns/name until the storage has cut it, reports
// the same error for GroupErrorGrace (returned then), or timeout passes. It
// returns the group snapshot and when it was cut.
//
// The cut is read from the group's VolumeGroupSnapshotContent, whose
// status the CSI sidecar sets as soon as the driver has cut the group: the
// snapshot controller sets the VolumeGroupSnapshot's own status only after
// it has made every member, which under load takes many seconds more, and
// a quiesced application waits for the cut alone. Where the content cannot
// be read (no permission), the group's own status tells.
func WaitGroupSnapshot(ctx context.Context, sc snapclient.Interface, ns, name string, interval, timeout time.Duration) (*groupv1beta2.VolumeGroupSnapshot, time.Time, error) {
	var last *groupv1beta2.VolumeGroupSnapshot
	var lastErr error
	var cutAt time.Time
	var erring lasting
	readContent := true
	err := wait.PollUntilContextTimeout(ctx, interval, timeout, true, func(ctx context.Context) (bool, error) {
		vgs, err := sc.GroupsnapshotV1beta2().VolumeGroupSnapshots(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			err = fmt.Errorf("get VolumeGroupSnapshot %s/%s: %w", ns, name, err)
			if permanent(err) {
				return false, err
			}
			return false, nil
		}
		last = vgs
		if GroupSnapshotCut(vgs) {
			cutAt = time.Now()
			if vgs.Status.CreationTime != nil {
				cutAt = vgs.Status.CreationTime.Time
			}
			return true, nil
		}
		if readContent && vgs.Status != nil && vgs.Status.BoundVolumeGroupSnapshotContentName != nil {
			c, err := sc.GroupsnapshotV1beta2().VolumeGroupSnapshotContents().Get(ctx, *vgs.Status.BoundVolumeGroupSnapshotContentName, metav1.GetOptions{})
			switch {
			case apierrors.IsForbidden(err):
				readContent = false
			case err == nil && c.Status != nil && (c.Status.CreationTime != nil || c.Status.ReadyToUse != nil && *c.Status.ReadyToUse):
				cutAt = time.Now()
				if c.Status.CreationTime != nil {
					cutAt = c.Status.CreationTime.Time
				}
				return true, nil
			}
		}
		lastErr = GroupSnapshotError(vgs)
		if erring.over(lastErr, min(GroupErrorGrace, timeout)) {
			return false, lastErr
		}
		return false, nil
	})
	if err != nil && wait.Interrupted(err) && ctx.Err() == nil {
		if lastErr != nil {
			return last, cutAt, lastErr
		}
		return last, cutAt, fmt.Errorf("wait for VolumeGroupSnapshot %s/%s: not cut after %s", ns, name, timeout)
	}
	return last, cutAt, err
}

// GroupMembers returns the member VolumeSnapshots the snapshot controller
// made for vgs, by source claim. The controller names them; they are owned
// by vgs and go when it is deleted.
func GroupMembers(ctx context.Context, sc snapclient.Interface, vgs *groupv1beta2.VolumeGroupSnapshot) (map[string]*snapv1.VolumeSnapshot, error) {
	list, err := sc.SnapshotV1().VolumeSnapshots(vgs.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list VolumeSnapshots of VolumeGroupSnapshot %s/%s: %w", vgs.Namespace, vgs.Name, err)
	}
	out := map[string]*snapv1.VolumeSnapshot{}
	for i := range list.Items {
		s := &list.Items[i]
		if !memberOf(s, vgs) || s.Spec.Source.PersistentVolumeClaimName == nil {
			continue
		}
		out[*s.Spec.Source.PersistentVolumeClaimName] = s
	}
	return out, nil
}

func memberOf(s *snapv1.VolumeSnapshot, vgs *groupv1beta2.VolumeGroupSnapshot) bool {
	for _, o := range s.OwnerReferences {
		if o.Kind == "VolumeGroupSnapshot" && o.Name == vgs.Name && (vgs.UID == "" || o.UID == vgs.UID) {
			return true
		}
	}
	return false
}

// WaitGroupMembers polls until vgs has a member for every claim in claims.
// A controller that cannot make them says so in the group's status: an
// error that stays for GroupErrorGrace ends the wait with it.
func WaitGroupMembers(ctx context.Context, sc snapclient.Interface, vgs *groupv1beta2.VolumeGroupSnapshot, claims []string, interval, timeout time.Duration) (map[string]*snapv1.VolumeSnapshot, error) {
	var got map[string]*snapv1.VolumeSnapshot
	var lastErr, groupErr error
	var erring lasting
	err := wait.PollUntilContextTimeout(ctx, interval, timeout, true, func(ctx context.Context) (bool, error) {
		got, lastErr = GroupMembers(ctx, sc, vgs)
		if lastErr != nil {
			if permanent(lastErr) {
				return false, lastErr
			}
			return false, nil
		}
		if !slices.ContainsFunc(claims, func(c string) bool { return got[c] == nil }) {
			return true, nil
		}
		cur, err := sc.GroupsnapshotV1beta2().VolumeGroupSnapshots(vgs.Namespace).Get(ctx, vgs.Name, metav1.GetOptions{})
		if err == nil {
			groupErr = GroupSnapshotError(cur)
			if erring.over(groupErr, min(GroupErrorGrace, timeout)) {
				return false, fmt.Errorf("%w: its member snapshots were not made", groupErr)
			}
		}
		return false, nil
	})
	if err != nil && wait.Interrupted(err) && ctx.Err() == nil {
		var missing []string
		for _, c := range claims {
			if got[c] == nil {
				missing = append(missing, c)
			}
		}
		err = fmt.Errorf("VolumeGroupSnapshot %s/%s: no member snapshot of %s after %s", vgs.Namespace, vgs.Name, strings.Join(missing, ", "), timeout)
		if groupErr != nil {
			err = fmt.Errorf("%w (%v)", err, groupErr)
		}
		return got, err
	}
	return got, err
}

// SetClaimGroupLabel puts LabelGroup=group on claim ns/name, or takes it
// off when group is empty. It changes nothing else of the claim, and
// removing a label already gone is no error.
func SetClaimGroupLabel(ctx context.Context, kc kubernetes.Interface, ns, name, group string) error {
	value := "null"
	if group != "" {
		value = `"` + group + `"`
	}
	patch := []byte(`{"metadata":{"labels":{"` + LabelGroup + `":` + value + `}}}`)
	_, err := kc.CoreV1().PersistentVolumeClaims(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil && !(group == "" && apierrors.IsNotFound(err)) {
		return fmt.Errorf("label persistentvolumeclaim %s/%s %s: %w", ns, name, LabelGroup, err)
	}
	return nil
}
