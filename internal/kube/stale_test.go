package kube

import (
	"context"
	"log/slog"
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

// A restore run's objects carry its id in LabelRestoreID; a crashed one is
// stale like a crashed backup, and cleaned by its own selector.
func TestStaleRestoreRuns(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	meta := func(name string, l map[string]string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Namespace: "dr", Name: name, Labels: l, CreationTimestamp: metav1.NewTime(now.Add(-3 * time.Hour))}
	}
	released := RestoreLabels("db-restore-old", "db", RoleRestoreClaim)
	for _, k := range TemporaryLabels {
		delete(released, k)
	}
	kc := fake.NewClientset(
		&corev1.Pod{ObjectMeta: meta("kbak-db-restore-old-0-data", RestoreLabels("db-restore-old", "db", RoleMover))},
		&corev1.Secret{ObjectMeta: meta("kbak-db-restore-old-creds", RestoreLabels("db-restore-old", "db", RoleCredentials))},
		// A restored claim, handed over to its StatefulSet.
		&corev1.PersistentVolumeClaim{ObjectMeta: meta("data-db-0", released)},
	)
	runs, err := StaleRuns(context.Background(), kc, nil, now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || runs[0] != (Run{Namespace: "dr", ID: "db-restore-old", Restore: true, Newest: now.Add(-3 * time.Hour)}) {
		t.Fatalf("stale runs %+v, want only the restore run dr/db-restore-old", runs)
	}
	if err := DeleteRun(context.Background(), kc, nil, slog.New(slog.DiscardHandler), runs[0].CleanupOptions()); err != nil {
		t.Fatal(err)
	}
	pods, _ := kc.CoreV1().Pods("dr").List(context.Background(), metav1.ListOptions{})
	secrets, _ := kc.CoreV1().Secrets("dr").List(context.Background(), metav1.ListOptions{})
	pvcs, _ := kc.CoreV1().PersistentVolumeClaims("dr").List(context.Background(), metav1.ListOptions{})
	if len(pods.Items)+len(secrets.Items) != 0 || len(pvcs.Items) != 1 {
		t.Errorf("after cleanup: %d pods, %d secrets, %d claims; want only the restored claim", len(pods.Items), len(secrets.Items), len(pvcs.Items))
	}
}
