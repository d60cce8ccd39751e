package mover

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kbak/kbak/uploader"
)

func tree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range map[string]string{
		"a.txt":         "alpha",
		"sub/b.bin":     strings.Repeat("row-like text 0123456789\n", 5000),
		"sub/deep/c.db": strings.Repeat("x", 100000),
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func fileStore(t *testing.T) *uploader.FileStore {
	t.Helper()
	s, err := uploader.NewFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestUploadDownloadRoundTrip(t *testing.T) {
	ctx := context.Background()
	store := fileStore(t)
	src := tree(t)
	var events bytes.Buffer
	ev := NewEmitter(&events, time.Millisecond)
	up, err := Upload(ctx, store, UploadOptions{Source: src, Key: "v/data.tar.zst", ResultKey: "v/data.json", SizeHint: 300000}, ev)
	if err != nil {
		t.Fatal(err)
	}
	if up.Files != 3 || up.RawBytes != 5+125000+100000 || up.StoredBytes == 0 || up.StoredBytes >= up.RawBytes || len(up.SHA256) != 64 {
		t.Errorf("upload result %+v", up)
	}
	rc, err := store.Get(ctx, "v/data.json")
	if err != nil {
		t.Fatalf("result object: %v", err)
	}
	rc.Close()
	// The last progress line carries the final figures.
	var last Event
	sc := bufio.NewScanner(&events)
	for sc.Scan() {
		e, err := ParseEvent(sc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		last = e
	}
	if last.Type != EventProgress || last.Progress.RawBytes != up.RawBytes || last.Progress.StoredBytes != up.StoredBytes {
		t.Errorf("last event %+v, want final progress of %+v", last, up)
	}

	dst := t.TempDir()
	down, err := Download(ctx, store, DownloadOptions{Key: "v/data.tar.zst", SHA256: up.SHA256, Target: dst}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if down.SHA256 != up.SHA256 || down.Files != up.Files || down.RawBytes != up.RawBytes {
		t.Errorf("download %+v, upload %+v", down, up)
	}
	got, err := os.ReadFile(filepath.Join(dst, "sub/deep/c.db"))
	if err != nil || len(got) != 100000 {
		t.Errorf("extracted file: %d bytes, %v", len(got), err)
	}
	verified, err := Download(ctx, store, DownloadOptions{Key: "v/data.tar.zst", SHA256: up.SHA256}, nil)
	if err != nil || verified.Files != up.Files || verified.RawBytes != up.RawBytes {
		t.Errorf("verify only: %+v, %v", verified, err)
	}
}

func TestDownloadRejectsCorruptObject(t *testing.T) {
	ctx := context.Background()
	store := fileStore(t)
	up, err := Upload(ctx, store, UploadOptions{Source: tree(t), Key: "k.tar.zst"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := store.Get(ctx, "k.tar.zst")
	data, _ := io.ReadAll(rc)
	rc.Close()

	flipped := bytes.Clone(data)
	flipped[len(flipped)/2] ^= 0x01
	truncated := data[:len(data)-100]
	for name, obj := range map[string][]byte{"flipped": flipped, "truncated": truncated} {
		t.Run(name, func(t *testing.T) {
			if err := store.Put(ctx, "bad.tar.zst", bytes.NewReader(obj), int64(len(obj))); err != nil {
				t.Fatal(err)
			}
			for _, target := range []string{t.TempDir(), ""} {
				if _, err := Download(ctx, store, DownloadOptions{Key: "bad.tar.zst", SHA256: up.SHA256, Target: target}, nil); err == nil {
					t.Errorf("download of a %s object into %q succeeded", name, target)
				}
			}
		})
	}
}

func TestDownloadChecksumMismatch(t *testing.T) {
	ctx := context.Background()
	store := fileStore(t)
	if _, err := Upload(ctx, store, UploadOptions{Source: tree(t), Key: "k.tar.zst"}, nil); err != nil {
		t.Fatal(err)
	}
	_, err := Download(ctx, store, DownloadOptions{Key: "k.tar.zst", SHA256: strings.Repeat("0", 64)}, nil)
	if err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("err = %v, want a checksum mismatch", err)
	}
}

func TestUploadMissingSourceLeavesNothing(t *testing.T) {
	ctx := context.Background()
	store := fileStore(t)
	_, err := Upload(ctx, store, UploadOptions{Source: filepath.Join(t.TempDir(), "nope"), Key: "k.tar.zst", ResultKey: "k.json"}, nil)
	if err == nil {
		t.Fatal("upload of a missing directory succeeded")
	}
	for _, k := range []string{"k.tar.zst", "k.json"} {
		if _, err := store.Stat(ctx, k); !errors.Is(err, uploader.ErrNotFound) {
			t.Errorf("%s after a failed upload: %v, want not found", k, err)
		}
	}
}

func TestUploadCancelledLeavesNothing(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	store := fileStore(t)
	if _, err := Upload(ctx, store, UploadOptions{Source: tree(t), Key: "k.tar.zst"}, nil); err == nil {
		t.Fatal("cancelled upload succeeded")
	}
	if _, err := store.Stat(context.Background(), "k.tar.zst"); !errors.Is(err, uploader.ErrNotFound) {
		t.Errorf("object after a cancelled upload: %v", err)
	}
}

func TestParseCompression(t *testing.T) {
	for in, want := range map[string]int{"": 1, "zstd:1": 1, "zstd:4": 4, "zstd": 1} {
		if got, err := ParseCompression(in); err != nil || got != want {
			t.Errorf("ParseCompression(%q) = %d, %v", in, got, err)
		}
	}
	for _, bad := range []string{"gzip:1", "zstd:0", "zstd:9", "zstd:x"} {
		if _, err := ParseCompression(bad); err == nil {
			t.Errorf("ParseCompression(%q) accepted", bad)
		}
	}
}
