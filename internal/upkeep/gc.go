package upkeep

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	"k8s.io/client-go/kubernetes"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/kube"
	"github.com/kbak/kbak/internal/repo"
	"github.com/kbak/kbak/uploader"
)

// DefaultGrace is how old a leftover must be before `kbak gc` removes it
// unless told otherwise: a run still going is always younger.
const DefaultGrace = 24 * time.Hour

// GCCatalog is what GC needs of the catalog.
type GCCatalog interface {
	GCNamespace(ctx context.Context, ns string, grace time.Duration, now time.Time, dryRun bool) ([]catalog.Orphan, error)
	SweepData(ctx context.Context, opts repo.SweepOptions) (*repo.SweepResult, error)
}

var _ GCCatalog = (*catalog.Catalog)(nil)

// GCOptions tune GC.
type GCOptions struct {
	// Grace leaves anything younger alone (DefaultGrace is the usual).
	Grace  time.Duration
	Now    time.Time // zero is time.Now
	DryRun bool
	// Namespace limits gc to the leftovers of runs in one namespace ("":
	// every namespace). The shared data no backup references is freed
	// either way, as deleting a backup frees it; multipart uploads belong
	// to no namespace and are left to a gc of every namespace.
	Namespace string
	// Kube and Snap reach the cluster; with Kube nil only the repository
	// is swept and ClusterSkipped says why.
	Kube           kubernetes.Interface
	Snap           snapclient.Interface
	ClusterSkipped string
	// CleanupTimeout bounds deleting the objects of one stale run; 0 is
	// kube.DefaultCleanupTimeout.
	CleanupTimeout time.Duration
	// Uploads, when set (an S3 store), has its incomplete multipart
	// uploads started more than UploadGrace ago (0: DefaultUploadGrace)
	// aborted: a crashed writer's parts cost storage and are listed
	// nowhere else.
	Uploads     Uploads
	UploadGrace time.Duration
	Log         *slog.Logger
}

// DefaultUploadGrace is how old an incomplete multipart upload must be
// before gc aborts it: longer than any upload still running.
const DefaultUploadGrace = 24 * time.Hour

// Uploads is a store's incomplete multipart uploads (*uploader.S3Store).
type Uploads interface {
	IncompleteUploads(ctx context.Context, prefix string) ([]uploader.IncompleteUpload, error)
	AbortStaleUploads(ctx context.Context, prefix string, olderThan time.Duration) (int, error)
}

var _ Uploads = (*uploader.S3Store)(nil)

// GCResult is what GC found and removed.
type GCResult struct {
	Store   []catalog.Orphan `json:"store"`
	Cluster []kube.Run       `json:"cluster"`
	// Deleting are kbak's VolumeSnapshots already deleted and held by the
	// snapshot controller's finalizers until the storage has deleted their
	// data: no leftovers, and gc does not delete them again.
	Deleting []kube.SnapshotStatus `json:"deleting"`
	// ClusterSkipped says why the cluster was not swept, when it was not.
	ClusterSkipped string `json:"clusterSkipped,omitempty"`
	// Data is what sweeping the deduplicating repository found and did.
	Data *repo.SweepResult `json:"data,omitempty"`
	// DataDeferred says why the repository was not swept, when a backup
	// held it (its chunks may be among what looks like garbage): no
	// failure of gc, the next prune or gc sweeps.
	DataDeferred string `json:"dataDeferred,omitempty"`
	// StaleUploads counts the incomplete multipart uploads older than
	// the upload grace that were aborted (or would be, on a dry run).
	// UploadsSkipped says why they were not, when the store denied it:
	// that is no failure of gc.
	StaleUploads   int    `json:"staleUploads"`
	UploadsSkipped string `json:"uploadsSkipped,omitempty"`
}

// Locked is what S3 Object Lock kept from gc, in the backups without a
// manifest and in the shared data: not leaked, only not due yet.
func (r GCResult) Locked() repo.LockedObjects {
	var l repo.LockedObjects
	for _, o := range r.Store {
		l.Add(o.Locked)
	}
	if r.Data != nil {
		l.Add(r.Data.Locked)
	}
	return l
}

// GC removes the leftovers of crashed runs older than the grace period: in
// the repository the objects of backups without a manifest, then the shared
// data no backup references any more (unless a backup holds the repository:
// GCResult.DataDeferred); in the cluster (when o.Kube is set) the mover
// pods, temporary claims, VolumeSnapshots not kept on purpose and
// credential Secrets of runs whose newest object is older. Kept snapshots
// and anything without a run's labels stay. VolumeSnapshots already being
// deleted are listed apart (GCResult.Deleting), never deleted again. With
// o.Uploads it also aborts the store's stale multipart uploads. It goes on
// past errors and returns what it found with every error joined; with
// DryRun it removes nothing. What S3 Object Lock keeps stays and is
// reported (GCResult.Locked), which is no error.
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
	res := GCResult{Store: []catalog.Orphan{}, Cluster: []kube.Run{}, Deleting: []kube.SnapshotStatus{}}
	orphans, err := cat.GCNamespace(ctx, o.Namespace, o.Grace, o.Now, o.DryRun)
	if orphans != nil {
		res.Store = orphans
	}
	if err == nil {
		// After the orphans' trees went: their chunks are garbage now.
		res.Data, err = cat.SweepData(ctx, repo.SweepOptions{Grace: o.Grace, Now: o.Now, DryRun: o.DryRun})
		if errors.Is(err, repo.ErrLocked) {
			// A backup is uploading: a scheduled gc that meets one is no
			// failure, and the packs it would remove stay until the next.
			res.Data, res.DataDeferred, err = nil, catalog.OneLine(err.Error()), nil
		}
	}
	if o.Uploads != nil && o.Namespace != "" {
		res.UploadsSkipped = "they belong to no namespace: kbak gc -A checks them"
	} else if o.Uploads != nil {
		n, upErr := staleUploads(ctx, o)
		res.StaleUploads = n
		if errors.Is(upErr, uploader.ErrAccessDenied) {
			// Credentials without s3:ListBucketMultipartUploads or
			// s3:AbortMultipartUpload: the rest of gc stands.
			res.UploadsSkipped, upErr = catalog.OneLine(upErr.Error()), nil
		}
		err = errors.Join(err, upErr)
	}
	if o.Kube == nil {
		res.ClusterSkipped = o.ClusterSkipped
		if res.ClusterSkipped == "" {
			res.ClusterSkipped = "no cluster"
		}
		return res, err
	}
	runs, staleErr := kube.FindStaleRuns(ctx, o.Kube, o.Snap, kube.StaleQuery{Namespace: o.Namespace, Before: o.Now.Add(-o.Grace)})
	err = errors.Join(err, staleErr)
	for _, r := range runs {
		if !o.DryRun {
			err = errors.Join(err, deleteRun(ctx, o, r))
		}
		res.Cluster = append(res.Cluster, r)
	}
	if o.Snap != nil {
		// After the runs went: what they deleted and is not gone yet.
		deleting, delErr := kube.DeletingSnapshots(ctx, o.Snap, o.Namespace)
		res.Deleting = append(res.Deleting, deleting...)
		err = errors.Join(err, delErr)
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

// uploadPrefix holds every object kbak writes, of both formats.
const uploadPrefix = "kbak/"

// staleUploads aborts (or, on a dry run, counts) the incomplete multipart
// uploads of kbak's objects older than the upload grace.
func staleUploads(ctx context.Context, o GCOptions) (int, error) {
	grace := o.UploadGrace
	if grace <= 0 {
		grace = DefaultUploadGrace
	}
	if !o.DryRun {
		n, err := o.Uploads.AbortStaleUploads(ctx, uploadPrefix, grace)
		if err != nil {
			err = fmt.Errorf("gc: abort stale multipart uploads: %w", err)
		}
		return n, err
	}
	ups, err := o.Uploads.IncompleteUploads(ctx, uploadPrefix)
	if err != nil {
		return 0, fmt.Errorf("gc: list multipart uploads: %w", err)
	}
	n := 0
	for _, u := range ups {
		if o.Now.Sub(u.Initiated) > grace {
			n++
		}
	}
	return n, nil
}
