package backup

import (
	"bufio"
	"context"
	"errors"
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

// runMover creates pod, follows its log until the mover's last event and
// returns the mover's result. The pod is deleted before runMover returns, on
// every path, so the caller may delete the claim it mounted.
func (r *run) runMover(ctx context.Context, pvc string, pod *corev1.Pod) (*mover.Result, error) {
	ns, name := pod.Namespace, pod.Name
	log := r.log.With("pvc", pvc, "pod", name)
	defer r.deletePod(ctx, ns, name)
	got, err := kube.CreatePod(ctx, r.deps.Kube, pod)
	if err != nil {
		return nil, err
	}
	if got.Status.Phase == corev1.PodFailed {
		// Left failed by an earlier try of this run: try again afresh.
		r.deletePod(ctx, ns, name)
		if _, err := kube.CreatePod(ctx, r.deps.Kube, pod); err != nil {
			return nil, err
		}
	}
	log.Debug("created mover pod")
	if r.opts.TransferTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.opts.TransferTimeout)
		defer cancel()
	}
	if _, err := kube.WaitPod(ctx, r.deps.Kube, ns, name, kube.PodStarted, r.opts.PollInterval, r.opts.PodStartTimeout); err != nil {
		return nil, err
	}

	var final *mover.Event
	var tail []string
	rc, err := kube.PodLogs(ctx, r.deps.Kube, ns, name, "", true)
	if err != nil {
		log.Warn("follow mover log", "err", err)
	} else {
		final, tail = readEvents(rc, func(ev mover.Event) { r.progress(pvc, ev) }, log)
		rc.Close()
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("mover for %s: %w", pvc, context.Cause(ctx))
	}
	// The log ends when the container does; the phase follows shortly.
	done, err := kube.WaitPod(ctx, r.deps.Kube, ns, name, kube.PodDone, r.opts.PollInterval, r.opts.PodStartTimeout)
	if err != nil {
		return nil, err
	}
	if final == nil {
		// The follow stream broke early (API server restart, log rotation):
		// the whole log of the finished container still has the last event.
		if rc, err := kube.PodLogs(ctx, r.deps.Kube, ns, name, "", false); err == nil {
			final, tail = readEvents(rc, func(mover.Event) {}, log)
			rc.Close()
		}
	}
	return moverOutcome(pvc, final, done, tail)
}

// moverOutcome decides a volume's result from the mover's last event and
// the pod's phase: the event says what happened, the phase confirms it.
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

// readEvents reads mover events from r, passing each to onEvent, and returns
// the last result or error event with the last few lines that were not
// events (a panic, a shell error), which explain a mover that died.
func readEvents(r io.Reader, onEvent func(mover.Event), log *slog.Logger) (*mover.Event, []string) {
	var final *mover.Event
	var tail []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(strings.TrimSpace(string(line))) == 0 {
			continue
		}
		ev, err := mover.ParseEvent(line)
		if err != nil {
			log.Debug("mover output", "line", string(line))
			tail = append(tail, strings.TrimSpace(string(line)))
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
	if err := sc.Err(); err != nil && !errors.Is(err, context.Canceled) {
		log.Debug("read mover log", "err", err)
	}
	return final, tail
}

// deletePod deletes a pod and waits until it is gone, on a context that
// survives cancellation of the run.
func (r *run) deletePod(ctx context.Context, ns, name string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.CleanupTimeout)
	defer cancel()
	pods := r.deps.Kube.CoreV1().Pods(ns)
	if err := pods.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		r.log.Warn("delete mover pod", "pod", name, "err", err)
		return
	}
	err := wait.PollUntilContextTimeout(ctx, r.opts.PollInterval, r.opts.CleanupTimeout, true, func(ctx context.Context) (bool, error) {
		_, err := pods.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		r.log.Warn("wait for mover pod to go", "pod", name, "err", err)
	}
}

// deleteClaim deletes a temporary claim on a context that survives
// cancellation of the run.
func (r *run) deleteClaim(ctx context.Context, ns, name string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.CleanupTimeout)
	defer cancel()
	err := r.deps.Kube.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		r.log.Warn("delete temporary claim", "pvc", name, "err", err)
	}
}
