package kube

import (
	"context"
	"log/slog"
	"slices"
	"testing"

	snapfake "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestDeleteRun(t *testing.T) {
	run := Labels("db-1", "db", "")
	other := Labels("db-2", "db", "")
	meta := func(name string, l map[string]string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Namespace: ns, Name: name, Labels: l}
	}
	kc := fake.NewClientset(
		&corev1.Pod{ObjectMeta: meta("mover", run)},
		&corev1.Pod{ObjectMeta: meta("db-0", nil)},
		&corev1.Pod{ObjectMeta: meta("mover-other", other)},
		&corev1.PersistentVolumeClaim{ObjectMeta: meta("tmp", run)},
		&corev1.PersistentVolumeClaim{ObjectMeta: meta("data-db-0", nil)},
		&corev1.Secret{ObjectMeta: meta("creds", run)},
		&corev1.Secret{ObjectMeta: meta("user-creds", nil)},
	)
	kept := snapshot("kept", nil)
	kept.Labels[LabelRetained] = "true"
	kept.Labels[LabelBackupID] = "db-1"
	gone := snapshot("gone", nil)
	gone.Labels[LabelBackupID] = "db-1"
	foreign := snapshot("foreign", nil)
	foreign.Labels = nil
	sc := snapfake.NewSimpleClientset(kept, gone, foreign)

	var order []string
	record := func(a k8stesting.Action) (bool, runtime.Object, error) {
		order = append(order, a.GetResource().Resource+"/"+a.(k8stesting.DeleteAction).GetName())
		return false, nil, nil
	}
	kc.PrependReactor("delete", "*", record)
	sc.PrependReactor("delete", "*", record)

	err := DeleteRun(context.Background(), kc, sc, slog.New(slog.DiscardHandler), CleanupOptions{Namespace: ns, BackupID: "db-1", Interval: 1})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"pods/mover", "persistentvolumeclaims/tmp", "volumesnapshots/gone", "secrets/creds"}
	if !slices.Equal(order, want) {
		t.Errorf("deleted %v, want %v in that order", order, want)
	}
	for _, name := range []string{"db-0", "mover-other"} {
		if _, err := kc.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{}); err != nil {
			t.Errorf("pod %s: %v", name, err)
		}
	}
}
