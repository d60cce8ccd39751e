package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/kbak/kbak/uploader"
)

// SweepOptions tune Sweep.
type SweepOptions struct {
	// Grace spares packs younger than this that no index or no tree
	// names yet: a crashed backup's packs go only after it.
	Grace time.Duration
	Now   time.Time
	// Repack is the share of a pack's bytes that must be garbage for its
	// live blobs to be copied into a new pack and the old one removed;
	// below it the pack stays whole. 0 means DefaultRepack.
	Repack float64
	DryRun bool
}

// DefaultRepack: a pack half garbage is rewritten.
const DefaultRepack = 0.5

// SweepResult says what Sweep found and did.
type SweepResult struct {
	Trees          int   `json:"trees"`          // volumes whose chunks are kept
	Packs          int   `json:"packs"`          // packs listed
	LiveBytes      int64 `json:"liveBytes"`      // stored bytes of referenced blobs
	GarbageBytes   int64 `json:"garbageBytes"`   // stored bytes of the others
	DeletedPacks   int   `json:"deletedPacks"`   // removed whole (or would be, on a dry run)
	RepackedPacks  int   `json:"repackedPacks"`  // rewritten without their garbage
	FreedBytes     int64 `json:"freedBytes"`     // bytes the store no longer holds
	IndexRewritten bool  `json:"indexRewritten"` // the index was replaced by one object
}

// Sweep removes the data no volume tree references any more: packs whose
// blobs are all garbage, packs that no index names (a crashed writer's), and
// the garbage of packs mostly garbage (their live blobs are copied first).
// It holds the exclusive lock, so no backup runs meanwhile, and it writes the
// new index before it deletes an old one or a pack: an interruption leaves
// garbage for the next sweep, never a reference to missing data.
func (r *Repo) Sweep(ctx context.Context, opts SweepOptions) (SweepResult, error) {
	var res SweepResult
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if opts.Repack <= 0 {
		opts.Repack = DefaultRepack
	}
	lock, err := r.Lock(ctx, LockExclusive, "prune")
	if err != nil {
		return res, fmt.Errorf("prune the repository: %w: retry when it is done", err)
	}
	defer lock.Unlock(ctx)

	if !opts.DryRun {
		r.removeStaleLocks(ctx, opts.Now)
	}
	live := newIDSet()
	trees, err := r.trees(ctx)
	if err != nil {
		return res, err
	}
	for _, t := range trees {
		err := r.VolumeRefs(ctx, t, func(id ID) error {
			live.add(id)
			return nil
		})
		if err != nil {
			return res, fmt.Errorf("prune the repository: %w: nothing was removed", err)
		}
	}
	live.merge()
	res.Trees = len(trees)

	objs, err := r.indexObjects(ctx)
	if err != nil {
		return res, err
	}
	byPack := map[PackID][]Entry{}
	for _, o := range objs {
		err := r.readIndex(ctx, o, func(e Entry) error {
			byPack[e.Pack] = append(byPack[e.Pack], e)
			return nil
		})
		if err != nil {
			return res, err
		}
	}
	packs := map[PackID]uploader.ObjectInfo{}
	err = r.store.List(ctx, Keys.PackPrefix(), func(oi uploader.ObjectInfo) error {
		if id, ok := Keys.ParsePack(oi.Key); ok {
			packs[id] = oi
		}
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("list packs: %w", err)
	}
	res.Packs = len(packs)

	var keep []packEntries
	var remove []PackID
	var repack []packEntries // live entries of packs to rewrite
	for id, entries := range byPack {
		oi, ok := packs[id]
		if !ok {
			continue // named by an index but gone: verify reports it
		}
		var liveBytes, deadBytes int64
		var liveEntries []Entry
		seen := map[ID]bool{}
		for _, e := range entries {
			if live.has(e.ID) && !seen[e.ID] {
				liveBytes += int64(e.Length)
				liveEntries = append(liveEntries, e)
				seen[e.ID] = true
			} else {
				deadBytes += int64(e.Length)
			}
		}
		res.LiveBytes += liveBytes
		res.GarbageBytes += deadBytes
		young := opts.Now.Sub(oi.ModTime) < opts.Grace
		switch {
		case len(liveEntries) == 0 && !young:
			remove = append(remove, id)
			res.FreedBytes += oi.Size
		case deadBytes > 0 && float64(deadBytes) >= opts.Repack*float64(liveBytes+deadBytes) && !young:
			repack = append(repack, packEntries{pack: id, entries: liveEntries})
			remove = append(remove, id)
			res.FreedBytes += deadBytes
		default:
			keep = append(keep, packEntries{pack: id, entries: entries})
		}
	}
	for id, oi := range packs {
		if _, indexed := byPack[id]; !indexed && opts.Now.Sub(oi.ModTime) >= opts.Grace {
			remove = append(remove, id)
			res.GarbageBytes += oi.Size
			res.FreedBytes += oi.Size
		}
	}
	res.DeletedPacks, res.RepackedPacks = len(remove)-len(repack), len(repack)
	if opts.DryRun || len(remove) == 0 {
		return res, nil
	}

	rewritten, err := r.repack(ctx, repack)
	if err != nil {
		return res, fmt.Errorf("prune the repository: repack: %w: nothing was removed", err)
	}
	keep = append(keep, rewritten...)
	slices.SortFunc(keep, func(a, b packEntries) int { return bytes.Compare(a.pack[:], b.pack[:]) })
	if err := r.putIndex(ctx, keep); err != nil {
		return res, fmt.Errorf("prune the repository: %w: nothing was removed", err)
	}
	res.IndexRewritten = true
	var errs []error
	for _, o := range objs {
		if err := r.store.Delete(ctx, o.Key); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		// Old and new indexes both name live packs: nothing is lost, and
		// no pack may go while an old index still names it.
		return res, fmt.Errorf("prune the repository: remove old index objects: %w", errors.Join(errs...))
	}
	for _, id := range remove {
		if err := r.store.Delete(ctx, Keys.Pack(id)); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return res, fmt.Errorf("prune the repository: remove packs (the next prune retries): %w", errors.Join(errs...))
	}
	return res, nil
}

// trees lists the volume trees of every backup in the repository, complete
// or not: a backup still running has its tree written before its manifest,
// and catalog gc removes the trees of backups that will never complete.
func (r *Repo) trees(ctx context.Context) ([]string, error) {
	var out []string
	err := r.store.List(ctx, Root, func(oi uploader.ObjectInfo) error {
		k := oi.Key
		if strings.HasSuffix(k, TreeSuffix) && !strings.HasPrefix(k, Keys.PackPrefix()) && !strings.HasPrefix(k, Keys.IndexPrefix()) {
			out = append(out, k)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list volume trees: %w", err)
	}
	return out, nil
}

// repack copies the given live blobs of old packs into new packs, as they
// are stored (no decompression, no key needed), and returns their entries.
func (r *Repo) repack(ctx context.Context, old []packEntries) ([]packEntries, error) {
	var out []packEntries
	var cur *pack
	flush := func() error {
		if cur == nil || len(cur.entries) == 0 {
			return nil
		}
		if err := r.store.Put(ctx, Keys.Pack(cur.id), bytes.NewReader(cur.data), int64(len(cur.data))); err != nil {
			return fmt.Errorf("write pack %s: %w", cur.id, err)
		}
		out = append(out, packEntries{pack: cur.id, entries: cur.entries})
		cur = nil
		return nil
	}
	for _, pe := range old {
		for _, e := range pe.entries {
			rc, err := r.store.GetRange(ctx, Keys.Pack(pe.pack), int64(e.Offset), int64(e.Length))
			if err != nil {
				return nil, fmt.Errorf("read pack %s: %w", pe.pack, err)
			}
			blob, err := io.ReadAll(io.LimitReader(rc, int64(e.Length)))
			rc.Close()
			if err != nil || len(blob) != int(e.Length) {
				return nil, fmt.Errorf("%w: pack %s: blob %s cut short", ErrCorrupt, pe.pack, e.ID.Short())
			}
			if cur == nil {
				id, err := newPackID()
				if err != nil {
					return nil, err
				}
				cur = &pack{id: id}
			}
			cur.entries = append(cur.entries, Entry{ID: e.ID, Pack: cur.id, Offset: uint32(len(cur.data)), Length: e.Length, RawLength: e.RawLength})
			cur.data = append(cur.data, blob...)
			if int64(len(cur.data)) >= r.cfg.PackSize {
				if err := flush(); err != nil {
					return nil, err
				}
			}
		}
	}
	return out, flush()
}

// removeStaleLocks deletes the locks of holders that died: nothing
// refreshed them for LockStale.
func (r *Repo) removeStaleLocks(ctx context.Context, now time.Time) {
	var stale []string
	_ = r.store.List(ctx, Keys.LockPrefix(), func(oi uploader.ObjectInfo) error {
		if now.Sub(oi.ModTime) > LockStale {
			stale = append(stale, oi.Key)
		}
		return nil
	})
	for _, k := range stale {
		_ = r.store.Delete(ctx, k)
	}
}
