//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/utils/ptr"
)

// env is the test bed as the tests see it: clients for the cluster and the
// names e2e/testbed/up.sh exports in $KBAK_E2E_DIR/env.sh.
type env struct {
	Kube   kubernetes.Interface
	Snap   snapclient.Interface
	Config *rest.Config

	Dir           string // KBAK_E2E_DIR: logs of every component under logs/
	Node          string // the only node
	UtilImage     string // busybox, for app and helper pods
	KbakImage     string // kbak itself, for mover pods
	KubectlImage  string // kubectl alone (no shell), an in-cluster API client
	MariaDBImage  string // Debian's MariaDB server and client; empty when the bed could not build it
	Repo          string // KBAK_REPO: s3://bucket?endpoint=...
	S3Endpoint    string // reachable from the host and from pods
	Bucket        string
	Faults        string // the CSI driver's fault directory
	SnapClass     string // StorageClass whose driver snapshots
	NoSnapClass   string // StorageClass whose driver cannot snapshot
	SnapshotClass string // VolumeSnapshotClass of SnapClass's driver
	// GroupSnapshotClass is the default VolumeGroupSnapshotClass of
	// SnapClass's driver; NoSnapClass's driver has none.
	GroupSnapshotClass string
}

var (
	envOnce sync.Once
	envErr  error
	theEnv  *env
)

// newEnv returns the shared test bed, failing the test in CI when there is
// none and skipping it elsewhere.
func newEnv(t *testing.T) *env {
	t.Helper()
	if os.Getenv("KUBECONFIG") == "" {
		msg := "KUBECONFIG is not set: start the test bed (make e2e-up) and source $KBAK_E2E_DIR/env.sh, or run make e2e"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	envOnce.Do(func() { theEnv, envErr = loadEnv() })
	if envErr != nil {
		t.Fatal(envErr)
	}
	return theEnv
}

func loadEnv() (*env, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", os.Getenv("KUBECONFIG"), err)
	}
	// Tests poll a lot; the default 5 QPS would make them wait on the client.
	cfg.QPS, cfg.Burst = 100, 200
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create Kubernetes client: %w", err)
	}
	snap, err := snapclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create snapshot client: %w", err)
	}
	get := func(name, def string) string {
		if v := os.Getenv(name); v != "" {
			return v
		}
		return def
	}
	return &env{
		Kube:               kube,
		Snap:               snap,
		Config:             cfg,
		Dir:                get("KBAK_E2E_DIR", "/var/tmp/kbak-e2e"),
		Node:               get("KBAK_E2E_NODE", "kbak-node"),
		UtilImage:          get("KBAK_E2E_UTIL_IMAGE", "kbak.local/busybox:dev"),
		KbakImage:          get("KBAK_E2E_KBAK_IMAGE", "kbak.local/kbak:dev"),
		KubectlImage:       get("KBAK_E2E_KUBECTL_IMAGE", "kbak.local/kubectl:dev"),
		MariaDBImage:       os.Getenv("KBAK_E2E_MARIADB_IMAGE"),
		Repo:               os.Getenv("KBAK_REPO"),
		S3Endpoint:         os.Getenv("KBAK_E2E_S3_ENDPOINT"),
		Bucket:             os.Getenv("KBAK_E2E_BUCKET"),
		Faults:             os.Getenv("KBAK_E2E_CSI_FAULTS"),
		SnapClass:          get("KBAK_E2E_SNAP_CLASS", "kbak-snap"),
		NoSnapClass:        get("KBAK_E2E_NOSNAP_CLASS", "kbak-nosnap"),
		SnapshotClass:      get("KBAK_E2E_SNAPSHOT_CLASS", "kbak-snap"),
		GroupSnapshotClass: get("KBAK_E2E_GROUP_SNAPSHOT_CLASS", "kbak-snap-group"),
	}, nil
}

// ctx is a test's context with a deadline, so no wait outlives the test.
func ctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	t.Cleanup(cancel)
	return c
}

// waitFor polls cond every interval until it reports done, returns an error,
// or timeout passes; the test fails naming what it waited for and the last
// state cond described.
//
// cond returns a description of the current state (shown on timeout), done,
// and an error that stops the wait at once.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func(ctx context.Context) (state string, done bool, err error)) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(ctx(t), 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		state, done, err := cond(ctx)
		last = state
		return done, err
	})
	if err != nil {
		t.Fatalf("wait for %s (%s): %v; last state: %s", what, timeout, err, last)
	}
}

// createNamespace creates a fresh namespace named after prefix and deletes
// it when the test ends; a failed test first gets the namespace's events,
// objects and pod logs and the matching lines of the bed's component logs.
// KBAK_E2E_KEEP=1 keeps the namespace of a failed test for inspection.
func createNamespace(t *testing.T, e *env, prefix string) string {
	t.Helper()
	ns, err := e.Kube.CoreV1().Namespaces().Create(ctx(t), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		GenerateName: prefix + "-",
		Labels:       map[string]string{"kbak-e2e": "true"},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace %s-*: %v", prefix, err)
	}
	name := ns.Name
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if t.Failed() {
			dumpNamespace(c, t, e, name)
			if os.Getenv("KBAK_E2E_KEEP") == "1" {
				t.Logf("keeping namespace %s (KBAK_E2E_KEEP=1)", name)
				return
			}
		}
		deleteNamespace(c, t, e, name)
	})
	// Pods are refused until the namespace's default ServiceAccount exists.
	waitFor(t, "ServiceAccount "+name+"/default", time.Minute, func(c context.Context) (string, bool, error) {
		_, err := e.Kube.CoreV1().ServiceAccounts(name).Get(c, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return "not yet created", false, nil
		}
		return "", err == nil, err
	})
	t.Logf("namespace %s", name)
	return name
}

// deleteNamespace deletes ns and waits until it is gone, so the volumes of
// one test are released before the next one starts.
func deleteNamespace(c context.Context, t *testing.T, e *env, ns string) {
	err := e.Kube.CoreV1().Namespaces().Delete(c, ns, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return
	}
	if err != nil {
		t.Errorf("delete namespace %s: %v", ns, err)
		return
	}
	err = wait.PollUntilContextTimeout(c, 500*time.Millisecond, 2*time.Minute, true, func(c context.Context) (bool, error) {
		_, err := e.Kube.CoreV1().Namespaces().Get(c, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err // an unreachable API server ends the wait at once
	})
	if err != nil {
		t.Logf("namespace %s not gone, leaving it: %v", ns, err)
	}
}

// dumpNamespace logs what a person debugging a failed test looks at first.
func dumpNamespace(c context.Context, t *testing.T, e *env, ns string) {
	var b strings.Builder
	fmt.Fprintf(&b, "==== state of namespace %s ====\n", ns)
	if evs, err := e.Kube.CoreV1().Events(ns).List(c, metav1.ListOptions{}); err == nil {
		sort.Slice(evs.Items, func(i, j int) bool {
			return eventTime(evs.Items[i]).Before(eventTime(evs.Items[j]))
		})
		b.WriteString("--- events\n")
		for _, ev := range evs.Items {
			fmt.Fprintf(&b, "%s %s %s/%s %s: %s\n", eventTime(ev).Format("15:04:05"), ev.Type,
				ev.InvolvedObject.Kind, ev.InvolvedObject.Name, ev.Reason, strings.TrimSpace(ev.Message))
		}
	}
	describe := func(kind string, obj any, err error) {
		if err != nil {
			fmt.Fprintf(&b, "--- %s: %v\n", kind, err)
			return
		}
		out, _ := json.MarshalIndent(obj, "", "  ")
		fmt.Fprintf(&b, "--- %s\n%s\n", kind, out)
	}
	pods, err := e.Kube.CoreV1().Pods(ns).List(c, metav1.ListOptions{})
	if err == nil {
		for i := range pods.Items {
			pods.Items[i].ManagedFields = nil
		}
	}
	describe("pods", pods, err)
	pvcs, err := e.Kube.CoreV1().PersistentVolumeClaims(ns).List(c, metav1.ListOptions{})
	if err == nil {
		for i := range pvcs.Items {
			pvcs.Items[i].ManagedFields = nil
		}
	}
	describe("persistentvolumeclaims", pvcs, err)
	stss, err := e.Kube.AppsV1().StatefulSets(ns).List(c, metav1.ListOptions{})
	if err == nil {
		for i := range stss.Items {
			stss.Items[i].ManagedFields = nil
		}
	}
	describe("statefulsets", stss, err)
	vss, err := e.Snap.SnapshotV1().VolumeSnapshots(ns).List(c, metav1.ListOptions{})
	if err == nil {
		for i := range vss.Items {
			vss.Items[i].ManagedFields = nil
		}
	}
	describe("volumesnapshots", vss, err)
	if pods != nil {
		for _, p := range pods.Items {
			for _, cs := range append(p.Spec.InitContainers, p.Spec.Containers...) {
				fmt.Fprintf(&b, "--- log of pod %s container %s\n", p.Name, cs.Name)
				raw, err := e.Kube.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{
					Container: cs.Name, TailLines: ptr.To[int64](100),
				}).DoRaw(c)
				if err != nil {
					fmt.Fprintf(&b, "(no log: %v)\n", err)
					continue
				}
				b.Write(raw)
			}
		}
	}
	b.WriteString(componentLogs(e.Dir, ns, 40))
	t.Log(b.String())
}

func eventTime(ev corev1.Event) time.Time {
	switch {
	case !ev.LastTimestamp.IsZero():
		return ev.LastTimestamp.Time
	case !ev.EventTime.IsZero():
		return ev.EventTime.Time
	}
	return ev.CreationTimestamp.Time
}

// componentLogs returns, for each component log of the test bed, its last n
// lines that mention ns (the sidecars and the CSI driver name the namespace
// in the objects they handle), plus the last n error lines of the kubelet.
func componentLogs(dir, ns string, n int) string {
	files, _ := filepath.Glob(filepath.Join(dir, "logs", "*.log"))
	var b strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var hits []string
		for line := range strings.Lines(string(data)) {
			if strings.Contains(line, ns) ||
				(strings.HasSuffix(f, "/kubelet.log") && strings.HasPrefix(line, "E")) {
				hits = append(hits, line)
			}
		}
		if len(hits) == 0 {
			continue
		}
		fmt.Fprintf(&b, "--- %s (last %d matching lines)\n", f, n)
		b.WriteString(strings.Join(hits[max(0, len(hits)-n):], ""))
	}
	return b.String()
}

// claim describes one volumeClaimTemplate of a test StatefulSet. Build it
// with newClaim and the chained setters.
type claim struct {
	name      string
	mountPath string
	size      string
	class     string // empty: the class given to applyStatefulSet
	modes     []corev1.PersistentVolumeAccessMode
}

// newClaim is a claim template of 64Mi, ReadWriteOnce, mounted at /<name>.
func newClaim(name string) *claim {
	return &claim{name: name, mountPath: "/" + name, size: "64Mi",
		modes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}}
}

func (c *claim) MountAt(path string) *claim { c.mountPath = path; return c }
func (c *claim) Size(q string) *claim       { c.size = q; return c }
func (c *claim) Class(name string) *claim   { c.class = name; return c }
func (c *claim) Modes(m ...corev1.PersistentVolumeAccessMode) *claim {
	c.modes = m
	return c
}

type stsOptions struct {
	claims  []*claim
	podSpec []func(*corev1.PodSpec)
	noWait  bool
}

// stsOption changes the StatefulSet applyStatefulSet builds.
type stsOption func(*stsOptions)

// withClaims replaces the default single claim "data" with these templates.
func withClaims(c ...*claim) stsOption {
	return func(o *stsOptions) { o.claims = c }
}

// withPodSpec edits the pod template's spec before the StatefulSet is created.
func withPodSpec(f func(*corev1.PodSpec)) stsOption {
	return func(o *stsOptions) { o.podSpec = append(o.podSpec, f) }
}

// withoutWait returns as soon as the StatefulSet is created.
func withoutWait() stsOption { return func(o *stsOptions) { o.noWait = true } }

// sleeper is a container command that idles and exits at once on SIGTERM
// (a shell as PID 1 ignores signals it has no trap for, which would make
// every pod deletion wait out the grace period).
var sleeper = []string{"sh", "-c", `trap "exit 0" TERM INT; sleep 2147483647 & wait`}

// applyStatefulSet creates (or updates) a StatefulSet of busybox pods that
// idle in container "app" with each claim template mounted, and waits until
// every replica is Ready. Claims default to one template "data" at /data.
func applyStatefulSet(t *testing.T, e *env, ns, name string, replicas int32, class string, opts ...stsOption) *appsv1.StatefulSet {
	t.Helper()
	o := stsOptions{claims: []*claim{newClaim("data")}}
	for _, opt := range opts {
		opt(&o)
	}
	labels := map[string]string{"app": name}
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: appsv1.StatefulSetSpec{
			Replicas:            ptr.To(replicas),
			ServiceName:         name,
			PodManagementPolicy: appsv1.ParallelPodManagement,
			Selector:            &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](5),
					Containers: []corev1.Container{{
						Name:            "app",
						Image:           e.UtilImage,
						ImagePullPolicy: corev1.PullNever,
						Command:         sleeper,
					}},
				},
			},
		},
	}
	for _, c := range o.claims {
		cl := c.class
		if cl == "" {
			cl = class
		}
		sts.Spec.VolumeClaimTemplates = append(sts.Spec.VolumeClaimTemplates, corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: c.name},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes:      c.modes,
				StorageClassName: ptr.To(cl),
				Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceStorage: resource.MustParse(c.size),
				}},
			},
		})
		sts.Spec.Template.Spec.Containers[0].VolumeMounts = append(sts.Spec.Template.Spec.Containers[0].VolumeMounts,
			corev1.VolumeMount{Name: c.name, MountPath: c.mountPath})
	}
	for _, f := range o.podSpec {
		f(&sts.Spec.Template.Spec)
	}

	api := e.Kube.AppsV1().StatefulSets(ns)
	created, err := api.Create(ctx(t), sts, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		old, gerr := api.Get(ctx(t), name, metav1.GetOptions{})
		if gerr != nil {
			t.Fatalf("get StatefulSet %s/%s: %v", ns, name, gerr)
		}
		old.Spec.Replicas = sts.Spec.Replicas
		old.Spec.Template = sts.Spec.Template
		created, err = api.Update(ctx(t), old, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatalf("apply StatefulSet %s/%s: %v", ns, name, err)
	}
	if !o.noWait {
		waitStatefulSetReady(t, e, ns, name)
	}
	return created
}

// waitStatefulSetReady waits until the StatefulSet's controller has seen its
// latest spec and every replica is Ready and current.
func waitStatefulSetReady(t *testing.T, e *env, ns, name string) {
	t.Helper()
	waitFor(t, "StatefulSet "+ns+"/"+name+" ready", 3*time.Minute, func(c context.Context) (string, bool, error) {
		s, err := e.Kube.AppsV1().StatefulSets(ns).Get(c, name, metav1.GetOptions{})
		if err != nil {
			return "", false, err
		}
		want := ptr.Deref(s.Spec.Replicas, 1)
		st := s.Status
		state := fmt.Sprintf("observed generation %d of %d, %d/%d ready, %d updated", st.ObservedGeneration, s.Generation, st.ReadyReplicas, want, st.UpdatedReplicas)
		return state, st.ObservedGeneration >= s.Generation && st.ReadyReplicas == want && st.UpdatedReplicas == want && st.Replicas == want, nil
	})
}

// podExec runs cmd in a container through the API server (as kubectl exec
// does) and returns its stdout and stderr; err is non-nil when the command
// exits non-zero or the stream breaks.
func podExec(c context.Context, e *env, ns, pod, container string, stdin io.Reader, cmd ...string) (stdout, stderr string, err error) {
	req := e.Kube.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{
			Container: container,
			Command:   cmd,
			Stdin:     stdin != nil,
			Stdout:    true,
			Stderr:    true,
		}, scheme.ParameterCodec)
	ex, err := remotecommand.NewSPDYExecutor(e.Config, "POST", req.URL())
	if err != nil {
		return "", "", fmt.Errorf("exec in pod %s/%s: %w", ns, pod, err)
	}
	var out, errOut bytes.Buffer
	err = ex.StreamWithContext(c, remotecommand.StreamOptions{Stdin: stdin, Stdout: &out, Stderr: &errOut})
	if err != nil {
		err = fmt.Errorf("exec %q in pod %s/%s: %w (stderr: %s)", cmd, ns, pod, err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), errOut.String(), err
}

// mustExec is podExec that fails the test on error.
func mustExec(t *testing.T, e *env, ns, pod, container string, cmd ...string) string {
	t.Helper()
	out, _, err := podExec(ctx(t), e, ns, pod, container, nil, cmd...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// fileInfo is what a restore must reproduce of one file.
type fileInfo struct {
	Type   string // file, dir, symlink, other
	Mode   string // permission bits with setuid, setgid and sticky, octal
	UID    int
	GID    int
	Links  int    // hard links of a regular file
	Size   int64  // regular files
	MTime  int64  // seconds; regular files and directories
	SHA256 string // regular files
	Target string // symlinks
}

func (f fileInfo) String() string {
	s := fmt.Sprintf("%s %s %d:%d", f.Type, f.Mode, f.UID, f.GID)
	switch f.Type {
	case "file":
		s += fmt.Sprintf(" links=%d size=%d mtime=%d sha256=%.12s", f.Links, f.Size, f.MTime, f.SHA256)
	case "dir":
		s += fmt.Sprintf(" mtime=%d", f.MTime)
	case "symlink":
		s += " -> " + f.Target
	}
	return s
}

// volumeRecord maps each path under a volume's root (relative, "./a/b") to
// its metadata and content digest.
type volumeRecord map[string]fileInfo

// dataRecord holds the volumeRecord of every claim of every ordinal, keyed
// "<claimTemplate>/<ordinal>", so the data of a StatefulSet compares with
// that of its restore under another name.
type dataRecord map[string]volumeRecord

func recordKey(claimTemplate string, ordinal int) string {
	return claimTemplate + "/" + strconv.Itoa(ordinal)
}

// writeScript fills a volume with a small tree that exercises what backups
// must keep: distinct owners and modes, a setgid directory, an empty
// directory, a symlink, a hard link and random content. $2 makes the content
// distinct per StatefulSet, ordinal and claim.
const writeScript = `set -e
cd "$1"
tag=$2
echo "$tag" > hello.txt
chmod 0644 hello.txt
ln -f hello.txt hardlink.txt
ln -sf hello.txt link
mkdir -p owned empty nested/a/b
echo "owned by 1000 in $tag" > owned/secret
chmod 0600 owned/secret
chmod 0755 owned
chown -R 1000:1000 owned
chmod 0750 empty
printf '#!/bin/sh\necho %s\n' "$tag" > nested/a/b/tool.sh
chmod 0755 nested/a/b/tool.sh
chown 1001:1002 nested/a
chmod 2775 nested/a
head -c 262144 /dev/urandom > random.bin
sync
`

// writeOrdinalData writes distinct data into every claim of every ordinal of
// sts through its running pods and returns what was written, as read back
// from the volumes.
func writeOrdinalData(t *testing.T, e *env, ns string, sts *appsv1.StatefulSet) dataRecord {
	t.Helper()
	for i := range int(ptr.Deref(sts.Spec.Replicas, 1)) {
		pod := fmt.Sprintf("%s-%d", sts.Name, i)
		for _, ct := range sts.Spec.VolumeClaimTemplates {
			dir := mountPathOf(t, sts, ct.Name)
			tag := fmt.Sprintf("sts=%s ordinal=%d claim=%s", sts.Name, i, ct.Name)
			mustExec(t, e, ns, pod, "app", "sh", "-c", writeScript, "write", dir, tag)
		}
	}
	return readStatefulSetData(t, e, ns, sts)
}

// readStatefulSetData records every claim of every ordinal of sts through
// its running pods.
func readStatefulSetData(t *testing.T, e *env, ns string, sts *appsv1.StatefulSet) dataRecord {
	t.Helper()
	rec := dataRecord{}
	for i := range int(ptr.Deref(sts.Spec.Replicas, 1)) {
		pod := fmt.Sprintf("%s-%d", sts.Name, i)
		for _, ct := range sts.Spec.VolumeClaimTemplates {
			rec[recordKey(ct.Name, i)] = readData(t, e, ns, pod, "app", mountPathOf(t, sts, ct.Name))
		}
	}
	return rec
}

func mountPathOf(t *testing.T, sts *appsv1.StatefulSet, claimTemplate string) string {
	t.Helper()
	for _, c := range sts.Spec.Template.Spec.Containers {
		for _, m := range c.VolumeMounts {
			if m.Name == claimTemplate {
				return m.MountPath
			}
		}
	}
	t.Fatalf("StatefulSet %s mounts no claim %s", sts.Name, claimTemplate)
	return ""
}

// readScript prints one stat line per entry under $1 and the sha256 of every
// regular file, with nothing but busybox.
const readScript = `set -e
cd "$1"
find . -mindepth 1 -exec stat -c '%f|%u|%g|%h|%s|%Y|%n|%N' {} +
echo '--- sha256'
find . -type f -exec sha256sum {} +
`

// readData records the volume mounted at dir in a running pod.
func readData(t *testing.T, e *env, ns, pod, container, dir string) volumeRecord {
	t.Helper()
	out := mustExec(t, e, ns, pod, container, "sh", "-c", readScript, "read", dir)
	rec, err := parseRecord(out)
	if err != nil {
		t.Fatalf("read data of %s in pod %s/%s: %v", dir, ns, pod, err)
	}
	return rec
}

func parseRecord(out string) (volumeRecord, error) {
	stats, sums, ok := strings.Cut(out, "--- sha256\n")
	if !ok {
		return nil, fmt.Errorf("unexpected output %q", out)
	}
	rec := volumeRecord{}
	for line := range strings.Lines(stats) {
		f := strings.SplitN(strings.TrimSuffix(line, "\n"), "|", 8)
		if len(f) != 8 {
			return nil, fmt.Errorf("bad stat line %q", line)
		}
		raw, err1 := strconv.ParseUint(f[0], 16, 32)
		uid, err2 := strconv.Atoi(f[1])
		gid, err3 := strconv.Atoi(f[2])
		links, err4 := strconv.Atoi(f[3])
		size, err5 := strconv.ParseInt(f[4], 10, 64)
		mtime, err6 := strconv.ParseInt(f[5], 10, 64)
		for _, err := range []error{err1, err2, err3, err4, err5, err6} {
			if err != nil {
				return nil, fmt.Errorf("bad stat line %q: %w", line, err)
			}
		}
		fi := fileInfo{Mode: fmt.Sprintf("%04o", raw&0o7777), UID: uid, GID: gid}
		switch raw & 0o170000 {
		case 0o100000:
			fi.Type, fi.Links, fi.Size, fi.MTime = "file", links, size, mtime
		case 0o040000:
			fi.Type, fi.MTime = "dir", mtime
		case 0o120000:
			// %N renders as 'name' -> 'target'.
			_, target, _ := strings.Cut(f[7], " -> ")
			fi.Type, fi.Target = "symlink", strings.Trim(target, "'")
		default:
			fi.Type = "other"
		}
		rec[f[6]] = fi
	}
	for line := range strings.Lines(sums) {
		sum, path, ok := strings.Cut(strings.TrimSuffix(line, "\n"), "  ")
		if !ok {
			return nil, fmt.Errorf("bad sha256sum line %q", line)
		}
		fi, ok := rec[path]
		if !ok {
			return nil, fmt.Errorf("sha256sum of %s, which stat did not list", path)
		}
		fi.SHA256 = sum
		rec[path] = fi
	}
	return rec, nil
}

// readClaim records the data of a PVC through a short-lived pod that mounts
// it read-only; the pod is deleted (and gone) before readClaim returns, so
// the PVC can be deleted afterwards.
func readClaim(t *testing.T, e *env, ns, pvc string) volumeRecord {
	t.Helper()
	pod := runPod(t, e, ns, "read-"+pvc, func(p *corev1.Pod) {
		p.Spec.Volumes = []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: pvc, ReadOnly: true},
		}}}
		p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "v", MountPath: "/data", ReadOnly: true}}
	})
	defer deletePod(t, e, ns, pod.Name)
	return readData(t, e, ns, pod.Name, "main", "/data")
}

// runPod creates an idling busybox pod (container "main") on the test bed's
// node, edited by edit, and waits until it is Ready.
func runPod(t *testing.T, e *env, ns, name string, edit func(*corev1.Pod)) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			NodeSelector:                  map[string]string{"kubernetes.io/hostname": e.Node},
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: ptr.To[int64](5),
			Containers: []corev1.Container{{
				Name: "main", Image: e.UtilImage, ImagePullPolicy: corev1.PullNever, Command: sleeper,
			}},
		},
	}
	if edit != nil {
		edit(p)
	}
	created, err := e.Kube.CoreV1().Pods(ns).Create(ctx(t), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s/%s: %v", ns, name, err)
	}
	waitPodReady(t, e, ns, created.Name)
	return created
}

func waitPodReady(t *testing.T, e *env, ns, name string) {
	t.Helper()
	waitFor(t, "pod "+ns+"/"+name+" ready", 3*time.Minute, func(c context.Context) (string, bool, error) {
		p, err := e.Kube.CoreV1().Pods(ns).Get(c, name, metav1.GetOptions{})
		if err != nil {
			return "", false, err
		}
		if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
			return "", false, fmt.Errorf("pod %s/%s ended in phase %s", ns, name, p.Status.Phase)
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady {
				return fmt.Sprintf("phase %s, ready %s: %s", p.Status.Phase, c.Status, c.Message), c.Status == corev1.ConditionTrue, nil
			}
		}
		return "phase " + string(p.Status.Phase), false, nil
	})
}

// runPodToCompletion runs a busybox pod with the given shell script (edit
// may replace image and command) and returns its log once it has ended; the
// test fails if it did not succeed.
func runPodToCompletion(t *testing.T, e *env, ns, name, script string, edit func(*corev1.Pod)) string {
	t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			NodeSelector:  map[string]string{"kubernetes.io/hostname": e.Node},
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name: "main", Image: e.UtilImage, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c", script},
			}},
		},
	}
	if edit != nil {
		edit(p)
	}
	if _, err := e.Kube.CoreV1().Pods(ns).Create(ctx(t), p, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s/%s: %v", ns, name, err)
	}
	var phase corev1.PodPhase
	waitFor(t, "pod "+ns+"/"+name+" to finish", 3*time.Minute, func(c context.Context) (string, bool, error) {
		got, err := e.Kube.CoreV1().Pods(ns).Get(c, name, metav1.GetOptions{})
		if err != nil {
			return "", false, err
		}
		phase = got.Status.Phase
		return "phase " + string(phase), phase == corev1.PodSucceeded || phase == corev1.PodFailed, nil
	})
	raw, err := e.Kube.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{Container: "main"}).DoRaw(ctx(t))
	if err != nil {
		t.Fatalf("log of pod %s/%s: %v", ns, name, err)
	}
	if phase != corev1.PodSucceeded {
		t.Fatalf("pod %s/%s failed; log:\n%s", ns, name, raw)
	}
	return string(raw)
}

// deletePod deletes a pod and waits until it is gone: a pod that still
// exists keeps its PVCs from being deleted.
func deletePod(t *testing.T, e *env, ns, name string) {
	t.Helper()
	err := e.Kube.CoreV1().Pods(ns).Delete(ctx(t), name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return
	}
	if err != nil {
		t.Fatalf("delete pod %s/%s: %v", ns, name, err)
	}
	waitFor(t, "pod "+ns+"/"+name+" gone", 2*time.Minute, func(c context.Context) (string, bool, error) {
		_, err := e.Kube.CoreV1().Pods(ns).Get(c, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return "", true, nil
		}
		return "still there", false, err
	})
}

// createSnapshot cuts a VolumeSnapshot of a PVC (class "" leaves the choice
// to the snapshot controller's default for the PVC's driver).
func createSnapshot(t *testing.T, e *env, ns, name, pvc, class string) *snapv1.VolumeSnapshot {
	t.Helper()
	vs := &snapv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       snapv1.VolumeSnapshotSpec{Source: snapv1.VolumeSnapshotSource{PersistentVolumeClaimName: ptr.To(pvc)}},
	}
	if class != "" {
		vs.Spec.VolumeSnapshotClassName = ptr.To(class)
	}
	created, err := e.Snap.SnapshotV1().VolumeSnapshots(ns).Create(ctx(t), vs, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create VolumeSnapshot %s/%s: %v", ns, name, err)
	}
	return created
}

// waitSnapshotReady waits until a VolumeSnapshot is readyToUse; an error in
// its status fails the test at once.
func waitSnapshotReady(t *testing.T, e *env, ns, name string) *snapv1.VolumeSnapshot {
	t.Helper()
	var vs *snapv1.VolumeSnapshot
	waitFor(t, "VolumeSnapshot "+ns+"/"+name+" ready", 2*time.Minute, func(c context.Context) (string, bool, error) {
		var err error
		vs, err = e.Snap.SnapshotV1().VolumeSnapshots(ns).Get(c, name, metav1.GetOptions{})
		if err != nil {
			return "", false, err
		}
		st := vs.Status
		if st == nil {
			return "no status", false, nil
		}
		if st.Error != nil && st.Error.Message != nil {
			return "", false, fmt.Errorf("VolumeSnapshot %s/%s: %s", ns, name, *st.Error.Message)
		}
		return fmt.Sprintf("readyToUse %v", ptr.Deref(st.ReadyToUse, false)), ptr.Deref(st.ReadyToUse, false), nil
	})
	return vs
}

// waitSnapshotError waits until a VolumeSnapshot reports an error and
// returns its message.
func waitSnapshotError(t *testing.T, e *env, ns, name string, timeout time.Duration) string {
	t.Helper()
	var msg string
	waitFor(t, "VolumeSnapshot "+ns+"/"+name+" error", timeout, func(c context.Context) (string, bool, error) {
		vs, err := e.Snap.SnapshotV1().VolumeSnapshots(ns).Get(c, name, metav1.GetOptions{})
		if err != nil {
			return "", false, err
		}
		if vs.Status == nil || vs.Status.Error == nil || vs.Status.Error.Message == nil {
			if vs.Status != nil && ptr.Deref(vs.Status.ReadyToUse, false) {
				return "", false, fmt.Errorf("VolumeSnapshot %s/%s became ready", ns, name)
			}
			return "no error yet", false, nil
		}
		msg = *vs.Status.Error.Message
		return msg, true, nil
	})
	return msg
}

// createClaim creates a PVC, optionally restored from a VolumeSnapshot.
func createClaim(t *testing.T, e *env, ns, name, class, size, fromSnapshot string) *corev1.PersistentVolumeClaim {
	t.Helper()
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptr.To(class),
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceStorage: resource.MustParse(size),
			}},
		},
	}
	if fromSnapshot != "" {
		pvc.Spec.DataSourceRef = &corev1.TypedObjectReference{
			APIGroup: ptr.To(snapv1.GroupName), Kind: "VolumeSnapshot", Name: fromSnapshot,
		}
	}
	created, err := e.Kube.CoreV1().PersistentVolumeClaims(ns).Create(ctx(t), pvc, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create PVC %s/%s: %v", ns, name, err)
	}
	return created
}

// compareRecords fails the test listing every volume and path whose data or
// metadata differ between want and got.
func compareRecords(t *testing.T, want, got dataRecord) {
	t.Helper()
	var diffs []string
	for _, k := range unionKeys(want, got) {
		w, wok := want[k]
		g, gok := got[k]
		switch {
		case !gok:
			diffs = append(diffs, fmt.Sprintf("volume %s missing", k))
		case !wok:
			diffs = append(diffs, fmt.Sprintf("volume %s unexpected", k))
		default:
			for _, d := range diffVolume(w, g) {
				diffs = append(diffs, k+": "+d)
			}
		}
	}
	if len(diffs) > 0 {
		t.Errorf("data differs in %d places:\n%s", len(diffs), strings.Join(diffs, "\n"))
	}
}

// compareVolumes is compareRecords for a single volume.
func compareVolumes(t *testing.T, want, got volumeRecord) {
	t.Helper()
	if diffs := diffVolume(want, got); len(diffs) > 0 {
		t.Errorf("data differs in %d places:\n%s", len(diffs), strings.Join(diffs, "\n"))
	}
}

func diffVolume(want, got volumeRecord) []string {
	var diffs []string
	for _, p := range unionKeys(want, got) {
		w, wok := want[p]
		g, gok := got[p]
		switch {
		case !gok:
			diffs = append(diffs, fmt.Sprintf("  %s missing (want %v)", p, w))
		case !wok:
			diffs = append(diffs, fmt.Sprintf("  %s unexpected (%v)", p, g))
		case w != g:
			diffs = append(diffs, fmt.Sprintf("  %s\n    want %v\n    got  %v", p, w, g))
		}
	}
	return diffs
}

func unionKeys[V any](a, b map[string]V) []string {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// setFault switches on a fault of the test bed's CSI driver for one
// namespace until the test ends: kind "snapshot-error" (content: the error
// message CreateSnapshot returns), "snapshot-slow" (content: seconds a new
// snapshot stays not ready) or "snapshot-delete-slow" (content: seconds
// DeleteSnapshot of a snapshot made in the namespace takes). See
// e2e/csidriver/README.md.
func setFault(t *testing.T, e *env, kind, ns, content string) {
	t.Helper()
	if e.Faults == "" {
		t.Fatal("KBAK_E2E_CSI_FAULTS is not set: the test bed's env.sh names the CSI driver's fault directory")
	}
	path := filepath.Join(e.Faults, kind, ns)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatalf("create fault directory: %v", err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatalf("set fault %s/%s: %v", kind, ns, err)
	}
	t.Cleanup(func() { os.Remove(path) })
}
