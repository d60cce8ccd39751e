package schedule

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kbak/kbak/backup"
	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/retention"
	"github.com/kbak/kbak/internal/upkeep"
	"github.com/kbak/kbak/uploader"
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
	// *catalog.Catalog) on a store that writes with lock, the schedule's
	// Object Lock retention (the zero Retention: none).
	OpenCatalog func(ctx context.Context, repo string, lock uploader.Retention) (RunnerCatalog, error)
	// Defaults are the options every run starts from (image, pull policy,
	// parallelism, compression, version, timeouts); the schedule sets the
	// rest.
	Defaults backup.Options
	// CleanupTimeout bounds deleting the VolumeSnapshots kept by pruned
	// backups; 0 is upkeep.DefaultSnapshotTimeout.
	CleanupTimeout time.Duration

	// backup is backup.Run; tests replace it.
	backup func(context.Context, backup.Deps, backup.Options) (*catalog.Manifest, error)
}

// Run backs up s and, as `kbak backup --prune` does, prunes its
// StatefulSet's backups by s's policy (upkeep.PruneAfter). A partly failed
// backup is an error and prunes nothing, so retention never counts on a
// backup that is not whole. Pruning that the store denies (credentials
// that may not delete) is logged as a warning, and the run succeeds.
func (r BackupRunner) Run(ctx context.Context, s ScheduleSpec) (RunResult, error) {
	if r.OpenCatalog == nil {
		return RunResult{}, errors.New("agent: no way to open a repository")
	}
	cat, err := r.OpenCatalog(ctx, s.Repo, s.Retention())
	if err != nil {
		return RunResult{}, err
	}
	opts, err := s.BackupOptions(r.Defaults)
	if err != nil {
		return RunResult{}, fmt.Errorf("schedule %s: %w", s.Name, err)
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
	pruned, err := upkeep.PruneAfter(ctx, cat, r.Deps.Snap, m, upkeep.PruneOptions{Policy: s.Policy(), SnapshotTimeout: r.CleanupTimeout})
	if deps.Log != nil {
		if pruned.Denied != "" {
			deps.Log.Warn(pruned.Denied)
		}
		for _, d := range pruned.Remove {
			lb, locked := pruned.LockedBackup(d.Item.ID)
			switch {
			case locked && lb.Listed:
				deps.Log.Info("not pruned yet: its manifest is under Object Lock", "backup_id", d.Item.ID, "until", lb.Until)
			case locked:
				deps.Log.Info("pruned; some objects stay under Object Lock", "backup_id", d.Item.ID, "reasons", d.Reasons, "objects", lb.Objects, "until", lb.Until)
			case pruned.Denied == "":
				deps.Log.Info("pruned", "backup_id", d.Item.ID, "reasons", d.Reasons)
			}
		}
		for _, snap := range pruned.Snapshots {
			deps.Log.Info("deleted kept snapshot", "namespace", snap.Namespace, "snapshot", snap.Name)
		}
		for _, r := range pruned.RefusedSnapshots {
			deps.Log.Warn(r.Warning())
		}
	}
	return res, err
}

// LastSuccess returns when s's newest Completed backup in its repository
// finished and the bytes it stored (a zero time: there is none): the
// agent's LastSuccess.
func (r BackupRunner) LastSuccess(ctx context.Context, s ScheduleSpec) (time.Time, int64, error) {
	if r.OpenCatalog == nil {
		return time.Time{}, 0, errors.New("agent: no way to open a repository")
	}
	cat, err := r.OpenCatalog(ctx, s.Repo, uploader.Retention{})
	if err != nil {
		return time.Time{}, 0, err
	}
	list, err := cat.List(ctx, catalog.Filter{Namespace: s.Namespace, StatefulSet: s.StatefulSet})
	if err != nil {
		return time.Time{}, 0, err
	}
	var newest catalog.Summary
	for _, b := range list {
		if b.Status == catalog.StatusCompleted && b.Finished.After(newest.Finished) {
			newest = b
		}
	}
	return newest.Finished, newest.StoredBytes, nil
}
