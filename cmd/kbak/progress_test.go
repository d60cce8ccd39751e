package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/kbak/kbak/internal/mover"
)

// fakeClock is a printer's clock that tests move.
func fakeClock(pp *progressPrinter) *time.Time {
	now := time.Date(2026, 11, 22, 2, 0, 0, 0, time.UTC)
	pp.now = func() time.Time { return now }
	return &now
}

func progressEvent(raw, estimate, capacity, files int64) mover.Event {
	return mover.Event{Type: mover.EventProgress, Progress: &mover.Progress{RawBytes: raw, EstimateBytes: estimate, TotalBytes: capacity, Files: files}}
}

func TestProgressPrinterLogLines(t *testing.T) {
	var out bytes.Buffer
	pp := newProgressPrinter(&out, false)
	now := fakeClock(pp)

	pp.event("data-db-0", progressEvent(10<<20, 100<<20, 1<<30, 3))
	*now = now.Add(logEvery)
	pp.event("data-db-0", progressEvent(50<<20, 100<<20, 1<<30, 7))
	if !strings.Contains(out.String(), "50.0 MiB / 100.0 MiB") || !strings.Contains(out.String(), "ETA 10s") {
		t.Errorf("progress line %q: want bytes of the estimate and an ETA from it", out.String())
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

// The claim's capacity, all an older mover sends, is an upper bound: no
// ETA is drawn from it.
func TestProgressNoETAFromCapacity(t *testing.T) {
	var out bytes.Buffer
	pp := newProgressPrinter(&out, false)
	now := fakeClock(pp)
	pp.event("data-db-0", progressEvent(0, 0, 10<<30, 0))
	*now = now.Add(logEvery)
	pp.event("data-db-0", progressEvent(50<<20, 0, 10<<30, 7))
	if line := out.String(); strings.Contains(line, "ETA") || strings.Contains(line, "10.0 GiB") || !strings.Contains(line, "50.0 MiB  5.0 MiB/s  7 files") {
		t.Errorf("line %q: want bytes and rate, no total and no ETA from the capacity", line)
	}
	// The run's own expectation (a restore's manifest) gives one.
	out.Reset()
	pp.queue("data-db-1", 100<<20)
	pp.event("data-db-1", progressEvent(0, 0, 0, 0))
	*now = now.Add(logEvery)
	pp.event("data-db-1", progressEvent(25<<20, 0, 0, 1))
	if line := out.String(); !strings.Contains(line, "25.0 MiB / 100.0 MiB") || !strings.Contains(line, "ETA 30s") {
		t.Errorf("line %q: want the manifest's bytes and an ETA", line)
	}
}

// The overall line counts volumes done, running, queued and failed, adds
// their bytes and gives an ETA once every volume's size is expected.
func TestProgressOverall(t *testing.T) {
	pp := newProgressPrinter(&bytes.Buffer{}, false)
	now := fakeClock(pp)
	pp.queue("data-db-0", 100<<20)
	pp.queue("data-db-1", 0) // a first backup: unknown until its mover says
	pp.queue("data-db-2", 200<<20)
	if got := pp.overall(*now); !strings.Contains(got, "0/3 volumes done, 3 queued") || strings.Contains(got, "ETA") {
		t.Errorf("before any mover: %q", got)
	}
	if got := pp.line("data-db-2", pp.vols["data-db-2"], *now); !strings.Contains(got, "queued (about 200.0 MiB)") {
		t.Errorf("queued line %q", got)
	}
	pp.event("data-db-0", progressEvent(0, 0, 0, 0))
	pp.event("data-db-1", progressEvent(0, 0, 0, 0))
	*now = now.Add(10 * time.Second)
	pp.event("data-db-0", progressEvent(60<<20, 0, 0, 1))
	pp.event("data-db-1", progressEvent(40<<20, 0, 0, 1))
	got := pp.overall(*now)
	if !strings.Contains(got, "0/3 volumes done, 2 running, 1 queued  100.0 MiB  10.0 MiB/s") || strings.Contains(got, "ETA") {
		t.Errorf("with a volume of unknown size: %q, want no ETA", got)
	}
	// data-db-1's mover estimates 100 MiB: 400 MiB in all, 100 moved at
	// 10 MiB/s.
	pp.event("data-db-1", progressEvent(40<<20, 100<<20, 0, 1))
	if got := pp.overall(*now); !strings.Contains(got, "100.0 MiB / 400.0 MiB  10.0 MiB/s  ETA 30s") {
		t.Errorf("every size expected: %q", got)
	}
	pp.event("data-db-0", mover.Event{Type: mover.EventResult, Result: &mover.Result{RawBytes: 100 << 20, Files: 2}})
	pp.event("data-db-1", mover.Event{Type: mover.EventError, Error: "disk on fire"})
	// A run's word after the mover's last changes nothing.
	pp.event("data-db-1", mover.Event{Type: mover.EventResult, Result: &mover.Result{RawBytes: 1}})
	if got := pp.overall(*now); !strings.Contains(got, "1/3 volumes done, 1 queued, 1 failed  140.0 MiB / 340.0 MiB") {
		t.Errorf("one done, one failed: %q", got)
	}
	// The rate of a display whose movers all ended is theirs, not
	// stretched by what the run does after (a StatefulSet to get ready).
	pp.event("data-db-2", progressEvent(0, 0, 0, 0))
	*now = now.Add(4 * time.Second)
	pp.event("data-db-2", mover.Event{Type: mover.EventResult, Result: &mover.Result{RawBytes: 200 << 20}})
	*now = now.Add(time.Minute)
	if got := pp.overall(*now); !strings.Contains(got, "2/3 volumes done, 1 failed  340.0 MiB  24.3 MiB/s") {
		t.Errorf("all ended: %q, want 340 MiB in 14 s", got)
	}
}

// On a terminal the block is redrawn in place, and a log line written
// meanwhile goes above it: the block is erased, the line written, the
// block drawn again below it.
func TestProgressBlockAndLogLines(t *testing.T) {
	var out bytes.Buffer
	pp := newProgressPrinter(&out, true)
	now := fakeClock(pp)
	pp.queue("data-db-0", 100<<20)
	pp.queue("data-db-1", 100<<20)
	if got := out.String(); !strings.HasSuffix(got, "data-db-0                        queued (about 100.0 MiB)\ndata-db-1                        queued (about 100.0 MiB)\noverall: 0/2 volumes done, 2 queued  0 B / 200.0 MiB  0 B/s\n") {
		t.Errorf("first block:\n%q", got)
	}
	if pp.drawn != 3 {
		t.Fatalf("drawn %d lines, want 3", pp.drawn)
	}
	out.Reset()
	log := slog.New(slog.NewTextHandler(pp, nil))
	log.Warn("snapshot is slow", "pvc", "data-db-1")
	got := out.String()
	erase := "\033[3A\r\033[J"
	if !strings.HasPrefix(got, erase+"time=") || !strings.Contains(got, `msg="snapshot is slow" pvc=data-db-1`+"\ndata-db-0 ") || !strings.HasSuffix(got, "2 queued  0 B / 200.0 MiB  0 B/s\n") {
		t.Errorf("log line with a block on the screen:\n%q", got)
	}
	// Redraws within redrawEvery are skipped; a final event redraws.
	out.Reset()
	pp.event("data-db-0", progressEvent(0, 0, 0, 0))
	*now = now.Add(time.Second)
	pp.event("data-db-0", mover.Event{Type: mover.EventResult, Result: &mover.Result{RawBytes: 100 << 20, Files: 3}})
	if got := out.String(); !strings.HasPrefix(got, erase) || !strings.Contains(got, "data-db-0                        done   100.0 MiB, 3 files") || !strings.Contains(got, "1/2 volumes done, 1 queued") {
		t.Errorf("redraw:\n%q", got)
	}
	// done keeps the block on the screen; what follows goes below it.
	out.Reset()
	pp.done()
	if got := out.String(); !strings.Contains(got, "data-db-1                        not started") {
		t.Errorf("last block:\n%q", got)
	}
	out.Reset()
	fmt.Fprintln(pp, "kbak: something")
	if out.String() != "kbak: something\n" {
		t.Errorf("after done: %q, want the line alone", out.String())
	}
}

// Lines are cut to the terminal's width, so none wraps and the redraw
// goes back exactly over the block; many volumes fold into one line.
func TestProgressBlockFits(t *testing.T) {
	var out bytes.Buffer
	pp := newProgressPrinter(&out, true)
	fakeClock(pp)
	pp.width = func() int { return 40 }
	for i := range 30 {
		pp.queue(fmt.Sprintf("data-db-%02d", i), 1<<20)
	}
	pp.event("data-db-25", progressEvent(1, 0, 0, 0))
	lines := pp.blockLines(pp.now())
	if len(lines) != maxBlockVolumes+1 {
		t.Fatalf("%d lines, want %d", len(lines), maxBlockVolumes+1)
	}
	if !strings.Contains(strings.Join(lines, "\n"), "data-db-25 ") || lines[len(lines)-2] != "… and 11 more: 11 queued, 0 done" {
		t.Errorf("the running volume must show, the rest be counted:\n%s", strings.Join(lines, "\n"))
	}
	out.Reset()
	pp.redraw(pp.now())
	for _, l := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		if n := len([]rune(strings.TrimPrefix(l, "\033[21A\r\033[J"))); n > 39 {
			t.Errorf("line of %d columns on a terminal of 40: %q", n, l)
		}
	}
}

// With --log-format json the progress comes as log records, no block.
func TestProgressJSONRecords(t *testing.T) {
	var out bytes.Buffer
	pp := newProgressPrinter(&out, true)
	now := fakeClock(pp)
	pp.log = slog.New(slog.NewJSONHandler(&out, nil))
	pp.queue("data-db-0", 100<<20)
	pp.event("data-db-0", progressEvent(0, 0, 0, 0))
	*now = now.Add(logEvery)
	pp.event("data-db-0", progressEvent(50<<20, 0, 0, 4))
	pp.event("data-db-0", mover.Event{Type: mover.EventResult, Result: &mover.Result{RawBytes: 100 << 20, Files: 9}})
	pp.done()
	var recs []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var r map[string]any
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("not a JSON record: %q", l)
		}
		recs = append(recs, r)
	}
	if len(recs) != 3 || recs[0]["msg"] != "progress" || recs[0]["state"] != "running" || recs[0]["eta"] != "10s" ||
		recs[1]["state"] != "done" || recs[2]["msg"] != "progress total" || recs[2]["done"] != 1.0 {
		t.Errorf("records: %v", recs)
	}
}

// On a terminal kbak logs warnings only unless -v; elsewhere, and as JSON,
// information too; the agent, whose log is its output, always does.
func TestLogLevel(t *testing.T) {
	tests := []struct {
		tty     bool
		args    []string
		quiet   bool
		want    slog.Level
		comment string
	}{
		{true, nil, true, slog.LevelWarn, "terminal"},
		{true, []string{"-v"}, true, slog.LevelDebug, "terminal, -v"},
		{true, []string{"--log-format", "json"}, true, slog.LevelInfo, "terminal, json"},
		{true, nil, false, slog.LevelInfo, "terminal, the agent"},
		{false, nil, true, slog.LevelInfo, "a CI log"},
		{false, []string{"--verbose"}, true, slog.LevelDebug, "a CI log, -v"},
	}
	for _, tt := range tests {
		t.Run(tt.comment, func(t *testing.T) {
			c, err := cliContext(newApp(&bytes.Buffer{}, newProgressPrinter(&bytes.Buffer{}, tt.tty)), tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if got := logLevel(c, tt.quiet); got != tt.want {
				t.Errorf("level %v, want %v", got, tt.want)
			}
		})
	}
}

// --log-format takes text or json, else one line and exit 2.
func TestLogFormatBad(t *testing.T) {
	code, _, stderr := kbak(t, "version", "--client", "--log-format", "xml")
	if code != exitUsage {
		t.Errorf("exit %d, want %d", code, exitUsage)
	}
	oneErrorLine(t, stderr, "--log-format", "text or json")
}
