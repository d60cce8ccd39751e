package uploader_test

import (
	"bytes"
	"crypto/sha256"
	"io"
	"os"
	"runtime"
	"testing"

	"github.com/kbak/kbak/uploader"
	"github.com/kbak/kbak/uploader/uploadertest"
)

// A multipart Put allocates PartSize x (Concurrency+1) bytes of buffers
// however large the object: 100 MiB in 5 MiB parts, 2 in flight, must not
// allocate a buffer per part.
func TestS3PutMemoryBounded(t *testing.T) {
	srv := uploadertest.StartVersityGW(t)
	opts := srv.Options()
	opts.PartSize = 5 * uploader.MiB
	opts.Concurrency = 2
	s, err := uploader.Open(t.Context(), srv.URL("mem"), opts)
	if err != nil {
		t.Fatal(err)
	}
	const size = 100 * uploader.MiB
	buffers := opts.PartSize * int64(opts.Concurrency+1)
	// Beyond the buffers, the SDK and HTTP client allocate a few MiB.
	const slack = 8 * uploader.MiB
	block := uploadertest.Data(11, uploader.MiB)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := s.Put(t.Context(), "big", &repeatReader{block: block, left: size}, -1); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if alloc := int64(after.TotalAlloc - before.TotalAlloc); alloc > buffers+slack {
		t.Errorf("Put of %d MiB allocated %d MiB, want at most %d MiB of buffers + %d MiB",
			size/uploader.MiB, alloc/uploader.MiB, buffers/uploader.MiB, slack/uploader.MiB)
	}
	if oi, err := s.Stat(t.Context(), "big"); err != nil || oi.Size != size {
		t.Errorf("Stat = %+v, %v; want %d bytes", oi, err, size)
	}
}

// Parts too large for the memory budget are spooled to unlinked files: a Put
// with a 2 TiB size hint (236 MiB parts) allocates no part buffer, and a
// multipart upload of spooled parts stores exactly the bytes it was given.
func TestS3PutSpooledParts(t *testing.T) {
	srv := uploadertest.StartVersityGW(t)
	tests := []struct {
		name     string
		partSize int64
		budget   int64
		size     int64 // the hint
		data     int64
	}{
		{"2 TiB hint, one spooled part", 0, 0, 2 * uploader.TiB, 40 * uploader.MiB},
		{"small parts over a small budget", 5 * uploader.MiB, 8 * uploader.MiB, -1, 23*uploader.MiB + 17},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spool := t.TempDir()
			opts := srv.Options()
			opts.PartSize, opts.BufferBytes, opts.SpoolDir, opts.Concurrency = tc.partSize, tc.budget, spool, 2
			s, err := uploader.Open(t.Context(), srv.URL("spool"), opts)
			if err != nil {
				t.Fatal(err)
			}
			block := uploadertest.Data(7, uploader.MiB+3)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			if err := s.Put(t.Context(), "obj", &repeatReader{block: block, left: tc.data}, tc.size); err != nil {
				t.Fatal(err)
			}
			runtime.ReadMemStats(&after)
			const slack = 12 * uploader.MiB // the SDK, the HTTP client, copy buffers
			if alloc := int64(after.TotalAlloc - before.TotalAlloc); alloc > slack {
				t.Errorf("Put of %d MiB allocated %d MiB, want at most %d MiB: parts must not be in memory",
					tc.data/uploader.MiB, alloc/uploader.MiB, slack/uploader.MiB)
			}
			if left, _ := os.ReadDir(spool); len(left) != 0 {
				t.Errorf("spool directory holds %d files after Put, want none", len(left))
			}
			want := sha256.New()
			io.Copy(want, &repeatReader{block: block, left: tc.data})
			rc, err := s.Get(t.Context(), "obj")
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			got := sha256.New()
			n, err := io.Copy(got, rc)
			if err != nil || n != tc.data || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
				t.Errorf("stored object: %d bytes, err %v, digest match %v; want %d bytes and the same digest",
					n, err, bytes.Equal(got.Sum(nil), want.Sum(nil)), tc.data)
			}
		})
	}
}
