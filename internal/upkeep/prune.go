package upkeep

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/retention"
	"github.com/kbak/kbak/uploader"
)

// PruneOptions say how a backup prunes its StatefulSet's backups once it
// Completed.
type PruneOptions struct {
	Policy retention.Policy
	// SnapshotTimeout bounds deleting the VolumeSnapshots the pruned
	// backups kept; 0 is DefaultSnapshotTimeout.
	SnapshotTimeout time.Duration
}

// Pruned is what PruneAfter did.
type Pruned struct {
	retention.PruneResult
	// Snapshots are the VolumeSnapshots of pruned backups it deleted.
	Snapshots []catalog.Snapshot
	// RefusedSnapshots are VolumeSnapshots the pruned backups' manifests
	// name as kept that were left alone (DeleteKeptSnapshots): a warning
	// each, no error.
	RefusedSnapshots []SnapshotRefusal
	// Denied, when set, says in one line that the store refused the
	// deletes: the credentials may write but not delete (an append-only
	// schedule, whose backups are pruned elsewhere). The backup is whole,
	// and that is no error.
	Denied string
}

// PruneAfter is what `kbak backup --prune` and a scheduled run do after
// backup m Completed: prune the backups of m's StatefulSet by o.Policy, then
// delete the VolumeSnapshots the pruned ones kept. Its errors say that m
// itself is whole. A backup that did not complete must not come here:
// retention never counts on a backup that is not whole. Backups that S3
// Object Lock keeps are listed in Locked; deletes the store denies set
// Denied; neither is an error.
func PruneAfter(ctx context.Context, cat retention.Catalog, sc snapclient.Interface, m *catalog.Manifest, o PruneOptions) (Pruned, error) {
	var out Pruned
	res, err := retention.Prune(ctx, cat, catalog.Filter{Namespace: m.Namespace, StatefulSet: m.StatefulSet}, o.Policy, false)
	out.PruneResult = res
	if errors.Is(err, uploader.ErrAccessDenied) {
		first, _, _ := strings.Cut(err.Error(), "\n") // one of the joined errors says it
		out.Denied = fmt.Sprintf("backup %s completed; pruning was denied, the store's credentials may not delete (%s): prune where they may, with kbak prune",
			m.ID, catalog.OneLine(first))
		err = nil
	}
	if err != nil {
		return out, fmt.Errorf("backup %s completed, but pruning failed: %w", m.ID, err)
	}
	snaps, err := DeleteKeptSnapshots(ctx, sc, res.Deleted, o.SnapshotTimeout)
	out.Snapshots, out.RefusedSnapshots = snaps.Deleted, snaps.Refused
	if err != nil {
		return out, fmt.Errorf("backup %s completed and pruned, but %w", m.ID, err)
	}
	return out, nil
}
