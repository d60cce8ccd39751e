package archive

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMillionFiles shows that memory stays flat however many files a volume
// holds: it archives and extracts a real tree of 1 000 000 small files in four
// directories and bounds the peak live Go heap of each step; most of it is
// zstd's buffers, which do not grow with the number of files. It needs a few GiB of
// disk and minutes, so it runs only with KBAK_MILLION=1:
//
//	KBAK_MILLION=1 go test -run TestMillionFiles -v -timeout 60m ./internal/archive/
func TestMillionFiles(t *testing.T) {
	if testing.Short() || os.Getenv("KBAK_MILLION") != "1" {
		t.Skip("set KBAK_MILLION=1 (and no -short) to archive a tree of 1 000 000 files")
	}
	const (
		dirs     = 4
		files    = 1_000_000
		heapCeil = 128 << 20 // zstd encoder with GOMAXPROCS goroutines included
	)
	base := t.TempDir()
	src := filepath.Join(base, "src")
	start := time.Now()
	for d := range dirs {
		dir := filepath.Join(src, fmt.Sprintf("d%d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i := d; i < files; i += dirs {
			name := strconv.Itoa(i)
			if err := os.WriteFile(filepath.Join(dir, "file-"+name), []byte(name+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("created %d files in %s", files, time.Since(start).Round(time.Second))

	stream := filepath.Join(base, "stream.tar.zst")
	out, err := os.Create(stream)
	if err != nil {
		t.Fatal(err)
	}
	var ws Stats
	live, inuse := peakHeap(t, func() {
		ws, err = Write(context.Background(), src, out, WriteOptions{})
	})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	out.Close()
	fi, _ := os.Stat(stream)
	t.Logf("Write: %+v, %d bytes compressed, peak live heap %.1f MiB, peak heap in use %.1f MiB",
		ws, fi.Size(), float64(live)/(1<<20), float64(inuse)/(1<<20))
	if ws.Files != files || ws.Dirs != dirs+1 {
		t.Errorf("Write stats %+v, want %d files and %d dirs", ws, files, dirs+1)
	}
	if live > heapCeil {
		t.Errorf("Write peak live heap %d bytes, want under %d", live, heapCeil)
	}
	// One encoder goroutine: what is left is the walk's own memory.
	live, inuse = peakHeap(t, func() {
		_, err = Write(context.Background(), src, io.Discard, WriteOptions{Concurrency: 1})
	})
	if err != nil {
		t.Fatalf("Write with Concurrency 1: %v", err)
	}
	t.Logf("Write with Concurrency 1: peak live heap %.1f MiB, peak heap in use %.1f MiB", float64(live)/(1<<20), float64(inuse)/(1<<20))
	if live > heapCeil {
		t.Errorf("Write with Concurrency 1: peak live heap %d bytes, want under %d", live, heapCeil)
	}

	dst := filepath.Join(base, "dst")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(stream)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var es Stats
	live, inuse = peakHeap(t, func() {
		es, err = Extract(context.Background(), in, dst, ExtractOptions{})
	})
	if err != nil {
		t.Fatalf("Extract: %v", err)
	}
	t.Logf("Extract: %+v, peak live heap %.1f MiB, peak heap in use %.1f MiB",
		es, float64(live)/(1<<20), float64(inuse)/(1<<20))
	if es != ws {
		t.Errorf("Extract stats %+v, Write stats %+v", es, ws)
	}
	if live > heapCeil {
		t.Errorf("Extract peak live heap %d bytes, want under %d", live, heapCeil)
	}
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	t.Logf("peak RSS of the test process %.1f MiB", float64(ru.Maxrss)/1024)
}

// peakHeap runs f and returns the largest live heap and the largest heap in
// use (live plus garbage not yet collected) sampled meanwhile. The sampler
// collects garbage before each live reading, so the figure is what f really
// holds at that moment.
func peakHeap(t *testing.T, f func()) (live, inuse uint64) {
	runtime.GC()
	var peakLive, peakInuse atomic.Uint64
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peakInuse.Store(max(peakInuse.Load(), ms.HeapInuse))
			runtime.GC()
			runtime.ReadMemStats(&ms)
			peakLive.Store(max(peakLive.Load(), ms.HeapAlloc))
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	f()
	close(done)
	<-stopped
	return peakLive.Load(), peakInuse.Load()
}
