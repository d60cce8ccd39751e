package schedule

import (
	"context"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kbak/kbak/backup"
	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/retention"
)

// RunnerCatalog is what a scheduled run needs of the catalog: write the
// backup, then list and prune.
type RunnerCatalog interface {
	backup.Catalog
	retention.Catalog
}

var _ RunnerCatalog = (*catalog.Catalog)(nil)

// BackupRunner is the agent's usual RunFunc: it runs `kbak backup --prune`
// for a schedule in-process, with the agent's own clients.
type BackupRunner struct {
	// Deps are the clients of every run; Catalog is set per run from
	// OpenCatalog.
	Deps backup.Deps
	// OpenCatalog opens the catalog of a repository URL (a
	// *catalog.Catalog).
	OpenCatalog func(ctx context.Context, repo string) (RunnerCatalog, error)
	// Defaults are the options every run starts from (image, pull policy,
	// parallelism, compression, version, timeouts); the schedule sets the
	// rest.
	Defaults backup.Options
	// ParseHook turns a hook as written in the configuration into an argv,
	// as `kbak backup --pre-hook` does; needed only by schedules with hooks.
	ParseHook func(string) ([]string, error)
	// CleanupTimeout bounds deleting the VolumeSnapshots kept by pruned
	// backups; default 1m.
	CleanupTimeout time.Duration

	// backup is backup.Run; tests replace it.
	backup func(context.Context, backup.Deps, backup.Options) (*catalog.Manifest, error)
}

// Run backs up s and prunes its StatefulSet's backups by s's policy. A
// partly failed backup is an error and prunes nothing, so retention never
// counts on a backup that is not whole.
func (r BackupRunner) Run(ctx context.Context, s ScheduleSpec) (RunResult, error) {
	if r.OpenCatalog == nil {
		return RunResult{}, errors.New("agent: no way to open a repository")
	}
	cat, err := r.OpenCatalog(ctx, s.Repo)
	if err != nil {
		return RunResult{}, err
	}
	opts := r.Defaults
	opts.Namespace, opts.StatefulSet, opts.Repo = s.Namespace, s.StatefulSet, s.Repo
	opts.SecretName, opts.Credentials = s.Secret, nil
	opts.KeepSnapshots = s.KeepSnapshots
	opts.SnapshotClass = s.SnapshotClass
	opts.HookContainer = s.HookContainer
	opts.ID = ""
	if s.Method != "" {
		opts.Method = backup.Method(s.Method)
	}
	for _, h := range []struct {
		text string
		argv *[]string
	}{{s.PreHook, &opts.PreHook}, {s.PostHook, &opts.PostHook}} {
		if h.text == "" {
			continue
		}
		if r.ParseHook == nil {
			return RunResult{}, fmt.Errorf("schedule %s has hooks, but the agent cannot parse them", s.Name)
		}
		if *h.argv, err = r.ParseHook(h.text); err != nil {
			return RunResult{}, fmt.Errorf("schedule %s: %w", s.Name, err)
		}
	}
	deps := r.Deps
	deps.Catalog = cat
	if deps.Log != nil {
		deps.Log = deps.Log.With("schedule", s.Name)
	}
	run := r.backup
	if run == nil {
		run = backup.Run
	}
	m, err := run(ctx, deps, opts)
	if err != nil {
		return RunResult{}, fmt.Errorf("back up %s/%s: %w", s.Namespace, s.StatefulSet, err)
	}
	res := RunResult{BackupID: m.ID}
	for _, v := range m.Volumes {
		res.Bytes += v.StoredBytes
	}
	pruned, err := retention.Prune(ctx, cat, catalog.Filter{Namespace: s.Namespace, StatefulSet: s.StatefulSet}, s.Policy(), false)
	for _, d := range pruned.Remove {
		if deps.Log != nil {
			deps.Log.Info("pruned", "backup_id", d.Item.ID, "reasons", d.Reasons)
		}
	}
	if err != nil {
		return res, fmt.Errorf("backup %s completed, but pruning failed: %w", m.ID, err)
	}
	if err := r.deleteKeptSnapshots(ctx, pruned.Deleted); err != nil {
		return res, fmt.Errorf("backup %s completed and pruned, but %w", m.ID, err)
	}
	return res, nil
}

// deleteKeptSnapshots removes the VolumeSnapshots that pruned backups kept
// in the cluster, on a context that survives cancellation.
func (r BackupRunner) deleteKeptSnapshots(ctx context.Context, deleted []*catalog.Manifest) error {
	timeout := r.CleanupTimeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	var errs []error
	for _, m := range deleted {
		if m == nil {
			continue
		}
		for _, v := range m.Volumes {
			if v.Snapshot == nil || !v.Snapshot.Retained {
				continue
			}
			if r.Deps.Snap == nil {
				errs = append(errs, fmt.Errorf("kept VolumeSnapshot %s/%s of pruned backup %s: no snapshot client to delete it", v.Snapshot.Namespace, v.Snapshot.Name, m.ID))
				continue
			}
			err := r.Deps.Snap.SnapshotV1().VolumeSnapshots(v.Snapshot.Namespace).Delete(ctx, v.Snapshot.Name, metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("delete VolumeSnapshot %s/%s of pruned backup %s: %w", v.Snapshot.Namespace, v.Snapshot.Name, m.ID, err))
			}
		}
	}
	return errors.Join(errs...)
}
