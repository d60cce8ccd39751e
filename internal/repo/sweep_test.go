package repo_test

import (
	"bytes"
	"errors"
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
	if _, err := r.PutTree(t.Context(), key, nil); err != nil {
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
