package moverrun

import (
	"context"
	"log/slog"
	"sync"
	"time"

	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/kbak/kbak/internal/kube"
)

// aliveNow is the value of kube.AnnotationAlive for now.
func aliveNow() string { return time.Now().UTC().Format(time.RFC3339) }

// KeepAlive refreshes kube.AnnotationAlive on the run's Secrets ns/names
// every interval (0: kube.HeartbeatInterval) until stop is called, so that
// the next run in the namespace does not take this one for dead while it
// waits without a pod (kube.SweepDeadRuns). A refresh that fails is logged
// and tried again at the next beat; it costs nothing else. stop waits for
// the refresher to end.
func KeepAlive(ctx context.Context, kc kubernetes.Interface, ns string, names []string, interval time.Duration, log *slog.Logger) (stop func()) {
	if len(names) == 0 {
		return func() {}
	}
	if interval <= 0 {
		interval = kube.HeartbeatInterval
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			patch := []byte(`{"metadata":{"annotations":{"` + kube.AnnotationAlive + `":"` + aliveNow() + `"}}}`)
			for _, name := range names {
				_, err := kc.CoreV1().Secrets(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
				if err != nil && ctx.Err() == nil {
					log.Debug("mark the run's secret alive", "secret", name, "err", err)
				}
			}
		}
	}()
	return func() {
		cancel()
		wg.Wait()
	}
}

// SweepDeadRuns removes the credential and key Secrets that dead kbak runs
// left in namespace ns (kube.SweepDeadRuns with age, 0: kube.DeadRunAge),
// bounded by timeout. A backup or restore calls it before it makes its own
// Secrets; a failure is a warning: kbak gc removes them later.
func SweepDeadRuns(ctx context.Context, kc kubernetes.Interface, sc snapclient.Interface, log *slog.Logger, ns string, now time.Time, age, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := kube.SweepDeadRuns(ctx, kc, sc, log, ns, now, age); err != nil && ctx.Err() == nil {
		log.Warn("remove the Secrets of dead kbak runs in the namespace (kbak gc removes them later)", "err", err)
	}
}
