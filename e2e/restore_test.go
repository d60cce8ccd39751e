//go:build e2e

package e2e

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kbak/kbak/backup"
	"github.com/kbak/kbak/deploy"
	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/seal"
	"github.com/kbak/kbak/restore"
	"github.com/kbak/kbak/uploader"
)

// TestRestoreRoundTrip backs up a two-ordinal StatefulSet with its
// snapshots kept, then restores it under new names from the store and from
// the kept snapshots, re-creating the StatefulSet each time, and compares
// every file, owner, mode and link with what was written. A test restore
// of the same backup must match too, and a restore onto the running
// original must be refused.
func TestRestoreRoundTrip(t *testing.T) {
	t.Parallel() // its own namespace and backups: runs beside the others
	e := newEnv(t)
	if e.Repo == "" {
		t.Fatal("KBAK_REPO must be set by the test bed's env.sh")
	}
	c := ctx(t)
	ns := createNamespace(t, e, "restore")
	src := applyStatefulSet(t, e, ns, "db", 2, e.SnapClass)
	want := writeOrdinalData(t, e, ns, src)

	cat := catalog.New(store(t, e), seal.Key{})
	creds := &deploy.Credentials{
		AccessKeyID:     uploader.Secret(os.Getenv("AWS_ACCESS_KEY_ID")),
		SecretAccessKey: uploader.Secret(os.Getenv("AWS_SECRET_ACCESS_KEY")),
	}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	m, err := backup.Run(c, backup.Deps{Kube: e.Kube, Snap: e.Snap, RestConfig: e.Config, Catalog: cat, Log: log}, backup.Options{
		Namespace: ns, StatefulSet: "db", Repo: e.Repo, Method: backup.MethodSnapshot, KeepSnapshots: true,
		Image: e.KbakImage, PullPolicy: corev1.PullNever, Credentials: creds,
	})
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	t.Cleanup(func() {
		if _, err := cat.Delete(context.Background(), m.ID); err != nil {
			t.Logf("delete backup %s: %v", m.ID, err)
		}
	})

	deps := restore.Deps{Kube: e.Kube, Snap: e.Snap, Log: log}
	opts := func(o restore.Options) restore.Options {
		o.Repo, o.Image, o.PullPolicy, o.Credentials = e.Repo, e.KbakImage, corev1.PullNever, creds
		o.PodStartTimeout, o.ReadyTimeout = 3*time.Minute, 3*time.Minute
		return o
	}

	t.Run("refused onto the running original", func(t *testing.T) {
		_, err := restore.NewPlan(c, deps, m, opts(restore.Options{}))
		if !errors.Is(err, restore.ErrConflict) {
			t.Fatalf("err = %v, want a conflict", err)
		}
	})

	for _, tc := range []struct {
		name, to  string
		fromStore bool
		source    restore.Source
	}{
		{"from the store", "db-store", true, restore.SourceStore},
		{"from the kept snapshots", "db-snap", false, restore.SourceSnapshot},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := restore.NewPlan(c, deps, m, opts(restore.Options{ToName: tc.to, FromStore: tc.fromStore, CreateStatefulSet: true}))
			if err != nil {
				t.Fatalf("plan: %v", err)
			}
			for _, cl := range p.Claims {
				if cl.Source != tc.source {
					t.Fatalf("claim %s from %s (%s), want %s", cl.Name, cl.Source, cl.Reason, tc.source)
				}
			}
			res, err := restore.Run(c, deps, p)
			if err != nil {
				t.Fatalf("restore: %v (result %+v)", err, res)
			}
			got, err := e.Kube.AppsV1().StatefulSets(ns).Get(c, tc.to, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			compareRecords(t, want, readStatefulSetData(t, e, ns, got))
		})
	}

	t.Run("test restore", func(t *testing.T) {
		res, err := restore.VerifyRestore(c, deps, m, opts(restore.Options{}))
		if err != nil {
			t.Fatalf("verify: %v (result %+v)", err, res)
		}
		if _, err := e.Kube.CoreV1().Namespaces().Get(c, res.Namespace, metav1.GetOptions{}); err == nil {
			t.Errorf("scratch namespace %s left behind", res.Namespace)
		}
	})

	// Restored claims no longer carry kbak's run labels: `kbak gc` must
	// not take them for leftovers.
	noLeftovers(t, e, ns, true)
}
