package upkeep

import (
	"context"
	"fmt"
	"time"

	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/retention"
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
}

// PruneAfter is what `kbak backup --prune` and a scheduled run do after
// backup m Completed: prune the backups of m's StatefulSet by o.Policy, then
// delete the VolumeSnapshots the pruned ones kept. Its errors say that m
// itself is whole. A backup that did not complete must not come here:
// retention never counts on a backup that is not whole.
func PruneAfter(ctx context.Context, cat retention.Catalog, sc snapclient.Interface, m *catalog.Manifest, o PruneOptions) (Pruned, error) {
	var out Pruned
	res, err := retention.Prune(ctx, cat, catalog.Filter{Namespace: m.Namespace, StatefulSet: m.StatefulSet}, o.Policy, false)
	out.PruneResult = res
	if err != nil {
		return out, fmt.Errorf("backup %s completed, but pruning failed: %w", m.ID, err)
	}
	out.Snapshots, err = DeleteKeptSnapshots(ctx, sc, res.Deleted, o.SnapshotTimeout)
	if err != nil {
		return out, fmt.Errorf("backup %s completed and pruned, but %w", m.ID, err)
	}
	return out, nil
}
