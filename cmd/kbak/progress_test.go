package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/kbak/kbak/internal/mover"
)

func TestProgressPrinterLogLines(t *testing.T) {
	var out bytes.Buffer
	pp := newProgressPrinter(&out, false)
	now := time.Date(2026, 11, 22, 2, 0, 0, 0, time.UTC)
	pp.now = func() time.Time { return now }

	pp.event("data-db-0", mover.Event{Type: mover.EventProgress, Progress: &mover.Progress{RawBytes: 10 << 20, TotalBytes: 100 << 20, Files: 3}})
	now = now.Add(logEvery)
	pp.event("data-db-0", mover.Event{Type: mover.EventProgress, Progress: &mover.Progress{RawBytes: 50 << 20, TotalBytes: 100 << 20, Files: 7}})
	if !strings.Contains(out.String(), "50.0 MiB / 100.0 MiB") || !strings.Contains(out.String(), "ETA 10s") {
		t.Errorf("progress line %q: want bytes of total and an ETA", out.String())
	}
	out.Reset()
	start := now.Add(-20 * time.Second)
	pp.event("data-db-0", mover.Event{Type: mover.EventResult, Result: &mover.Result{RawBytes: 100 << 20, Files: 9, Started: start, Finished: start.Add(20 * time.Second)}})
	if line := out.String(); !strings.Contains(line, "done") || !strings.Contains(line, "in 20s (5.0 MiB/s)") {
		t.Errorf("final line %q: want the mover's own duration and rate", line)
	}
	out.Reset()
	pp.event("data-db-1", mover.Event{Type: mover.EventError, Error: "checksum mismatch"})
	if !strings.Contains(out.String(), "failed: checksum mismatch") {
		t.Errorf("error line %q", out.String())
	}
}
