package kube

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
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
