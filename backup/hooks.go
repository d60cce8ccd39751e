package backup

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	utilexec "k8s.io/client-go/util/exec"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/hint"
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

func (r *run) hooksEnabled() bool {
	return len(r.opts.PreHook) > 0 || len(r.opts.PostHook) > 0 || len(r.opts.HoldHook) > 0
}

// Who resumed the application after a quiesce (catalog.HookRun.ThawedBy).
const (
	ThawedByKbak    = "kbak"
	ThawedByDeadman = "deadman"
)

// quiesce runs the pre hook in every target and returns thaw, which runs the
// post hook in every target once, however often it is called, and reports
// whether kbak's post hook found that the deadman had already run it in
// some pod (the application was then not held still up to the end). thaw
// runs on a context that is not cancelled with the run, so an interrupted
// backup still resumes the application. When a pre hook fails, quiesce has
// already thawed and returns the error.
//
// hold is how long the quiesce is expected to last at most: the deadman
// started with each pre hook runs the post hook that long after the pre
// hook finished (plus the hook timeout), unless kbak's own post hook ran
// first.
func (r *run) quiesce(ctx context.Context, targets []hookTarget, hold time.Duration) (thaw func() (deadman bool), err error) {
	if !r.hooksEnabled() || len(targets) == 0 {
		return func() bool { return false }, nil
	}
	var deadman bool
	var holds []*holdSession
	once := sync.OnceFunc(func() {
		r.endHolds(ctx, holds)
		if len(r.opts.PostHook) == 0 {
			return
		}
		var err error
		deadman, err = r.runHooks(context.WithoutCancel(ctx), "post", r.opts.PostHook, targets, 0)
		if err != nil {
			r.log.Error("post hook failed: the application may still be quiesced, check it", "err", err)
		}
		if deadman {
			r.log.Warn("the deadman had already run the post hook: the application was resumed before kbak finished, so the volumes are not recorded as quiesced; give a longer deadman", "deadman", r.deadmanAfter(hold))
		}
	})
	thaw = func() bool { once(); return deadman }
	if len(r.opts.PreHook) > 0 {
		var d time.Duration
		if len(r.opts.PostHook) > 0 {
			d = r.deadmanAfter(hold)
		}
		if _, err := r.runHooks(ctx, "pre", r.opts.PreHook, targets, d); err != nil {
			thaw()
			return func() bool { return false }, err
		}
	}
	if len(r.opts.HoldHook) > 0 {
		if holds, err = r.startHolds(ctx, targets, r.deadmanAfter(hold)); err != nil {
			thaw()
			return func() bool { return false }, err
		}
	}
	return thaw, nil
}

// deadmanAfter is the deadman's delay for a quiesce expected to last hold
// (for a hold hook, the time after which a timer in the pod kills it); 0
// when there is no deadman.
func (r *run) deadmanAfter(hold time.Duration) time.Duration {
	if r.opts.NoDeadman {
		return 0
	}
	if r.opts.HookDeadman > 0 {
		return r.opts.HookDeadman
	}
	// The post hook may take its own timeout to start resuming.
	return hold + 2*r.opts.HookTimeout
}

// runHooks runs cmd in every target at once, each within the hook timeout,
// records each run for the manifest, and returns every failure. A pre hook
// with deadman > 0 starts a deadman beside it. A hook that does not end in
// time is stopped in its container before runHooks returns. For the post
// phase it reports whether some pod's deadman had already thawed it.
func (r *run) runHooks(ctx context.Context, phase string, cmd []string, targets []hookTarget, deadman time.Duration) (deadmanThawed bool, _ error) {
	if r.deps.Exec == nil {
		return false, fmt.Errorf("run %s hook: no exec client (a REST config is needed for hooks)", phase)
	}
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := catalog.HookRun{Name: phase + "-hook", Phase: phase, Pod: t.pod, Container: t.container, Started: r.deps.Now().UTC()}
			if deadman > 0 {
				rec.DeadmanSeconds = int64((deadman + time.Second - 1) / time.Second)
			}
			err := r.runHook(ctx, phase, cmd, t, deadman, &rec)
			rec.Finished = r.deps.Now().UTC()
			if err != nil {
				rec.Error = catalog.OneLine(hint.Render(err, r.opts.Spell))
				errs[i] = err
			}
			r.log.Info("ran hook", "phase", phase, "pod", t.pod, "container", t.container, "thawed_by", rec.ThawedBy, "err", err)
			r.mu.Lock()
			r.hooks = append(r.hooks, rec)
			if rec.ThawedBy == ThawedByDeadman {
				deadmanThawed = true
			}
			r.mu.Unlock()
		}()
	}
	wg.Wait()
	return deadmanThawed, errors.Join(errs...)
}

// runHook runs one hook in one target, through the in-pod wrapper unless
// the deadman is off.
func (r *run) runHook(ctx context.Context, phase string, cmd []string, t hookTarget, deadman time.Duration, rec *catalog.HookRun) error {
	hctx, cancel := context.WithTimeout(ctx, r.opts.HookTimeout)
	defer cancel()
	wrapped := !r.opts.NoDeadman
	argv := cmd
	if wrapped {
		var post []string
		if phase == "pre" && deadman > 0 {
			post = r.opts.PostHook
		}
		argv = hookScript(r.hookDir(), phase, cmd, post, deadman)
	}
	out, err := r.deps.Exec(hctx, r.opts.Namespace, t.pod, t.container, argv)
	if err == nil && hctx.Err() != nil {
		err = hctx.Err()
	}
	if wrapped && phase == "post" {
		rec.ThawedBy = ThawedByKbak
		if strings.Contains(out, thawedByDeadmanLine) {
			rec.ThawedBy = ThawedByDeadman
		}
	}
	if err == nil {
		return nil
	}
	if wrapped && noShell(err) {
		return hint.Errorf("%s hook in pod %s: container %s has no /bin/sh, which kbak needs to run the deadman and to stop a hook that passes its timeout: add a shell to the image or pass %s (a killed kbak then leaves the application quiesced)", phase, t.pod, t.container, hint.Set(hint.HookDeadman, "off"))
	}
	var exit utilexec.ExitError
	if !errors.As(err, &exit) || hctx.Err() != nil {
		// The hook may still be running in the pod: a timed out hook must
		// not take effect after the post hook.
		r.stopHook(ctx, phase, t, wrapped)
	}
	if errors.Is(hctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%s hook in pod %s: no answer within %s, stopped: %w", phase, t.pod, r.opts.HookTimeout, err)
	}
	return fmt.Errorf("%s hook in pod %s: %w", phase, t.pod, err)
}

// stopHook kills what is left of phase's hook in t, with its children.
func (r *run) stopHook(ctx context.Context, phase string, t hookTarget, wrapped bool) {
	if !wrapped {
		r.log.Warn("hook may still be running in its pod: it runs without the in-pod wrapper (deadman off), which kbak needs to stop it", "phase", phase, "pod", t.pod)
		return
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.HookTimeout)
	defer cancel()
	if _, err := r.deps.Exec(sctx, r.opts.Namespace, t.pod, t.container, stopScript(r.hookDir(), phase)); err != nil {
		r.log.Error("stop a hook that passed its timeout: it may still take effect, check the application", "phase", phase, "pod", t.pod, "err", err)
		return
	}
	r.log.Info("stopped hook", "phase", phase, "pod", t.pod)
}

// hookDir is the directory in each application container where the hooks
// of this run keep their process ids and the deadman its claim to thaw.
func (r *run) hookDir() string { return "/tmp/kbak-hook-" + r.id }

// noShell tells whether err is the runtime's failure to find /bin/sh.
func noShell(err error) bool {
	s := err.Error()
	return strings.Contains(s, "/bin/sh") && (strings.Contains(s, "no such file") || strings.Contains(s, "not found"))
}
