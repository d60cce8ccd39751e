package mover

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestEstimate(t *testing.T) {
	const gib = 1 << 30
	tests := []struct {
		name                 string
		size, used, capacity int64
		want                 int64
	}{
		{"the volume's own file system", 10 * gib, 3 * gib, 10 * gib, 3 * gib},
		{"provisioned a little larger", 12 * gib, 3 * gib, 10 * gib, 3 * gib},
		{"used beyond the claim (expanded)", 20 * gib, 15 * gib, 10 * gib, 15 * gib},
		{"a directory of the node's disk", 500 * gib, 200 * gib, 10 * gib, 0},
		{"capacity unknown", 500 * gib, 200 * gib, 0, 200 * gib},
		{"nothing used", 10 * gib, 0, 10 * gib, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := estimate(tt.size, tt.used, tt.capacity); got != tt.want {
				t.Errorf("estimate(%d, %d, %d) = %d, want %d", tt.size, tt.used, tt.capacity, got, tt.want)
			}
		})
	}
}

// An upload's progress carries the source file system's used bytes, read
// with statfs, and the size hint stays in totalBytes for older CLIs.
func TestUploadProgressEstimate(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("statfs estimates are for Linux movers")
	}
	src := tree(t)
	_, used, ok := fsUsage(src)
	if !ok || used <= 0 {
		t.Fatalf("statfs of %s: used %d, ok %v", src, used, ok)
	}
	for _, key := range []string{"v/data.tar.zst", "kbak/v2/backups/ns/db/ID/volumes/data-db-0.tree"} {
		var events bytes.Buffer
		// A hint of 0 (unknown capacity) trusts the file system, whatever
		// else it holds.
		_, err := Upload(context.Background(), fileStore(t), UploadOptions{Source: src, Key: key}, NewEmitter(&events, time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(&events)
		n := 0
		for sc.Scan() {
			e, err := ParseEvent(sc.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			if e.Type != EventProgress {
				continue
			}
			n++
			// Used bytes move with whatever else writes to the disk.
			if got := e.Progress.EstimateBytes; got < used/2 || got > used*2 {
				t.Errorf("%s: estimateBytes %d, want about the file system's used %d", key, got, used)
			}
		}
		if n == 0 {
			t.Errorf("%s: no progress event", key)
		}
	}
}

// The estimate is a new optional field: events of older movers, without
// it, still parse, and an event without an estimate does not carry one.
func TestEventEstimateOptional(t *testing.T) {
	old := `{"type":"progress","time":"2026-11-22T02:00:00Z","progress":{"rawBytes":10,"storedBytes":5,"files":1,"totalBytes":1000}}`
	e, err := ParseEvent([]byte(old))
	if err != nil || e.Progress.TotalBytes != 1000 || e.Progress.EstimateBytes != 0 {
		t.Fatalf("older mover's event: %+v, %v", e.Progress, err)
	}
	b, err := json.Marshal(Event{Type: EventProgress, Progress: &Progress{RawBytes: 1}})
	if err != nil || strings.Contains(string(b), "estimateBytes") {
		t.Errorf("event without an estimate: %s (%v)", b, err)
	}
	b, _ = json.Marshal(Event{Type: EventProgress, Progress: &Progress{RawBytes: 1, EstimateBytes: 7}})
	if !strings.Contains(string(b), `"estimateBytes":7`) {
		t.Errorf("event with an estimate: %s", b)
	}
}

// NewEventEmitter hands the events of an in-process transfer to a func.
func TestEventEmitter(t *testing.T) {
	var got []Event
	ev := NewEventEmitter(func(e Event) { got = append(got, e) }, time.Millisecond)
	src := tree(t)
	if _, err := Upload(context.Background(), fileStore(t), UploadOptions{Source: src, Key: "v/d.tar.zst"}, ev); err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || got[len(got)-1].Type != EventProgress || got[len(got)-1].Progress.RawBytes != 5+125000+100000 {
		t.Errorf("events %+v: want progress ending with the final figures", got)
	}
}
