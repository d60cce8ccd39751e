package backup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapfake "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kbak/kbak/deploy"
	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/hint"
	"github.com/kbak/kbak/internal/hint/hinttest"
	"github.com/kbak/kbak/internal/kube"
	"github.com/kbak/kbak/internal/kube/kubetest"
	"github.com/kbak/kbak/internal/moverrun"
)

const (
	ns     = "shop"
	id     = "db-20261122T060000Z-abcd"
	driver = "hostpath.csi.k8s.io"
)

type fakeCatalog struct {
	mu      sync.Mutex
	written []*catalog.Manifest
	deleted []string
}

func (c *fakeCatalog) WriteManifest(_ context.Context, m *catalog.Manifest) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.written = append(c.written, m)
	return nil
}

func (c *fakeCatalog) Delete(_ context.Context, id string) (*catalog.Manifest, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deleted = append(c.deleted, id)
	return nil, fmt.Errorf("delete %s: %w", id, catalog.ErrBackupNotFound)
}

// Latest returns the newest manifest written, as the catalog would.
func (c *fakeCatalog) Latest(_ context.Context, f catalog.Filter) (*catalog.Manifest, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.written) - 1; i >= 0; i-- {
		if m := c.written[i]; m.Status == catalog.StatusCompleted && f.Match(m.Namespace, m.StatefulSet) {
			return m, nil
		}
	}
	return nil, catalog.ErrBackupNotFound
}

// journal records, in order, what a run did that a test checks the order of.
type journal struct {
	mu    sync.Mutex
	lines []string
}

func (j *journal) add(s string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.lines = append(j.lines, s)
}

func (j *journal) all() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.lines)
}

type fixture struct {
	kc  *fake.Clientset
	sc  *snapfake.Clientset
	cat *fakeCatalog
	log *journal
}

// newFixture makes StatefulSet shop/db with claims data-db-<ordinal>, each
// bound to a PV of the hostpath CSI driver, and running pods on node-<ordinal>.
func newFixture(replicas int, claims []int, snapClasses ...runtime.Object) *fixture {
	objs := []runtime.Object{kubetest.StatefulSet(ns, "db").Replicas(int32(replicas)).Claim("data", "fast", "1Gi").Result()}
	for _, o := range claims {
		b := kubetest.Claim(ns, fmt.Sprintf("data-db-%d", o), "fast").Bound(driver)
		objs = append(objs, b.Result(), b.PV())
	}
	for o := 0; o < replicas; o++ {
		objs = append(objs, kubetest.Pod(ns, "db", o, fmt.Sprintf("node-%d", o)).Result())
	}
	return &fixture{kc: fake.NewClientset(objs...), sc: snapfake.NewSimpleClientset(snapClasses...), cat: &fakeCatalog{}, log: &journal{}}
}

func (f *fixture) deps() Deps {
	return Deps{
		Kube: f.kc, Snap: f.sc, Catalog: f.cat, Log: slog.New(slog.DiscardHandler),
		Now: func() time.Time { return time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC) },
		Exec: func(_ context.Context, _, pod, _ string, cmd []string) (string, error) {
			f.log.add(cmd[0] + " " + pod)
			if cmd[0] == "freeze-fails-on" && cmd[1] == pod {
				return "", errors.New("exit 1")
			}
			return "", nil
		},
	}
}

func opts() Options {
	return Options{
		Namespace: ns, StatefulSet: "db", Repo: "s3://bucket/prefix", ID: id,
		Credentials:     &deploy.Credentials{AccessKeyID: "AK", SecretAccessKey: "SK"},
		PollInterval:    time.Millisecond,
		SnapshotTimeout: time.Second, PodStartTimeout: time.Second, CleanupTimeout: time.Second, HookTimeout: time.Second,
		// The fake exec runs hooks as given; the tests in hooks_test.go run
		// them through the wrapper in a real sh.
		NoDeadman: true,
	}
}

// leftovers lists the objects kbak made that are still there.
func (f *fixture) leftovers(t *testing.T) []string {
	t.Helper()
	ctx := context.Background()
	sel := metav1.ListOptions{LabelSelector: kube.RunSelector("")}
	var out []string
	pods, _ := f.kc.CoreV1().Pods("").List(ctx, sel)
	for _, p := range pods.Items {
		out = append(out, "pod/"+p.Name)
	}
	pvcs, _ := f.kc.CoreV1().PersistentVolumeClaims("").List(ctx, sel)
	for _, p := range pvcs.Items {
		out = append(out, "pvc/"+p.Name)
	}
	secrets, _ := f.kc.CoreV1().Secrets("").List(ctx, sel)
	for _, s := range secrets.Items {
		out = append(out, "secret/"+s.Name)
	}
	snaps, _ := f.sc.SnapshotV1().VolumeSnapshots("").List(ctx, sel)
	for _, s := range snaps.Items {
		out = append(out, "volumesnapshot/"+s.Name)
	}
	groups, _ := f.sc.GroupsnapshotV1beta2().VolumeGroupSnapshots("").List(ctx, sel)
	for _, g := range groups.Items {
		out = append(out, "volumegroupsnapshot/"+g.Name)
	}
	labelled, _ := f.kc.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{LabelSelector: kube.LabelGroup})
	for _, p := range labelled.Items {
		out = append(out, "group label on pvc/"+p.Name)
	}
	return out
}

func statuses(m *catalog.Manifest) map[string]string {
	out := map[string]string{}
	for _, v := range m.Volumes {
		out[v.PVC] = string(v.Status) + ": " + v.Error
	}
	return out
}

// A mover whose image cannot start fails its volume at once, the run writes
// no manifest, drops whatever it uploaded and leaves nothing in the cluster.
func TestRunMoverCannotStart(t *testing.T) {
	f := newFixture(2, []int{0, 2}) // ordinal 1 lost its claim; 2 is left from a scale-down
	var nodes []string
	var deadlines []int64
	f.kc.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		pod := a.(k8stesting.CreateAction).GetObject().(*corev1.Pod)
		nodes = append(nodes, pod.Spec.NodeName)
		if d := pod.Spec.ActiveDeadlineSeconds; d != nil {
			deadlines = append(deadlines, *d)
		}
		// What the kubelet reports for an image that is not on the node.
		pod.Status.Phase = corev1.PodPending
		pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "mover", Image: pod.Spec.Containers[0].Image,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImageNeverPull"}}}}
		return false, nil, nil
	})
	o := opts()
	o.Method = MethodFiles
	o.PodStartTimeout = time.Hour // must fail fast, not time out
	queued := map[string]int64{}
	o.Queued = func(pvc string, bytes int64) { queued[pvc] = bytes }

	m, err := Run(context.Background(), f.deps(), o)
	if !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "ErrImageNeverPull") {
		t.Fatalf("err = %v, want ErrFailed naming ErrImageNeverPull", err)
	}
	if m == nil || m.Status != catalog.StatusFailed {
		t.Fatalf("manifest %+v, want status Failed", m)
	}
	got := statuses(m)
	want := map[string]string{
		"data-db-0": "Failed: pod shop/kbak-db-20261122t060000z-abcd-0-data cannot start container mover: ErrImageNeverPull",
		"data-db-1": "Failed: persistentvolumeclaim data-db-1 does not exist",
		"data-db-2": "Skipped: claim of ordinal 2, beyond the current replicas",
	}
	for pvc, prefix := range want {
		if !strings.HasPrefix(got[pvc], prefix) {
			t.Errorf("%s: %q, want %q…", pvc, got[pvc], prefix)
		}
	}
	// Only the volume a mover was to move is announced; no earlier
	// backup tells its size.
	if !maps.Equal(queued, map[string]int64{"data-db-0": 0}) {
		t.Errorf("queued %v, want data-db-0 alone", queued)
	}
	if !slices.Equal(nodes, []string{"node-0"}) {
		t.Errorf("mover pods on nodes %q, want next to the app pod on node-0", nodes)
	}
	// The default transfer deadline of a 1Gi claim and the start timeout.
	if want := int64((moverrun.TransferDeadline(1<<30) + time.Hour) / time.Second); !slices.Equal(deadlines, []int64{want}) {
		t.Errorf("mover pods' activeDeadlineSeconds %v, want [%d]", deadlines, want)
	}
	if len(f.cat.written) != 0 || !slices.Equal(f.cat.deleted, []string{id}) {
		t.Errorf("manifests written %d, deleted %v: want none written and %s dropped", len(f.cat.written), f.cat.deleted, id)
	}
	if left := f.leftovers(t); len(left) != 0 {
		t.Errorf("left in the cluster: %v", left)
	}
	if _, err := f.kc.CoreV1().PersistentVolumeClaims(ns).Get(context.Background(), "data-db-0", metav1.GetOptions{}); err != nil {
		t.Errorf("source claim: %v", err)
	}
}

// Hooks wrap the snapshot cut: pre on every pod, all snapshots, post on every
// pod, and the post hook runs when the cut fails. A snapshot error fails its
// volume with the driver's message without waiting for the timeout.
func TestRunSnapshotHooksAndError(t *testing.T) {
	f := newFixture(2, []int{0, 1}, kubetest.SnapshotClass("snap", driver, true))
	f.sc.PrependReactor("create", "volumesnapshots", func(a k8stesting.Action) (bool, runtime.Object, error) {
		vs := a.(k8stesting.CreateAction).GetObject().(*snapv1.VolumeSnapshot)
		f.log.add("snapshot " + *vs.Spec.Source.PersistentVolumeClaimName + " class " + *vs.Spec.VolumeSnapshotClassName)
		msg := "out of space"
		vs.Status = &snapv1.VolumeSnapshotStatus{Error: &snapv1.VolumeSnapshotError{Message: &msg}}
		return false, nil, nil
	})
	o := opts()
	o.PreHook, o.PostHook = []string{"freeze"}, []string{"thaw"}
	o.SnapshotTimeout = time.Hour

	m, err := Run(context.Background(), f.deps(), o)
	if !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "out of space") {
		t.Fatalf("err = %v, want ErrFailed with the snapshot's message", err)
	}
	lines := f.log.all()
	if len(lines) != 6 {
		t.Fatalf("journal %q, want 2 pre hooks, 2 snapshots, 2 post hooks", lines)
	}
	slices.Sort(lines[0:2])
	slices.Sort(lines[4:6])
	want := []string{"freeze db-0", "freeze db-1",
		"snapshot data-db-0 class snap", "snapshot data-db-1 class snap",
		"thaw db-0", "thaw db-1"}
	if !slices.Equal(lines, want) {
		t.Errorf("journal %q\nwant %q", lines, want)
	}
	if len(m.Hooks) != 4 {
		t.Errorf("manifest records %d hook runs, want 4", len(m.Hooks))
	}
	for _, v := range m.Volumes {
		if v.Method != catalog.MethodSnapshot || v.Status != catalog.VolumeFailed {
			t.Errorf("%s: method %s status %s", v.PVC, v.Method, v.Status)
		}
	}
	if left := f.leftovers(t); len(left) != 0 {
		t.Errorf("left in the cluster: %v", left)
	}
}

// Every run that found its StatefulSet records an Event on it, failed runs
// as a Warning with the reason; an API server that refuses the Event does
// not fail the backup, which says in the log what to grant.
func TestRunRecordsEvent(t *testing.T) {
	f := newFixture(1, []int{0}, kubetest.SnapshotClass("snap", driver, true))
	f.sc.PrependReactor("create", "volumesnapshots", func(a k8stesting.Action) (bool, runtime.Object, error) {
		vs := a.(k8stesting.CreateAction).GetObject().(*snapv1.VolumeSnapshot)
		msg := "out of space"
		vs.Status = &snapv1.VolumeSnapshotStatus{Error: &snapv1.VolumeSnapshotError{Message: &msg}}
		return false, nil, nil
	})
	if _, err := Run(context.Background(), f.deps(), opts()); !errors.Is(err, ErrFailed) {
		t.Fatalf("err = %v, want ErrFailed", err)
	}
	sts, err := f.kc.AppsV1().StatefulSets(ns).Get(context.Background(), "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	evs, err := f.kc.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil || len(evs.Items) != 1 {
		t.Fatalf("events %v, %v; want one", evs, err)
	}
	ev := evs.Items[0]
	o := ev.InvolvedObject
	if o.Kind != "StatefulSet" || o.APIVersion != "apps/v1" || o.Name != "db" || o.Namespace != ns || o.UID != sts.UID {
		t.Errorf("event about %+v, want the StatefulSet", o)
	}
	if ev.Reason != ReasonFailed || ev.Type != corev1.EventTypeWarning || !strings.Contains(ev.Message, id) || !strings.Contains(ev.Message, "out of space") {
		t.Errorf("event %s %s %q, want a %s Warning naming the backup and the cause", ev.Type, ev.Reason, ev.Message, ReasonFailed)
	}

	f = newFixture(1, []int{0}, kubetest.SnapshotClass("snap", driver, true))
	f.kc.PrependReactor("create", "events", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(corev1.Resource("events"), "", errors.New("no RBAC"))
	})
	var logged strings.Builder
	d := f.deps()
	d.Log = slog.New(slog.NewTextHandler(&logged, nil))
	if _, err := Run(context.Background(), d, opts()); errors.Is(err, ErrFailed) && strings.Contains(err.Error(), "event") {
		t.Errorf("a refused event failed the run: %v", err)
	}
	if !strings.Contains(logged.String(), "grant create on events") {
		t.Errorf("log does not say what to grant:\n%s", logged.String())
	}
}

// A failing pre hook stops the run before any snapshot, and the post hook
// still runs everywhere.
func TestRunPreHookFails(t *testing.T) {
	f := newFixture(2, []int{0, 1}, kubetest.SnapshotClass("snap", driver, true))
	o := opts()
	o.PreHook, o.PostHook = []string{"freeze-fails-on", "db-1"}, []string{"thaw"}
	_, err := Run(context.Background(), f.deps(), o)
	if !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "pre hook in pod db-1: exit 1") {
		t.Fatalf("err = %v, want the pre hook's failure", err)
	}
	lines := f.log.all()
	slices.Sort(lines)
	want := []string{"freeze-fails-on db-0", "freeze-fails-on db-1", "thaw db-0", "thaw db-1"}
	if !slices.Equal(lines, want) {
		t.Errorf("journal %q, want %q", lines, want)
	}
	snaps, _ := f.sc.SnapshotV1().VolumeSnapshots(ns).List(context.Background(), metav1.ListOptions{})
	if len(snaps.Items) != 0 {
		t.Errorf("%d snapshots created after a failed pre hook", len(snaps.Items))
	}
}

// Impossible requests fail before anything is created.
func TestRunRefusesEarly(t *testing.T) {
	tests := []struct {
		name    string
		f       *fixture
		edit    func(*Options)
		wantErr string
	}{
		{"unknown statefulset", newFixture(1, []int{0}), func(o *Options) { o.StatefulSet = "nope" }, "statefulset shop/nope not found: check the name and -n"},
		{"forced snapshot without a class", newFixture(1, []int{0}), func(o *Options) { o.Method = MethodSnapshot }, "no VolumeSnapshotClass for driver hostpath.csi.k8s.io: create one or use --method files"},
		{"missing secret", newFixture(1, []int{0}), func(o *Options) { o.Credentials, o.SecretName = nil, "s3-creds" }, "secret shop/s3-creds not found"},
		{"bad method", newFixture(1, []int{0}), func(o *Options) { o.Method = "fast" }, `--method "fast": use auto, snapshot or files`},
		{"hooks without exec", newFixture(1, []int{0}), func(o *Options) { o.PreHook = []string{"x"} }, "hooks need a REST config"},
		{"compression level out of range", newFixture(1, []int{0}), func(o *Options) { o.Compression = "zstd:99" }, `--compression "zstd:99"`},
		{"file repository", newFixture(1, []int{0}), func(o *Options) { o.Repo = "file:///srv/kbak" }, "mover pods in the cluster cannot reach"},
		{"negative hook timeout", newFixture(1, []int{0}), func(o *Options) { o.HookTimeout = -time.Second }, "--hook-timeout -1s"},
		{"bad mover security", newFixture(1, []int{0}), func(o *Options) { o.MoverSecurity = "root" }, `--mover-security "root": use auto, unprivileged, baseline or privileged`},
		{"privileged movers under restricted", restrictedFixture(), func(o *Options) { o.MoverSecurity = deploy.SecurityPrivileged }, `Pod Security level "restricted": use --mover-security auto, or --mover-security unprivileged`},
		{"restricted and an app without runAsUser", restrictedFixture(), func(*Options) {}, "sets no runAsUser"},
		{"group always without a group class", newFixture(1, []int{0}, kubetest.SnapshotClass("snap", driver, true)), func(o *Options) { o.Group = GroupAlways }, "no VolumeGroupSnapshotClass for driver hostpath.csi.k8s.io"},
		{"group always without snapshots", newFixture(1, []int{0}), func(o *Options) { o.Group = GroupAlways }, "--group always: claim data-db-0 is not snapshotted"},
		{"group always copying files", newFixture(1, []int{0}), func(o *Options) { o.Group, o.Method = GroupAlways, MethodFiles }, "--group always and --method files exclude each other"},
		{"group always keeping snapshots", newFixture(1, []int{0}), func(o *Options) { o.Group, o.KeepSnapshots = GroupAlways, true }, "--group always cannot keep snapshots"},
		{"unknown group class", newFixture(1, []int{0}, kubetest.SnapshotClass("snap", driver, true)), func(o *Options) { o.GroupSnapshotClass = "nope" }, "VolumeGroupSnapshotClass nope not found: check --group-snapshot-class"},
		{"bad group", newFixture(1, []int{0}), func(o *Options) { o.Group = "sometimes" }, `--group "sometimes": use auto, always or never`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := opts()
			tt.edit(&o)
			d := tt.f.deps()
			if tt.name == "hooks without exec" {
				d.Exec = nil
			}
			m, err := Run(context.Background(), d, o)
			// As the command line shows it.
			if err == nil || !strings.Contains(hint.Render(err, hinttest.Flags), tt.wantErr) || m != nil {
				t.Fatalf("Run = %v, %v; want no manifest and %q", m, err, tt.wantErr)
			}
			if left := tt.f.leftovers(t); len(left) != 0 {
				t.Errorf("left in the cluster: %v", left)
			}
		})
	}
}

// restrictedFixture is newFixture in a namespace that enforces Pod Security
// "restricted".
func restrictedFixture() *fixture {
	f := newFixture(1, []int{0})
	f.kc.Tracker().Add(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{kube.LabelPodSecurityEnforce: kube.LevelRestricted}}})
	return f
}

// A kept snapshot is labelled so cleanup spares it, and released again when
// the run ends without a manifest to refer to it.
func TestRetainAndRelease(t *testing.T) {
	f := newFixture(1, []int{0})
	o := opts()
	o.setDefaults()
	d := f.deps()
	r := &run{deps: d, opts: o, id: id, log: d.Log}
	name := kube.Name("kbak", id, "0", "data")
	vs := kube.NewVolumeSnapshot(ns, name, "data-db-0", "snap", kube.Labels(id, "db", kube.RoleSnapshot))
	if _, err := f.sc.SnapshotV1().VolumeSnapshots(ns).Create(context.Background(), vs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	v := &volume{name: name, snapshot: &catalog.Snapshot{Name: name, Namespace: ns}}
	label := func() string {
		got, err := f.sc.SnapshotV1().VolumeSnapshots(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return got.Labels[kube.LabelRetained]
	}

	r.retain(context.Background(), v)
	if !v.snapshot.Retained || label() != "true" {
		t.Fatalf("after retain: recorded %v, label %q", v.snapshot.Retained, label())
	}
	if err := r.deleteObjects(context.Background()); err != nil {
		t.Fatal(err)
	}
	if label() != "true" {
		t.Fatalf("cleanup touched the kept snapshot")
	}

	r.release(context.Background(), []*volume{v})
	if v.snapshot.Retained || label() != "" {
		t.Fatalf("after release: recorded %v, label %q", v.snapshot.Retained, label())
	}
	if err := r.deleteObjects(context.Background()); err != nil {
		t.Fatal(err)
	}
	if left := f.leftovers(t); len(left) != 0 {
		t.Errorf("left after cleanup: %v", left)
	}
}

// Ctrl-C while a mover runs: the post hook still runs, nothing is written,
// and every object the run made is gone.
func TestRunInterrupted(t *testing.T) {
	f := newFixture(1, []int{0})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.kc.PrependReactor("create", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		f.log.add("mover created")
		cancel()
		return false, nil, nil
	})
	o := opts()
	o.Method = MethodFiles
	o.PreHook, o.PostHook = []string{"freeze"}, []string{"thaw"}
	o.PodStartTimeout = time.Hour

	_, err := Run(ctx, f.deps(), o)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	want := []string{"freeze db-0", "mover created", "thaw db-0"}
	if got := f.log.all(); !slices.Equal(got, want) {
		t.Errorf("journal %q, want %q", got, want)
	}
	if len(f.cat.written) != 0 || !slices.Equal(f.cat.deleted, []string{id}) {
		t.Errorf("manifests written %d, deleted %v", len(f.cat.written), f.cat.deleted)
	}
	if left := f.leftovers(t); len(left) != 0 {
		t.Errorf("left in the cluster: %v", left)
	}
}

// InitData finds the repository there: manifests are all there is.
func (c *fakeCatalog) InitData(context.Context, string) (bool, error) { return false, nil }
func (c *fakeCatalog) WriteKeyFile(context.Context) ([]byte, error)   { return nil, nil }

// With hooks, the live-file copies of the quiesced application all start
// at once, whatever --parallel: none waits for a slot while the
// application is held still. Without hooks the limit holds.
func TestRunQuiescedCopiesDoNotWaitForSlots(t *testing.T) {
	for _, hooks := range []bool{true, false} {
		f := newFixture(2, []int{0, 1})
		var mu sync.Mutex
		created, most := 0, 0
		// Each mover stays starting until the pod start timeout: movers
		// that may run at once all exist together. (A reactor must not
		// block: the fake clientset runs them under its lock.)
		f.kc.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
			mu.Lock()
			created++
			most = max(most, created)
			mu.Unlock()
			pod := a.(k8stesting.CreateAction).GetObject().(*corev1.Pod)
			pod.Status.Phase = corev1.PodPending
			pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "mover",
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}}
			return false, nil, nil
		})
		f.kc.PrependReactor("delete", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
			mu.Lock()
			created--
			mu.Unlock()
			return false, nil, nil
		})
		o := opts()
		o.Method, o.Parallel = MethodFiles, 1
		if hooks {
			o.PreHook, o.PostHook = []string{"freeze"}, []string{"thaw"}
		}
		_, _ = Run(context.Background(), f.deps(), o)
		if want := map[bool]int{true: 2, false: 1}[hooks]; most != want {
			t.Errorf("hooks %v: %d movers at once with --parallel 1, want %d", hooks, most, want)
		}
	}
}

// While hooks hold the application the cuts are polled often, so that the
// quiesce ends soon after the storage's last cut; otherwise at the usual
// interval.
func TestCutPollInterval(t *testing.T) {
	for _, tt := range []struct {
		opts Options
		want time.Duration
	}{
		{Options{PollInterval: time.Second}, time.Second},
		{Options{PollInterval: time.Second, PreHook: []string{"sync"}}, heldPollInterval},
		{Options{PollInterval: time.Second, HoldHook: []string{"cat"}}, heldPollInterval},
		{Options{PollInterval: 50 * time.Millisecond, PreHook: []string{"sync"}}, 50 * time.Millisecond},
	} {
		r := &run{opts: tt.opts}
		if got := r.cutPollInterval(); got != tt.want {
			t.Errorf("%+v: %s, want %s", tt.opts, got, tt.want)
		}
	}
}
