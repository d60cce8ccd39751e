package mover

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kbak/kbak/internal/repo"
	"github.com/kbak/kbak/internal/seal"
	"github.com/kbak/kbak/uploader"
)

// snapshotTree records every entry of dir: mode, size, mtime and content.
func snapshotTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		v := fi.Mode().String()
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v += " " + fi.ModTime().UTC().Format(time.RFC3339Nano) + " " + string(b)
		}
		out[rel] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameTree(t *testing.T, want, got map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %.80q, want %.80q", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: not in the source", k)
		}
	}
}

// A volume in the deduplicating repository round-trips; the next upload with
// it as parent reads only the changed file and stores little; an unchanged
// volume stores nothing new; a missing pack fails the restore with a clear
// error.
func TestTreeUploadParentDownload(t *testing.T) {
	ctx := t.Context()
	store := fileStore(t)
	src := tree(t)
	const key1, key2, key3 = "kbak/v2/backups/ns/s/s-1/volumes/d.tree", "kbak/v2/backups/ns/s/s-2/volumes/d.tree", "kbak/v2/backups/ns/s/s-3/volumes/d.tree"

	up1, err := Upload(ctx, store, UploadOptions{Source: src, Key: key1, ResultKey: "r1.json", TempDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if up1.Format != repo.FormatVersion || up1.Files != 3 || up1.ReadBytes != up1.RawBytes || up1.SkippedFiles != 0 || up1.NewChunks == 0 {
		t.Errorf("first upload: %+v", up1)
	}
	dst := t.TempDir()
	if _, err := Download(ctx, store, DownloadOptions{Key: key1, Target: dst}, nil); err != nil {
		t.Fatal(err)
	}
	sameTree(t, snapshotTree(t, src), snapshotTree(t, dst))

	changed := filepath.Join(src, "a.txt")
	if err := os.WriteFile(changed, []byte("alpha, and more"), 0o640); err != nil {
		t.Fatal(err)
	}
	up2, err := Upload(ctx, store, UploadOptions{Source: src, Key: key2, Parent: key1, TempDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if up2.SkippedFiles != 2 || up2.ReadBytes != int64(len("alpha, and more")) || up2.Parent != key1 {
		t.Errorf("upload with a parent: read %d bytes, skipped %d files; want only a.txt read: %+v", up2.ReadBytes, up2.SkippedFiles, up2)
	}
	dst2 := t.TempDir()
	if _, err := Download(ctx, store, DownloadOptions{Key: key2, Target: dst2}, nil); err != nil {
		t.Fatal(err)
	}
	sameTree(t, snapshotTree(t, src), snapshotTree(t, dst2))

	up3, err := Upload(ctx, store, UploadOptions{Source: src, Key: key3, Parent: key2, TempDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if up3.ReadBytes != 0 || up3.NewChunks != 0 {
		t.Errorf("unchanged volume: read %d bytes and stored %d new chunks, want none", up3.ReadBytes, up3.NewChunks)
	}

	// Verify-only download reads every chunk.
	if _, err := Download(ctx, store, DownloadOptions{Key: key3}, nil); err != nil {
		t.Fatalf("verify: %v", err)
	}
	var packs []string
	store.List(ctx, repo.Keys.PackPrefix(), func(oi uploader.ObjectInfo) error { packs = append(packs, oi.Key); return nil })
	for _, p := range packs {
		store.Delete(ctx, p)
	}
	target := t.TempDir()
	_, err = Download(ctx, store, DownloadOptions{Key: key3, Target: target}, nil)
	if !errors.Is(err, repo.ErrCorrupt) || !strings.Contains(err.Error(), "pack") {
		t.Fatalf("restore with the packs gone: %v, want ErrCorrupt naming the pack", err)
	}
	if left, _ := os.ReadDir(target); len(left) != 0 {
		t.Errorf("a restore that could not succeed wrote %d entries into the target", len(left))
	}
}

// An upload does not start while prune holds the repository: it waits, and
// gives up when its context ends, naming the lock.
func TestTreeUploadWaitsForPrune(t *testing.T) {
	store := fileStore(t)
	r, err := repo.Init(t.Context(), store, repo.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := r.Lock(t.Context(), repo.LockExclusive, "prune")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock(t.Context())
	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	_, err = Upload(ctx, store, UploadOptions{Source: tree(t), Key: "kbak/v2/backups/ns/s/s-1/volumes/d.tree"}, nil)
	if !errors.Is(err, repo.ErrLocked) || !strings.Contains(err.Error(), "prune") {
		t.Fatalf("upload during prune: %v, want ErrLocked naming the prune", err)
	}
}

// A chunk of file data that fails its check ends the restore and the
// verify-only download with ErrCorrupt: the recipe's reader stops with it
// and does not wait forever for the rest of the recipe.
func TestTreeDownloadDamagedDataEnds(t *testing.T) {
	store := fileStore(t)
	src := t.TempDir()
	data := make([]byte, 3<<20)
	rand.Read(data)
	if err := os.WriteFile(filepath.Join(src, "big.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	const key = "kbak/v2/backups/ns/s/s-1/volumes/d.tree"
	if _, err := Upload(t.Context(), store, UploadOptions{Source: src, Key: key, TempDir: t.TempDir()}, nil); err != nil {
		t.Fatal(err)
	}
	var packs []string
	store.List(t.Context(), repo.Keys.PackPrefix(), func(oi uploader.ObjectInfo) error { packs = append(packs, oi.Key); return nil })
	for _, p := range packs {
		rc, err := store.Get(t.Context(), p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		b[100] ^= 1 // in the first blob: file data, written before the recipe
		if err := store.Put(t.Context(), p, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
	for _, target := range []string{"", t.TempDir()} {
		done := make(chan error, 1)
		go func() {
			_, err := Download(t.Context(), store, DownloadOptions{Key: key, Target: target}, nil)
			done <- err
		}()
		var err error
		select {
		case err = <-done:
		case <-time.After(time.Minute):
			t.Fatalf("download (target %q) of a damaged chunk still running after a minute", target)
		}
		if !errors.Is(err, repo.ErrCorrupt) {
			t.Errorf("download (target %q) of a damaged chunk: %v, want ErrCorrupt", target, err)
		}
	}
}

// A volume's tree is checked by the digest its upload reported, which the
// manifest records: a tree swapped for another backup's is refused before
// anything is extracted, so a restore or verify never passes on the wrong
// data.
func TestTreeDigest(t *testing.T) {
	ctx := t.Context()
	store := fileStore(t)
	const key1, key2 = "kbak/v2/backups/ns/s/s-1/volumes/d.tree", "kbak/v2/backups/ns/s/s-2/volumes/d.tree"
	up1, err := Upload(ctx, store, UploadOptions{Source: tree(t), Key: key1, TempDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "other.txt"), []byte("not the backed-up data"), 0o644); err != nil {
		t.Fatal(err)
	}
	up2, err := Upload(ctx, store, UploadOptions{Source: other, Key: key2, TempDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(up1.SHA256) != 64 || up1.SHA256 == up2.SHA256 {
		t.Fatalf("tree digests %q and %q, want two different sha256", up1.SHA256, up2.SHA256)
	}
	down, err := Download(ctx, store, DownloadOptions{Key: key1, SHA256: up1.SHA256, Target: t.TempDir()}, nil)
	if err != nil || down.SHA256 != up1.SHA256 {
		t.Fatalf("download with the recorded digest: %+v, %v", down, err)
	}

	// Swap the first volume's tree for the second's.
	rc, err := store.Get(ctx, key2)
	if err != nil {
		t.Fatal(err)
	}
	swapped, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Put(ctx, key1, bytes.NewReader(swapped), int64(len(swapped))); err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	for _, dst := range []string{target, ""} { // a restore, and verify --read-data
		_, err = Download(ctx, store, DownloadOptions{Key: key1, SHA256: up1.SHA256, Target: dst}, nil)
		if !errors.Is(err, repo.ErrCorrupt) || !strings.Contains(err.Error(), "the backup recorded "+up1.SHA256) || strings.Contains(err.Error(), "\n") {
			t.Errorf("download of a swapped tree (target %q): %v, want one line wrapping ErrCorrupt naming the recorded digest", dst, err)
		}
	}
	if entries, _ := os.ReadDir(target); len(entries) != 0 {
		t.Errorf("a swapped tree extracted %d entries, want none", len(entries))
	}
}

// Files of several chunks are read several at once with the small ones, yet
// each one's chunks lie together in the packs, so that a restore reads a
// file with few requests.
func TestTreeLargeFilesStoredTogether(t *testing.T) {
	ctx := t.Context()
	store := fileStore(t)
	src := t.TempDir()
	for i := range 4 {
		b := make([]byte, 10<<20) // random: stored as they are, in two chunks or more (8 MiB at most)
		rand.Read(b)
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("large-%d", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
		for j := range 20 {
			if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("large-%d-small-%02d", i, j)), fmt.Appendf(nil, "small file %d %d", i, j), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	const key = "kbak/v2/backups/ns/s/s-1/volumes/d.tree"
	if _, err := Upload(ctx, store, UploadOptions{Source: src, Key: key, TempDir: t.TempDir()}, nil); err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, store, seal.Key{})
	if err != nil {
		t.Fatal(err)
	}
	owner := map[repo.ID]int{} // chunk -> the large file it is of
	file := 0
	err = r.ForEachFile(ctx, repo.FileCacheKey(key), func(e repo.FileEntry) error {
		if len(e.Refs) > 1 {
			file++
			for _, ref := range e.Refs {
				owner[ref.ID] = file
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if file != 4 {
		t.Fatalf("%d files of several chunks in the file cache, want 4", file)
	}
	packs := map[repo.PackID][]repo.Entry{}
	err = r.ForEachEntry(ctx, func(int) {}, func(e repo.Entry) error {
		if owner[e.ID] != 0 {
			packs[e.Pack] = append(packs[e.Pack], e)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for pack, entries := range packs {
		slices.SortFunc(entries, func(a, b repo.Entry) int { return cmp.Compare(a.Offset, b.Offset) })
		var runs []int // the large files of the pack's chunks, one a run
		for _, e := range entries {
			if f := owner[e.ID]; len(runs) == 0 || runs[len(runs)-1] != f {
				runs = append(runs, f)
			}
		}
		seen := map[int]bool{}
		for _, f := range runs {
			if seen[f] {
				t.Errorf("pack %s: the chunks of the large files lie in the runs %v: a file's chunks are split by another's", pack, runs)
				break
			}
			seen[f] = true
		}
	}
}
