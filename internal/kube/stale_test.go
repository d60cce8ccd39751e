package kube

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestStaleRuns(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	meta := func(ns, name, id string, age time.Duration, extra map[string]string) metav1.ObjectMeta {
		l := map[string]string{LabelManagedBy: ManagedByValue}
		if id != "" {
			l[LabelBackupID] = id
		}
		for k, v := range extra {
			l[k] = v
		}
		return metav1.ObjectMeta{Namespace: ns, Name: name, Labels: l, CreationTimestamp: metav1.NewTime(now.Add(-age))}
	}
	kc := fake.NewClientset(
		// A crashed run: every object is old.
		&corev1.Pod{ObjectMeta: meta("shop", "kbak-old-0", "old", 3*time.Hour, nil)},
		&corev1.PersistentVolumeClaim{ObjectMeta: meta("shop", "kbak-old-0", "old", 3*time.Hour, nil)},
		// A running run: its newest object is young, so it is left alone.
		&corev1.Pod{ObjectMeta: meta("shop", "kbak-live-0", "live", 3*time.Hour, nil)},
		&corev1.Secret{ObjectMeta: meta("shop", "kbak-live", "live", time.Minute, nil)},
		// The agent's pod carries kbak's label but no run id.
		&corev1.Pod{ObjectMeta: meta("kbak", "agent", "", 3*time.Hour, nil)},
		// A kept claim of another run is never a leftover.
		&corev1.PersistentVolumeClaim{ObjectMeta: meta("db", "kept", "kept", 3*time.Hour, map[string]string{LabelRetained: "true"})},
	)
	runs, err := StaleRuns(context.Background(), kc, nil, now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || runs[0].Namespace != "shop" || runs[0].ID != "old" {
		t.Fatalf("stale runs %+v, want only shop/old", runs)
	}
}
