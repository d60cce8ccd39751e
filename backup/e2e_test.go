//go:build e2e

package backup

// End-to-end tests of a backup run against the local test bed
// (e2e/testbed): a real API server, real CSI drivers with and without
// snapshot support, and a real S3 server. Source the bed's env.sh first;
// without it these tests fail rather than skip.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kbak/kbak/deploy"
	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/kube"
	"github.com/kbak/kbak/internal/mover"
	"github.com/kbak/kbak/internal/seal"
	"github.com/kbak/kbak/uploader"
)

type bed struct {
	deps  Deps
	kc    kubernetes.Interface
	store uploader.Store
	repo  string
	creds *deploy.Credentials
	ns    string
}

func mustEnv(t *testing.T, k string) string {
	t.Helper()
	v := os.Getenv(k)
	if v == "" {
		t.Fatalf("%s is not set: source the test bed's env.sh (e2e/testbed/up.sh)", k)
	}
	return v
}

func newBed(t *testing.T) *bed {
	t.Helper()
	ctx := context.Background()
	cfg, err := clientcmd.BuildConfigFromFlags("", mustEnv(t, "KUBECONFIG"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	kc := kubernetes.NewForConfigOrDie(cfg)
	sc := snapclient.NewForConfigOrDie(cfg)
	repo := mustEnv(t, "KBAK_REPO")
	store, err := uploader.Open(ctx, repo, uploader.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	ns := "kbak-backup-e2e-" + hex.EncodeToString(b)
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if os.Getenv("KBAK_E2E_KEEP") == "" {
			_ = kc.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
		}
	})
	return &bed{
		deps: Deps{Kube: kc, Snap: sc, RestConfig: cfg, Catalog: catalog.New(store, seal.Key{}),
			Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))},
		kc: kc, store: store, repo: repo, ns: ns,
		creds: &deploy.Credentials{
			AccessKeyID:     uploader.Secret(mustEnv(t, "AWS_ACCESS_KEY_ID")),
			SecretAccessKey: uploader.Secret(mustEnv(t, "AWS_SECRET_ACCESS_KEY")),
		},
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// statefulSet starts StatefulSet name with replicas pods that each write a
// file naming their pod and 1 MiB of random data into claim "data" of class
// and waits until every pod is ready (its data written).
func (b *bed) statefulSet(t *testing.T, name, class string, replicas int32) {
	t.Helper()
	ctx := context.Background()
	labels := map[string]string{"app": name}
	image := mustEnv(t, "KBAK_E2E_UTIL_IMAGE")
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: b.ns},
		Spec: appsv1.StatefulSetSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: image, ImagePullPolicy: corev1.PullIfNotPresent,
					Command:      []string{"sh", "-c", "echo $HOSTNAME > /data/hello && mkdir -p /data/sub && dd if=/dev/urandom of=/data/sub/blob bs=64k count=16 2>/dev/null && touch /data/done && sleep 36000"},
					VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
					ReadinessProbe: &corev1.Probe{
						ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-f", "/data/done"}}},
						PeriodSeconds: 1,
					},
				}}},
			},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{
				ObjectMeta: metav1.ObjectMeta{Name: "data"},
				Spec: corev1.PersistentVolumeClaimSpec{
					AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					StorageClassName: &class,
					Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("64Mi")}},
				},
			}},
		},
	}
	if _, err := b.kc.AppsV1().StatefulSets(b.ns).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		got, err := b.kc.AppsV1().StatefulSets(b.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return got.Status.ReadyReplicas == replicas, nil
	})
	if err != nil {
		t.Fatalf("statefulset %s/%s not ready: %v", b.ns, name, err)
	}
}

func (b *bed) options(sts string) Options {
	return Options{
		Namespace: b.ns, StatefulSet: sts, Repo: b.repo, Credentials: b.creds,
		Image:           os.Getenv("KBAK_E2E_KBAK_IMAGE"),
		PreHook:         []string{"sh", "-c", "sync && touch /tmp/frozen"},
		PostHook:        []string{"rm", "-f", "/tmp/frozen"},
		PodStartTimeout: 2 * time.Minute, SnapshotTimeout: 2 * time.Minute,
		PollInterval: 500 * time.Millisecond,
	}
}

// leftovers lists what kbak made in the namespace and did not remove,
// giving deleted objects 30 seconds to pass their finalizers (a snapshot
// goes only once the snapshot controller has let it go).
func (b *bed) leftovers(t *testing.T) []string {
	t.Helper()
	var left []string
	_ = wait.PollUntilContextTimeout(context.Background(), time.Second, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		left = b.listKbakObjects(ctx)
		return len(left) == 0, nil
	})
	return left
}

func (b *bed) listKbakObjects(ctx context.Context) []string {
	sel := metav1.ListOptions{LabelSelector: kube.RunSelector("")}
	var out []string
	pods, _ := b.kc.CoreV1().Pods(b.ns).List(ctx, sel)
	for _, p := range pods.Items {
		out = append(out, "pod/"+p.Name)
	}
	pvcs, _ := b.kc.CoreV1().PersistentVolumeClaims(b.ns).List(ctx, sel)
	for _, p := range pvcs.Items {
		out = append(out, "pvc/"+p.Name)
	}
	secrets, _ := b.kc.CoreV1().Secrets(b.ns).List(ctx, sel)
	for _, s := range secrets.Items {
		out = append(out, "secret/"+s.Name)
	}
	snaps, _ := b.deps.Snap.SnapshotV1().VolumeSnapshots(b.ns).List(ctx, sel)
	for _, s := range snaps.Items {
		if s.Labels[kube.LabelRetained] == "" {
			out = append(out, "volumesnapshot/"+s.Name)
		}
	}
	return out
}

func TestE2EBackup(t *testing.T) {
	b := newBed(t)
	tests := []struct {
		name        string
		class       string
		keep        bool
		method      catalog.Method
		consistency catalog.Consistency
	}{
		{"snapshot", mustEnv(t, "KBAK_E2E_SNAP_CLASS"), true, catalog.MethodSnapshot, catalog.ConsistencyQuiesced},
		{"files", mustEnv(t, "KBAK_E2E_NOSNAP_CLASS"), false, catalog.MethodFiles, catalog.ConsistencyQuiesced},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sts := "db-" + tt.name
			b.statefulSet(t, sts, tt.class, 2)
			o := b.options(sts)
			o.KeepSnapshots = tt.keep
			var events int
			o.Progress = func(pvc string, ev mover.Event) { events++ }
			start := time.Now()
			m, err := Run(context.Background(), b.deps, o)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			t.Logf("backup %s in %s, spread %s, %d events", m.ID, time.Since(start), m.SnapshotSpread.Duration, events)
			if m.Status != catalog.StatusCompleted || len(m.Volumes) != 2 {
				t.Fatalf("status %s with %d volumes", m.Status, len(m.Volumes))
			}
			for _, v := range m.Volumes {
				if v.Status != catalog.VolumeCompleted || v.Method != tt.method || v.Consistency != tt.consistency || v.Files < 3 || v.RawBytes < 1<<20 {
					t.Errorf("%s: %+v", v.PVC, v)
				}
				if info, err := b.store.Stat(context.Background(), v.Key); err != nil || !strings.HasSuffix(v.Key, ".tree") || v.Chunks == 0 {
					t.Errorf("%s: tree %+v, %v, %d chunks; want the volume's tree in the deduplicating repository", v.PVC, info, err, v.Chunks)
				}
				if tt.keep && (v.Snapshot == nil || !v.Snapshot.Retained || v.Snapshot.Handle == "") {
					t.Errorf("%s: snapshot %+v, want retained with a handle", v.PVC, v.Snapshot)
				}
			}
			if _, err := b.store.Stat(context.Background(), m.Layout().ManifestKey()); err != nil {
				t.Errorf("manifest: %v", err)
			}
			if left := b.leftovers(t); len(left) != 0 {
				t.Errorf("left in the cluster: %v", left)
			}
			if len(m.Hooks) != 4 {
				t.Errorf("%d hook runs recorded, want 4", len(m.Hooks))
			}
			if events == 0 {
				t.Errorf("no mover events passed on")
			}
			evs, err := b.deps.Kube.CoreV1().Events(o.Namespace).List(context.Background(),
				metav1.ListOptions{FieldSelector: "involvedObject.kind=StatefulSet,involvedObject.name=" + sts + ",reason=" + ReasonCompleted})
			if err != nil || len(evs.Items) != 1 || !strings.Contains(evs.Items[0].Message, m.ID) {
				t.Errorf("events on the StatefulSet %+v, %v; want one %s naming %s", evs, err, ReasonCompleted, m.ID)
			}
		})
	}
}

// A mover image that is not on the node fails the run within seconds, with
// the reason, and leaves nothing behind.
func TestE2EBadImage(t *testing.T) {
	b := newBed(t)
	b.statefulSet(t, "db", mustEnv(t, "KBAK_E2E_NOSNAP_CLASS"), 1)
	o := b.options("db")
	o.Image, o.PullPolicy = "kbak.local/does-not-exist:dev", corev1.PullNever
	start := time.Now()
	_, err := Run(context.Background(), b.deps, o)
	if !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "ErrImageNeverPull") {
		t.Fatalf("err = %v, want ErrFailed naming ErrImageNeverPull", err)
	}
	if d := time.Since(start); d > time.Minute {
		t.Errorf("took %s to fail", d)
	}
	if left := b.leftovers(t); len(left) != 0 {
		t.Errorf("left in the cluster: %v", left)
	}
	fmt.Fprintln(os.Stderr, err)
}

// fault switches a CSI driver fault on for the bed's namespace (see
// e2e/csidriver/faults.go) until the test ends.
func (b *bed) fault(t *testing.T, kind, content string) {
	t.Helper()
	dir := mustEnv(t, "KBAK_E2E_CSI_FAULTS") + "/" + kind
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := dir + "/" + b.ns
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(path) })
}

// A snapshot the driver refuses fails its volume with the driver's message
// long before the snapshot timeout, thaws the application and leaves
// nothing behind.
func TestE2ESnapshotError(t *testing.T) {
	b := newBed(t)
	b.statefulSet(t, "db", mustEnv(t, "KBAK_E2E_SNAP_CLASS"), 1)
	b.fault(t, "snapshot-error", "disk on fire")
	o := b.options("db")
	o.SnapshotTimeout = 5 * time.Minute
	start := time.Now()
	m, err := Run(context.Background(), b.deps, o)
	if !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("err = %v, want ErrFailed with the driver's message", err)
	}
	if d := time.Since(start); d > time.Minute {
		t.Errorf("took %s to fail", d)
	}
	var post int
	for _, h := range m.Hooks {
		if h.Phase == "post" && h.Error == "" {
			post++
		}
	}
	if post != 1 {
		t.Errorf("hooks %+v, want the post hook run once", m.Hooks)
	}
	if left := b.leftovers(t); len(left) != 0 {
		t.Errorf("left in the cluster: %v", left)
	}
}

// The post hook runs once the snapshot is cut, not once it is ready: a
// snapshot that takes its time to become ready must not keep the
// application frozen.
func TestE2EThawAtCut(t *testing.T) {
	b := newBed(t)
	b.statefulSet(t, "db", mustEnv(t, "KBAK_E2E_SNAP_CLASS"), 1)
	const slow = 8 * time.Second
	b.fault(t, "snapshot-slow", fmt.Sprint(slow.Seconds()))
	m, err := Run(context.Background(), b.deps, b.options("db"))
	if err != nil {
		t.Fatal(err)
	}
	var pre, post time.Time
	for _, h := range m.Hooks {
		if h.Phase == "pre" {
			pre = h.Finished
		} else {
			post = h.Started
		}
	}
	if frozen := post.Sub(pre); frozen <= 0 || frozen >= slow {
		t.Errorf("application frozen for %s; want less than the %s the snapshot needs to be ready", frozen, slow)
	}
	if d := m.Finished.Sub(m.Started); d < slow {
		t.Errorf("backup took %s, less than the snapshot's readiness delay %s: did it wait for readyToUse?", d, slow)
	}
}

// Ctrl-C while a snapshot becomes ready: Run returns the cancellation,
// writes no manifest and deletes everything it made.
func TestE2EInterrupted(t *testing.T) {
	b := newBed(t)
	b.statefulSet(t, "db", mustEnv(t, "KBAK_E2E_SNAP_CLASS"), 1)
	b.fault(t, "snapshot-slow", "30")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o := b.options("db")
	o.Progress = nil
	time.AfterFunc(4*time.Second, cancel)
	m, err := Run(ctx, b.deps, o)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if _, err := b.store.Stat(context.Background(), m.Layout().ManifestKey()); !errors.Is(err, uploader.ErrNotFound) {
		t.Errorf("manifest of an interrupted run: %v", err)
	}
	var post int
	for _, h := range m.Hooks {
		if h.Phase == "post" {
			post++
		}
	}
	if post != 1 {
		t.Errorf("hooks %+v, want the post hook run once", m.Hooks)
	}
	if left := b.leftovers(t); len(left) != 0 {
		t.Errorf("left in the cluster: %v", left)
	}
}
