package upkeep

import (
	"context"
	"errors"
	"log/slog"
	"time"

	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	"k8s.io/client-go/kubernetes"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/kube"
	"github.com/kbak/kbak/internal/repo"
)

// DefaultGrace is how old a leftover must be before `kbak gc` removes it
// unless told otherwise: a run still going is always younger.
const DefaultGrace = 24 * time.Hour

// GCCatalog is what GC needs of the catalog.
type GCCatalog interface {
	GC(ctx context.Context, grace time.Duration, now time.Time, dryRun bool) ([]catalog.Orphan, error)
	SweepData(ctx context.Context, opts repo.SweepOptions) (*repo.SweepResult, error)
}

var _ GCCatalog = (*catalog.Catalog)(nil)

// GCOptions tune GC.
type GCOptions struct {
	// Grace leaves anything younger alone (DefaultGrace is the usual).
	Grace  time.Duration
	Now    time.Time // zero is time.Now
	DryRun bool
	// Kube and Snap reach the cluster; with Kube nil only the repository
	// is swept and ClusterSkipped says why.
	Kube           kubernetes.Interface
	Snap           snapclient.Interface
	ClusterSkipped string
	// CleanupTimeout bounds deleting the objects of one stale run; 0 is
	// kube.DefaultCleanupTimeout.
	CleanupTimeout time.Duration
	Log            *slog.Logger
}

// GCResult is what GC found and removed.
type GCResult struct {
	Store   []catalog.Orphan `json:"store"`
	Cluster []kube.Run       `json:"cluster"`
	// ClusterSkipped says why the cluster was not swept, when it was not.
	ClusterSkipped string `json:"clusterSkipped,omitempty"`
	// Data is what sweeping the deduplicating repository found and did.
	Data *repo.SweepResult `json:"data,omitempty"`
}

// GC removes the leftovers of crashed runs older than the grace period: in
// the repository the objects of backups without a manifest, then the shared
// data no backup references any more; in the cluster (when o.Kube is set)
// the mover pods, temporary claims, VolumeSnapshots not kept on purpose and
// credential Secrets of runs whose newest object is older. Kept snapshots
// and anything without a run's labels stay. It goes on past errors and
// returns what it found with every error joined; with DryRun it removes
// nothing.
func GC(ctx context.Context, cat GCCatalog, o GCOptions) (GCResult, error) {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.CleanupTimeout <= 0 {
		o.CleanupTimeout = kube.DefaultCleanupTimeout
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	res := GCResult{Store: []catalog.Orphan{}, Cluster: []kube.Run{}}
	orphans, err := cat.GC(ctx, o.Grace, o.Now, o.DryRun)
	if orphans != nil {
		res.Store = orphans
	}
	if err == nil {
		// After the orphans' trees went: their chunks are garbage now.
		res.Data, err = cat.SweepData(ctx, repo.SweepOptions{Grace: o.Grace, Now: o.Now, DryRun: o.DryRun})
	}
	if o.Kube == nil {
		res.ClusterSkipped = o.ClusterSkipped
		if res.ClusterSkipped == "" {
			res.ClusterSkipped = "no cluster"
		}
		return res, err
	}
	runs, staleErr := kube.StaleRuns(ctx, o.Kube, o.Snap, o.Now.Add(-o.Grace))
	err = errors.Join(err, staleErr)
	for _, r := range runs {
		if !o.DryRun {
			err = errors.Join(err, deleteRun(ctx, o, r))
		}
		res.Cluster = append(res.Cluster, r)
	}
	return res, err
}

// deleteRun deletes the objects of stale run r on a context that survives
// the caller's cancellation.
func deleteRun(ctx context.Context, o GCOptions, r kube.Run) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.CleanupTimeout)
	defer cancel()
	c := r.CleanupOptions()
	c.PodGoneTimeout = o.CleanupTimeout
	return kube.DeleteRun(ctx, o.Kube, o.Snap, o.Log, c)
}
