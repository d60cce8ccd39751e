package restore

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	snapfake "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kbak/kbak/deploy"
	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/kube"
	"github.com/kbak/kbak/internal/kube/kubetest"
	"github.com/kbak/kbak/internal/moverrun"
)

// The fake clientset runs no pods: binder pods are created Succeeded by a
// reactor, movers stay Pending and time out. That is enough to drive the
// decisions about what a run keeps and what it deletes; that the data
// arrives is shown end to end.

func fastOptions(o Options) Options {
	o.ID = "db-restore-1"
	if o.Repo == "" {
		o.Repo = "s3://bucket/prefix"
	}
	o.PodStartTimeout = 20 * time.Millisecond
	o.PollInterval = time.Millisecond
	o.CleanupTimeout = time.Second
	o.ReadyTimeout = 50 * time.Millisecond
	return o
}

// bindersSucceed makes every binder pod finish at once.
func bindersSucceed(kc *fake.Clientset) {
	kc.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		pod := a.(k8stesting.CreateAction).GetObject().(*corev1.Pod)
		if pod.Labels[kube.LabelRole] == kube.RoleBinder {
			pod.Status.Phase = corev1.PodSucceeded
		}
		return false, nil, nil
	})
}

func claimNames(t *testing.T, kc *fake.Clientset, ns string) []string {
	t.Helper()
	list, err := kc.CoreV1().PersistentVolumeClaims(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range list.Items {
		names = append(names, c.Name)
	}
	sort.Strings(names)
	return names
}

// leftovers lists the pods and secrets left in ns.
func leftovers(t *testing.T, kc *fake.Clientset, ns string) []string {
	t.Helper()
	var out []string
	pods, _ := kc.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	for _, p := range pods.Items {
		out = append(out, "pod/"+p.Name)
	}
	secrets, _ := kc.CoreV1().Secrets(ns).List(context.Background(), metav1.ListOptions{})
	for _, s := range secrets.Items {
		out = append(out, "secret/"+s.Name)
	}
	return out
}

func TestRun(t *testing.T) {
	creds := &deploy.Credentials{AccessKeyID: "id", SecretAccessKey: "secret"}
	foreign := kubetest.Claim("shop", "data-db-1", "fast").Result()
	tests := []struct {
		name string
		m    *catalog.Manifest
		opts Options
		// lateObjects appear after planning, before the run.
		lateObjects []runtime.Object
		cancelAt    int // cancel the run when this many pods were created; 0 never

		wantErr      error
		wantRestored []int
		wantClaims   []string // in the target namespace afterwards
		wantNS       bool     // target namespace exists afterwards
	}{
		{
			name: "every ordinal from its snapshot", m: manifest(vol("data", 0).kept("shop"), vol("data", 1).kept("shop")),
			wantRestored: []int{0, 1}, wantClaims: []string{"data-db-0", "data-db-1"}, wantNS: true,
		},
		{
			name: "partial keeps the restored ordinal only", m: manifest(vol("data", 0).kept("shop"), vol("data", 1)),
			opts:    Options{Credentials: creds},
			wantErr: ErrPartiallyFailed, wantRestored: []int{0}, wantClaims: []string{"data-db-0"}, wantNS: true,
		},
		{
			name: "an ordinal is restored whole or not at all", m: manifest(vol("data", 0).kept("shop"), vol("log", 0), vol("data", 1).kept("shop")),
			wantErr: ErrPartiallyFailed, wantRestored: []int{1}, wantClaims: []string{"data-db-1"}, wantNS: true,
		},
		{
			name: "nothing restored deletes every claim and the new namespace", m: manifest(vol("data", 0), vol("data", 1)),
			opts:    Options{ToNamespace: "dr", Credentials: creds},
			wantErr: ErrFailed, wantClaims: nil, wantNS: false,
		},
		{
			name: "a claim made by someone else since the plan is left alone", m: manifest(vol("data", 0).kept("shop"), vol("data", 1).kept("shop")),
			lateObjects: []runtime.Object{foreign},
			wantErr:     ErrPartiallyFailed, wantRestored: []int{0}, wantClaims: []string{"data-db-0", "data-db-1"}, wantNS: true,
		},
		{
			name: "interrupted deletes every claim it made", m: manifest(vol("data", 0).kept("shop"), vol("data", 1).kept("shop")),
			opts: Options{Parallel: 1}, cancelAt: 2,
			wantErr: context.Canceled, wantClaims: nil, wantNS: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kc := fake.NewClientset(namespace("shop"), storageClass("fast", driver, false))
			sc := snapfake.NewSimpleClientset(keptSnapshot("shop", 0, true), keptSnapshot("shop", 1, true))
			deps := Deps{Kube: kc, Snap: sc}
			queued := map[string]int64{}
			tt.opts.Queued = func(pvc string, bytes int64) { queued[pvc] = bytes }
			p, err := NewPlan(context.Background(), deps, tt.m, fastOptions(tt.opts))
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range tt.lateObjects {
				if err := kc.Tracker().Add(o); err != nil {
					t.Fatal(err)
				}
			}
			bindersSucceed(kc)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var pods atomic.Int32
			var deadlines sync.Map // pod name → activeDeadlineSeconds
			kc.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
				pod := a.(k8stesting.CreateAction).GetObject().(*corev1.Pod)
				deadlines.Store(pod.Name, pod.Spec.ActiveDeadlineSeconds)
				if n := pods.Add(1); tt.cancelAt > 0 && int(n) >= tt.cancelAt {
					cancel()
				}
				return false, nil, nil
			})

			res, err := Run(ctx, deps, p)
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if res == nil {
				t.Fatal("no result")
			}
			// The default transfer deadline of a volume of about 100 bytes and
			// the start timeout, rounded up to seconds.
			want := int64((moverrun.TransferDeadline(101) + p.opts.PodStartTimeout + time.Second - 1) / time.Second)
			deadlines.Range(func(pod, d any) bool {
				if d := d.(*int64); d == nil || *d != want {
					t.Errorf("pod %s activeDeadlineSeconds %v, want %d", pod, d, want)
				}
				return true
			})
			// Every claim a mover fills is announced, with the manifest's
			// bytes; one provisioned from its snapshot is not.
			wantQueued := map[string]int64{}
			for _, c := range p.Claims {
				if c.Source == SourceStore {
					wantQueued[c.Name] = c.RawBytes
				}
			}
			if !maps.Equal(queued, wantQueued) {
				t.Errorf("queued %v, want %v", queued, wantQueued)
			}
			if got := res.Restored(); !slices.Equal(got, tt.wantRestored) {
				t.Errorf("restored ordinals %v, want %v (%+v)", got, tt.wantRestored, res.Ordinals)
			}
			if got := claimNames(t, kc, p.Namespace); !slices.Equal(got, tt.wantClaims) {
				t.Errorf("claims left %v, want %v", got, tt.wantClaims)
			}
			if left := leftovers(t, kc, p.Namespace); len(left) > 0 {
				t.Errorf("temporary objects left: %v", left)
			}
			_, err = kc.CoreV1().Namespaces().Get(context.Background(), p.Namespace, metav1.GetOptions{})
			if (err == nil) != tt.wantNS {
				t.Errorf("namespace %s exists: %v, want %v", p.Namespace, err == nil, tt.wantNS)
			}
			for _, o := range res.Ordinals {
				if o.Status != StatusRestored {
					continue
				}
				for _, c := range o.Claims {
					pvc, err := kc.CoreV1().PersistentVolumeClaims(p.Namespace).Get(context.Background(), c.PVC, metav1.GetOptions{})
					if err != nil {
						t.Fatal(err)
					}
					if pvc.Labels[kube.LabelManagedBy] != "" || pvc.Labels[kube.LabelRestoreID] != p.RunID {
						t.Errorf("restored claim %s labels %v: want the run's labels gone (gc must not take it) and the restore id kept", c.PVC, pvc.Labels)
					}
				}
			}
		})
	}
}

func TestRunRefusesConflicts(t *testing.T) {
	kc := fake.NewClientset(namespace("shop"), storageClass("fast", driver, false), kubetest.Claim("shop", "data-db-0", "fast").Result())
	deps := Deps{Kube: kc}
	p, err := NewPlan(context.Background(), deps, manifest(vol("data", 0)), fastOptions(Options{}))
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("plan err = %v, want a conflict", err)
	}
	var writes []string
	kc.PrependReactor("*", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetVerb() != "get" && a.GetVerb() != "list" {
			writes = append(writes, a.GetVerb()+" "+a.GetResource().Resource)
		}
		return false, nil, nil
	})
	if _, err := Run(context.Background(), deps, p); !errors.Is(err, ErrConflict) {
		t.Errorf("run err = %v, want a conflict", err)
	}
	if len(writes) > 0 {
		t.Errorf("a refused plan wrote %v", writes)
	}
}

func TestRunCreatesStatefulSet(t *testing.T) {
	kc := fake.NewClientset(namespace("shop"), storageClass("fast", driver, false))
	sc := snapfake.NewSimpleClientset(keptSnapshot("shop", 0, true), keptSnapshot("shop", 1, true))
	deps := Deps{Kube: kc, Snap: sc}
	p, err := NewPlan(context.Background(), deps, manifest(vol("data", 0).kept("shop"), vol("data", 1).kept("shop")), fastOptions(Options{CreateStatefulSet: true}))
	if err != nil {
		t.Fatal(err)
	}
	bindersSucceed(kc)
	res, err := Run(context.Background(), deps, p)
	// The fake controller never makes pods ready.
	if !errors.Is(err, ErrNotReady) {
		t.Fatalf("err = %v, want ErrNotReady", err)
	}
	if !res.StatefulSetCreated || res.StatefulSetReady {
		t.Errorf("created %v ready %v, want created and not ready", res.StatefulSetCreated, res.StatefulSetReady)
	}
	sts, err := kc.AppsV1().StatefulSets("shop").Get(context.Background(), "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *sts.Spec.Replicas != 2 {
		t.Errorf("replicas = %d, want 2", *sts.Spec.Replicas)
	}
	if got := claimNames(t, kc, "shop"); !slices.Equal(got, []string{"data-db-0", "data-db-1"}) {
		t.Errorf("claims %v: a StatefulSet that is slow to start must not cost the restored data", got)
	}
}

func TestStatefulSetReady(t *testing.T) {
	tests := []struct {
		name                    string
		replicas, ready, actual int32
		generation, observed    int64
		want                    bool
	}{
		{"all ready", 3, 3, 3, 1, 1, true},
		{"one not ready", 3, 2, 3, 1, 1, false},
		{"old generation observed", 3, 3, 3, 2, 1, false},
		{"still scaling", 3, 3, 4, 1, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sts := kubetest.StatefulSet("shop", "db").Replicas(tt.replicas).Result()
			sts.Generation = tt.generation
			sts.Status.ObservedGeneration = tt.observed
			sts.Status.ReadyReplicas = tt.ready
			sts.Status.Replicas = tt.actual
			if got := statefulSetReady(sts); got != tt.want {
				t.Errorf("ready = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSetupSecret(t *testing.T) {
	userSecret := func(ns string, keys ...string) *corev1.Secret {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "s3"}, Data: map[string][]byte{}}
		for _, k := range keys {
			s.Data[k] = []byte("v-" + k)
		}
		return s
	}
	full := []string{deploy.KeyAccessKeyID, deploy.KeySecretAccessKey, deploy.KeySessionToken}
	tests := []struct {
		name      string
		opts      Options
		to        string // target namespace
		objects   []runtime.Object
		fromSnap  bool // every claim comes from a snapshot
		wantName  string
		wantOwn   bool
		wantToken bool
		wantErr   string
	}{
		{name: "credentials make a Secret", opts: Options{Credentials: &deploy.Credentials{AccessKeyID: "a", SecretAccessKey: "b"}}, to: "shop",
			wantName: "kbak-db-restore-1-creds", wantOwn: true},
		{name: "a Secret in the target namespace is used as is", opts: Options{SecretName: "s3"}, to: "shop", objects: []runtime.Object{userSecret("shop", full...)},
			wantName: "s3", wantToken: true},
		{name: "a Secret of the backup's namespace is copied", opts: Options{SecretName: "s3"}, to: "dr", objects: []runtime.Object{userSecret("shop", full...)},
			wantName: "kbak-db-restore-1-creds", wantOwn: true, wantToken: true},
		{name: "a Secret nowhere", opts: Options{SecretName: "s3"}, to: "dr",
			wantErr: "secret s3 not found in dr nor shop"},
		{name: "a Secret without the keys", opts: Options{SecretName: "s3"}, to: "shop", objects: []runtime.Object{userSecret("shop", deploy.KeyAccessKeyID)},
			wantErr: "has no key AWS_SECRET_ACCESS_KEY"},
		{name: "no download, no Secret", opts: Options{SecretName: "s3"}, to: "shop", fromSnap: true},
		{name: "no credentials at all", to: "shop"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kc := fake.NewClientset(tt.objects...)
			src := SourceStore
			if tt.fromSnap {
				src = SourceSnapshot
			}
			p := &Plan{RunID: "db-restore-1", Namespace: tt.to, FromNamespace: "shop", StatefulSet: "db", Claims: []Claim{{Name: "data-db-0", Source: src}}}
			deps := Deps{Kube: kc}
			deps.setDefaults()
			r := &run{deps: deps, opts: fastOptions(tt.opts), plan: p, log: slog.New(slog.DiscardHandler)}
			err := r.setupSecret(context.Background())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.secret.Name != tt.wantName || r.ownSecret != tt.wantOwn || r.secret.SessionToken != tt.wantToken {
				t.Errorf("secret %q own %v token %v, want %q %v %v", r.secret.Name, r.ownSecret, r.secret.SessionToken, tt.wantName, tt.wantOwn, tt.wantToken)
			}
			if tt.wantOwn {
				s, err := kc.CoreV1().Secrets(tt.to).Get(context.Background(), r.secret.Name, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if s.Labels[kube.LabelRestoreID] != p.RunID || s.Labels[kube.LabelManagedBy] != "kbak" {
					t.Errorf("secret labels %v", s.Labels)
				}
				if tt.opts.SecretName != "" && string(s.Data[deploy.KeySecretAccessKey]) != "v-"+deploy.KeySecretAccessKey {
					t.Errorf("copied secret data %q", s.Data[deploy.KeySecretAccessKey])
				}
			}
			r.cleanup(context.Background())
			left, _ := kc.CoreV1().Secrets("").List(context.Background(), metav1.ListOptions{})
			if want := len(tt.objects); len(left.Items) != want {
				t.Errorf("%d secrets after cleanup, want the user's %d", len(left.Items), want)
			}
		})
	}
}
