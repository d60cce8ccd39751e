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
	// Locked counts the packs and index objects that Object Lock kept:
	// they stay, with the data they hold, until their retention ends and
	// a later sweep removes them. A dry run finds only the packs it would
	// rewrite.
	Locked LockedObjects `json:"locked,omitzero"`
}

// Sweep removes the data no volume tree references any more: packs whose
// blobs are all garbage, packs that no index names (a crashed writer's), and
// the garbage of packs mostly garbage (their live blobs are copied first).
// It holds the exclusive lock, so no backup runs meanwhile, and it writes the
// new index before it deletes an old one or a pack: an interruption leaves
// garbage for the next sweep, never a reference to missing data.
//
// An object that Object Lock keeps stays, and Sweep goes on: a pack it
// would rewrite is left whole; an old index object stays, and so does every
// pack it names, so that no index ever names a pack that is gone; a pack
// to remove stays, named by no index or by an old one that stays too.
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
	named := make([][]PackID, len(objs)) // the packs each index object names
	for i, o := range objs {
		err := r.readIndex(ctx, o, func(e Entry) error {
			byPack[e.Pack] = append(byPack[e.Pack], e)
			if n := len(named[i]); n == 0 || named[i][n-1] != e.Pack {
				named[i] = append(named[i], e.Pack)
			}
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
	var remove []removal
	var repack []packEntries // live entries of packs to rewrite
	for id, all := range byPack {
		oi, ok := packs[id]
		if !ok {
			continue // named by an index but gone: verify reports it
		}
		// Two index objects name the same blobs when a sweep could not
		// remove an old one (Object Lock keeps it): count each blob once.
		entries := uniqueEntries(all)
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
			remove = append(remove, removal{pack: id, freed: oi.Size})
			res.FreedBytes += oi.Size
		case deadBytes > 0 && float64(deadBytes) >= opts.Repack*float64(liveBytes+deadBytes) && !young && !r.lockedPack(ctx, id, opts.Now, &res.Locked):
			repack = append(repack, packEntries{pack: id, entries: liveEntries})
			remove = append(remove, removal{pack: id, freed: deadBytes, repacked: true})
			res.FreedBytes += deadBytes
		default:
			keep = append(keep, packEntries{pack: id, entries: entries})
		}
	}
	for id, oi := range packs {
		if _, indexed := byPack[id]; !indexed && opts.Now.Sub(oi.ModTime) >= opts.Grace {
			remove = append(remove, removal{pack: id, freed: oi.Size})
			res.GarbageBytes += oi.Size
			res.FreedBytes += oi.Size
		}
	}
	res.DeletedPacks, res.RepackedPacks = len(remove)-len(repack), len(repack)
	if opts.DryRun || len(remove) == 0 {
		return res, nil
	}

	// What Sweep writes, the next sweep replaces: no retention (see
	// objectlock.go).
	rewritten, err := r.repack(ctx, repack)
	if err != nil {
		return res, fmt.Errorf("prune the repository: repack: %w: nothing was removed", err)
	}
	keep = append(keep, rewritten...)
	slices.SortFunc(keep, func(a, b packEntries) int { return bytes.Compare(a.pack[:], b.pack[:]) })
	if err := r.putIndex(ctx, r.plain, keep); err != nil {
		return res, fmt.Errorf("prune the repository: %w: nothing was removed", err)
	}
	res.IndexRewritten = true
	var errs []error
	// Packs that an old index object Object Lock keeps still names: they
	// stay as long as it does, until the date it is kept to.
	stays := map[PackID]time.Time{}
	for i, o := range objs {
		err := r.store.Delete(ctx, o.Key)
		var kept LockedObjects
		switch {
		case err == nil:
		case kept.Skip(err):
			res.Locked.Add(kept)
			for _, id := range named[i] {
				if t, ok := stays[id]; !ok || kept.Until.After(t) {
					stays[id] = kept.Until
				}
			}
		default:
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		// Old and new indexes both name live packs: nothing is lost, and
		// no pack may go while an old index still names it.
		return res, fmt.Errorf("prune the repository: remove old index objects: %w", errors.Join(errs...))
	}
	for _, rm := range remove {
		var err error
		if until, named := stays[rm.pack]; named {
			res.Locked.Add(LockedObjects{Objects: 1, Until: until})
		} else if err = r.store.Delete(ctx, Keys.Pack(rm.pack)); err == nil {
			continue
		} else if !res.Locked.Skip(err) {
			errs = append(errs, err)
			continue
		}
		// It stays: nothing freed.
		res.FreedBytes -= rm.freed
		if rm.repacked {
			res.RepackedPacks--
		} else {
			res.DeletedPacks--
		}
	}
	if len(errs) > 0 {
		return res, fmt.Errorf("prune the repository: remove packs (the next prune retries): %w", errors.Join(errs...))
	}
	return res, nil
}

// removal is a pack Sweep removes, and the bytes that frees.
type removal struct {
	pack     PackID
	freed    int64
	repacked bool // its live blobs were copied first
}

// uniqueEntries drops the entries of one pack that name a blob another
// entry names already.
func uniqueEntries(entries []Entry) []Entry {
	if len(entries) < 2 {
		return entries
	}
	at := make(map[uint32]bool, len(entries))
	out := entries[:0:0]
	for _, e := range entries {
		if !at[e.Offset] {
			at[e.Offset] = true
			out = append(out, e)
		}
	}
	return out
}

// lockedPack reports whether Object Lock keeps pack id at now, counting it
// in locked when it does; false when the store cannot say.
func (r *Repo) lockedPack(ctx context.Context, id PackID, now time.Time, locked *LockedObjects) bool {
	st, ok := r.store.(interface {
		Stat(context.Context, string) (uploader.ObjectInfo, error)
	})
	if !ok {
		return false
	}
	oi, err := st.Stat(ctx, Keys.Pack(id))
	if err != nil || !oi.Locked(now) {
		return false // a failed Stat: the removal will tell
	}
	until := oi.RetainUntil
	if !until.After(now) {
		until = time.Time{} // a legal hold
	}
	locked.Add(LockedObjects{Objects: 1, Until: until})
	return true
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
		if err := r.plain.Put(ctx, Keys.Pack(cur.id), bytes.NewReader(cur.data), int64(len(cur.data))); err != nil {
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
	_ = r.plain.List(ctx, Keys.LockPrefix(), func(oi uploader.ObjectInfo) error {
		if now.Sub(oi.ModTime) > LockStale {
			stale = append(stale, oi.Key)
		}
		return nil
	})
	for _, k := range stale {
		_ = r.plain.Delete(ctx, k)
	}
}
