package repo_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kbak/kbak/internal/repo"
	"github.com/kbak/kbak/internal/seal"
	"github.com/kbak/kbak/uploader"
)

func newStore(t *testing.T) (*uploader.FileStore, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := uploader.NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

func randomData(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func write(t *testing.T, r *repo.Repo, streams ...[]byte) ([][]repo.Ref, repo.WriterStats) {
	t.Helper()
	w, err := r.NewWriter(t.Context(), repo.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var all [][]repo.Ref
	for _, s := range streams {
		refs, err := w.WriteStream(t.Context(), bytes.NewReader(s))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, refs)
	}
	if err := w.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	return all, w.Stats()
}

func read(ctx context.Context, r *repo.Repo, refs []repo.Ref) ([]byte, error) {
	rd, err := r.NewReader(ctx)
	if err != nil {
		return nil, err
	}
	ch := make(chan repo.Ref)
	go func() {
		defer close(ch)
		for _, ref := range refs {
			ch <- ref
		}
	}()
	var out bytes.Buffer
	err = rd.Fetch(ctx, ch, func(_ repo.Ref, b []byte) error { out.Write(b); return nil })
	return out.Bytes(), err
}

// A stream written twice is stored once; a stream with a change in the
// middle stores only the chunks around the change; every stream reads back
// byte for byte.
func TestWriteDedupRead(t *testing.T) {
	s, _ := newStore(t)
	r, err := repo.Init(t.Context(), s, repo.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	base := randomData(1, 24<<20)
	refs, st := write(t, r, base, base)
	if st.NewBytes != int64(len(base)) || st.Bytes != 2*int64(len(base)) {
		t.Errorf("first run: new %d of %d bytes, want %d of %d", st.NewBytes, st.Bytes, len(base), 2*len(base))
	}
	changed := bytes.Clone(base)
	copy(changed[12<<20:], "a change in the middle")
	refs2, st2 := write(t, r, changed)
	if st2.NewBytes == 0 || st2.NewBytes > 16<<20 {
		t.Errorf("a 22-byte change stored %d new bytes, want a few chunks", st2.NewBytes)
	}
	t.Logf("24 MiB stream: %d chunks; a small change stored %d chunks (%d KiB)", len(refs[0]), st2.NewChunks, st2.NewBytes>>10)
	for i, c := range []struct {
		refs []repo.Ref
		want []byte
	}{{refs[0], base}, {refs[1], base}, {refs2[0], changed}} {
		got, err := read(t.Context(), r, c.refs)
		if err != nil {
			t.Fatalf("read stream %d: %v", i, err)
		}
		if !bytes.Equal(got, c.want) {
			t.Fatalf("stream %d read back differs (%d bytes, want %d)", i, len(got), len(c.want))
		}
	}
	// Compressible data is stored compressed.
	text := bytes.Repeat([]byte("row 42, some text that repeats;"), 1<<16)
	_, st3 := write(t, r, text)
	if st3.StoredBytes*4 > int64(len(text)) {
		t.Errorf("compressible stream of %d bytes stored as %d", len(text), st3.StoredBytes)
	}
}

// Damage is found before any byte of it is passed on: a changed byte in a
// pack, a missing pack, a chunk no index lists.
func TestReadDamage(t *testing.T) {
	data := randomData(2, 3<<20)
	tests := []struct {
		name   string
		damage func(t *testing.T, dir string)
		want   error
		says   string
	}{
		{"flipped byte", func(t *testing.T, dir string) {
			p := onlyFile(t, dir, "kbak/v2/data")
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 1
			os.WriteFile(p, b, 0o644)
		}, repo.ErrCorrupt, "pack"},
		{"missing pack", func(t *testing.T, dir string) {
			os.Remove(onlyFile(t, dir, "kbak/v2/data"))
		}, repo.ErrCorrupt, "missing"},
		{"missing index", func(t *testing.T, dir string) {
			os.Remove(onlyFile(t, dir, "kbak/v2/index"))
		}, repo.ErrMissingChunk, "no index"},
		{"truncated pack", func(t *testing.T, dir string) {
			p := onlyFile(t, dir, "kbak/v2/data")
			fi, _ := os.Stat(p)
			os.Truncate(p, fi.Size()/2)
		}, repo.ErrCorrupt, "truncated"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, dir := newStore(t)
			r, err := repo.Init(t.Context(), s, repo.InitOptions{})
			if err != nil {
				t.Fatal(err)
			}
			refs, _ := write(t, r, data)
			tc.damage(t, dir)
			got, err := read(t.Context(), r, refs[0])
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("err = %v, want %v saying %q", err, tc.want, tc.says)
			}
			if len(got) == len(data) {
				t.Errorf("the whole stream was passed on despite the damage")
			}
		})
	}
}

func onlyFile(t *testing.T, dir, sub string) string {
	t.Helper()
	var files []string
	filepath.WalkDir(filepath.Join(dir, sub), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if len(files) != 1 {
		t.Fatalf("%s holds %d files, want 1", sub, len(files))
	}
	return files[0]
}

func TestConfig(t *testing.T) {
	s, dir := newStore(t)
	if _, err := repo.Open(t.Context(), s, seal.Key{}); !errors.Is(err, repo.ErrNoRepository) {
		t.Fatalf("Open of an empty store: %v, want ErrNoRepository", err)
	}
	r, created, err := repo.OpenOrInit(t.Context(), s, seal.Key{}, repo.InitOptions{KbakVersion: "test"})
	if err != nil || !created {
		t.Fatalf("OpenOrInit: created %v, %v", created, err)
	}
	if _, err := repo.Init(t.Context(), s, repo.InitOptions{}); err == nil {
		t.Fatal("a second Init succeeded")
	}
	r2, created, err := repo.OpenOrInit(t.Context(), s, seal.Key{}, repo.InitOptions{})
	if err != nil || created || r2.Config().Chunker != r.Config().Chunker {
		t.Fatalf("reopen: created %v, err %v, chunker %+v vs %+v", created, err, r2.Config().Chunker, r.Config().Chunker)
	}
	p := filepath.Join(dir, "kbak/v2/config")
	b, _ := os.ReadFile(p)
	os.WriteFile(p, bytes.Replace(b, []byte(`"format": 2`), []byte(`"format": 3`), 1), 0o644)
	if _, err := repo.Open(t.Context(), s, seal.Key{}); !errors.Is(err, repo.ErrNewerFormat) || !strings.Contains(err.Error(), "newer kbak") {
		t.Fatalf("Open of a format 3 repository: %v, want ErrNewerFormat saying to use a newer kbak", err)
	}
}

// A file cache finds entries by path id, and only those.
func TestFileCache(t *testing.T) {
	s, _ := newStore(t)
	r, err := repo.Init(t.Context(), s, repo.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := r.NewFileCacheWriter(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	const n = 5000
	for i := range n {
		e := repo.FileEntry{Path: r.PathID(name(i)), Size: int64(i), DataSize: int64(i), ModTime: int64(i) * 1e9, Inode: uint64(i)}
		if i%3 == 0 {
			e.Refs = []repo.Ref{{ID: r.PathID("chunk" + name(i)), Size: uint32(i)}}
		}
		if err := w.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Store(t.Context(), "fc"); err != nil {
		t.Fatal(err)
	}
	fc, err := r.OpenFileCache(t.Context(), "fc", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	for _, i := range []int{0, 1, 2, 3, 4999} {
		e, ok := fc.Lookup(r.PathID(name(i)))
		if !ok || e.Size != int64(i) || e.Inode != uint64(i) || (i%3 == 0) != (len(e.Refs) == 1) {
			t.Errorf("Lookup(%s) = %+v, %v", name(i), e, ok)
		}
	}
	if _, ok := fc.Lookup(r.PathID("not/there")); ok {
		t.Error("Lookup of an unknown path found an entry")
	}
	count := 0
	r.ForEachFile(t.Context(), "fc", func(repo.FileEntry) error { count++; return nil })
	if count != n {
		t.Errorf("ForEachFile saw %d entries, want %d", count, n)
	}
}

func name(i int) string {
	return "dir/" + strings.Repeat("x", i%7) + "/file" + string(rune('a'+i%26)) + "-" + itoa(i)
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

// Writers that start at once on an empty store agree on one config: every
// one of them uses the config that is stored.
func TestConcurrentInit(t *testing.T) {
	s, _ := newStore(t)
	const n = 8
	keys := make(chan []byte, n)
	for range n {
		go func() {
			r, _, err := repo.OpenOrInit(t.Context(), s, seal.Key{}, repo.InitOptions{})
			if err != nil {
				t.Error(err)
				keys <- nil
				return
			}
			keys <- r.Config().IDKey
		}()
	}
	for range n {
		k := <-keys
		if stored, err := repo.LoadConfig(t.Context(), s); err != nil || !bytes.Equal(k, stored.IDKey) {
			t.Fatalf("a writer uses id key %x, the repository holds %x (%v)", k, stored.IDKey, err)
		}
	}
}

// A subset read finds a damaged chunk when it picks it, and reads about
// the fraction asked for.
func TestReadSubset(t *testing.T) {
	s, dir := newStore(t)
	r, err := repo.Init(t.Context(), s, repo.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const key = "kbak/v2/backups/ns/a/a-1/volumes/d.tree"
	refs := putVolume(t, r, s, key, randomData(20, 40<<20))
	c, err := r.NewChecker(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	n, err := c.ReadSubset(t.Context(), key, 1)
	if err != nil || n != int64(len(refs)) {
		t.Fatalf("subset 1: read %d of %d chunks, %v", n, len(refs), err)
	}
	if n, err = c.ReadSubset(t.Context(), key, 0.25); err != nil || n >= int64(len(refs)) {
		t.Fatalf("subset 0.25: read %d of %d chunks, %v", n, len(refs), err)
	}
	for _, p := range allFiles(t, dir, "kbak/v2/data") {
		b, _ := os.ReadFile(p)
		b[len(b)/3] ^= 1
		os.WriteFile(p, b, 0o644)
	}
	if _, err := c.ReadSubset(t.Context(), key, 1); !errors.Is(err, repo.ErrCorrupt) {
		t.Fatalf("subset read of damaged packs: %v, want ErrCorrupt", err)
	}
}

func allFiles(t *testing.T, dir, sub string) []string {
	t.Helper()
	var files []string
	filepath.WalkDir(filepath.Join(dir, sub), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	return files
}
