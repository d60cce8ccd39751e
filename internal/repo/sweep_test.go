package repo_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/kbak/kbak/internal/repo"
	"github.com/kbak/kbak/uploader"
)

// putVolume stores data as a one-file volume with tree key.
func putVolume(t *testing.T, r *repo.Repo, s repo.Store, key string, data []byte) []repo.Ref {
	t.Helper()
	refs, _ := write(t, r, data)
	fc, err := r.NewFileCacheWriter(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	fc.Add(repo.FileEntry{Path: r.PathID("f"), Size: int64(len(data)), DataSize: int64(len(data)), Refs: refs[0]})
	if _, err := fc.Store(t.Context(), repo.FileCacheKey(key)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.PutTree(t.Context(), key, nil); err != nil {
		t.Fatal(err)
	}
	return refs[0]
}

// Sweep removes exactly the data no tree references: a dry run changes
// nothing, a real one frees the deleted volume's packs and keeps the other
// volume readable, shared chunks included.
func TestSweep(t *testing.T) {
	s, _ := newStore(t)
	r, err := repo.Init(t.Context(), s, repo.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	shared := randomData(10, 20<<20)
	a := append(bytes.Clone(shared), randomData(11, 4<<20)...)
	b := append(bytes.Clone(shared), randomData(12, 40<<20)...)
	refsA := putVolume(t, r, s, "kbak/v2/backups/ns/a/a-1/volumes/d.tree", a)
	putVolume(t, r, s, "kbak/v2/backups/ns/b/b-1/volumes/d.tree", b)

	res, err := r.Sweep(t.Context(), repo.SweepOptions{})
	if err != nil || res.DeletedPacks+res.RepackedPacks != 0 || res.GarbageBytes != 0 {
		t.Fatalf("sweep with everything referenced: %+v, %v; want nothing to do", res, err)
	}
	for _, k := range []string{"kbak/v2/backups/ns/b/b-1/volumes/d.tree", "kbak/v2/backups/ns/b/b-1/volumes/d.files"} {
		s.Delete(t.Context(), k)
	}
	before := packBytes(t, s)
	dry, err := r.Sweep(t.Context(), repo.SweepOptions{DryRun: true})
	if err != nil || dry.GarbageBytes < 30<<20 || dry.FreedBytes == 0 {
		t.Fatalf("dry run: %+v, %v; want about 40 MiB of garbage found", dry, err)
	}
	if packBytes(t, s) != before {
		t.Fatal("a dry run changed the packs")
	}
	res, err = r.Sweep(t.Context(), repo.SweepOptions{})
	if err != nil || !res.IndexRewritten {
		t.Fatalf("sweep: %+v, %v", res, err)
	}
	after := packBytes(t, s)
	t.Logf("sweep: %+v; packs %d MiB -> %d MiB", res, before>>20, after>>20)
	if freed := before - after; freed < 30<<20 || after < int64(len(a))/2 {
		t.Errorf("packs went from %d to %d bytes: want b's own 40 MiB freed and a's data kept", before, after)
	}
	got, err := read(t.Context(), r, refsA)
	if err != nil || !bytes.Equal(got, a) {
		t.Fatalf("volume a after the sweep: %d bytes, %v", len(got), err)
	}
	// Packs no index names (a crashed writer's) go after the grace period.
	orphan := randomData(13, 1<<20)
	if err := s.Put(t.Context(), repo.Keys.Pack(repo.PackID{13}), bytes.NewReader(orphan), int64(len(orphan))); err != nil {
		t.Fatal(err)
	}
	withOrphan := packBytes(t, s)
	if res, _ := r.Sweep(t.Context(), repo.SweepOptions{Grace: time.Hour}); res.DeletedPacks != 0 {
		t.Errorf("a young unindexed pack was removed: %+v", res)
	}
	if _, err := r.Sweep(t.Context(), repo.SweepOptions{}); err != nil {
		t.Fatal(err)
	}
	if packBytes(t, s) >= withOrphan {
		t.Errorf("the crashed writer's packs were not removed")
	}
}

// A backup's shared lock keeps prune away, and prune's exclusive lock keeps
// a backup waiting.
func TestLocks(t *testing.T) {
	s, _ := newStore(t)
	r, err := repo.Init(t.Context(), s, repo.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := r.Lock(t.Context(), repo.LockShared, "backup of db-0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Sweep(t.Context(), repo.SweepOptions{}); !errors.Is(err, repo.ErrLocked) {
		t.Fatalf("sweep during a backup: %v, want ErrLocked", err)
	}
	l2, err := r.Lock(t.Context(), repo.LockShared, "backup of db-1")
	if err != nil {
		t.Fatalf("two backups at once: %v", err)
	}
	l.Unlock(t.Context())
	l2.Unlock(t.Context())
	x, err := r.Lock(t.Context(), repo.LockExclusive, "prune")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Lock(t.Context(), repo.LockShared, "backup"); !errors.Is(err, repo.ErrLocked) {
		t.Fatalf("backup during prune: %v, want ErrLocked", err)
	}
	x.Unlock(t.Context())
	if _, err := r.Sweep(t.Context(), repo.SweepOptions{}); err != nil {
		t.Fatalf("sweep after the locks went: %v", err)
	}
}

func packBytes(t *testing.T, s repo.Store) int64 {
	t.Helper()
	var n int64
	s.List(t.Context(), repo.Keys.PackPrefix(), func(oi uploader.ObjectInfo) error { n += oi.Size; return nil })
	return n
}

// putRefs stores a one-file volume with tree key whose file is made of
// chunks the repository holds already.
func putRefs(t *testing.T, r *repo.Repo, key string, refs []repo.Ref, size int) {
	t.Helper()
	fc, err := r.NewFileCacheWriter(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	fc.Add(repo.FileEntry{Path: r.PathID("f"), Size: int64(size), DataSize: int64(size), Refs: refs})
	if _, err := fc.Store(t.Context(), repo.FileCacheKey(key)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.PutTree(t.Context(), key, nil); err != nil {
		t.Fatal(err)
	}
}

// lockingStore is a store in a bucket with Object Lock: Delete leaves the
// keys of locked alone with a *uploader.LockedError, Stat tells their date.
type lockingStore struct {
	*uploader.FileStore
	locked map[string]time.Time
}

func (s *lockingStore) Delete(ctx context.Context, key string) error {
	if until, ok := s.locked[key]; ok {
		return fmt.Errorf("delete %s: %w", key, &uploader.LockedError{Key: key, Until: until, Mode: uploader.RetentionCompliance})
	}
	return s.FileStore.Delete(ctx, key)
}

func (s *lockingStore) Stat(ctx context.Context, key string) (uploader.ObjectInfo, error) {
	oi, err := s.FileStore.Stat(ctx, key)
	oi.RetainUntil = s.locked[key]
	return oi, err
}

// newKeys lists the keys under prefix that are not in before.
func newKeys(t *testing.T, s repo.Store, prefix string, before []string) []string {
	t.Helper()
	var out []string
	s.List(t.Context(), prefix, func(oi uploader.ObjectInfo) error {
		if !slices.Contains(before, oi.Key) {
			out = append(out, oi.Key)
		}
		return nil
	})
	return out
}

// Sweep leaves what Object Lock keeps and goes on: a locked garbage pack
// stays, a locked pack it would rewrite stays whole, an old index object
// that is locked stays and so do the packs it names, so every index still
// names only packs that exist. Once the locks end, the next sweep frees it
// all, and the volumes still referenced read back throughout.
func TestSweepLocked(t *testing.T) {
	fs, _ := newStore(t)
	s := &lockingStore{FileStore: fs, locked: map[string]time.Time{}}
	r, err := repo.Init(t.Context(), s, repo.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Each volume is written by a writer of its own: a pack and an index
	// object each.
	vol := func(name string, data []byte) (packs, index []string, refs []repo.Ref) {
		beforePacks := newKeys(t, s, repo.Keys.PackPrefix(), nil)
		beforeIndex := newKeys(t, s, repo.Keys.IndexPrefix(), nil)
		refs = putVolume(t, r, s, "kbak/v2/backups/ns/"+name+"/"+name+"-1/volumes/d.tree", data)
		return newKeys(t, s, repo.Keys.PackPrefix(), beforePacks), newKeys(t, s, repo.Keys.IndexPrefix(), beforeIndex), refs
	}
	a := randomData(21, 2<<20)
	_, _, refsA := vol("a", a)
	pb, _, _ := vol("b", randomData(22, 2<<20))
	pc, ic, _ := vol("c", randomData(23, 2<<20))
	// d has two chunks or more (at most 8 MiB each) in one pack; volume e
	// holds its smallest one, so d's pack is mostly garbage once d goes.
	pd, _, refsD := vol("d", randomData(24, 15<<20))
	if len(pb) != 1 || len(pc) != 1 || len(ic) != 1 || len(pd) != 1 || len(refsD) < 2 {
		t.Fatalf("packs b %q c %q d %q, index c %q, %d chunks of d: want one pack each and two chunks", pb, pc, pd, ic, len(refsD))
	}
	refsE := []repo.Ref{slices.MinFunc(refsD, func(x, y repo.Ref) int { return int(x.Size) - int(y.Size) })}
	shared, err := read(t.Context(), r, refsE)
	if err != nil {
		t.Fatal(err)
	}
	putRefs(t, r, "kbak/v2/backups/ns/e/e-1/volumes/d.tree", refsE, len(shared))
	for _, v := range []string{"b", "c", "d"} {
		for _, k := range []string{"d.tree", "d.files"} {
			if err := s.Delete(t.Context(), "kbak/v2/backups/ns/"+v+"/"+v+"-1/volumes/"+k); err != nil {
				t.Fatal(err)
			}
		}
	}
	until := time.Now().Add(24 * time.Hour).Truncate(time.Second)
	s.locked[pb[0]] = until                 // garbage, locked
	s.locked[ic[0]] = until.Add(time.Hour)  // an index that stays, naming garbage pack c
	s.locked[pd[0]] = until.Add(-time.Hour) // mostly garbage, to be rewritten, locked

	packsBefore := newKeys(t, s, repo.Keys.PackPrefix(), nil)
	res, err := r.Sweep(t.Context(), repo.SweepOptions{})
	t.Logf("sweep with locks: %+v", res)
	if added := newKeys(t, s, repo.Keys.PackPrefix(), packsBefore); len(added) != 0 {
		t.Errorf("the sweep wrote packs %q: a locked pack must not be copied", added)
	}
	if err != nil {
		t.Fatalf("sweep with locked objects: %v, want them skipped", err)
	}
	if res.Locked.Objects != 4 || !res.Locked.Until.Equal(until.Add(time.Hour)) {
		t.Errorf("locked %+v, want 4 objects (packs b, c, d and c's index) until %v", res.Locked, until.Add(time.Hour))
	}
	if res.DeletedPacks != 0 || res.RepackedPacks != 0 || res.FreedBytes != 0 {
		t.Errorf("sweep %+v: want nothing counted as removed or rewritten", res)
	}
	for _, k := range []string{pb[0], pc[0], pd[0], ic[0]} {
		if _, err := s.Stat(t.Context(), k); err != nil {
			t.Errorf("%s: %v, want it kept", k, err)
		}
	}
	checkIndex(t, r, s)
	for name, v := range map[string]struct {
		refs []repo.Ref
		data []byte
	}{"a": {refsA, a}, "e": {refsE, shared}} {
		if got, err := read(t.Context(), r, v.refs); err != nil || !bytes.Equal(got, v.data) {
			t.Fatalf("volume %s after the sweep: %d bytes, %v", name, len(got), err)
		}
	}

	clear(s.locked) // the retention ended
	res, err = r.Sweep(t.Context(), repo.SweepOptions{})
	t.Logf("sweep after the locks: %+v", res)
	if err != nil || res.Locked.Any() || res.DeletedPacks != 2 || res.RepackedPacks != 1 {
		t.Fatalf("sweep once the locks ended: %+v, %v; want packs b and c removed and d rewritten", res, err)
	}
	for _, k := range []string{pb[0], pc[0], pd[0], ic[0]} {
		if _, err := s.Stat(t.Context(), k); !errors.Is(err, uploader.ErrNotFound) {
			t.Errorf("%s after the locks ended: %v, want it gone", k, err)
		}
	}
	checkIndex(t, r, s)
	if got, err := read(t.Context(), r, refsE); err != nil || !bytes.Equal(got, shared) {
		t.Fatalf("volume e after the second sweep: %d bytes, %v", len(got), err)
	}
}

// checkIndex fails when an index entry names a pack that is not there.
func checkIndex(t *testing.T, r *repo.Repo, s repo.Store) {
	t.Helper()
	packs := map[repo.PackID]bool{}
	s.List(t.Context(), repo.Keys.PackPrefix(), func(oi uploader.ObjectInfo) error {
		id, _ := repo.Keys.ParsePack(oi.Key)
		packs[id] = true
		return nil
	})
	err := r.ForEachEntry(t.Context(), nil, func(e repo.Entry) error {
		if !packs[e.Pack] {
			return fmt.Errorf("an index names pack %x, which is gone", e.Pack)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}
