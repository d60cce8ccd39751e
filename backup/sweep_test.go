package backup

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kbak/kbak/internal/kube"
)

// A backup that makes Secrets first removes the credential and key Secrets
// a killed run left in its namespace: no pod of that run is still going
// and it has not marked them alive for DeadRunAge. A run that is alive (it
// marked its Secret alive a moment ago, or its mover still works) keeps
// its Secrets, and so do a dead run in another namespace, a run of a kbak
// that marks nothing (kbak gc's), and the user's own Secrets.
func TestRunSweepsDeadRunsSecrets(t *testing.T) {
	f := newFixture(1, []int{0})
	now := f.deps().Now()
	secret := func(ns, name, run string, created, alive time.Duration) *corev1.Secret {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: kube.Labels(run, "db", kube.RoleCredentials),
			CreationTimestamp: metav1.NewTime(now.Add(-created))}}
		if alive >= 0 {
			s.Annotations = map[string]string{kube.AnnotationAlive: now.Add(-alive).Format(time.RFC3339)}
		}
		return s
	}
	pod := func(name, run string, phase corev1.PodPhase) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: kube.Labels(run, "db", kube.RoleMover),
			CreationTimestamp: metav1.NewTime(now.Add(-time.Hour))}, Status: corev1.PodStatus{Phase: phase}}
	}
	for _, o := range []runtime.Object{
		// Killed during its upload an hour ago; its mover finished since.
		secret(ns, "kbak-dead-creds", "dead", time.Hour, 50*time.Minute),
		secret(ns, "kbak-dead-key", "dead", time.Hour, 50*time.Minute),
		pod("kbak-dead-0-data", "dead", corev1.PodSucceeded),
		// Waiting an hour for its snapshot to become ready, alive.
		secret(ns, "kbak-waiting-creds", "waiting", time.Hour, 30*time.Second),
		// Silent, but its mover still uploads.
		secret(ns, "kbak-moving-creds", "moving", time.Hour, 50*time.Minute),
		pod("kbak-moving-0-data", "moving", corev1.PodRunning),
		// A run of a kbak that marks nothing alive: gc's, after its grace.
		secret(ns, "kbak-legacy-creds", "legacy", 3*time.Hour, -1),
		// Dead too, in another namespace: that namespace's next run sweeps it.
		secret("other", "kbak-elsewhere-creds", "elsewhere", time.Hour, 50*time.Minute),
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "users-own", CreationTimestamp: metav1.NewTime(now.Add(-time.Hour))}},
	} {
		if err := f.kc.Tracker().Add(o); err != nil {
			t.Fatal(err)
		}
	}
	var order []string
	f.kc.PrependReactor("*", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		switch a := a.(type) {
		case k8stesting.CreateAction:
			order = append(order, "create "+a.GetObject().(*corev1.Secret).Name)
		case k8stesting.DeleteAction:
			order = append(order, "delete "+a.GetName())
		}
		return false, nil, nil
	})
	// The run's own mover cannot start: the run ends fast.
	f.kc.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.CreateAction).GetObject().(*corev1.Pod)
		p.Status.Phase = corev1.PodPending
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "mover",
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImageNeverPull"}}}}
		return false, nil, nil
	})
	o := opts()
	o.Method = MethodFiles
	if _, err := Run(context.Background(), f.deps(), o); !errors.Is(err, ErrFailed) {
		t.Fatalf("Run: %v, want ErrFailed (the mover cannot start)", err)
	}

	var left []string
	for _, n := range []string{ns, "other"} {
		list, err := f.kc.CoreV1().Secrets(n).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range list.Items {
			left = append(left, s.Namespace+"/"+s.Name)
		}
	}
	slices.Sort(left)
	want := []string{"other/kbak-elsewhere-creds", "shop/kbak-legacy-creds", "shop/kbak-moving-creds", "shop/kbak-waiting-creds", "shop/users-own"}
	if !slices.Equal(left, want) {
		t.Errorf("secrets left %v, want %v: the dead run's gone, the rest kept", left, want)
	}
	own := "create " + kube.Name("kbak", id, "creds")
	if i := slices.Index(order, own); i < 0 || !slices.Contains(order[:i], "delete kbak-dead-creds") || !slices.Contains(order[:i], "delete kbak-dead-key") {
		t.Errorf("secret calls %v: want the dead run's deleted before the run makes its own", order)
	}
	if _, err := f.kc.CoreV1().Pods(ns).Get(context.Background(), "kbak-dead-0-data", metav1.GetOptions{}); err != nil {
		t.Errorf("the dead run's finished pod: %v; want it left to kbak gc", err)
	}
}

// A run that makes no Secret (a schedule's, with its own Secret and no key
// to hand over) does not sweep: its ServiceAccount may not list Secrets.
func TestRunWithoutOwnSecretsDoesNotSweep(t *testing.T) {
	f := newFixture(1, []int{0})
	store := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "s3"},
		Data: map[string][]byte{"AWS_ACCESS_KEY_ID": []byte("a"), "AWS_SECRET_ACCESS_KEY": []byte("b")}}
	if err := f.kc.Tracker().Add(store); err != nil {
		t.Fatal(err)
	}
	f.kc.PrependReactor("list", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		t.Error("a run that makes no Secret listed Secrets")
		return false, nil, nil
	})
	f.kc.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.CreateAction).GetObject().(*corev1.Pod)
		p.Status.Phase = corev1.PodPending
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "mover",
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImageNeverPull"}}}}
		return false, nil, nil
	})
	o := opts()
	o.Method, o.Credentials, o.SecretName = MethodFiles, nil, "s3"
	if _, err := Run(context.Background(), f.deps(), o); !errors.Is(err, ErrFailed) {
		t.Fatalf("Run: %v, want ErrFailed (the mover cannot start)", err)
	}
}
