package moverrun

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
)

func TestPool(t *testing.T) {
	p := NewPool(2)
	var running, most atomic.Int32
	errs := make([]error, 6)
	boom := errors.New("boom")
	for i := range errs {
		p.Go(context.Background(), &errs[i], func(context.Context) error {
			n := running.Add(1)
			defer running.Add(-1)
			for {
				m := most.Load()
				if n <= m || most.CompareAndSwap(m, n) {
					break
				}
			}
			if i == 3 {
				return boom
			}
			return nil
		})
	}
	p.Wait()
	if most.Load() > 2 {
		t.Errorf("%d ran at once, want at most 2", most.Load())
	}
	for i, err := range errs {
		if (i == 3) != errors.Is(err, boom) {
			t.Errorf("work %d: err %v", i, err)
		}
	}
}

// Work whose turn comes after its context ended does not start; a shared
// pool waits for its own work only.
func TestPoolCancelledAndShared(t *testing.T) {
	p := NewPool(1)
	release := make(chan struct{})
	var first error
	p.Go(context.Background(), &first, func(context.Context) error { <-release; return nil })

	ctx, cancel := context.WithCancelCause(context.Background())
	cause := errors.New("stop")
	shared := p.Share()
	done := make(chan struct{})
	var second error
	started := false
	go func() {
		shared.Go(ctx, &second, func(context.Context) error { started = true; return nil })
		shared.Wait()
		close(done)
	}()
	cancel(cause)
	close(release)
	<-done
	p.Wait()
	if started || !errors.Is(second, cause) {
		t.Errorf("work after cancellation: started %v, err %v; want not started and the cause", started, second)
	}
	if first != nil {
		t.Errorf("first work: %v", first)
	}
}
