package backup

import (
	"context"
	"errors"

	"github.com/kbak/kbak/deploy"
	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/mover"
)

// parent is the volume an upload may take unchanged files from.
type parent struct {
	id    string // backup id
	key   string // the volume's tree
	bytes int64  // its raw bytes: what this backup expects to read
}

// findParents returns, per PVC, the volume of the latest Completed backup of
// the StatefulSet in the deduplicating repository. Without one (the first
// backup, an archive-format history, an unreadable catalog) every file is
// read: a parent only saves work, it never decides what is stored.
func (r *run) findParents(ctx context.Context) map[string]parent {
	if r.opts.Format != catalog.FormatRepo {
		return nil
	}
	m, err := r.deps.Catalog.Latest(ctx, catalog.Filter{Namespace: r.opts.Namespace, StatefulSet: r.opts.StatefulSet})
	if err != nil {
		if !errors.Is(err, catalog.ErrBackupNotFound) {
			r.log.Warn("find the previous backup; every file is read", "err", err)
		}
		return nil
	}
	if m.Format != catalog.FormatRepo {
		return nil
	}
	out := map[string]parent{}
	for _, v := range m.Volumes {
		if v.Status == catalog.VolumeCompleted {
			out[v.PVC] = parent{id: m.ID, key: v.Key, bytes: v.RawBytes}
		}
	}
	return out
}

// upload is what v's mover stores where. A snapshot is a copy on a new
// volume: its inodes and ctimes differ from the parent's, so unchanged
// files are recognised by size and mtime; a live volume keeps them, and
// all four must match.
func (r *run) upload(v *volume) deploy.Upload {
	u := deploy.Upload{
		Repo: r.opts.Repo, Key: r.layout.VolumeKey(v.claim.Name), ResultKey: r.layout.ResultKey(v.claim.Name),
		SizeHint: v.claim.Size.Value(), Compression: r.opts.Compression,
		LockDays: r.opts.LockDays, LockMode: r.opts.LockMode,
	}
	if p, ok := r.parents[v.claim.Name]; ok {
		u.Parent, u.ParentMatch = p.key, mover.ParentMatchStrict
		if v.method == catalog.MethodSnapshot {
			u.ParentMatch = mover.ParentMatchSizeMTime
		}
	}
	return u
}

// formatOf is the manifest's format field: absent for the archive format,
// so its manifests read as they always did.
func formatOf(f int) int {
	if f == catalog.FormatRepo {
		return f
	}
	return 0
}
