package archive

import (
	"context"
	"fmt"
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
// directories and bounds the peak Go heap of each step. It needs a few GiB of
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
		heapCeil = 128 << 20
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
	peak := peakHeap(t, func() {
		ws, err = Write(context.Background(), src, out, WriteOptions{})
	})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	out.Close()
	fi, _ := os.Stat(stream)
	t.Logf("Write: %+v, %d bytes compressed, peak heap %.1f MiB", ws, fi.Size(), float64(peak)/(1<<20))
	if ws.Files != files || ws.Dirs != dirs+1 {
		t.Errorf("Write stats %+v, want %d files and %d dirs", ws, files, dirs+1)
	}
	if peak > heapCeil {
		t.Errorf("Write peak heap %d bytes, want under %d", peak, heapCeil)
	}
	if err := os.RemoveAll(src); err != nil {
		t.Fatal(err)
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
	peak = peakHeap(t, func() {
		es, err = Extract(context.Background(), in, dst, ExtractOptions{})
	})
	if err != nil {
		t.Fatalf("Extract: %v", err)
	}
	t.Logf("Extract: %+v, peak heap %.1f MiB", es, float64(peak)/(1<<20))
	if es != ws {
		t.Errorf("Extract stats %+v, Write stats %+v", es, ws)
	}
	if peak > heapCeil {
		t.Errorf("Extract peak heap %d bytes, want under %d", peak, heapCeil)
	}
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	t.Logf("peak RSS of the test process %.1f MiB", float64(ru.Maxrss)/1024)
}

// peakHeap runs f and returns the largest heap in use sampled meanwhile.
func peakHeap(t *testing.T, f func()) uint64 {
	runtime.GC()
	var peak atomic.Uint64
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
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
	return peak.Load()
}
