package moverrun

import (
	"context"
	"log/slog"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kbak/kbak/deploy"
	"github.com/kbak/kbak/internal/kube"
)

// A run's Secrets are made marked alive, and KeepAlive marks them again
// every beat until it is stopped.
func TestKeepAlive(t *testing.T) {
	ctx := context.Background()
	kc := fake.NewClientset()
	labels := kube.Labels("db-1", "db", kube.RoleCredentials)
	before := time.Now().Add(-time.Second)
	if _, err := CreateSecret(ctx, kc, "shop", "kbak-db-1-creds", labels, deploy.Credentials{AccessKeyID: "a", SecretAccessKey: "b"}); err != nil {
		t.Fatal(err)
	}
	if _, err := CreateKeySecret(ctx, kc, "shop", "kbak-db-1-key", labels, []byte("key")); err != nil {
		t.Fatal(err)
	}
	alive := func(name string) time.Time {
		t.Helper()
		s, err := kc.CoreV1().Secrets("shop").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		at, err := time.Parse(time.RFC3339, s.Annotations[kube.AnnotationAlive])
		if err != nil {
			t.Fatalf("secret %s: %s: %v", name, kube.AnnotationAlive, err)
		}
		return at
	}
	for _, n := range []string{"kbak-db-1-creds", "kbak-db-1-key"} {
		if at := alive(n); at.Before(before.Truncate(time.Second)) {
			t.Errorf("secret %s made marked alive at %v, want now", n, at)
		}
	}
	// Mark them as if long ago, then let the heartbeat run.
	old := []byte(`{"metadata":{"annotations":{"` + kube.AnnotationAlive + `":"2020-01-01T00:00:00Z"}}}`)
	for _, n := range []string{"kbak-db-1-creds", "kbak-db-1-key"} {
		if _, err := kc.CoreV1().Secrets("shop").Patch(ctx, n, "application/merge-patch+json", old, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	stop := KeepAlive(ctx, kc, "shop", []string{"kbak-db-1-creds", "kbak-db-1-key"}, 10*time.Millisecond, slog.New(slog.DiscardHandler))
	deadline := time.Now().Add(5 * time.Second)
	for alive("kbak-db-1-creds").Year() == 2020 || alive("kbak-db-1-key").Year() == 2020 {
		if time.Now().After(deadline) {
			t.Fatal("KeepAlive did not mark the secrets alive")
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	stop() // twice is fine
	if _, err := kc.CoreV1().Secrets("shop").Patch(ctx, "kbak-db-1-creds", "application/merge-patch+json", old, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if alive("kbak-db-1-creds").Year() != 2020 {
		t.Error("KeepAlive marked a secret alive after it was stopped")
	}
}
