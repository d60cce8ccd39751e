package backup

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/kbak/kbak/internal/catalog"
)

// hookTarget is one application pod a hook runs in.
type hookTarget struct {
	pod       string
	container string
}

// hookTargets lists the running application pods of vols, once each, in
// ordinal order.
func (r *run) hookTargets(vols []*volume) []hookTarget {
	seen := map[string]bool{}
	var out []hookTarget
	for _, v := range vols {
		p := v.claim.Pod
		if p == nil || seen[p.Name] {
			continue
		}
		seen[p.Name] = true
		c := r.opts.HookContainer
		if c == "" && len(p.Spec.Containers) > 0 {
			c = p.Spec.Containers[0].Name
		}
		out = append(out, hookTarget{pod: p.Name, container: c})
	}
	return out
}

func (r *run) hooksEnabled() bool { return len(r.opts.PreHook) > 0 || len(r.opts.PostHook) > 0 }

// quiesce runs the pre hook in every target and returns thaw, which runs the
// post hook in every target once, however often it is called. thaw runs on
// a context that is not cancelled with the run, so an interrupted backup
// still resumes the application. When a pre hook fails, quiesce has already
// thawed and returns the error.
func (r *run) quiesce(ctx context.Context, targets []hookTarget) (thaw func(), err error) {
	if !r.hooksEnabled() || len(targets) == 0 {
		return func() {}, nil
	}
	thaw = sync.OnceFunc(func() {
		if len(r.opts.PostHook) == 0 {
			return
		}
		if err := r.runHooks(context.WithoutCancel(ctx), "post", r.opts.PostHook, targets); err != nil {
			r.log.Error("post hook failed: the application may still be quiesced, check it", "err", err)
		}
	})
	if len(r.opts.PreHook) > 0 {
		if err := r.runHooks(ctx, "pre", r.opts.PreHook, targets); err != nil {
			thaw()
			return func() {}, err
		}
	}
	return thaw, nil
}

// runHooks runs cmd in every target at once, each within the hook timeout,
// records each run for the manifest, and returns every failure.
func (r *run) runHooks(ctx context.Context, phase string, cmd []string, targets []hookTarget) error {
	if r.deps.Exec == nil {
		return fmt.Errorf("run %s hook: no exec client (a REST config is needed for hooks)", phase)
	}
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hctx, cancel := context.WithTimeout(ctx, r.opts.HookTimeout)
			defer cancel()
			rec := catalog.HookRun{Name: phase + "-hook", Phase: phase, Pod: t.pod, Container: t.container, Started: r.deps.Now().UTC()}
			_, err := r.deps.Exec(hctx, r.opts.Namespace, t.pod, t.container, cmd)
			if err == nil && hctx.Err() != nil {
				err = hctx.Err()
			}
			rec.Finished = r.deps.Now().UTC()
			if err != nil {
				if errors.Is(hctx.Err(), context.DeadlineExceeded) {
					err = fmt.Errorf("%s hook in pod %s: no answer within %s: %w", phase, t.pod, r.opts.HookTimeout, err)
				} else {
					err = fmt.Errorf("%s hook in pod %s: %w", phase, t.pod, err)
				}
				rec.Error = catalog.OneLine(err.Error())
				errs[i] = err
			}
			r.log.Info("ran hook", "phase", phase, "pod", t.pod, "container", t.container, "err", err)
			r.mu.Lock()
			r.hooks = append(r.hooks, rec)
			r.mu.Unlock()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
