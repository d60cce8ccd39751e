package kube

import (
	"context"
	"log/slog"
	"slices"
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

// A run's last sign of life is its newest object or the last time it
// marked its Secrets alive. gc takes a run alive by either; the sweep at
// the next run in a namespace (SweepDeadRuns) deletes only the Secrets of
// runs silent for the age with no pod still going, in that namespace,
// whose Secrets say they would have been marked alive.
func TestSweepDeadRuns(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	meta := func(ns, name, run string, role string, created time.Duration, alive time.Duration) metav1.ObjectMeta {
		m := metav1.ObjectMeta{Namespace: ns, Name: name, Labels: Labels(run, "db", role), CreationTimestamp: metav1.NewTime(now.Add(-created))}
		if alive >= 0 {
			m.Annotations = map[string]string{AnnotationAlive: now.Add(-alive).Format(time.RFC3339)}
		}
		return m
	}
	restoreMeta := meta("shop", "kbak-restored-creds", "", RoleCredentials, time.Hour, 20*time.Minute)
	restoreMeta.Labels = RestoreLabels("db-restore-dead", "db", RoleCredentials)
	kc := fake.NewClientset(
		&corev1.Secret{ObjectMeta: meta("shop", "kbak-dead-creds", "dead", RoleCredentials, time.Hour, 20*time.Minute)},
		&corev1.Secret{ObjectMeta: meta("shop", "kbak-dead-key", "dead", RoleCredentials, time.Hour, -1)},
		&corev1.Pod{ObjectMeta: meta("shop", "kbak-dead-0-data", "dead", RoleMover, time.Hour, -1), Status: corev1.PodStatus{Phase: corev1.PodFailed}},
		&corev1.PersistentVolumeClaim{ObjectMeta: meta("shop", "kbak-dead-0-data", "dead", RoleTempClaim, time.Hour, -1)},
		&corev1.Secret{ObjectMeta: restoreMeta},
		&corev1.Secret{ObjectMeta: meta("shop", "kbak-beating-creds", "beating", RoleCredentials, 3*time.Hour, time.Minute)},
		&corev1.Secret{ObjectMeta: meta("shop", "kbak-pending-creds", "pending", RoleCredentials, time.Hour, time.Hour)},
		&corev1.Pod{ObjectMeta: meta("shop", "kbak-pending-0-data", "pending", RoleMover, time.Hour, -1), Status: corev1.PodStatus{Phase: corev1.PodPending}},
		&corev1.Secret{ObjectMeta: meta("shop", "kbak-young-creds", "young", RoleCredentials, 5*time.Minute, 5*time.Minute)},
		&corev1.Secret{ObjectMeta: meta("shop", "kbak-legacy-creds", "legacy", RoleCredentials, 3*time.Hour, -1)},
		&corev1.Secret{ObjectMeta: meta("dev", "kbak-other-creds", "other", RoleCredentials, time.Hour, time.Hour)},
	)
	// gc: the heartbeat counts as a sign of life.
	runs, err := StaleRuns(context.Background(), kc, nil, now.Add(-2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || runs[0].ID != "legacy" {
		t.Errorf("stale runs before 2h ago %+v, want only legacy (beating was created 3h ago, but marked alive a minute ago)", runs)
	}

	swept, err := SweepDeadRuns(context.Background(), kc, nil, slog.New(slog.DiscardHandler), "shop", now, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range swept {
		ids = append(ids, r.ID)
	}
	if want := []string{"db-restore-dead", "dead"}; !slices.Equal(ids, want) {
		t.Errorf("swept %v, want %v", ids, want)
	}
	var left []string
	secrets, _ := kc.CoreV1().Secrets("").List(context.Background(), metav1.ListOptions{})
	for _, s := range secrets.Items {
		left = append(left, s.Namespace+"/"+s.Name)
	}
	slices.Sort(left)
	want := []string{"dev/kbak-other-creds", "shop/kbak-beating-creds", "shop/kbak-legacy-creds", "shop/kbak-pending-creds", "shop/kbak-young-creds"}
	if !slices.Equal(left, want) {
		t.Errorf("secrets left %v, want %v", left, want)
	}
	if _, err := kc.CoreV1().PersistentVolumeClaims("shop").Get(context.Background(), "kbak-dead-0-data", metav1.GetOptions{}); err != nil {
		t.Errorf("the dead run's claim: %v; want it left to gc", err)
	}
	if _, err := kc.CoreV1().Pods("shop").Get(context.Background(), "kbak-dead-0-data", metav1.GetOptions{}); err != nil {
		t.Errorf("the dead run's pod: %v; want it left to gc", err)
	}
}
