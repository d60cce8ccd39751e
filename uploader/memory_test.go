package uploader_test

import (
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
