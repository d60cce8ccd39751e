package upkeep

import (
	"context"
	"errors"
	"fmt"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/kube"
)

// DefaultSnapshotTimeout bounds deleting the VolumeSnapshots of deleted
// backups unless told otherwise.
const DefaultSnapshotTimeout = time.Minute

// SnapshotRefusal is a VolumeSnapshot a deleted backup's manifest names as
// kept that kbak left alone: nothing shows it is the one the backup made. A
// manifest is data in a bucket; whoever can write there must not make kbak
// delete another snapshot.
type SnapshotRefusal struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	BackupID  string `json:"backupID"`
	Reason    string `json:"reason"`
}

// Warning says in one line what was left alone and why.
func (r SnapshotRefusal) Warning() string {
	return fmt.Sprintf("not deleting VolumeSnapshot %s/%s that the manifest of backup %s names: %s; the manifest may have been tampered with: delete the snapshot by hand if it is the backup's",
		r.Namespace, r.Name, r.BackupID, r.Reason)
}

// keptSnapshot is a snapshot a deleted backup kept, with that backup.
type keptSnapshot struct {
	catalog.Snapshot
	m *catalog.Manifest
}

// keptSnapshots lists the snapshots that the deleted backups kept and that
// may be theirs: in the backup's namespace, with the name its run gave the
// volume's snapshot. Any other is refused. Nil manifests keep nothing.
func keptSnapshots(deleted []*catalog.Manifest) ([]keptSnapshot, []SnapshotRefusal) {
	var kept []keptSnapshot
	var refused []SnapshotRefusal
	for _, m := range deleted {
		if m == nil {
			continue
		}
		for _, v := range m.Volumes {
			s := v.Snapshot
			if s == nil || !s.Retained {
				continue
			}
			refuse := func(format string, args ...any) {
				refused = append(refused, SnapshotRefusal{Namespace: s.Namespace, Name: s.Name, BackupID: m.ID, Reason: fmt.Sprintf(format, args...)})
			}
			switch want := kube.VolumeObjectName(m.ID, v.Ordinal, v.ClaimTemplate); {
			case s.Namespace != m.Namespace:
				refuse("it is not in the backup's namespace %s", m.Namespace)
			case s.Name != want:
				refuse("the backup named the snapshot of %s %s, not %s", v.PVC, want, s.Name)
			default:
				kept = append(kept, keptSnapshot{*s, m})
			}
		}
	}
	return kept, refused
}

// KeptSnapshots lists the VolumeSnapshots the deleted backups kept in the
// cluster (--keep-snapshots) that DeleteKeptSnapshots would delete, and
// those it refuses without asking the cluster.
func KeptSnapshots(deleted []*catalog.Manifest) ([]catalog.Snapshot, []SnapshotRefusal) {
	kept, refused := keptSnapshots(deleted)
	out := make([]catalog.Snapshot, len(kept))
	for i, k := range kept {
		out[i] = k.Snapshot
	}
	return out, refused
}

// SnapshotCleanup is what DeleteKeptSnapshots did.
type SnapshotCleanup struct {
	// Deleted are the snapshots deleted, or found gone.
	Deleted []catalog.Snapshot
	// Refused are left alone: nothing shows they are the backups'. Each is
	// a warning, not an error.
	Refused []SnapshotRefusal
}

// DeleteKeptSnapshots deletes the VolumeSnapshots that the deleted backups
// kept in the cluster, on a context that survives the caller's
// cancellation, bounded by timeout (0: DefaultSnapshotTimeout). A manifest
// is not trusted blindly: a snapshot is deleted only when it is in the
// backup's namespace, has the name the backup gave it, and carries the
// labels the backup run put on it (kbak's, the backup's id and
// StatefulSet, kept), and only the object that was checked (its UID is a
// precondition); any other is refused. It goes on past errors and returns
// what it did, with every error joined.
func DeleteKeptSnapshots(ctx context.Context, sc snapclient.Interface, deleted []*catalog.Manifest, timeout time.Duration) (SnapshotCleanup, error) {
	kept, refused := keptSnapshots(deleted)
	out := SnapshotCleanup{Refused: refused}
	if len(kept) == 0 {
		return out, nil
	}
	if sc == nil {
		names := make([]catalog.Snapshot, len(kept))
		for i, k := range kept {
			names[i] = k.Snapshot
		}
		return out, fmt.Errorf("the deleted backups kept VolumeSnapshots %s, but there is no cluster to delete them from", Names(names))
	}
	if timeout <= 0 {
		timeout = DefaultSnapshotTimeout
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	var errs []error
	for _, k := range kept {
		api := sc.SnapshotV1().VolumeSnapshots(k.Namespace)
		vs, err := api.Get(ctx, k.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			out.Deleted = append(out.Deleted, k.Snapshot)
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("get VolumeSnapshot %s/%s: %w", k.Namespace, k.Name, err))
			continue
		}
		if why := notKeptBy(vs, k.m); why != "" {
			out.Refused = append(out.Refused, SnapshotRefusal{Namespace: k.Namespace, Name: k.Name, BackupID: k.m.ID, Reason: why})
			continue
		}
		if vs.DeletionTimestamp != nil {
			// Deleted already, held by the snapshot controller until the
			// storage frees it: nothing to do again.
			out.Deleted = append(out.Deleted, k.Snapshot)
			continue
		}
		uid := vs.UID
		err = api.Delete(ctx, k.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete VolumeSnapshot %s/%s: %w", k.Namespace, k.Name, err))
			continue
		}
		out.Deleted = append(out.Deleted, k.Snapshot)
	}
	return out, errors.Join(errs...)
}

// notKeptBy says why vs is not a snapshot that backup m's run made and
// kept, or "".
func notKeptBy(vs *snapv1.VolumeSnapshot, m *catalog.Manifest) string {
	l := vs.Labels
	switch {
	case l[kube.LabelManagedBy] != kube.ManagedByValue:
		return fmt.Sprintf("it carries no %s=%s label: kbak did not make it", kube.LabelManagedBy, kube.ManagedByValue)
	case l[kube.LabelBackupID] != kube.LabelValue(m.ID):
		return fmt.Sprintf("its %s label is %q, not the backup's", kube.LabelBackupID, l[kube.LabelBackupID])
	case l[kube.LabelStatefulSet] != kube.LabelValue(m.StatefulSet):
		return fmt.Sprintf("its %s label is %q, not %s", kube.LabelStatefulSet, l[kube.LabelStatefulSet], m.StatefulSet)
	case l[kube.LabelRetained] == "":
		return fmt.Sprintf("it has no %s label: the backup did not keep it", kube.LabelRetained)
	}
	return ""
}

// Names renders snapshots as ns/name, comma-separated.
func Names(snaps []catalog.Snapshot) string {
	var out string
	for i, s := range snaps {
		if i > 0 {
			out += ", "
		}
		out += s.Namespace + "/" + s.Name
	}
	return out
}
