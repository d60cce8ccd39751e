package uploader_test

import (
	"context"
	"io"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/kbak/kbak/uploader"
	"github.com/kbak/kbak/uploader/uploadertest"
)

// BenchmarkS3Put streams 256 MiB into a real server with 16 MiB parts, 4 in
// flight. Besides MB/s it reports the peak live heap during the Puts, which
// PartSize x (Concurrency+1) = 80 MiB of buffers should dominate.
func BenchmarkS3Put(b *testing.B) {
	const size = 256 * uploader.MiB
	for _, start := range []func(testing.TB) *uploadertest.Server{uploadertest.StartVersityGW, uploadertest.StartMinIO} {
		srv := start(b)
		b.Run(srv.Name, func(b *testing.B) {
			opts := srv.Options()
			opts.PartSize = 16 * uploader.MiB
			opts.Concurrency = 4
			s, err := uploader.Open(b.Context(), srv.URL("bench"), opts)
			if err != nil {
				b.Fatal(err)
			}
			block := uploadertest.Data(42, uploader.MiB)
			peak := watchHeap(b)
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Put(b.Context(), "big", &repeatReader{block: block, left: size}, size); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(peak())/uploader.MiB, "peak-heap-MiB")
			if err := s.Delete(context.WithoutCancel(b.Context()), "big"); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// watchHeap samples the live heap until the returned function is called,
// which gives the peak seen.
func watchHeap(b *testing.B) func() uint64 {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var (
		mu   sync.Mutex
		peak uint64
		stop = make(chan struct{})
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(sample)
			mu.Lock()
			peak = max(peak, sample[0].Value.Uint64())
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		close(stop)
		<-done
		return peak
	}
}

// repeatReader yields left bytes by repeating block, standing in for the
// archive stream without costing CPU.
type repeatReader struct {
	block []byte
	off   int
	left  int64
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n := copy(p, r.block[r.off:])
	r.off = (r.off + n) % len(r.block)
	r.left -= int64(n)
	return n, nil
}
