package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// memStore keeps file data in a map: Content stores each file's data under
// a counter and returns the counter as its reference; Data writes it back.
type memStore struct {
	t    *testing.T
	src  string // when set, every FileInfo is checked against the file
	mu   sync.Mutex
	data map[string][]byte
}

func newMemStore(t *testing.T, src string) *memStore {
	return &memStore{t: t, src: src, data: make(map[string][]byte)}
}

func (m *memStore) Content(ctx context.Context, f FileInfo, r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	if int64(len(b)) != f.DataSize {
		m.t.Errorf("%s: data yields %d bytes, DataSize %d", f.Name, len(b), f.DataSize)
	}
	if m.src != "" {
		checkFileInfo(m.t, filepath.Join(m.src, f.Name), f)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ref := strconv.Itoa(len(m.data))
	m.data[ref] = b
	return []byte(ref), nil
}

func (m *memStore) Data(ctx context.Context, ref []byte, size int64, w io.Writer) error {
	m.mu.Lock()
	b, ok := m.data[string(ref)]
	m.mu.Unlock()
	if !ok {
		return fmt.Errorf("no data under reference %q", ref)
	}
	_, err := w.Write(b)
	return err
}

// checkFileInfo compares what Write told a ContentFunc with a stat of the
// file, which nothing changes meanwhile.
func checkFileInfo(t *testing.T, full string, f FileInfo) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(full, &st); err != nil {
		t.Errorf("%s: %v", f.Name, err)
		return
	}
	want := FileInfo{
		Name:       f.Name,
		Size:       st.Size,
		DataSize:   f.DataSize,
		ModTime:    time.Unix(st.Mtim.Unix()),
		ChangeTime: time.Unix(st.Ctim.Unix()),
		Inode:      st.Ino,
		Device:     uint64(st.Dev),
	}
	if f != want || f.DataSize > f.Size || f.DataSize < 0 {
		t.Errorf("FileInfo %+v\n want %+v", f, want)
	}
}

// plainArchive is Write's plain stream of src, without Content.
func plainArchive(t *testing.T, src string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := Write(context.Background(), src, &buf, WriteOptions{Plain: true}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestRecipeRoundTrip: Write a recipe, Rehydrate it, ExtractTar the result:
// the tree is the source's, and the rehydrated stream is byte for byte the
// plain stream Write makes without Content.
func TestRecipeRoundTrip(t *testing.T) {
	isRoot(t)
	ctx := context.Background()
	for _, tc := range roundTripCases() {
		t.Run(tc.name, func(t *testing.T) {
			src := t.TempDir()
			tc.build(tree{t, src})
			before := snapshot(t, src)

			store := newMemStore(t, src)
			var recipe bytes.Buffer
			var wc Counters
			ws, err := Write(ctx, src, &recipe, WriteOptions{Plain: true, Content: store.Content, Progress: &wc})
			if err != nil {
				t.Fatalf("Write: %v", err)
			}
			if int64(len(store.data)) != ws.Files {
				t.Errorf("Content called %d times for %d files", len(store.data), ws.Files)
			}
			var plain bytes.Buffer
			if err := Rehydrate(ctx, bytes.NewReader(recipe.Bytes()), &plain, store.Data); err != nil {
				t.Fatalf("Rehydrate: %v", err)
			}
			if !bytes.Equal(plain.Bytes(), plainArchive(t, src)) {
				t.Error("rehydrated stream differs from Write's plain stream of the tree")
			}

			dst := t.TempDir()
			es, err := ExtractTar(ctx, bytes.NewReader(plain.Bytes()), dst, everything)
			if err != nil {
				t.Fatalf("ExtractTar: %v", err)
			}
			after := snapshot(t, dst)
			compareTrees(t, before, after)
			checkHoles(t, tc.sparse, before, after)

			// ExtractRecipe makes the same tree straight from the recipe.
			direct := t.TempDir()
			var rc Counters
			rs, err := ExtractRecipe(ctx, bytes.NewReader(recipe.Bytes()), direct, ExtractOptions{Devices: true, SetID: true, Progress: &rc}, store.Data)
			if err != nil {
				t.Fatalf("ExtractRecipe: %v", err)
			}
			afterDirect := snapshot(t, direct)
			compareTrees(t, before, afterDirect)
			checkHoles(t, tc.sparse, before, afterDirect)
			if rs != es {
				t.Errorf("ExtractRecipe stats %+v, ExtractTar's %+v", rs, es)
			}
			if rc.RawBytes.Load() != es.RawBytes || rc.Files.Load() != es.Entries() {
				t.Errorf("ExtractRecipe counters %d bytes %d entries, stats %+v", rc.RawBytes.Load(), rc.Files.Load(), es)
			}

			if tc.sparse != nil {
				tc.want.RawBytes = ws.RawBytes
			}
			tc.want.ReadBytes = tc.want.RawBytes
			vs, err := VerifyTar(ctx, bytes.NewReader(plain.Bytes()), nil)
			if err != nil {
				t.Fatalf("VerifyTar: %v", err)
			}
			for _, s := range []struct {
				name string
				got  Stats
			}{{"Write", ws}, {"ExtractTar", es}, {"VerifyTar", vs}} {
				if s.got != tc.want {
					t.Errorf("%s stats %+v, want %+v", s.name, s.got, tc.want)
				}
			}
			if wc.RawBytes.Load() != ws.RawBytes || wc.Files.Load() != ws.Entries() {
				t.Errorf("Write counters %d bytes %d entries, stats %+v", wc.RawBytes.Load(), wc.Files.Load(), ws)
			}
		})
	}
}

// TestWalkRecipe: WalkRecipe gives the references in the order Rehydrate
// asks for their data, and stops at f's error.
func TestWalkRecipe(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	tr := tree{t, src}
	for _, d := range []string{"b", "a/z", "a/c"} {
		tr.dir(d, 0o755)
		tr.file(d+"/f", d, 0o644)
		tr.file(d+"/g", "", 0o644)
	}
	tr.must(os.Link(tr.p("b/f"), tr.p("a/link")))
	store := newMemStore(t, "")
	var recipe bytes.Buffer
	if _, err := Write(ctx, src, &recipe, WriteOptions{Plain: true, Content: store.Content}); err != nil {
		t.Fatal(err)
	}
	var walked, asked []string
	if err := WalkRecipe(ctx, bytes.NewReader(recipe.Bytes()), func(ref []byte) error {
		walked = append(walked, string(ref))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := Rehydrate(ctx, bytes.NewReader(recipe.Bytes()), io.Discard, func(ctx context.Context, ref []byte, size int64, w io.Writer) error {
		asked = append(asked, string(ref))
		return store.Data(ctx, ref, size, w)
	}); err != nil {
		t.Fatal(err)
	}
	if len(walked) != 6 || !slices.Equal(walked, asked) {
		t.Errorf("WalkRecipe gave %q, Rehydrate asked for %q", walked, asked)
	}
	errStop := errors.New("stop")
	n := 0
	err := WalkRecipe(ctx, bytes.NewReader(recipe.Bytes()), func([]byte) error {
		n++
		return errStop
	})
	if !errors.Is(err, errStop) || n != 1 {
		t.Errorf("WalkRecipe after f failed: %v, %d calls", err, n)
	}
}

// TestContentLazy: a ContentFunc that knows a file unchanged returns its
// reference without reading, and Write then reads nothing of that file, yet
// TestRecipeOrder: files read at once finish out of order, yet the recipe
// and the Written calls follow the walk, and the recipe is the one a single
// reader writes.
func TestRecipeOrder(t *testing.T) {
	src := t.TempDir()
	tr := tree{t, src}
	var want []string
	for d := range 3 {
		tr.dir(fmt.Sprintf("d%d", d), 0o755)
		for f := range 20 {
			name := fmt.Sprintf("d%d/f%02d", d, f)
			tr.file(name, strings.Repeat("x", d*20+f), 0o644)
			want = append(want, name)
		}
	}
	write := func(readers int, delay func(FileInfo) time.Duration) ([]byte, []string) {
		t.Helper()
		var recipe bytes.Buffer
		var order []string
		_, err := Write(context.Background(), src, &recipe, WriteOptions{Plain: true, Readers: readers,
			Content: func(ctx context.Context, f FileInfo, r io.Reader) ([]byte, error) {
				time.Sleep(delay(f))
				b, err := io.ReadAll(r)
				return []byte(fmt.Sprintf("%s:%d", f.Name, len(b))), err
			},
			Written: func(f FileInfo, ref []byte) error {
				if string(ref) != fmt.Sprintf("%s:%d", f.Name, f.DataSize) {
					t.Errorf("Written %s with the reference %q", f.Name, ref)
				}
				order = append(order, f.Name)
				return nil
			}})
		if err != nil {
			t.Fatal(err)
		}
		return recipe.Bytes(), order
	}
	one, order := write(1, func(FileInfo) time.Duration { return 0 })
	if !slices.Equal(order, want) {
		t.Fatalf("one reader: Written in the order %v, want %v", order, want)
	}
	// The later a file in the walk, the sooner its Content returns.
	many, order := write(8, func(f FileInfo) time.Duration { return time.Duration(60-f.DataSize) * 100 * time.Microsecond })
	if !slices.Equal(order, want) {
		t.Errorf("eight readers: Written in the order %v, want %v", order, want)
	}
	if !bytes.Equal(one, many) {
		t.Error("eight readers write another recipe than one")
	}
}

// RawBytes still counts its data and the recipe restores it.
func TestContentLazy(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	tr := tree{t, src}
	tr.dir("d", 0o755)
	tr.file("d/big", strings.Repeat("0123456789abcdef", 1<<16), 0o644) // 1 MiB
	tr.file("d/small", "small", 0o600)
	tr.must(os.Link(tr.p("d/small"), tr.p("small-link")))
	tr.sparse("sparse", 8<<20, map[int64]string{4 << 20: "in the middle"})
	const big = 1 << 20

	// First backup: everything is read and stored; remember each file.
	type key struct {
		name          string
		size          int64
		mtime, ctime  time.Time
		inode, device uint64
	}
	keyOf := func(f FileInfo) key { return key{f.Name, f.Size, f.ModTime, f.ChangeTime, f.Inode, f.Device} }
	store := newMemStore(t, src)
	known := make(map[key][]byte)
	var mu sync.Mutex // Content runs for several files at once
	first, err := Write(ctx, src, io.Discard, WriteOptions{Plain: true, Content: func(ctx context.Context, f FileInfo, r io.Reader) ([]byte, error) {
		ref, err := store.Content(ctx, f, r)
		mu.Lock()
		known[keyOf(f)] = ref
		mu.Unlock()
		return ref, err
	}})
	if err != nil {
		t.Fatal(err)
	}
	if first.ReadBytes != first.RawBytes || first.Files != 3 {
		t.Fatalf("first Write stats %+v", first)
	}

	tr.file("d/small", "changed", 0o600) // same inode, new size and times
	tests := []struct {
		name     string
		read     map[string]int64 // bytes to read of a known file; absent: none
		wantRead int64
	}{
		{name: "nothing read", wantRead: int64(len("changed"))},
		{name: "a known file read in part", read: map[string]int64{"d/big": 1000}, wantRead: 1000 + int64(len("changed"))},
		{name: "a known file read in full", read: map[string]int64{"d/big": big}, wantRead: big + int64(len("changed"))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var readers []io.Reader
			var recipe bytes.Buffer
			var c Counters
			st, err := Write(ctx, src, &recipe, WriteOptions{Plain: true, Progress: &c, Content: func(ctx context.Context, f FileInfo, r io.Reader) ([]byte, error) {
				mu.Lock()
				readers = append(readers, r)
				ref, ok := known[keyOf(f)]
				mu.Unlock()
				if ok {
					if n := tc.read[f.Name]; n > 0 {
						if _, err := io.CopyN(io.Discard, r, n); err != nil {
							return nil, err
						}
					}
					return ref, nil
				}
				return store.Content(ctx, f, r)
			}})
			if err != nil {
				t.Fatal(err)
			}
			if st.ReadBytes != tc.wantRead {
				t.Errorf("ReadBytes %d, want %d", st.ReadBytes, tc.wantRead)
			}
			// The sparse file's data regions are its 4 KiB-ish blocks, not 8 MiB.
			if want := first.RawBytes - 5 + int64(len("changed")); st.RawBytes != want || c.RawBytes.Load() != want {
				t.Errorf("RawBytes %d, counters %d, want %d", st.RawBytes, c.RawBytes.Load(), want)
			}
			if len(readers) != 3 {
				t.Fatalf("Content called %d times, want 3", len(readers))
			}
			if _, err := readers[0].Read(make([]byte, 10)); err == nil {
				t.Error("data read after its ContentFunc returned")
			}

			var plain bytes.Buffer
			if err := Rehydrate(ctx, bytes.NewReader(recipe.Bytes()), &plain, store.Data); err != nil {
				t.Fatal(err)
			}
			dst := t.TempDir()
			if _, err := ExtractTar(ctx, &plain, dst, ExtractOptions{}); err != nil {
				t.Fatal(err)
			}
			compareTrees(t, snapshot(t, src), snapshot(t, dst))
		})
	}
}

// TestContentChangingFile: data yields exactly DataSize bytes however the
// file changes between the open and the read.
func TestContentChangingFile(t *testing.T) {
	data := strings.Repeat("x", 10000)
	tests := []struct {
		name   string
		change func(path string) error
		want   string
	}{
		{"unchanged", func(string) error { return nil }, data},
		{"shrinks", func(p string) error { return os.Truncate(p, 4000) }, data[:4000] + strings.Repeat("\x00", 6000)},
		{"emptied", func(p string) error { return os.Truncate(p, 0) }, strings.Repeat("\x00", 10000)},
		{"grows", func(p string) error {
			f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteString("more")
			return err
		}, data},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := t.TempDir()
			tree{t, src}.file("f", data, 0o644)
			var got []byte
			_, err := Write(context.Background(), src, io.Discard, WriteOptions{Plain: true, Content: func(ctx context.Context, f FileInfo, r io.Reader) ([]byte, error) {
				if err := tc.change(filepath.Join(src, f.Name)); err != nil {
					return nil, err
				}
				var err error
				got, err = io.ReadAll(r)
				return nil, err
			}})
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("data yields %d bytes (%q...), want %d", len(got), got[:min(len(got), 8)], len(tc.want))
			}
		})
	}
}

func TestWriteContentErrors(t *testing.T) {
	src := t.TempDir()
	tree{t, src}.file("f", "data", 0o644)
	errStore := errors.New("store unavailable")
	tests := []struct {
		name    string
		content ContentFunc
		cancel  bool // cancel the context before calling content
		is      error
		msg     string
	}{
		{name: "content fails", content: func(context.Context, FileInfo, io.Reader) ([]byte, error) { return nil, errStore }, is: errStore, msg: "store content of"},
		{name: "reference too large", content: func(context.Context, FileInfo, io.Reader) ([]byte, error) { return make([]byte, MaxRefSize+1), nil }, msg: "over the"},
		{name: "cancelled while reading", cancel: true, content: func(ctx context.Context, f FileInfo, r io.Reader) ([]byte, error) {
			_, err := io.ReadAll(r)
			return nil, err
		}, is: context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			content := func(c context.Context, f FileInfo, r io.Reader) ([]byte, error) {
				if tc.cancel {
					cancel()
				}
				return tc.content(c, f, r)
			}
			_, err := Write(ctx, src, io.Discard, WriteOptions{Plain: true, Content: content})
			if err == nil {
				t.Fatal("Write succeeded")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %q is not %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not say %q", err, tc.msg)
			}
		})
	}
}

// recipeOf writes a small tree as a recipe: d/f holds 1000 bytes.
func recipeOf(t *testing.T) ([]byte, *memStore) {
	t.Helper()
	src := t.TempDir()
	tr := tree{t, src}
	tr.dir("d", 0o755)
	tr.file("d/f", strings.Repeat("f", 1000), 0o644)
	tr.must(os.Symlink("d/f", tr.p("s")))
	store := newMemStore(t, "")
	var recipe bytes.Buffer
	if _, err := Write(context.Background(), src, &recipe, WriteOptions{Plain: true, Content: store.Content}); err != nil {
		t.Fatal(err)
	}
	return recipe.Bytes(), store
}

// handRecipe is a plain stream of one regular entry "f" with the given
// content size record and reference; with headerOnly the entry's data and the
// end marker are left out.
func handRecipe(t *testing.T, typ byte, sizeRecord string, refLen int64, headerOnly bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{Typeflag: typ, Name: "f", Mode: 0o644, Size: refLen, Format: tar.FormatPAX,
		PAXRecords: map[string]string{paxContentSize: sizeRecord}}
	if err := tw.WriteHeader(hdr); err != nil {
		t.Fatalf("write header: %v", err)
	}
	if headerOnly {
		return buf.Bytes()
	}
	tw.Write(bytes.Repeat([]byte("r"), int(refLen)))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRehydrateErrors(t *testing.T) {
	good, store := recipeOf(t)
	exact := func(n int64) func(ctx context.Context, ref []byte, size int64, w io.Writer) error {
		return func(ctx context.Context, ref []byte, size int64, w io.Writer) error {
			_, err := w.Write(bytes.Repeat([]byte("x"), int(size+n)))
			return err
		}
	}
	errMissing := errors.New("chunk missing")
	tests := []struct {
		name   string
		recipe []byte
		data   func(ctx context.Context, ref []byte, size int64, w io.Writer) error
		out    io.Writer
		is     error
		msg    string
		// recipeFault: the recipe itself is bad, and WalkRecipe fails too.
		recipeFault bool
	}{
		{name: "too few bytes", recipe: good, data: exact(-1), msg: "d/f: got 999 bytes of data, the recipe records 1000"},
		{name: "nothing written", recipe: good, data: exact(-1000), msg: "d/f: got 0 bytes"},
		{name: "too many bytes", recipe: good, data: exact(1), msg: "d/f: its data is longer than the 1000 bytes"},
		{name: "too many bytes, write error ignored", recipe: good, data: func(ctx context.Context, ref []byte, size int64, w io.Writer) error {
			exact(0)(ctx, ref, size, w)
			w.Write([]byte("extra"))
			return nil
		}, msg: "d/f: its data is longer"},
		{name: "data fails", recipe: good, data: func(context.Context, []byte, int64, io.Writer) error { return errMissing }, is: errMissing, msg: "rehydrate d/f"},
		{name: "output fails", recipe: good, data: store.Data, out: failWriter{}, is: errOutput},
		{name: "reference over the limit", recipe: handRecipe(t, tar.TypeReg, "5", MaxRefSize+1, true), msg: "over the 67108864 byte limit", recipeFault: true},
		{name: "content size not a number", recipe: handRecipe(t, tar.TypeReg, "abc", 1, false), msg: "malformed KBAK.content.size", recipeFault: true},
		{name: "content size negative", recipe: handRecipe(t, tar.TypeReg, "-1", 1, false), msg: "malformed", recipeFault: true},
		{name: "content size with a sign", recipe: handRecipe(t, tar.TypeReg, "+5", 1, false), msg: "malformed", recipeFault: true},
		{name: "content size with leading zeros", recipe: handRecipe(t, tar.TypeReg, "007", 1, false), msg: "malformed", recipeFault: true},
		{name: "content size overflows", recipe: handRecipe(t, tar.TypeReg, "9223372036854775808", 1, false), msg: "malformed", recipeFault: true},
		{name: "content size in exponent form", recipe: handRecipe(t, tar.TypeReg, "1e3", 1, false), msg: "malformed", recipeFault: true},
		{name: "content size on a directory", recipe: handRecipe(t, tar.TypeDir, "5", 0, false), msg: "record on an entry of type", recipeFault: true},
		{name: "empty recipe", recipe: nil, is: ErrTruncated, recipeFault: true},
		{name: "cut at a header boundary", recipe: good[:1536], is: ErrTruncated, recipeFault: true},
		{name: "cut in a reference", recipe: cutInRef(t, good), is: ErrTruncated, recipeFault: true},
		{name: "cut in the end marker", recipe: good[:len(good)-1], is: ErrTruncated, recipeFault: true},
		{name: "trailing garbage", recipe: append(bytes.Clone(good), "garbage"...), msg: "data after the tar end marker", recipeFault: true},
		{name: "GNU sparse entry", recipe: gnuSparseStream(t), msg: "GNU sparse", recipeFault: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := tc.data
			if data == nil {
				data = store.Data
			}
			var out bytes.Buffer
			w := tc.out
			if w == nil {
				w = &out
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := Rehydrate(context.Background(), bytes.NewReader(tc.recipe), w, data)
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatal("Rehydrate succeeded")
			}
			t.Logf("error: %v", err)
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %q is not %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not say %q", err, tc.msg)
			}
			// Buffers are a few MiB; a reference read in full would be 64.
			if n := after.TotalAlloc - before.TotalAlloc; n > 8<<20 {
				t.Errorf("Rehydrate allocated %d bytes", n)
			}
			// What was written is never a whole archive.
			if _, err := VerifyTar(context.Background(), &out, nil); err == nil {
				t.Error("the output of a failed Rehydrate verifies")
			}
			// ExtractRecipe refuses what Rehydrate refuses, for the same
			// reason (only Rehydrate has an output of its own to fail).
			if tc.out == nil {
				_, err := ExtractRecipe(context.Background(), bytes.NewReader(tc.recipe), t.TempDir(), ExtractOptions{}, data)
				msg := strings.TrimPrefix(tc.msg, "rehydrate ")
				if err == nil || tc.is != nil && !errors.Is(err, tc.is) || !strings.Contains(err.Error(), msg) {
					t.Errorf("ExtractRecipe: %v, want an error like Rehydrate's", err)
				}
			}
			if tc.recipeFault {
				err := WalkRecipe(context.Background(), bytes.NewReader(tc.recipe), func([]byte) error { return nil })
				if err == nil || tc.is != nil && !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.msg) {
					t.Errorf("WalkRecipe: %v, want an error like Rehydrate's", err)
				}
			}
		})
	}
}

var errOutput = errors.New("output closed")

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errOutput }

// cutInRef cuts a recipe where the data of its recipe entry starts.
func cutInRef(t *testing.T, recipe []byte) []byte {
	t.Helper()
	cr := &countingReader{r: bytes.NewReader(recipe)}
	tr := tar.NewReader(cr)
	for {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("no recipe entry: %v", err)
		}
		if _, ok := hdr.PAXRecords[paxContentSize]; ok && hdr.Size > 0 {
			return recipe[:cr.n] // the reference follows the header read so far
		}
	}
}

// TestRecipeNotExtracted: a recipe given where an archive is expected is
// refused, never extracted with references for file contents.
func TestRecipeNotExtracted(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	tree{t, src}.file("f", "data", 0o644)
	store := newMemStore(t, "")
	var plain, compressed bytes.Buffer
	if _, err := Write(ctx, src, &plain, WriteOptions{Plain: true, Content: store.Content}); err != nil {
		t.Fatal(err)
	}
	if _, err := Write(ctx, src, &compressed, WriteOptions{Content: store.Content}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		run  func(dst string) error
	}{
		{"ExtractTar", func(dst string) error {
			_, err := ExtractTar(ctx, bytes.NewReader(plain.Bytes()), dst, ExtractOptions{})
			return err
		}},
		{"VerifyTar", func(string) error { _, err := VerifyTar(ctx, bytes.NewReader(plain.Bytes()), nil); return err }},
		{"Extract", func(dst string) error {
			_, err := Extract(ctx, bytes.NewReader(compressed.Bytes()), dst, ExtractOptions{})
			return err
		}},
		{"Verify", func(string) error { _, err := Verify(ctx, bytes.NewReader(compressed.Bytes()), nil); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := t.TempDir()
			err := tc.run(dst)
			if err == nil || !strings.Contains(err.Error(), "Rehydrate") {
				t.Fatalf("error %v, want one that says to rehydrate", err)
			}
			if _, err := os.Lstat(filepath.Join(dst, "f")); err == nil {
				t.Error("f was extracted")
			}
		})
	}
}

// TestPlainStream: Plain gives the zstd stream's tar content, and ExtractTar
// and VerifyTar read it as Extract and Verify read the compressed one.
func TestPlainStream(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	tr := tree{t, src}
	tr.dir("d", 0o750)
	tr.file("d/f", strings.Repeat("plain", 1000), 0o640)
	tr.must(os.Symlink("d/f", tr.p("s")))
	plain := plainArchive(t, src)
	// Level and Concurrency are ignored, even invalid ones.
	var odd bytes.Buffer
	if _, err := Write(ctx, src, &odd, WriteOptions{Plain: true, Level: 9, Concurrency: -1}); err != nil || !bytes.Equal(odd.Bytes(), plain) {
		t.Errorf("Plain with Level 9, Concurrency -1: %v, same stream %v", err, bytes.Equal(odd.Bytes(), plain))
	}
	vs, err := Verify(ctx, bytes.NewReader(archiveOf(t, src)), nil)
	if err != nil {
		t.Fatal(err)
	}
	pvs, err := VerifyTar(ctx, bytes.NewReader(plain), nil)
	if err != nil || pvs != vs {
		t.Errorf("VerifyTar %+v, %v; Verify %+v", pvs, err, vs)
	}
	dst := t.TempDir()
	es, err := ExtractTar(ctx, bytes.NewReader(plain), dst, ExtractOptions{})
	if err != nil || es != vs {
		t.Errorf("ExtractTar %+v, %v; Verify %+v", es, err, vs)
	}
	compareTrees(t, snapshot(t, src), snapshot(t, dst))

	for _, cut := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"first header", plain[:512]},
		{"half", plain[:len(plain)/2]},
		{"all but one byte", plain[:len(plain)-1]},
	} {
		t.Run(cut.name, func(t *testing.T) {
			_, err := ExtractTar(ctx, bytes.NewReader(cut.data), t.TempDir(), ExtractOptions{})
			if !errors.Is(err, ErrTruncated) {
				t.Errorf("ExtractTar: %v, want ErrTruncated", err)
			}
			if _, err := VerifyTar(ctx, bytes.NewReader(cut.data), nil); !errors.Is(err, ErrTruncated) {
				t.Errorf("VerifyTar: %v, want ErrTruncated", err)
			}
		})
	}
}

// TestGNUSparseRefused: every reader refuses a GNU sparse entry at once
// rather than make up the terabyte of zeros its header declares.
func TestGNUSparseRefused(t *testing.T) {
	ctx := context.Background()
	plain := gnuSparseStream(t)
	var compressed bytes.Buffer
	enc, err := zstd.NewWriter(&compressed)
	if err != nil {
		t.Fatal(err)
	}
	enc.Write(plain)
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		run  func(dst string) error
	}{
		{"Rehydrate", func(string) error { return Rehydrate(ctx, bytes.NewReader(plain), io.Discard, nil) }},
		{"ExtractTar", func(dst string) error {
			_, err := ExtractTar(ctx, bytes.NewReader(plain), dst, ExtractOptions{})
			return err
		}},
		{"VerifyTar", func(string) error { _, err := VerifyTar(ctx, bytes.NewReader(plain), nil); return err }},
		{"Extract", func(dst string) error {
			_, err := Extract(ctx, bytes.NewReader(compressed.Bytes()), dst, ExtractOptions{})
			return err
		}},
		{"Verify", func(string) error { _, err := Verify(ctx, bytes.NewReader(compressed.Bytes()), nil); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := t.TempDir()
			start := time.Now()
			err := tc.run(dst)
			if err == nil || !strings.Contains(err.Error(), "GNU sparse") {
				t.Fatalf("error %v, want a GNU sparse one", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("refused after %v", d)
			}
			if _, err := os.Lstat(filepath.Join(dst, "big")); err == nil {
				t.Error("big was extracted")
			}
		})
	}
}

// FuzzRehydrate feeds damaged recipes to Rehydrate: it may fail, but must
// neither panic nor ask its data function for what the recipe does not hold
// a record of.
func FuzzRehydrate(f *testing.F) {
	src := f.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("content"), 0o644); err != nil {
		f.Fatal(err)
	}
	var recipe bytes.Buffer
	if _, err := Write(context.Background(), src, &recipe, WriteOptions{Plain: true, Content: func(context.Context, FileInfo, io.Reader) ([]byte, error) {
		return []byte("ref"), nil
	}}); err != nil {
		f.Fatal(err)
	}
	f.Add(recipe.Bytes())
	f.Add(gnuSparseStream(f))
	f.Add(bytes.ReplaceAll(recipe.Bytes(), []byte("content.size=7"), []byte("content.size=X")))
	f.Fuzz(func(t *testing.T, b []byte) {
		Rehydrate(context.Background(), bytes.NewReader(b), io.Discard, func(ctx context.Context, ref []byte, size int64, w io.Writer) error {
			if len(ref) > MaxRefSize || size < 0 {
				t.Fatalf("data called with a %d byte reference, size %d", len(ref), size)
			}
			if size > 1<<20 {
				return errors.New("too large for the fuzz test")
			}
			_, err := w.Write(make([]byte, size))
			return err
		})
	})
}

// gnuSparseStream is a plain stream whose one file is a GNU sparse entry
// (PAX 0.1 records) of 1 TiB, all hole: archive/tar makes up its zeros.
// tar.Writer never writes GNU sparse records, so the extended header is
// patched in by hand.
func gnuSparseStream(t testing.TB) []byte {
	t.Helper()
	records := paxRecord("GNU.sparse.numblocks", "1") + paxRecord("GNU.sparse.map", "0,0") +
		paxRecord("GNU.sparse.size", strconv.Itoa(1<<40))
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Typeflag: tar.TypeReg, Name: "pax", Size: int64(len(records)), Format: tar.FormatUSTAR},
		{Typeflag: tar.TypeReg, Name: "big", Mode: 0o644, Format: tar.FormatUSTAR},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Name == "pax" {
			tw.Write([]byte(records))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	// The first header becomes the extended header of the second.
	b[156] = tar.TypeXHeader
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b[:512] {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

// paxRecord formats one PAX record: "<length> <key>=<value>\n", the length
// counting itself.
func paxRecord(k, v string) string {
	rest := " " + k + "=" + v + "\n"
	n := len(rest) + 1
	for len(strconv.Itoa(n))+len(rest) != n {
		n++
	}
	return strconv.Itoa(n) + rest
}
