package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"

	"github.com/kbak/kbak/internal/hint"
)

// CreatePod creates pod, or returns the one a previous try of the same run
// made.
func CreatePod(ctx context.Context, kc kubernetes.Interface, pod *corev1.Pod) (*corev1.Pod, error) {
	api := kc.CoreV1().Pods(pod.Namespace)
	got, err := api.Create(ctx, pod, metav1.CreateOptions{})
	if err == nil {
		return got, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	got, err = api.Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	if err := sameRun(got.ObjectMeta, pod.ObjectMeta); err != nil {
		return nil, fmt.Errorf("create pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return got, nil
}

// Waiting reasons after which a container will not start without someone
// changing the pod or the cluster: waiting for them would only hang.
var fatalWaiting = map[string]bool{
	"ErrImagePull":               true,
	"ImagePullBackOff":           true,
	"ErrImageNeverPull":          true,
	"InvalidImageName":           true,
	"CreateContainerError":       true,
	"CreateContainerConfigError": true,
	"RunContainerError":          true,
	"CrashLoopBackOff":           true,
}

// PodStartError reports why pod's containers cannot start, or nil when they
// may still.
func PodStartError(pod *corev1.Pod) error {
	for _, cs := range append(append([]corev1.ContainerStatus(nil), pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...) {
		w := cs.State.Waiting
		if w == nil || !fatalWaiting[w.Reason] {
			continue
		}
		msg := fmt.Sprintf("pod %s/%s cannot start container %s: %s", pod.Namespace, pod.Name, cs.Name, w.Reason)
		if w.Message != "" {
			msg += ": " + w.Message
		}
		if strings.Contains(w.Reason, "Image") {
			return hint.Errorf("%s (image %s: check %s and that the nodes can pull it)", msg, cs.Image, hint.Of(hint.MoverImage))
		}
		return errors.New(msg)
	}
	return nil
}

// PodStarted reports whether pod's containers run or have run, so that its
// log can be read.
func PodStarted(pod *corev1.Pod) bool {
	switch pod.Status.Phase {
	case corev1.PodRunning, corev1.PodSucceeded, corev1.PodFailed:
		return true
	}
	return false
}

// PodDone reports whether pod has terminated.
func PodDone(pod *corev1.Pod) bool {
	return pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
}

// WaitPod polls ns/name until done reports true, the pod cannot start
// (returned at once), or timeout. The error on timeout includes the pod's
// last scheduling condition, the usual reason a pod stays pending.
func WaitPod(ctx context.Context, kc kubernetes.Interface, ns, name string, done func(*corev1.Pod) bool, interval, timeout time.Duration) (*corev1.Pod, error) {
	var last *corev1.Pod
	var lastErr error
	err := wait.PollUntilContextTimeout(ctx, interval, timeout, true, func(ctx context.Context) (bool, error) {
		pod, err := kc.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			err = fmt.Errorf("get pod %s/%s: %w", ns, name, err)
			if permanent(err) {
				return false, err
			}
			lastErr = err // an API server restart must not fail a long transfer
			return false, nil
		}
		last = pod
		if done(pod) {
			return true, nil
		}
		return false, PodStartError(pod)
	})
	if err == nil {
		return last, nil
	}
	if wait.Interrupted(err) && ctx.Err() == nil {
		msg := fmt.Sprintf("wait for pod %s/%s: still %s after %s", ns, name, phase(last), timeout)
		if lastErr != nil {
			msg += fmt.Sprintf(" (last error: %v)", lastErr)
		}
		if last != nil {
			for _, c := range last.Status.Conditions {
				if c.Type == corev1.PodScheduled && c.Status != corev1.ConditionTrue && c.Message != "" {
					msg += ": " + c.Message
				}
			}
		}
		return last, fmt.Errorf("%s", msg)
	}
	return last, err
}

// permanent reports whether an API error will not go away by retrying.
func permanent(err error) bool {
	return apierrors.IsNotFound(err) || apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) || apierrors.IsGone(err)
}

func phase(pod *corev1.Pod) string {
	if pod == nil || pod.Status.Phase == "" {
		return "Pending"
	}
	return string(pod.Status.Phase)
}

// ExitMessage describes how a terminated pod's containers ended.
func ExitMessage(pod *corev1.Pod) string {
	var parts []string
	for _, cs := range pod.Status.ContainerStatuses {
		t := cs.State.Terminated
		if t == nil {
			continue
		}
		s := fmt.Sprintf("container %s exited with code %d", cs.Name, t.ExitCode)
		if t.Reason != "" {
			s += " (" + t.Reason + ")"
		}
		if t.Message != "" {
			s += ": " + strings.TrimSpace(t.Message)
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return fmt.Sprintf("pod %s", phase(pod))
	}
	return strings.Join(parts, "; ")
}

// PodLogs opens the log of pod ns/name's container; follow keeps the stream
// open until the container ends.
func PodLogs(ctx context.Context, kc kubernetes.Interface, ns, name, container string, follow bool) (io.ReadCloser, error) {
	rc, err := kc.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{Container: container, Follow: follow}).Stream(ctx)
	if err != nil {
		return nil, fmt.Errorf("read log of pod %s/%s: %w", ns, name, err)
	}
	return rc, nil
}

// Exec runs cmd in container of pod ns/name and returns its combined output.
// A non-zero exit is an error that carries the output's tail.
func Exec(ctx context.Context, cfg *rest.Config, kc kubernetes.Interface, ns, pod, container string, cmd []string) (string, error) {
	var out tailBuffer
	err := execStream(ctx, cfg, kc, ns, pod, container, cmd, nil, &out)
	if err != nil {
		if t := strings.TrimSpace(out.String()); t != "" {
			return out.String(), fmt.Errorf("exec %q in pod %s/%s container %s: %w: %s", strings.Join(cmd, " "), ns, pod, container, err, t)
		}
		return out.String(), fmt.Errorf("exec %q in pod %s/%s container %s: %w", strings.Join(cmd, " "), ns, pod, container, err)
	}
	return out.String(), nil
}

// ExecSession runs cmd in container of pod ns/name with stdin, writing its
// stdout and stderr to out as they come, until cmd ends or ctx does (which
// ends the stream, not necessarily cmd).
func ExecSession(ctx context.Context, cfg *rest.Config, kc kubernetes.Interface, ns, pod, container string, cmd []string, stdin io.Reader, out io.Writer) error {
	if err := execStream(ctx, cfg, kc, ns, pod, container, cmd, stdin, out); err != nil {
		return fmt.Errorf("exec in pod %s/%s container %s: %w", ns, pod, container, err)
	}
	return nil
}

func execStream(ctx context.Context, cfg *rest.Config, kc kubernetes.Interface, ns, pod, container string, cmd []string, stdin io.Reader, out io.Writer) error {
	req := kc.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{
			Container: container,
			Command:   cmd,
			Stdin:     stdin != nil,
			Stdout:    true,
			Stderr:    true,
		}, scheme.ParameterCodec)
	ws, err := remotecommand.NewWebSocketExecutor(cfg, "GET", req.URL().String())
	if err != nil {
		return err
	}
	spdy, err := remotecommand.NewSPDYExecutor(cfg, "POST", req.URL())
	if err != nil {
		return err
	}
	// Older API servers speak only SPDY; newer ones prefer WebSockets.
	exec, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	if err != nil {
		return err
	}
	var timedOut atomic.Pointer[APITimeoutError]
	err = exec.StreamWithContext(context.WithValue(ctx, timeoutsKey{}, &timedOut), remotecommand.StreamOptions{Stdin: stdin, Stdout: out, Stderr: out})
	if te := timedOut.Load(); te != nil && err != nil && !errors.Is(err, ErrAPITimeout) {
		err = te // the SPDY executor keeps only its text
	}
	return err
}

// tailBuffer keeps the last 4 KiB written, enough to explain a failed hook
// without holding a chatty command's whole output.
type tailBuffer struct{ b []byte }

const tailMax = 4096

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > tailMax {
		t.b = append(t.b[:0], t.b[len(t.b)-tailMax:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.b) }

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
