package mover

import (
	"encoding/json"
	"io"
	"sync"
	"time"
)

// Emitter writes Events as JSON lines. A nil *Emitter discards everything,
// so library callers that want no output pass nil.
type Emitter struct {
	mu       sync.Mutex
	w        io.Writer
	fn       func(Event) // instead of w, for a transfer run in-process
	interval time.Duration
	now      func() time.Time
}

// NewEmitter writes events to w, progress at most once per interval.
func NewEmitter(w io.Writer, interval time.Duration) *Emitter {
	return &Emitter{w: w, interval: interval, now: time.Now}
}

// NewEventEmitter hands events to fn, one call at a time, progress at most
// once per interval: for a transfer the caller runs in its own process.
func NewEventEmitter(fn func(Event), interval time.Duration) *Emitter {
	return &Emitter{fn: fn, interval: interval, now: time.Now}
}

// Emit writes one event; write errors are ignored because progress must
// never fail a transfer.
func (e *Emitter) Emit(ev Event) {
	if e == nil {
		return
	}
	if ev.Time.IsZero() {
		ev.Time = e.now().UTC()
	}
	if e.fn != nil {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.fn(ev)
		return
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	_, _ = e.w.Write(append(b, '\n'))
}

// every emits progress from sample on every tick until the returned stop is
// called; stop emits one last sample so the final figures are always seen.
func (e *Emitter) every(sample func() Progress) (stop func()) {
	if e == nil || e.interval <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(e.interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				p := sample()
				e.Emit(Event{Type: EventProgress, Progress: &p})
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			<-finished
			p := sample()
			e.Emit(Event{Type: EventProgress, Progress: &p})
		})
	}
}
