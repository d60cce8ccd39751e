package backup

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kbak/kbak/internal/kube"
	"github.com/kbak/kbak/internal/mover"
)

// runMover runs v's mover pod to its end and returns its result; the pod is
// gone when it returns.
func (r *run) runMover(ctx context.Context, v *volume, pod *corev1.Pod) (*mover.Result, error) {
	pvc := v.claim.Name
	return kube.RunPod(ctx, r.deps.Kube, pod, kube.PodRun{
		What:            pvc,
		OnEvent:         func(ev mover.Event) { r.progress(pvc, ev) },
		PodStartTimeout: r.opts.PodStartTimeout,
		TransferTimeout: r.transferTimeout(v),
		CleanupTimeout:  r.opts.CleanupTimeout,
		PollInterval:    r.opts.PollInterval,
		Log:             r.log.With("pvc", pvc),
	})
}

// transferTimeout bounds v's mover: the option, else a deadline from the
// claim's capacity.
func (r *run) transferTimeout(v *volume) time.Duration {
	if r.opts.TransferTimeout > 0 {
		return r.opts.TransferTimeout
	}
	return kube.TransferDeadline(v.claim.Size.Value())
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
