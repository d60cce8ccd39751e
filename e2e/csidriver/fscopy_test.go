package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// sparseFile writes a file of apparent size size holding data at the given
// offsets and holes elsewhere, and returns its sha256.
func sparseFile(t *testing.T, path string, size int64, data map[int64][]byte) [32]byte {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for off, b := range data {
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return fileSum(t, path)
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// allocated is the bytes the file system allocated to path.
func allocated(t *testing.T, path string) (apparent, alloc int64) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Size, st.Blocks * 512
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// A snapshot copy keeps a sparse file's holes: the copy has the same content
// and as many allocated blocks as the source, far below its apparent size.
// A file that is all hole, one that ends in data and a dense one come out
// the same as they went in.
func TestCopyTreeKeepsHoles(t *testing.T) {
	const mib = 1 << 20
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "copy")
	files := map[string]struct {
		size int64
		data map[int64][]byte
	}{
		"sparse":       {64 * mib, map[int64][]byte{0: randomBytes(mib), 30 * mib: randomBytes(3 * mib), 50*mib + 123: randomBytes(4096)}},
		"ends-in-data": {16 * mib, map[int64][]byte{16*mib - 8192: randomBytes(8192)}},
		"all-hole":     {16 * mib, nil},
		"dense":        {2 * mib, map[int64][]byte{0: randomBytes(2 * mib)}},
		"empty":        {0, nil},
	}
	sums := map[string][32]byte{}
	for name, f := range files {
		sums[name] = sparseFile(t, filepath.Join(src, name), f.size, f.data)
	}
	if _, alloc := allocated(t, filepath.Join(src, "sparse")); alloc > 16*mib {
		t.Fatalf("the test's file system allocated %d bytes to a sparse file: run the test where holes are kept (ext4, xfs, tmpfs)", alloc)
	}
	if err := copyTree(context.Background(), src, dst); err != nil {
		t.Fatal(err)
	}
	for name, f := range files {
		in, out := filepath.Join(src, name), filepath.Join(dst, name)
		if got := fileSum(t, out); got != sums[name] {
			t.Errorf("%s: content differs from the source", name)
		}
		size, alloc := allocated(t, out)
		srcSize, srcAlloc := allocated(t, in)
		if size != f.size || srcSize != f.size {
			t.Errorf("%s: apparent size %d (source %d), want %d", name, size, srcSize, f.size)
		}
		// The same blocks, give or take the file system's rounding.
		if alloc > srcAlloc+64*1024 {
			t.Errorf("%s: copy allocates %d bytes, source %d: holes were filled", name, alloc, srcAlloc)
		}
		var data int64
		for _, b := range f.data {
			data += int64(len(b))
		}
		if alloc < data {
			t.Errorf("%s: copy allocates %d bytes, less than its %d bytes of data", name, alloc, data)
		}
	}
	if _, alloc := allocated(t, filepath.Join(dst, "sparse")); alloc > 10*mib {
		t.Errorf("sparse: copy allocates %d bytes of its 64 MiB for 4 MiB of data", alloc)
	}
}

// Without SEEK_DATA the whole file is one region: zero blocks are still left
// out and the content is the same.
func TestCopyRegionSkipsZeroBlocks(t *testing.T) {
	dir := t.TempDir()
	data := append(bytes.Repeat([]byte{0}, 4*copyBlock), randomBytes(copyBlock)...)
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	dst := filepath.Join(dir, "dst")
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if err := copyRegion(in, out, 0, int64(len(data)), true); err != nil {
		t.Fatal(err)
	}
	if err := out.Truncate(int64(len(data))); err != nil {
		t.Fatal(err)
	}
	out.Close()
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("content differs (%v)", err)
	}
	if _, alloc := allocated(t, dst); alloc > 2*copyBlock {
		t.Errorf("copy allocates %d bytes for %d of data: zero blocks were written", alloc, copyBlock)
	}
}
