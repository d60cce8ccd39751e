package uploadertest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/kbak/kbak/uploader"
)

// LargeSize is the size of the conformance suite's multipart objects: eight
// parts when the store under test uses the smallest part size, 5 MiB, which
// newStore should configure.
const LargeSize = 40 * uploader.MiB

// incompleteLister is implemented by stores that can leave invisible
// partial uploads behind (S3); the suite checks that none remain.
type incompleteLister interface {
	IncompleteUploads(ctx context.Context, prefix string) ([]uploader.IncompleteUpload, error)
}

// RunConformance checks the promises of uploader.Store. newStore returns a
// store that is empty and not shared with any other call (a fresh directory,
// or a fresh prefix in a bucket), configured with 5 MiB parts.
func RunConformance(t *testing.T, newStore func(t *testing.T) uploader.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s uploader.Store)
	}{
		{"PutGetStat", testPutGetStat},
		{"NotFound", testNotFound},
		{"GetRange", testGetRange},
		{"CreateOnlyOnce", testCreate},
		{"Overwrite", testOverwrite},
		{"ZeroByte", testZeroByte},
		{"ListOrderAndPrefixes", testList},
		{"ListStopsOnError", testListStops},
		{"Delete", testDelete},
		{"InvalidKeys", testInvalidKeys},
		{"LargeKnownSize", func(t *testing.T, s uploader.Store) { testLarge(t, s, LargeSize, LargeSize) }},
		{"LargeUnknownSize", func(t *testing.T, s uploader.Store) { testLarge(t, s, LargeSize, -1) }},
		{"LargeUnderstatedSize", func(t *testing.T, s uploader.Store) { testLarge(t, s, 12*uploader.MiB+5, 1000) }},
		{"SmallOverstatedSize", func(t *testing.T, s uploader.Store) { testLarge(t, s, 1000, 10*uploader.MiB) }},
		{"ExactlyOnePart", func(t *testing.T, s uploader.Store) { testLarge(t, s, 5*uploader.MiB, -1) }},
		{"ConcurrentPuts", testConcurrent},
		{"CancelledPutSmall", func(t *testing.T, s uploader.Store) { testCancelled(t, s, 1000) }},
		{"CancelledPutMultipart", func(t *testing.T, s uploader.Store) { testCancelled(t, s, 12*uploader.MiB) }},
		{"FailingReaderSmall", func(t *testing.T, s uploader.Store) { testFailingReader(t, s, 1000) }},
		{"FailingReaderMultipart", func(t *testing.T, s uploader.Store) { testFailingReader(t, s, 17*uploader.MiB) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
}

// Data returns n deterministic pseudo-random bytes (incompressible, so no
// layer can cheat by compressing).
func Data(seed uint64, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 1}).Read(b)
	return b
}

func put(t *testing.T, s uploader.Store, key string, data []byte) {
	t.Helper()
	if err := s.Put(t.Context(), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put(%q, %d bytes): %v", key, len(data), err)
	}
}

func get(t *testing.T, s uploader.Store, key string) []byte {
	t.Helper()
	rc, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %q: %v", key, err)
	}
	return b
}

func list(t *testing.T, s uploader.Store, prefix string) []uploader.ObjectInfo {
	t.Helper()
	var got []uploader.ObjectInfo
	if err := s.List(t.Context(), prefix, func(oi uploader.ObjectInfo) error {
		got = append(got, oi)
		return nil
	}); err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return got
}

func keys(infos []uploader.ObjectInfo) []string {
	var ks []string
	for _, oi := range infos {
		ks = append(ks, oi.Key)
	}
	return ks
}

func sameBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: got %d bytes (sha256 %x), want %d bytes (sha256 %x)",
			what, len(got), sha256.Sum256(got), len(want), sha256.Sum256(want))
	}
}

// assertAbsent checks that key is not visible and that no partial upload of
// it remains.
func assertAbsent(t *testing.T, s uploader.Store, key string) {
	t.Helper()
	if _, err := s.Stat(t.Context(), key); !errors.Is(err, uploader.ErrNotFound) {
		t.Errorf("Stat(%q) after failed Put: err = %v, want ErrNotFound", key, err)
	}
	if ks := keys(list(t, s, "")); len(ks) != 0 {
		t.Errorf("List after failed Put: %q, want nothing", ks)
	}
	assertNoIncomplete(t, s, key)
}

// assertNoIncomplete checks key by key: MinIO lists the uploads of the exact
// key given as prefix and ignores shorter prefixes.
func assertNoIncomplete(t *testing.T, s uploader.Store, key string) {
	t.Helper()
	il, ok := s.(incompleteLister)
	if !ok {
		return
	}
	ups, err := il.IncompleteUploads(context.WithoutCancel(t.Context()), key)
	if err != nil {
		t.Fatalf("IncompleteUploads: %v", err)
	}
	if len(ups) != 0 {
		t.Errorf("incomplete multipart uploads left: %+v", ups)
	}
}

func testPutGetStat(t *testing.T, s uploader.Store) {
	data := Data(1, 3000)
	put(t, s, "dir/sub/obj.bin", data)
	sameBytes(t, "Get", get(t, s, "dir/sub/obj.bin"), data)
	oi, err := s.Stat(t.Context(), "dir/sub/obj.bin")
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if oi.Key != "dir/sub/obj.bin" || oi.Size != int64(len(data)) || oi.ModTime.IsZero() {
		t.Errorf("Stat = %+v, want key dir/sub/obj.bin, size %d, a modification time", oi, len(data))
	}
}

func testNotFound(t *testing.T, s uploader.Store) {
	put(t, s, "exists/obj", []byte("x"))
	for _, key := range []string{"missing", "exists/missing", "exists/obj/below", "exists"} {
		if _, err := s.Stat(t.Context(), key); !errors.Is(err, uploader.ErrNotFound) {
			t.Errorf("Stat(%q): err = %v, want ErrNotFound", key, err)
		}
		rc, err := s.Get(t.Context(), key)
		if err == nil {
			rc.Close()
		}
		if !errors.Is(err, uploader.ErrNotFound) {
			t.Errorf("Get(%q): err = %v, want ErrNotFound", key, err)
		}
		if err := s.Delete(t.Context(), key); err != nil {
			t.Errorf("Delete(%q) of a missing key: %v", key, err)
		}
	}
}

func testOverwrite(t *testing.T, s uploader.Store) {
	put(t, s, "k", Data(2, 7000))
	second := Data(3, 100)
	put(t, s, "k", second)
	sameBytes(t, "Get after overwrite", get(t, s, "k"), second)
	if oi, err := s.Stat(t.Context(), "k"); err != nil || oi.Size != 100 {
		t.Errorf("Stat after overwrite = %+v, %v; want size 100", oi, err)
	}
	if got := keys(list(t, s, "")); !slices.Equal(got, []string{"k"}) {
		t.Errorf("List after overwrite = %q, want [k]", got)
	}
}

func testZeroByte(t *testing.T, s uploader.Store) {
	for _, size := range []int64{0, -1} {
		key := fmt.Sprintf("empty%d", size)
		if err := s.Put(t.Context(), key, bytes.NewReader(nil), size); err != nil {
			t.Fatalf("Put(%q, empty, size %d): %v", key, size, err)
		}
		if got := get(t, s, key); len(got) != 0 {
			t.Errorf("Get(%q) = %d bytes, want 0", key, len(got))
		}
		if oi, err := s.Stat(t.Context(), key); err != nil || oi.Size != 0 {
			t.Errorf("Stat(%q) = %+v, %v; want size 0", key, oi, err)
		}
	}
	if got := keys(list(t, s, "")); !slices.Equal(got, []string{"empty-1", "empty0"}) {
		t.Errorf("List = %q, want [empty-1 empty0]", got)
	}
}

func testList(t *testing.T, s uploader.Store) {
	// '-' (0x2d) and '.' sort before '/' (0x2f), '0' after: a walk of
	// directories in name order would get these wrong. No key is a
	// directory of another ("b" and "b/c"): a file store cannot hold both.
	all := []string{"a-c", "a.txt", "a/b", "a/c/d", "a/c/e", "a0", "ab/x", "b", "c/d"}
	shuffled := slices.Clone(all)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for i, k := range shuffled {
		put(t, s, k, bytes.Repeat([]byte{'x'}, i))
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"", all},
		{"a", []string{"a-c", "a.txt", "a/b", "a/c/d", "a/c/e", "a0", "ab/x"}},
		{"a/", []string{"a/b", "a/c/d", "a/c/e"}},
		{"a/c", []string{"a/c/d", "a/c/e"}},
		{"a/c/", []string{"a/c/d", "a/c/e"}},
		{"a/c/d", []string{"a/c/d"}},
		{"b", []string{"b"}},
		{"b/", nil},
		{"c", []string{"c/d"}},
		{"c/", []string{"c/d"}},
		{"d", nil},
		{"zz/y/", nil},
	}
	for _, tc := range tests {
		got := list(t, s, tc.prefix)
		if !slices.Equal(keys(got), tc.want) {
			t.Errorf("List(%q) = %q, want %q", tc.prefix, keys(got), tc.want)
		}
		for _, oi := range got {
			want := int64(slices.Index(shuffled, oi.Key))
			if oi.Size != want {
				t.Errorf("List(%q): %s has size %d, want %d", tc.prefix, oi.Key, oi.Size, want)
			}
		}
	}
}

func testListStops(t *testing.T, s uploader.Store) {
	for _, k := range []string{"1", "2", "3"} {
		put(t, s, k, []byte(k))
	}
	stop := errors.New("stop here")
	var seen []string
	err := s.List(t.Context(), "", func(oi uploader.ObjectInfo) error {
		seen = append(seen, oi.Key)
		if oi.Key == "2" {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Errorf("List: err = %v, want the callback's error", err)
	}
	if !slices.Equal(seen, []string{"1", "2"}) {
		t.Errorf("List called back for %q, want [1 2]", seen)
	}
}

func testDelete(t *testing.T, s uploader.Store) {
	put(t, s, "d/one", []byte("1"))
	put(t, s, "d/two", []byte("2"))
	if err := s.Delete(t.Context(), "d/one"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Stat(t.Context(), "d/one"); !errors.Is(err, uploader.ErrNotFound) {
		t.Errorf("Stat after Delete: err = %v, want ErrNotFound", err)
	}
	if got := keys(list(t, s, "")); !slices.Equal(got, []string{"d/two"}) {
		t.Errorf("List after Delete = %q, want [d/two]", got)
	}
	if err := s.Delete(t.Context(), "d/one"); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	if err := s.Delete(t.Context(), "d/two"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if got := keys(list(t, s, "")); len(got) != 0 {
		t.Errorf("List after deleting all = %q, want nothing", got)
	}
	put(t, s, "d", []byte("a key where a directory was"))
	if got := keys(list(t, s, "")); !slices.Equal(got, []string{"d"}) {
		t.Errorf("List = %q, want [d]", got)
	}
}

func testInvalidKeys(t *testing.T, s uploader.Store) {
	for _, key := range []string{"", "/abs", "../up", "a/../../up", "a//b", "a/", "./a", `a\b`} {
		if err := s.Put(t.Context(), key, bytes.NewReader([]byte("x")), 1); err == nil {
			t.Errorf("Put(%q) succeeded, want an error", key)
		}
	}
	if got := keys(list(t, s, "")); len(got) != 0 {
		t.Errorf("List after invalid Puts = %q, want nothing", got)
	}
}

func testLarge(t *testing.T, s uploader.Store, n int, sizeHint int64) {
	data := Data(4, n)
	// A reader that returns short reads, as pipes and decompressors do.
	r := &shortReader{r: bytes.NewReader(data), max: 100_000}
	if err := s.Put(t.Context(), "big/object", r, sizeHint); err != nil {
		t.Fatalf("Put(%d bytes, size hint %d): %v", n, sizeHint, err)
	}
	sameBytes(t, "Get", get(t, s, "big/object"), data)
	if oi, err := s.Stat(t.Context(), "big/object"); err != nil || oi.Size != int64(n) {
		t.Errorf("Stat = %+v, %v; want size %d", oi, err, n)
	}
	assertNoIncomplete(t, s, "big/object")
}

type shortReader struct {
	r   io.Reader
	max int
}

func (s *shortReader) Read(p []byte) (int, error) {
	if len(p) > s.max {
		p = p[:s.max]
	}
	return s.r.Read(p)
}

func testConcurrent(t *testing.T, s uploader.Store) {
	const n = 6
	objs := make([][]byte, n)
	for i := range objs {
		size := 1000 * (i + 1)
		if i%3 == 0 {
			size = 6*uploader.MiB + i // multipart
		}
		objs[i] = Data(uint64(10+i), size)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2*n)
	for i := range n {
		wg.Go(func() {
			errs[i] = s.Put(t.Context(), fmt.Sprintf("c/%d", i), bytes.NewReader(objs[i]), -1)
		})
		// All writers of one key: the result must be one of them, whole.
		wg.Go(func() {
			errs[n+i] = s.Put(t.Context(), "c/same", bytes.NewReader(objs[i]), int64(len(objs[i])))
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent Puts: %v", err)
	}
	for i := range n {
		sameBytes(t, fmt.Sprintf("c/%d", i), get(t, s, fmt.Sprintf("c/%d", i)), objs[i])
	}
	same := get(t, s, "c/same")
	if !slices.ContainsFunc(objs, func(o []byte) bool { return bytes.Equal(o, same) }) {
		t.Errorf("c/same holds %d bytes that are none of the objects written", len(same))
	}
	if got := len(list(t, s, "c/")); got != n+1 {
		t.Errorf("List(c/) gave %d objects, want %d", got, n+1)
	}
	for i := range n {
		assertNoIncomplete(t, s, fmt.Sprintf("c/%d", i))
	}
	assertNoIncomplete(t, s, "c/same")
}

// testCancelled cancels the context after after bytes were read: Put must
// fail and leave nothing, however far it got.
func testCancelled(t *testing.T, s uploader.Store, after int) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	r := &hookReader{data: Data(5, 30*uploader.MiB), at: after, hook: func() error { cancel(); return nil }}
	err := s.Put(ctx, "cancelled", r, -1)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Put with a cancelled context: err = %v, want context.Canceled", err)
	}
	assertAbsent(t, s, "cancelled")
}

// testFailingReader makes the data source fail after after bytes: Put must
// return that error and leave nothing, not even a previous version.
func testFailingReader(t *testing.T, s uploader.Store, after int) {
	old := Data(6, 500)
	put(t, s, "failing", old)
	broken := errors.New("disk read error")
	r := &hookReader{data: Data(7, 30*uploader.MiB), at: after, hook: func() error { return broken }}
	err := s.Put(t.Context(), "failing", r, -1)
	if !errors.Is(err, broken) {
		t.Errorf("Put from a failing reader: err = %v, want it to wrap %v", err, broken)
	}
	sameBytes(t, "Get after the failed overwrite", get(t, s, "failing"), old)
	if err := s.Delete(t.Context(), "failing"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	assertAbsent(t, s, "failing")
}

// hookReader serves data and calls hook once at offset at; a non-nil error
// from hook is returned from then on.
type hookReader struct {
	data   []byte
	off    int
	at     int
	hook   func() error
	called bool
	err    error
}

func (h *hookReader) Read(p []byte) (int, error) {
	if h.err != nil {
		return 0, h.err
	}
	if h.off >= h.at && !h.called {
		h.called = true
		if h.err = h.hook(); h.err != nil {
			return 0, h.err
		}
	}
	if h.off >= len(h.data) {
		return 0, io.EOF
	}
	end := len(h.data)
	if !h.called && h.at < end {
		end = h.at
	}
	n := copy(p, h.data[h.off:end])
	h.off += n
	return n, nil
}

func testGetRange(t *testing.T, s uploader.Store) {
	data := Data(5, 3*uploader.MiB+11)
	put(t, s, "ranged", data)
	for _, r := range []struct{ off, n int64 }{{0, 1}, {0, int64(len(data))}, {1 << 20, 7}, {int64(len(data)) - 5, 5}} {
		rc, err := s.GetRange(t.Context(), "ranged", r.off, r.n)
		if err != nil {
			t.Fatalf("GetRange(%d, %d): %v", r.off, r.n, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("read range (%d, %d): %v", r.off, r.n, err)
		}
		sameBytes(t, fmt.Sprintf("range (%d, %d)", r.off, r.n), got, data[r.off:r.off+r.n])
	}
	if _, err := s.GetRange(t.Context(), "no-such-key", 0, 10); !errors.Is(err, uploader.ErrNotFound) {
		t.Errorf("GetRange of a missing key: err = %v, want ErrNotFound", err)
	}
}

// testCreate: Create makes an object only when the key is free, so that
// writers racing to create a repository's config agree on one.
func testCreate(t *testing.T, s uploader.Store) {
	c, ok := s.(interface {
		Create(ctx context.Context, key string, r io.Reader, size int64) error
	})
	if !ok {
		t.Fatalf("%T has no Create", s)
	}
	first := []byte("first")
	if err := c.Create(t.Context(), "once", bytes.NewReader(first), int64(len(first))); err != nil {
		t.Fatal(err)
	}
	err := c.Create(t.Context(), "once", bytes.NewReader([]byte("second")), 6)
	if !errors.Is(err, uploader.ErrExists) {
		t.Fatalf("second Create: %v, want ErrExists", err)
	}
	sameBytes(t, "object after a refused Create", get(t, s, "once"), first)
}
