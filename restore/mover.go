package restore

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kbak/kbak/internal/kube"
	"github.com/kbak/kbak/internal/mover"
)

// runPod runs a pod to its end within transfer and, when events is true,
// returns the mover's result read from its log; the pod is gone when it
// returns, so a failed claim can be deleted at once.
func (r *run) runPod(ctx context.Context, pvc string, pod *corev1.Pod, events bool, transfer time.Duration) (*mover.Result, error) {
	o := kube.PodRun{
		What:            pvc,
		PodStartTimeout: r.opts.PodStartTimeout,
		TransferTimeout: transfer,
		CleanupTimeout:  r.opts.CleanupTimeout,
		PollInterval:    r.opts.PollInterval,
		Log:             r.log.With("pvc", pvc),
	}
	if events {
		o.OnEvent = func(ev mover.Event) { r.progress(pvc, ev) }
	}
	return kube.RunPod(ctx, r.deps.Kube, pod, o)
}

// transferTimeout bounds the pods that fill c: the option, else a deadline
// from the bytes the backup holds for it.
func (r *run) transferTimeout(c Claim) time.Duration {
	if r.opts.TransferTimeout > 0 {
		return r.opts.TransferTimeout
	}
	return kube.TransferDeadline(c.RawBytes)
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
	kube.DeletePod(ctx, r.deps.Kube, r.plan.Namespace, name, r.opts.PollInterval, r.opts.CleanupTimeout, r.log)
}
