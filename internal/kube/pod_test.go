package kube

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func moverPod(phase corev1.PodPhase, waiting string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "m"},
		Status:     corev1.PodStatus{Phase: phase},
	}
	if waiting != "" {
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{
			Name: "mover", Image: "kbak.local/kbak:dev",
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: waiting, Message: "details"}},
		}}
	}
	return p
}

func TestWaitPod(t *testing.T) {
	tests := []struct {
		name    string
		pod     *corev1.Pod
		wantErr string // "" for success
	}{
		{"running", moverPod(corev1.PodRunning, ""), ""},
		{"already done", moverPod(corev1.PodSucceeded, ""), ""},
		{"image never pulled fails fast", moverPod(corev1.PodPending, "ErrImageNeverPull"), "cannot start container mover: ErrImageNeverPull: details (image kbak.local/kbak:dev"},
		{"pull backoff fails fast", moverPod(corev1.PodPending, "ImagePullBackOff"), "ImagePullBackOff"},
		{"config error fails fast", moverPod(corev1.PodPending, "CreateContainerConfigError"), "CreateContainerConfigError: details"},
		{"still creating times out", moverPod(corev1.PodPending, "ContainerCreating"), "still Pending after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			timeout := time.Hour
			if strings.Contains(tt.wantErr, "after") {
				timeout = 20 * time.Millisecond
			}
			_, err := WaitPod(context.Background(), fake.NewClientset(tt.pod), ns, "m", PodStarted, time.Millisecond, timeout)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestExitMessage(t *testing.T) {
	p := moverPod(corev1.PodFailed, "")
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "mover", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled"}}}}
	if got, want := ExitMessage(p), "container mover exited with code 137 (OOMKilled)"; got != want {
		t.Errorf("ExitMessage = %q, want %q", got, want)
	}
}

// A passing API outage is waited out; a missing pod is not.
func TestWaitPodAPIErrors(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		wantErr string
	}{
		{"transient", errors.New("connection refused"), ""},
		{"not found", apierrors.NewNotFound(corev1.Resource("pods"), "m"), "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kc := fake.NewClientset(moverPod(corev1.PodRunning, ""))
			calls := 0
			kc.PrependReactor("get", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
				calls++
				if calls <= 2 {
					return true, nil, tt.err
				}
				return false, nil, nil
			})
			_, err := WaitPod(context.Background(), kc, ns, "m", PodStarted, time.Millisecond, time.Hour)
			if tt.wantErr == "" {
				if err != nil || calls != 3 {
					t.Errorf("err = %v after %d calls, want success on the third", err, calls)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || calls != 1 {
				t.Errorf("err = %v after %d calls, want %q at once", err, calls, tt.wantErr)
			}
		})
	}
}
