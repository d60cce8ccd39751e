package upkeep

import (
	"context"
	"errors"
	"fmt"
	"time"

	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kbak/kbak/internal/catalog"
)

// DefaultSnapshotTimeout bounds deleting the VolumeSnapshots of deleted
// backups unless told otherwise.
const DefaultSnapshotTimeout = time.Minute

// DeleteKeptSnapshots deletes the VolumeSnapshots that the deleted backups
// kept in the cluster (catalog.KeptSnapshots), on a context that survives
// the caller's cancellation, bounded by timeout (0: DefaultSnapshotTimeout).
// It goes on past errors and returns what it deleted, or found gone, with
// every error joined. Only snapshots a manifest records as kept by kbak are
// touched.
func DeleteKeptSnapshots(ctx context.Context, sc snapclient.Interface, deleted []*catalog.Manifest, timeout time.Duration) ([]catalog.Snapshot, error) {
	kept := catalog.KeptSnapshots(deleted...)
	if len(kept) == 0 {
		return nil, nil
	}
	if sc == nil {
		return nil, fmt.Errorf("the deleted backups kept VolumeSnapshots %s, but there is no cluster to delete them from", names(kept))
	}
	if timeout <= 0 {
		timeout = DefaultSnapshotTimeout
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	var done []catalog.Snapshot
	var errs []error
	for _, s := range kept {
		err := sc.SnapshotV1().VolumeSnapshots(s.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete VolumeSnapshot %s/%s: %w", s.Namespace, s.Name, err))
			continue
		}
		done = append(done, s)
	}
	return done, errors.Join(errs...)
}

// names renders snapshots as ns/name, comma-separated.
func names(snaps []catalog.Snapshot) string {
	var out string
	for i, s := range snaps {
		if i > 0 {
			out += ", "
		}
		out += s.Namespace + "/" + s.Name
	}
	return out
}
