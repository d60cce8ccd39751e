package dataset

import (
	"context"
	"crypto/sha256"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// digest hashes names, sizes, mtimes and contents of a tree.
func digest(t *testing.T, dir string) [32]byte {
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil // the temporary root's mtime is not the generator's
		}
		h.Write([]byte(rel + fi.ModTime().String() + fi.Mode().String()))
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

func TestGenerateDeterministic(t *testing.T) {
	const size = 8 << 20
	a, b, c := t.TempDir(), t.TempDir(), t.TempDir()
	sa, err := Generate(context.Background(), a, size, 7)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Generate(context.Background(), b, size, 7); err != nil {
		t.Fatal(err)
	}
	if _, err := Generate(context.Background(), c, size, 8); err != nil {
		t.Fatal(err)
	}
	if digest(t, a) != digest(t, b) {
		t.Error("same seed gave different trees")
	}
	if digest(t, a) == digest(t, c) {
		t.Error("different seeds gave the same tree")
	}
	if got := sa.Bytes(); got < size*99/100 || got > size {
		t.Errorf("wrote %d bytes, asked %d", got, size)
	}
	if _, err := Generate(context.Background(), a, size, 7); err == nil {
		t.Error("generated into a non-empty directory")
	}
}

func BenchmarkPages(b *testing.B) {
	g := newGen(1)
	buf := make([]byte, 0, pageSize)
	b.SetBytes(pageSize)
	for b.Loop() {
		buf = g.page(buf[:0])
	}
}

func BenchmarkLogLines(b *testing.B) {
	g := newGen(1)
	buf := make([]byte, 0, 256)
	for b.Loop() {
		buf = g.logLine(buf[:0])
		b.SetBytes(int64(len(buf)))
	}
}
