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
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
)

// A VolumeSnapshot kbak deleted may stay for minutes: the snapshot
// controller holds it with its finalizers (snapshot.storage.kubernetes.io/
// volumesnapshot-as-source-protection while a claim is being made from it,
// .../volumesnapshot-bound-protection until the CSI driver has deleted the
// data and its VolumeSnapshotContent is gone). Such a snapshot is deleting,
// not left behind: nothing is left for kbak to do, and deleting it again
// changes nothing. This file is the one place that tells the two apart.

// DefaultSnapshotGoneTimeout bounds how long a run waits for the
// VolumeSnapshots it deleted to be gone unless told otherwise.
const DefaultSnapshotGoneTimeout = 2 * time.Minute

// SnapshotState is where a VolumeSnapshot kbak made is in its life.
type SnapshotState string

const (
	// SnapshotLeft: not marked for deletion. Of a run that is over, it is
	// left behind.
	SnapshotLeft SnapshotState = "left"
	// SnapshotDeleting: deleted (deletionTimestamp set), its
	// VolumeSnapshotContent too or not yet made, and held by a
	// controller's finalizers until the storage has deleted the data.
	SnapshotDeleting SnapshotState = "deleting"
	// SnapshotGone: neither the snapshot nor its content exist.
	SnapshotGone SnapshotState = "gone"
)

// SnapshotRef names a VolumeSnapshot and the VolumeSnapshotContent bound
// to it, recorded while the snapshot exists: once it is gone its content
// can only be found by name.
type SnapshotRef struct {
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	UID       types.UID `json:"-"`
	Content   string    `json:"content,omitempty"`
}

// RefOf records vs. The content is the one its status names, or for a
// snapshot of a claim not bound yet the name the snapshot controller gives
// it (snapcontent-<uid>).
func RefOf(vs *snapv1.VolumeSnapshot) SnapshotRef {
	r := SnapshotRef{Namespace: vs.Namespace, Name: vs.Name, UID: vs.UID}
	switch {
	case vs.Status != nil && vs.Status.BoundVolumeSnapshotContentName != nil:
		r.Content = *vs.Status.BoundVolumeSnapshotContentName
	case vs.Spec.Source.PersistentVolumeClaimName != nil && vs.UID != "":
		r.Content = "snapcontent-" + string(vs.UID)
	}
	return r
}

// SnapshotStatus is a VolumeSnapshot of kbak's with its content, as
// ClassifySnapshot sees them.
type SnapshotStatus struct {
	SnapshotRef
	// RunID is the run that made it (LabelBackupID or LabelRestoreID).
	RunID string        `json:"run,omitempty"`
	State SnapshotState `json:"state"`
	// Since is when the snapshot (or, when only that is left, its
	// content) was deleted; zero unless State is SnapshotDeleting.
	Since time.Time `json:"since,omitzero"`
	// Finalizers hold the snapshot, ContentFinalizers its content.
	Finalizers        []string `json:"finalizers,omitempty"`
	ContentFinalizers []string `json:"contentFinalizers,omitempty"`
}

// String says in a few words what holds it, for logs and tables.
func (s SnapshotStatus) String() string {
	out := s.Namespace + "/" + s.Name
	var held []string
	if len(s.Finalizers) > 0 {
		held = append(held, "snapshot: "+strings.Join(s.Finalizers, ","))
	}
	if len(s.ContentFinalizers) > 0 {
		held = append(held, "content "+s.Content+": "+strings.Join(s.ContentFinalizers, ","))
	}
	if len(held) > 0 {
		out += " (held by " + strings.Join(held, "; ") + ")"
	}
	return out
}

// ClassifySnapshot tells a snapshot being deleted from one left behind.
// vs or content may be nil (not found); ref names the snapshot when vs is
// nil. A content counts only when it points back to the snapshot (its
// volumeSnapshotRef names it and, when known, its UID). A snapshot not
// marked for deletion is left, whatever its content; a snapshot gone with
// its content still there is deleting when the content is marked for
// deletion and left otherwise (a content kept by its deletionPolicy
// Retain is no longer kbak's to delete, but it is not gone either).
func ClassifySnapshot(ref SnapshotRef, vs *snapv1.VolumeSnapshot, content *snapv1.VolumeSnapshotContent) SnapshotStatus {
	if vs != nil {
		r := RefOf(vs)
		if r.Content == "" {
			r.Content = ref.Content
		}
		ref = r
	}
	if content != nil && !pointsTo(content, ref) {
		content = nil
	}
	s := SnapshotStatus{SnapshotRef: ref, State: SnapshotGone}
	if vs != nil {
		s.RunID, _ = RunOf(vs.Labels)
		s.Finalizers = append([]string(nil), vs.Finalizers...)
	}
	if content != nil {
		s.ContentFinalizers = append([]string(nil), content.Finalizers...)
	}
	switch {
	case vs != nil && vs.DeletionTimestamp == nil:
		s.State = SnapshotLeft
	case vs != nil:
		s.State, s.Since = SnapshotDeleting, vs.DeletionTimestamp.Time
	case content == nil:
		s.State = SnapshotGone
	case content.DeletionTimestamp != nil:
		s.State, s.Since = SnapshotDeleting, content.DeletionTimestamp.Time
	default:
		s.State = SnapshotLeft
	}
	return s
}

// pointsTo reports whether content is bound to the snapshot ref names.
func pointsTo(content *snapv1.VolumeSnapshotContent, ref SnapshotRef) bool {
	r := content.Spec.VolumeSnapshotRef
	if r.Namespace != ref.Namespace || r.Name != ref.Name {
		return false
	}
	return ref.UID == "" || r.UID == "" || r.UID == ref.UID
}

// SnapshotStatusOf gets ref's snapshot and content and classifies them.
func SnapshotStatusOf(ctx context.Context, sc snapclient.Interface, ref SnapshotRef) (SnapshotStatus, error) {
	vs, err := sc.SnapshotV1().VolumeSnapshots(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		vs = nil
	case err != nil:
		return SnapshotStatus{}, fmt.Errorf("get VolumeSnapshot %s/%s: %w", ref.Namespace, ref.Name, err)
	case ref.UID != "" && vs.UID != ref.UID:
		vs = nil // another snapshot of the same name: ours is gone
	}
	if vs != nil {
		ref = ClassifySnapshot(ref, vs, nil).SnapshotRef
	}
	var content *snapv1.VolumeSnapshotContent
	if ref.Content != "" {
		content, err = sc.SnapshotV1().VolumeSnapshotContents().Get(ctx, ref.Content, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			content = nil
		case apierrors.IsForbidden(err) && vs != nil:
			// Without the right to read contents the snapshot alone says
			// enough while it exists.
			content = nil
		case err != nil:
			return SnapshotStatus{}, fmt.Errorf("get VolumeSnapshotContent %s: %w", ref.Content, err)
		}
	}
	return ClassifySnapshot(ref, vs, content), nil
}

// WaitSnapshotsGone polls refs every interval until every snapshot and its
// content are gone, or timeout (0 or less: it looks once). It returns the ones not gone yet, each
// deleting or left; an error only when the cluster could not be asked at
// all (the last answer stands for the snapshots then). Cancelling ctx ends
// the wait like the timeout does.
func WaitSnapshotsGone(ctx context.Context, sc snapclient.Interface, refs []SnapshotRef, interval, timeout time.Duration) ([]SnapshotStatus, error) {
	pending := map[SnapshotRef]SnapshotStatus{}
	for _, r := range refs {
		pending[r] = SnapshotStatus{SnapshotRef: r, State: SnapshotDeleting}
	}
	var lastErr error
	check := func(ctx context.Context) (bool, error) {
		lastErr = nil
		for r := range pending {
			s, err := SnapshotStatusOf(ctx, sc, r)
			if err != nil {
				lastErr = err
				continue
			}
			if s.State == SnapshotGone {
				delete(pending, r)
				continue
			}
			pending[r] = s
		}
		return len(pending) == 0, nil
	}
	var err error
	if timeout <= 0 {
		_, err = check(ctx) // look once, wait not at all
	} else {
		err = wait.PollUntilContextTimeout(ctx, interval, timeout, true, check)
		if wait.Interrupted(err) && ctx.Err() == nil {
			// The last poll may have run into the wait's own deadline
			// (the client's rate limiter refuses a request that would
			// end after it): look once more, in the caller's time.
			var gone bool
			if gone, err = check(ctx); gone {
				err = nil
			}
		}
	}
	out := make([]SnapshotStatus, 0, len(pending))
	for _, s := range pending {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	if err != nil && !wait.Interrupted(err) {
		return out, err
	}
	return out, lastErr
}

// DeletingSnapshots lists the VolumeSnapshots of kbak's runs in ns ("":
// every namespace) that are being deleted, with their contents: what `kbak
// gc` reports apart from leftovers and never deletes again. Kept snapshots
// being deleted (a deleted backup's) are listed too.
func DeletingSnapshots(ctx context.Context, sc snapclient.Interface, ns string) ([]SnapshotStatus, error) {
	list, err := sc.SnapshotV1().VolumeSnapshots(ns).List(ctx, metav1.ListOptions{LabelSelector: ManagedSelector()})
	if apierrors.IsNotFound(err) {
		return nil, nil // no snapshot CRDs
	}
	if err != nil {
		return nil, fmt.Errorf("list kbak VolumeSnapshots: %w", err)
	}
	var out []SnapshotStatus
	var errs []error
	for i := range list.Items {
		vs := &list.Items[i]
		if vs.DeletionTimestamp == nil {
			continue
		}
		if id, _ := RunOf(vs.Labels); id == "" {
			continue
		}
		ref := RefOf(vs)
		var content *snapv1.VolumeSnapshotContent
		if ref.Content != "" {
			content, err = sc.SnapshotV1().VolumeSnapshotContents().Get(ctx, ref.Content, metav1.GetOptions{})
			if err != nil {
				content = nil
				if !apierrors.IsNotFound(err) && !apierrors.IsForbidden(err) {
					errs = append(errs, fmt.Errorf("get VolumeSnapshotContent %s: %w", ref.Content, err))
				}
			}
		}
		out = append(out, ClassifySnapshot(ref, vs, content))
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out, errors.Join(errs...)
}
