package backup

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kbak/kbak/internal/kube"
	"github.com/kbak/kbak/internal/mover"
)

// runMover runs a mover pod to its end and returns its result; the pod is
// gone when it returns.
func (r *run) runMover(ctx context.Context, pvc string, pod *corev1.Pod) (*mover.Result, error) {
	return kube.RunPod(ctx, r.deps.Kube, pod, kube.PodRun{
		What:            pvc,
		OnEvent:         func(ev mover.Event) { r.progress(pvc, ev) },
		PodStartTimeout: r.opts.PodStartTimeout,
		TransferTimeout: r.opts.TransferTimeout,
		CleanupTimeout:  r.opts.CleanupTimeout,
		PollInterval:    r.opts.PollInterval,
		Log:             r.log.With("pvc", pvc),
	})
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
