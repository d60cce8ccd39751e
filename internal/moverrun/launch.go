package moverrun

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"

	"github.com/kbak/kbak/internal/hint"
	"github.com/kbak/kbak/internal/kube"
	"github.com/kbak/kbak/internal/mover"
)

// Defaults of a run's mover pods, shared by backup and restore.
const (
	DefaultPodStartTimeout = 5 * time.Minute // scheduling, binding, provisioning, image pull
	DefaultPollInterval    = time.Second
	DefaultParallel        = 2 // mover pods at once
)

// Launcher runs the mover pods of one backup or restore run. It is shared
// by the run's workers and must not be copied.
type Launcher struct {
	Kube            kubernetes.Interface
	PodStartTimeout time.Duration // scheduling, binding, provisioning, image pull
	// TransferTimeout bounds one mover's whole run; 0 takes TransferDeadline
	// of the bytes it moves.
	TransferTimeout time.Duration
	CleanupTimeout  time.Duration // deleting a pod
	PollInterval    time.Duration
	Log             *slog.Logger
	// Progress receives every event of every mover, tagged with the PVC it
	// moves, one call at a time; nil drops them.
	Progress func(pvc string, ev mover.Event)

	progressMu sync.Mutex
}

// Deadline bounds the whole run of a mover that moves bytes.
func (l *Launcher) Deadline(bytes int64) time.Duration {
	if l.TransferTimeout > 0 {
		return l.TransferTimeout
	}
	return TransferDeadline(bytes)
}

// ActiveDeadline is the activeDeadlineSeconds of the pod of a mover that
// moves bytes: the kubelet ends a mover kbak no longer watches.
func (l *Launcher) ActiveDeadline(bytes int64) time.Duration {
	return l.Deadline(bytes) + l.PodStartTimeout
}

// Run runs the mover pod that moves pvc's bytes to its end and returns the
// mover's result. The pod is deleted, and gone, before Run returns, on
// every path: the caller may delete the claim it mounted right away
// (pvc-protection waits for pods).
func (l *Launcher) Run(ctx context.Context, pvc string, pod *corev1.Pod, bytes int64) (*mover.Result, error) {
	return l.run(ctx, pvc, pod, bytes, func(ev mover.Event) { l.progress(pvc, ev) })
}

// RunSilent runs a pod that prints no mover events (a binder) to its end,
// like Run.
func (l *Launcher) RunSilent(ctx context.Context, pvc string, pod *corev1.Pod, bytes int64) error {
	_, err := l.run(ctx, pvc, pod, bytes, nil)
	return err
}

func (l *Launcher) progress(pvc string, ev mover.Event) {
	if l.Progress == nil {
		return
	}
	l.progressMu.Lock()
	defer l.progressMu.Unlock()
	l.Progress(pvc, ev)
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

// run creates pod, follows its log until the mover's last event, passing
// each to onEvent, and returns the mover's result; with onEvent nil it only
// waits for the pod's end.
func (l *Launcher) run(ctx context.Context, what string, pod *corev1.Pod, bytes int64, onEvent func(mover.Event)) (*mover.Result, error) {
	kc := l.Kube
	ns, name := pod.Namespace, pod.Name
	log := l.Log.With("pvc", what, "pod", name)
	defer kube.DeletePod(ctx, kc, ns, name, l.PollInterval, l.CleanupTimeout, log)
	got, err := kube.CreatePod(ctx, kc, pod)
	if err != nil {
		return nil, podSecurityAdvice(err)
	}
	if got.Status.Phase == corev1.PodFailed {
		// Left failed by an earlier try of this run: try again afresh.
		kube.DeletePod(ctx, kc, ns, name, l.PollInterval, l.CleanupTimeout, log)
		if _, err := kube.CreatePod(ctx, kc, pod); err != nil {
			return nil, err
		}
	}
	log.Debug("created mover pod")
	ctx, cancel := context.WithTimeout(ctx, l.Deadline(bytes))
	defer cancel()
	if _, err := kube.WaitPod(ctx, kc, ns, name, kube.PodStarted, l.PollInterval, l.PodStartTimeout); err != nil {
		return nil, err
	}
	var final *mover.Event
	var tail []string
	if onEvent != nil {
		rc, err := kube.PodLogs(ctx, kc, ns, name, "", true)
		if err != nil {
			log.Warn("follow mover log", "err", err)
		} else {
			final, tail = readEvents(rc, onEvent, log)
			rc.Close()
		}
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("mover for %s: %w", what, context.Cause(ctx))
	}
	// The log ends when the container does; the phase follows shortly.
	done, err := kube.WaitPod(ctx, kc, ns, name, kube.PodDone, l.PollInterval, l.PodStartTimeout)
	if err != nil {
		return nil, err
	}
	if onEvent == nil {
		if done.Status.Phase != corev1.PodSucceeded {
			return nil, fmt.Errorf("pod for %s: %s", what, kube.ExitMessage(done))
		}
		return nil, nil
	}
	if final == nil {
		// The follow stream broke early (API server restart, log rotation):
		// the whole log of the finished container still has the last event.
		if rc, err := kube.PodLogs(ctx, kc, ns, name, "", false); err == nil {
			final, tail = readEvents(rc, func(mover.Event) {}, log)
			rc.Close()
		}
	}
	return moverOutcome(what, final, done, tail)
}

// podSecurityAdvice says what to do when Pod Security admission refuses a
// mover the namespace's label did not predict (a cluster-wide default
// level, a label changed during the run).
func podSecurityAdvice(err error) error {
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "violates PodSecurity") {
		return err
	}
	return hint.Errorf("%w: run movers as the application's user with %s, or label the namespace with the level it enforces (%s)", err, hint.Set(hint.MoverSecurity, "unprivileged"), kube.LabelPodSecurityEnforce)
}

// moverOutcome decides a transfer's result from the mover's last event and
// the pod's phase: the event says what happened, the phase confirms it.
func moverOutcome(what string, final *mover.Event, pod *corev1.Pod, tail []string) (*mover.Result, error) {
	switch {
	case final != nil && final.Type == mover.EventError:
		return nil, fmt.Errorf("mover for %s: %s", what, final.Error)
	case final != nil && final.Type == mover.EventResult && final.Result != nil:
		if pod.Status.Phase == corev1.PodFailed {
			return nil, fmt.Errorf("mover for %s reported a result but its pod failed: %s", what, kube.ExitMessage(pod))
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
	return nil, fmt.Errorf("mover for %s: %s", what, msg)
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
