package retention

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/repo"
	"github.com/kbak/kbak/uploader"
)

// Catalog is what pruning needs of the backup catalog.
type Catalog interface {
	List(ctx context.Context, f catalog.Filter) ([]catalog.Summary, error)
	Delete(ctx context.Context, id string) (*catalog.Manifest, error)
	SweepData(ctx context.Context, opts repo.SweepOptions) (*repo.SweepResult, error)
}

// PruneResult is the verdict on every backup pruning looked at, newest first
// within each StatefulSet.
type PruneResult struct {
	Keep   []Decision `json:"keep"`
	Remove []Decision `json:"remove"`
	// Deleted holds the manifests of removed backups (nil when unreadable),
	// so the caller can clean what they kept in the cluster.
	Deleted []*catalog.Manifest `json:"-"`
	// Data is what freeing the deduplicating repository's shared data did,
	// when a removed backup was of that format.
	Data *repo.SweepResult `json:"data,omitempty"`
	// DataDeferred says why the shared data was not swept (a backup was
	// running); the next prune or gc frees it.
	DataDeferred string `json:"dataDeferred,omitempty"`
	// Locked are the removed backups that S3 Object Lock kept, whole
	// (Listed: still listed, and pruned again once due) or in part.
	Locked []catalog.LockedBackup `json:"locked,omitempty"`
}

// LockedBackup returns what Object Lock kept of backup id, if it kept
// anything.
func (r PruneResult) LockedBackup(id string) (catalog.LockedBackup, bool) {
	for _, lb := range r.Locked {
		if lb.ID == id {
			return lb, true
		}
	}
	return catalog.LockedBackup{}, false
}

// Prune applies p to the backups matching f, each StatefulSet on its own, and
// deletes what it removes unless dryRun. Deletion goes on past an error so
// one bad object does not keep every other expired backup; the errors are
// joined. A backup that S3 Object Lock keeps is no error: it goes to
// Locked.
func Prune(ctx context.Context, cat Catalog, f catalog.Filter, p Policy, dryRun bool) (PruneResult, error) {
	var res PruneResult
	if err := p.Validate(); err != nil {
		return res, err
	}
	list, err := cat.List(ctx, f)
	if err != nil {
		return res, err
	}
	groups := map[[2]string][]Item{}
	for _, s := range list {
		if s.Error != "" {
			continue // an unreadable manifest is not pruning's to judge
		}
		k := [2]string{s.Namespace, s.StatefulSet}
		groups[k] = append(groups[k], Item{ID: s.ID, Time: s.Created, Namespace: s.Namespace, StatefulSet: s.StatefulSet, Successful: s.Status == catalog.StatusCompleted})
	}
	keys := make([][2]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b [2]string) int { return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1])) })
	var errs []error
	for _, k := range keys {
		keep, remove := p.Apply(groups[k])
		res.Keep = append(res.Keep, keep...)
		res.Remove = append(res.Remove, remove...)
		if dryRun {
			continue
		}
		for _, d := range remove {
			m, err := cat.Delete(ctx, d.Item.ID)
			if errors.Is(err, uploader.ErrLocked) {
				lb := lockedBackup(d.Item.ID, m, err)
				res.Locked = append(res.Locked, lb)
				if !lb.Listed {
					res.Deleted = append(res.Deleted, m)
				}
				continue
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("prune %s: %w", d.Item.ID, err))
				continue
			}
			res.Deleted = append(res.Deleted, m)
		}
	}
	if slices.ContainsFunc(res.Deleted, func(m *catalog.Manifest) bool { return m == nil || m.Format == catalog.FormatRepo }) {
		data, err := cat.SweepData(ctx, repo.SweepOptions{Grace: catalog.DataGrace})
		switch {
		case errors.Is(err, repo.ErrLocked):
			// A backup is running: its chunks may be among the garbage.
			res.DataDeferred = err.Error()
		case err != nil:
			errs = append(errs, fmt.Errorf("prune: backups removed, but their data stays until the next prune or gc: %w", err))
		}
		res.Data = data
	}
	return res, errors.Join(errs...)
}

// lockedBackup is what Object Lock kept of backup id, from the error of
// its Delete (m is what Delete returned).
func lockedBackup(id string, m *catalog.Manifest, err error) catalog.LockedBackup {
	var lb *catalog.LockedBackup
	if errors.As(err, &lb) {
		return *lb
	}
	out := catalog.LockedBackup{ID: id, Listed: m == nil}
	out.Skip(err)
	return out
}
