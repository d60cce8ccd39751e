package moverrun

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kbak/kbak/internal/mover"
)

const (
	progressLine = `{"type":"progress","time":"2026-11-22T06:00:00Z","progress":{"rawBytes":10,"storedBytes":4,"files":1}}`
	resultLine   = `{"type":"result","time":"2026-11-22T06:00:01Z","result":{"key":"k","rawBytes":20,"storedBytes":8,"files":2,"sha256":"ab","compression":"zstd:1"}}`
	errorLine    = `{"type":"error","time":"2026-11-22T06:00:01Z","error":"put k: access denied"}`
)

func TestReadEventsAndOutcome(t *testing.T) {
	succeeded := &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodSucceeded}}
	failed := &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{{
		Name: "mover", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 2}},
	}}}}
	tests := []struct {
		name      string
		log       string
		pod       *corev1.Pod
		events    int
		wantBytes int64
		wantErr   string
	}{
		{"result", progressLine + "\n" + resultLine + "\n", succeeded, 2, 20, ""},
		{"error event", progressLine + "\n" + errorLine + "\n", failed, 2, 0, "mover for data-db-0: put k: access denied"},
		{"result but pod failed", resultLine + "\n", failed, 1, 0, "reported a result but its pod failed: container mover exited with code 2"},
		{"panic without events", "panic: boom\ngoroutine 1\n", failed, 0, 0, "exited with code 2: panic: boom | goroutine 1"},
		{"success without result", progressLine + "\n", succeeded, 1, 0, "ended without a result event"},
		{"garbage and blank lines skipped", "\nnot json\n" + resultLine + "\n\n", succeeded, 1, 20, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var seen []mover.Event
			final, tail := readEvents(strings.NewReader(tt.log), func(ev mover.Event) { seen = append(seen, ev) }, slog.New(slog.DiscardHandler))
			if len(seen) != tt.events {
				t.Errorf("passed on %d events, want %d", len(seen), tt.events)
			}
			res, err := moverOutcome("data-db-0", final, tt.pod, tail)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.RawBytes != tt.wantBytes {
				t.Errorf("raw bytes %d, want %d", res.RawBytes, tt.wantBytes)
			}
		})
	}
}

func TestTransferDeadline(t *testing.T) {
	tests := []struct {
		bytes int64
		want  time.Duration
	}{
		{0, 30 * time.Minute},
		{-1, 30 * time.Minute},
		{1, 30*time.Minute + time.Second},
		{5 << 20, 30*time.Minute + time.Second},
		{10 << 30, 30*time.Minute + 2048*time.Second},  // 10 GiB: 34 min more
		{1 << 40, 30*time.Minute + 209716*time.Second}, // 1 TiB: 58 h more, a part second rounded up
	}
	for _, tt := range tests {
		if got := TransferDeadline(tt.bytes); got != tt.want {
			t.Errorf("TransferDeadline(%d) = %s, want %s", tt.bytes, got, tt.want)
		}
	}
	if got := TransferDeadline(1<<63 - 1); got <= TransferDeadline(1<<50) || got+time.Hour < got {
		t.Errorf("TransferDeadline(max) = %s: overflows or leaves no room to add a start timeout", got)
	}
}
