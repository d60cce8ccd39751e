package main

import (
	"bytes"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The first Ctrl-C cancels the run, which cleans up; a second one exits
// 130 at once, saying that the cleanup was abandoned and what removes the
// leftovers.
func TestSecondInterruptExitsAtOnce(t *testing.T) {
	sigs := make(chan os.Signal, 2)
	done := make(chan struct{})
	defer close(done)
	cancelled := make(chan struct{})
	exited := make(chan int, 1)
	var stderr syncBuffer
	go watchSignals(sigs, done, func() { close(cancelled) }, &stderr, func(code int) { exited <- code })

	sigs <- os.Interrupt
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the first interrupt did not cancel the run")
	}
	select {
	case code := <-exited:
		t.Fatalf("exit %d after the first interrupt, while cleaning up", code)
	case <-time.After(50 * time.Millisecond):
	}
	if !strings.Contains(stderr.String(), "interrupt again to stop at once") {
		t.Errorf("after the first interrupt stderr says %q", stderr.String())
	}

	sigs <- syscall.SIGTERM
	select {
	case code := <-exited:
		if code != exitInterrupted {
			t.Errorf("exit %d, want %d", code, exitInterrupted)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second interrupt did not exit")
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	last := lines[len(lines)-1]
	for _, want := range []string{"cleanup abandoned", "kbak gc"} {
		if !strings.Contains(last, want) {
			t.Errorf("last line %q does not say %q", last, want)
		}
	}
}

// A run that ends without a signal leaves the watcher without a word.
func TestNoInterruptNoWords(t *testing.T) {
	sigs := make(chan os.Signal, 2)
	done := make(chan struct{})
	var stderr syncBuffer
	returned := make(chan struct{})
	go func() {
		watchSignals(sigs, done, func() { t.Error("cancelled without a signal") }, &stderr, func(int) { t.Error("exited without a signal") })
		close(returned)
	}()
	close(done)
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("the watcher did not return when the run ended")
	}
	if stderr.String() != "" {
		t.Errorf("stderr %q", stderr.String())
	}
}
