package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/hint"
)

// HoldReady is the line a hold hook prints on its output once it holds
// what it holds (a lock); kbak cuts only after every pod's hold hook said
// so.
const HoldReady = "kbak: ready"

// holdSession is a hold hook running in one pod for as long as the quiesce
// lasts, its stdin open.
type holdSession struct {
	t      hookTarget
	stdin  *io.PipeWriter
	out    *lineWatch
	cancel context.CancelFunc
	done   chan struct{}
	err    error // the session's end, once done is closed
	rec    catalog.HookRun
}

// lineWatch keeps the tail of a session's output and closes ready when a
// line is HoldReady.
type lineWatch struct {
	mu    sync.Mutex
	line  []byte // the unfinished last line
	tail  []byte
	ready chan struct{}
	seen  bool
}

func (w *lineWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.tail = append(w.tail, p...)
	if len(w.tail) > 4096 {
		w.tail = append(w.tail[:0], w.tail[len(w.tail)-4096:]...)
	}
	if w.seen {
		return len(p), nil
	}
	w.line = append(w.line, p...)
	for {
		i := bytes.IndexByte(w.line, '\n')
		if i < 0 {
			break
		}
		if strings.TrimSpace(string(w.line[:i])) == HoldReady {
			w.seen = true
			close(w.ready)
			w.line = nil
			break
		}
		w.line = w.line[i+1:]
	}
	if len(w.line) > 4096 {
		w.line = w.line[len(w.line)-4096:]
	}
	return len(p), nil
}

func (w *lineWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.TrimSpace(string(w.tail))
}

// startHolds starts the hold hook in every target and waits, within the
// hook timeout, until each printed HoldReady. On failure it has ended every
// session it started and returns the error.
func (r *run) startHolds(ctx context.Context, targets []hookTarget, deadman time.Duration) ([]*holdSession, error) {
	if r.deps.Session == nil {
		return nil, errors.New("run hold hook: no exec client (a REST config is needed for hooks)")
	}
	sessions := make([]*holdSession, len(targets))
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sessions[i], errs[i] = r.startHold(ctx, t, deadman)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		r.endHolds(ctx, sessions)
		return nil, err
	}
	return sessions, nil
}

func (r *run) startHold(ctx context.Context, t hookTarget, deadman time.Duration) (*holdSession, error) {
	argv := r.opts.HoldHook
	if !r.opts.NoDeadman {
		argv = holdScript(r.hookDir(), argv, deadman)
	}
	// The session lives until endHolds, whatever becomes of ctx.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	pr, pw := io.Pipe()
	s := &holdSession{t: t, stdin: pw, cancel: cancel, done: make(chan struct{}),
		out: &lineWatch{ready: make(chan struct{})},
		rec: catalog.HookRun{Name: "hold-hook", Phase: "hold", Pod: t.pod, Container: t.container, Started: r.deps.Now().UTC()}}
	if deadman > 0 && !r.opts.NoDeadman {
		s.rec.DeadmanSeconds = int64((deadman + time.Second - 1) / time.Second)
	}
	go func() {
		s.err = r.deps.Session(sctx, r.opts.Namespace, t.pod, t.container, argv, pr, s.out)
		pr.Close()
		close(s.done)
	}()
	timer := time.NewTimer(r.opts.HookTimeout)
	defer timer.Stop()
	var err error
	select {
	case <-s.out.ready:
		r.log.Info("hold hook ready", "pod", t.pod, "container", t.container)
		return s, nil
	case <-s.done:
		err = fmt.Errorf("hold hook in pod %s ended before it printed %q: %v: %s", t.pod, HoldReady, s.err, s.out.String())
		if s.err != nil && !r.opts.NoDeadman && noShell(s.err) {
			err = hint.Errorf("hold hook in pod %s: container %s has no /bin/sh, which kbak needs to run the deadman and to stop a hook: add a shell to the image or pass %s", t.pod, t.container, hint.Set(hint.HookDeadman, "off"))
		}
	case <-timer.C:
		err = fmt.Errorf("hold hook in pod %s did not print %q within %s: %s", t.pod, HoldReady, r.opts.HookTimeout, s.out.String())
	case <-ctx.Done():
		err = fmt.Errorf("hold hook in pod %s: %w", t.pod, context.Cause(ctx))
	}
	s.rec.Error = catalog.OneLine(hint.Render(err, r.opts.Spell))
	return s, err
}

// endHolds closes the stdin of every session, which ends a hold hook that
// reads it (its lock goes with it), and waits for each, within the hook
// timeout; a session still going then is killed in its pod.
func (r *run) endHolds(ctx context.Context, sessions []*holdSession) {
	var wg sync.WaitGroup
	for _, s := range sessions {
		if s == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.endHold(ctx, s)
		}()
	}
	wg.Wait()
}

func (r *run) endHold(ctx context.Context, s *holdSession) {
	s.stdin.Close()
	timer := time.NewTimer(r.opts.HookTimeout)
	defer timer.Stop()
	select {
	case <-s.done:
	case <-timer.C:
		r.stopHook(ctx, "hold", s.t, !r.opts.NoDeadman)
		// The wrapper ends, with its timer, once its hook is gone.
		select {
		case <-s.done:
		case <-time.After(r.opts.HookTimeout):
		}
		s.cancel()
		<-s.done
		if s.rec.Error == "" {
			s.rec.Error = fmt.Sprintf("hold hook in pod %s did not end within %s of its stdin's end: stopped", s.t.pod, r.opts.HookTimeout)
		}
	}
	s.cancel()
	s.rec.Finished = r.deps.Now().UTC()
	if s.err != nil && s.rec.Error == "" {
		s.rec.Error = catalog.OneLine(fmt.Sprintf("hold hook in pod %s: %v: %s", s.t.pod, s.err, s.out.String()))
	}
	if s.rec.Error != "" {
		r.log.Error("hold hook", "pod", s.t.pod, "err", s.rec.Error)
	} else {
		r.log.Info("ended hold hook", "pod", s.t.pod)
	}
	r.mu.Lock()
	r.hooks = append(r.hooks, s.rec)
	r.mu.Unlock()
}
