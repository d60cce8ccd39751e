package kube

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/kbak/kbak/internal/mover"
)

// PodRun tunes RunPod.
type PodRun struct {
	// What names the pod's work in errors, e.g. the PVC it moves.
	What string
	// OnEvent receives the mover's events as they are printed; nil means
	// the pod prints none (a binder pod), and RunPod only waits for its end.
	OnEvent func(mover.Event)

	PodStartTimeout time.Duration // scheduling, binding, provisioning, image pull
	TransferTimeout time.Duration // the whole run; 0 is none
	CleanupTimeout  time.Duration // deleting the pod
	PollInterval    time.Duration
	Log             *slog.Logger
}

// Transfer rate and slack of TransferDeadline.
const (
	transferFloorRate = 5 << 20 // bytes per second
	transferSlack     = 30 * time.Minute
)

// TransferDeadline is the default bound of one mover's whole run over bytes
// of data: half an hour for a slow start and the upload's tail, then 5 MiB/s,
// well below what a working mover reads, compresses and sends, so that a
// mover that hangs ends while a slow one finishes.
func TransferDeadline(bytes int64) time.Duration {
	bytes = max(bytes, 0)
	secs := bytes / transferFloorRate
	if bytes%transferFloorRate != 0 {
		secs++
	}
	// Beyond any volume; the cap leaves callers room to add to the result.
	if limit := int64((math.MaxInt64/2 - transferSlack) / time.Second); secs > limit {
		secs = limit
	}
	return transferSlack + time.Duration(secs)*time.Second
}

// RunPod creates pod, follows its log until the mover's last event and
// returns the mover's result (nil for a pod without events). The pod is
// deleted, and gone, before RunPod returns, on every path: the caller may
// delete the claim it mounted right away (pvc-protection waits for pods).
func RunPod(ctx context.Context, kc kubernetes.Interface, pod *corev1.Pod, o PodRun) (*mover.Result, error) {
	ns, name := pod.Namespace, pod.Name
	log := o.Log.With("pod", name)
	defer DeletePod(ctx, kc, ns, name, o.PollInterval, o.CleanupTimeout, log)
	got, err := CreatePod(ctx, kc, pod)
	if err != nil {
		return nil, err
	}
	if got.Status.Phase == corev1.PodFailed {
		// Left failed by an earlier try of this run: try again afresh.
		DeletePod(ctx, kc, ns, name, o.PollInterval, o.CleanupTimeout, log)
		if _, err := CreatePod(ctx, kc, pod); err != nil {
			return nil, err
		}
	}
	log.Debug("created mover pod")
	if o.TransferTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.TransferTimeout)
		defer cancel()
	}
	if _, err := WaitPod(ctx, kc, ns, name, PodStarted, o.PollInterval, o.PodStartTimeout); err != nil {
		return nil, err
	}
	var final *mover.Event
	var tail []string
	if o.OnEvent != nil {
		rc, err := PodLogs(ctx, kc, ns, name, "", true)
		if err != nil {
			log.Warn("follow mover log", "err", err)
		} else {
			final, tail = ReadEvents(rc, o.OnEvent, log)
			rc.Close()
		}
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("mover for %s: %w", o.What, context.Cause(ctx))
	}
	// The log ends when the container does; the phase follows shortly.
	done, err := WaitPod(ctx, kc, ns, name, PodDone, o.PollInterval, o.PodStartTimeout)
	if err != nil {
		return nil, err
	}
	if o.OnEvent == nil {
		if done.Status.Phase != corev1.PodSucceeded {
			return nil, fmt.Errorf("pod for %s: %s", o.What, ExitMessage(done))
		}
		return nil, nil
	}
	if final == nil {
		// The follow stream broke early (API server restart, log rotation):
		// the whole log of the finished container still has the last event.
		if rc, err := PodLogs(ctx, kc, ns, name, "", false); err == nil {
			final, tail = ReadEvents(rc, func(mover.Event) {}, log)
			rc.Close()
		}
	}
	return MoverOutcome(o.What, final, done, tail)
}

// MoverOutcome decides a transfer's result from the mover's last event and
// the pod's phase: the event says what happened, the phase confirms it.
func MoverOutcome(what string, final *mover.Event, pod *corev1.Pod, tail []string) (*mover.Result, error) {
	switch {
	case final != nil && final.Type == mover.EventError:
		return nil, fmt.Errorf("mover for %s: %s", what, final.Error)
	case final != nil && final.Type == mover.EventResult && final.Result != nil:
		if pod.Status.Phase == corev1.PodFailed {
			return nil, fmt.Errorf("mover for %s reported a result but its pod failed: %s", what, ExitMessage(pod))
		}
		return final.Result, nil
	}
	msg := ExitMessage(pod)
	if pod.Status.Phase == corev1.PodSucceeded {
		msg = "ended without a result event"
	}
	if len(tail) > 0 {
		msg += ": " + strings.Join(tail, " | ")
	}
	return nil, fmt.Errorf("mover for %s: %s", what, msg)
}

// ReadEvents reads mover events from r, passing each to onEvent, and returns
// the last result or error event with the last few lines that were not
// events (a panic, a shell error), which explain a mover that died.
func ReadEvents(r io.Reader, onEvent func(mover.Event), log *slog.Logger) (*mover.Event, []string) {
	var final *mover.Event
	var tail []string
	sc := bufio.NewScanner(r)
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

// DeletePod deletes a pod and waits until it is gone, on a context that
// survives cancellation of the caller's.
func DeletePod(ctx context.Context, kc kubernetes.Interface, ns, name string, interval, timeout time.Duration, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	pods := kc.CoreV1().Pods(ns)
	err := pods.Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return
	}
	if err != nil {
		log.Warn("delete pod", "pod", name, "err", err)
		return
	}
	err = wait.PollUntilContextTimeout(ctx, interval, timeout, true, func(ctx context.Context) (bool, error) {
		_, err := pods.Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		log.Warn("wait for pod to go", "pod", name, "err", err)
	}
}
