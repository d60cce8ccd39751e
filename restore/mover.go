package restore

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kbak/kbak/internal/kube"
	"github.com/kbak/kbak/internal/mover"
)

// runPod creates pod, waits until it ends and, when events is true, returns
// the mover's result read from its log. The pod is deleted before runPod
// returns, on every path, so that a failed claim can be deleted at once.
func (r *run) runPod(ctx context.Context, pvc string, pod *corev1.Pod, events bool) (*mover.Result, error) {
	ns, name := pod.Namespace, pod.Name
	log := r.log.With("pvc", pvc, "pod", name)
	defer r.deletePod(ctx, name)
	if _, err := kube.CreatePod(ctx, r.deps.Kube, pod); err != nil {
		return nil, err
	}
	log.Debug("created pod")
	if r.opts.TransferTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.opts.TransferTimeout)
		defer cancel()
	}
	// Started covers scheduling, binding a WaitForFirstConsumer claim,
	// provisioning (from a snapshot, too) and the image pull.
	if _, err := kube.WaitPod(ctx, r.deps.Kube, ns, name, kube.PodStarted, r.opts.PollInterval, r.opts.PodStartTimeout); err != nil {
		return nil, err
	}
	var final *mover.Event
	var tail []string
	if events {
		rc, err := kube.PodLogs(ctx, r.deps.Kube, ns, name, "", true)
		if err != nil {
			log.Warn("follow mover log", "err", err)
		} else {
			final, tail = readEvents(rc, func(ev mover.Event) { r.progress(pvc, ev) }, log)
			rc.Close()
		}
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("pod for %s: %w", pvc, context.Cause(ctx))
	}
	// A mover's log has ended, so has its container; a binder pod only
	// prints its version: either ends shortly.
	done, err := kube.WaitPod(ctx, r.deps.Kube, ns, name, kube.PodDone, r.opts.PollInterval, r.opts.PodStartTimeout)
	if err != nil {
		return nil, err
	}
	if !events {
		if done.Status.Phase != corev1.PodSucceeded {
			return nil, fmt.Errorf("pod for %s: %s", pvc, kube.ExitMessage(done))
		}
		return nil, nil
	}
	if final == nil {
		// The follow stream broke early: the finished container's whole log
		// still has the last event.
		if rc, err := kube.PodLogs(ctx, r.deps.Kube, ns, name, "", false); err == nil {
			final, tail = readEvents(rc, func(mover.Event) {}, log)
			rc.Close()
		}
	}
	return moverOutcome(pvc, final, done, tail)
}

// moverOutcome decides a claim's result from the mover's last event and the
// pod's phase: the event says what happened, the phase confirms it.
func moverOutcome(pvc string, final *mover.Event, pod *corev1.Pod, tail []string) (*mover.Result, error) {
	switch {
	case final != nil && final.Type == mover.EventError:
		return nil, fmt.Errorf("mover for %s: %s", pvc, final.Error)
	case final != nil && final.Type == mover.EventResult && final.Result != nil:
		if pod.Status.Phase == corev1.PodFailed {
			return nil, fmt.Errorf("mover for %s reported a result but its pod failed: %s", pvc, kube.ExitMessage(pod))
		}
		return final.Result, nil
	}
	msg := kube.ExitMessage(pod)
	if pod.Status.Phase == corev1.PodSucceeded {
		msg = "ended without a result event"
	}
	if len(tail) > 0 {
		msg += ": " + strings.Join(tail, " | ")
	}
	return nil, fmt.Errorf("mover for %s: %s", pvc, msg)
}

// readEvents reads mover events from rd, passing each to onEvent, and
// returns the last result or error event with the last lines that were not
// events (a panic, a shell error), which explain a mover that died.
func readEvents(rd io.Reader, onEvent func(mover.Event), log *slog.Logger) (*mover.Event, []string) {
	var final *mover.Event
	var tail []string
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		ev, err := mover.ParseEvent([]byte(line))
		if err != nil {
			log.Debug("mover output", "line", line)
			tail = append(tail, line)
			if len(tail) > 5 {
				tail = tail[1:]
			}
			continue
		}
		onEvent(ev)
		if ev.Type == mover.EventResult || ev.Type == mover.EventError {
			e := ev
			final = &e
		}
	}
	if err := sc.Err(); err != nil {
		log.Debug("read mover log", "err", err)
	}
	return final, tail
}

func (r *run) progress(pvc string, ev mover.Event) {
	if r.opts.Progress == nil {
		return
	}
	r.progressMu.Lock()
	defer r.progressMu.Unlock()
	r.opts.Progress(pvc, ev)
}

// deletePod deletes a pod of this run and waits until it is gone, on a
// context that survives cancellation of the run.
func (r *run) deletePod(ctx context.Context, name string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.CleanupTimeout)
	defer cancel()
	pods := r.deps.Kube.CoreV1().Pods(r.plan.Namespace)
	err := pods.Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return
	}
	if err != nil {
		r.log.Warn("delete pod", "pod", name, "err", err)
		return
	}
	err = wait.PollUntilContextTimeout(ctx, r.opts.PollInterval, r.opts.CleanupTimeout, true, func(ctx context.Context) (bool, error) {
		_, err := pods.Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		r.log.Warn("wait for pod to go", "pod", name, "err", err)
	}
}
