//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/kube"
	"github.com/kbak/kbak/uploader"
)

// The kbak under test: the CLI built from this tree, and the same code as the
// mover image the cluster runs, so a test never passes against a stale image.
var (
	kbakOnce sync.Once
	kbakPath string
	kbakErr  error
)

func kbakBinary(t *testing.T) string {
	t.Helper()
	kbakOnce.Do(func() {
		root, err := filepath.Abs("..")
		if err != nil {
			kbakErr = err
			return
		}
		kbakPath = filepath.Join(os.TempDir(), "kbak-e2e-bin", "kbak")
		build := exec.Command("go", "build", "-o", kbakPath, "./cmd/kbak")
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			kbakErr = fmt.Errorf("build kbak: %v\n%s", err, out)
			return
		}
		// The bed's name for it (KBAK_E2E_KBAK_IMAGE): a dev build's.
		img := exec.Command("make", "-s", "image", "VERSION=dev")
		img.Dir = root
		if out, err := img.CombinedOutput(); err != nil {
			kbakErr = fmt.Errorf("make image: %v\n%s", err, out)
			return
		}
		dir := os.Getenv("KBAK_E2E_DIR")
		imp := exec.Command("ctr", "--address", filepath.Join(dir, "containerd", "containerd.sock"), "-n", "k8s.io",
			"images", "import", filepath.Join(root, "dist", "kbak-image.tar"))
		if out, err := imp.CombinedOutput(); err != nil {
			kbakErr = fmt.Errorf("import kbak image: %v\n%s", err, out)
		}
	})
	if kbakErr != nil {
		t.Fatal(kbakErr)
	}
	return kbakPath
}

// result of one kbak run.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// kbakCmd prepares a kbak command with the test bed's environment
// (KUBECONFIG, KBAK_REPO, S3 credentials) and its mover image.
func kbakCmd(t *testing.T, e *env, args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	return kbakCmdEnv(t, e, nil, args...)
}

// kbakCmdEnv is kbakCmd with env added last (a later value of a variable
// wins over the test bed's).
func kbakCmdEnv(t *testing.T, e *env, env []string, args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(kbakBinary(t), args...)
	cmd.Env = append(append(os.Environ(), "KBAK_MOVER_IMAGE="+e.KbakImage, "KBAK_REPO="+e.Repo), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	return cmd, &out, &errb
}

// runKbak runs kbak to its end.
func runKbak(t *testing.T, e *env, args ...string) result {
	t.Helper()
	return runKbakEnv(t, e, nil, args...)
}

// runKbakEnv is runKbak with env added to the test bed's environment.
func runKbakEnv(t *testing.T, e *env, env []string, args ...string) result {
	t.Helper()
	cmd, out, errb := kbakCmdEnv(t, e, env, args...)
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run kbak %v: %v", args, err)
	}
	r := result{code: code, stdout: out.String(), stderr: errb.String()}
	t.Logf("kbak %s: exit %d\n%s", strings.Join(args, " "), code, indent(r.stderr))
	return r
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}

// backupJSON runs `kbak backup sts/NAME -n NS -o json ARGS...` and decodes
// the manifest it prints.
func backupJSON(t *testing.T, e *env, ns, sts string, wantCode int, args ...string) (*catalog.Manifest, result) {
	t.Helper()
	r := runKbak(t, e, append([]string{"backup", "sts/" + sts, "-n", ns, "-o", "json"}, args...)...)
	if r.code != wantCode {
		t.Fatalf("kbak backup: want exit %d, got %s", wantCode, r)
	}
	if strings.TrimSpace(r.stdout) == "" {
		return nil, r
	}
	var m catalog.Manifest
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
		t.Fatalf("decode backup output: %v\n%s", err, r.stdout)
	}
	return &m, r
}

// decodeList decodes what `kbak VERB -o json` prints of several things:
// a list of kind, apiVersion kbak.io/v1, whose items go to items.
func decodeList(r result, kind string, items any) error {
	var l struct {
		APIVersion string          `json:"apiVersion"`
		Kind       string          `json:"kind"`
		Items      json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &l); err != nil {
		return err
	}
	if l.APIVersion != catalog.APIVersion || l.Kind != kind {
		return fmt.Errorf("printed apiVersion %q kind %q, want %s %s", l.APIVersion, l.Kind, catalog.APIVersion, kind)
	}
	return json.Unmarshal(l.Items, items)
}

// lastErrorLine checks kbak's promise for failures: the last stderr line is
// one "kbak: " line naming the problem.
func lastErrorLine(t *testing.T, r result, contains ...string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "kbak: ") {
		t.Fatalf("last stderr line is not a kbak error line: %q", last)
	}
	for _, c := range contains {
		if !strings.Contains(last, c) {
			t.Errorf("error line %q does not mention %q", last, c)
		}
	}
}

// noLeftovers asserts that nothing kbak creates in a cluster is left in ns:
// no pods, PVCs, Secrets or VolumeSnapshots with kbak's label, except
// snapshots kept on purpose when keptSnapshots is set. Deletion in
// Kubernetes is asynchronous (finalizers, the CSI driver), so objects kbak
// deleted get a minute to go. An object still there after that but marked
// for deletion was deleted by kbak and is held by a controller (the snapshot
// controller keeps the finalizer of a snapshot whose creation failed until
// its next resync): it is logged, not failed. An object kbak never deleted
// fails the test.
func noLeftovers(t *testing.T, e *env, ns string, keptSnapshots bool) {
	t.Helper()
	var left, deleting []string
	deadline := time.Now().Add(time.Minute)
	for {
		left, deleting = leftovers(t, e, ns, keptSnapshots)
		if len(left)+len(deleting) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	if len(deleting) > 0 {
		t.Logf("deleted by kbak, still finishing in the cluster after a minute: %s", strings.Join(deleting, ", "))
	}
	if len(left) > 0 {
		t.Errorf("left in namespace %s a minute after the run, never deleted: %s", ns, strings.Join(left, ", "))
	}
}

// leftovers lists kbak's objects in ns, and the VolumeSnapshotContents of
// its snapshots: those not deleted, and those marked for deletion.
func leftovers(t *testing.T, e *env, ns string, keptSnapshots bool) (left, deleting []string) {
	t.Helper()
	sel := metav1.ListOptions{LabelSelector: kube.LabelManagedBy + "=kbak"}
	c := ctx(t)
	add := func(kind string, m metav1.ObjectMeta) {
		if m.DeletionTimestamp != nil {
			deleting = append(deleting, kind+"/"+m.Name)
		} else {
			left = append(left, kind+"/"+m.Name)
		}
	}
	pods, err := e.Kube.CoreV1().Pods(ns).List(c, sel)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range pods.Items {
		add("pod", o.ObjectMeta)
	}
	pvcs, err := e.Kube.CoreV1().PersistentVolumeClaims(ns).List(c, sel)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range pvcs.Items {
		add("pvc", o.ObjectMeta)
	}
	secrets, err := e.Kube.CoreV1().Secrets(ns).List(c, sel)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range secrets.Items {
		add("secret", o.ObjectMeta)
	}
	// Snapshots and their contents are told apart by kbak's own rule: a
	// snapshot deleted and held by the snapshot controller's finalizers,
	// or the content of a snapshot gone that is being deleted, is deleting.
	snaps, err := e.Snap.SnapshotV1().VolumeSnapshots(ns).List(c, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	classified := func(kind, name string, s kube.SnapshotStatus) {
		switch s.State {
		case kube.SnapshotDeleting:
			deleting = append(deleting, kind+"/"+name)
		case kube.SnapshotLeft:
			left = append(left, kind+"/"+name)
		}
	}
	withSnapshot := map[string]bool{}
	for i := range snaps.Items {
		o := &snaps.Items[i]
		withSnapshot[o.Name] = true
		if keptSnapshots && o.Labels[kube.LabelRetained] == "true" {
			continue
		}
		classified("volumesnapshot", o.Name, kube.ClassifySnapshot(kube.RefOf(o), o, nil))
	}
	// Group snapshots: kbak deletes its own with the run, and the snapshot
	// controller their members and contents.
	groups, err := e.Snap.GroupsnapshotV1beta2().VolumeGroupSnapshots(ns).List(c, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range groups.Items {
		add("volumegroupsnapshot", o.ObjectMeta)
	}
	groupContents, err := e.Snap.GroupsnapshotV1beta2().VolumeGroupSnapshotContents().List(c, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range groupContents.Items {
		if o.Spec.VolumeGroupSnapshotRef.Namespace == ns {
			add("volumegroupsnapshotcontent", o.ObjectMeta)
		}
	}
	// No source claim keeps the label a group snapshot selected it by.
	claims, err := e.Kube.CoreV1().PersistentVolumeClaims(ns).List(c, metav1.ListOptions{LabelSelector: kube.LabelGroup})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range claims.Items {
		left = append(left, "label "+kube.LabelGroup+" on pvc/"+o.Name)
	}
	contents, err := e.Snap.SnapshotV1().VolumeSnapshotContents().List(c, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range contents.Items {
		ct := &contents.Items[i]
		r := ct.Spec.VolumeSnapshotRef
		if r.Namespace != ns || withSnapshot[r.Name] {
			continue // another namespace's, or its snapshot speaks for it
		}
		ref := kube.SnapshotRef{Namespace: ns, Name: r.Name, UID: r.UID, Content: ct.Name}
		classified("volumesnapshotcontent", ct.Name, kube.ClassifySnapshot(ref, nil, ct))
	}
	return left, deleting
}

// store opens the test bed's repository as kbak does.
func store(t *testing.T, e *env) uploader.Store {
	t.Helper()
	s, err := uploader.Open(ctx(t), e.Repo, uploader.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// ownRepository is a repository of the test's own: a prefix "t-"+ns of
// the bed's bucket, for data no other test may share (packs, keys). Its
// objects go when the test ends.
func ownRepository(t *testing.T, e *env, ns string) (string, uploader.Store) {
	t.Helper()
	loc, err := uploader.ParseURL(e.Repo)
	if err != nil {
		t.Fatal(err)
	}
	loc.Prefix = "t-" + ns
	st, err := uploader.Open(ctx(t), loc.String(), uploader.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c := context.Background()
		var keys []string
		st.List(c, "", func(oi uploader.ObjectInfo) error { keys = append(keys, oi.Key); return nil })
		for _, k := range keys {
			st.Delete(c, k)
		}
	})
	return loc.String(), st
}

// objectsOf lists the repository keys of every backup of ns.
func objectsOf(t *testing.T, e *env, ns string) []string {
	t.Helper()
	var keys []string
	for _, root := range []string{catalog.Root, catalog.RootV2} {
		err := store(t, e).List(ctx(t), root+ns+"/", func(o uploader.ObjectInfo) error {
			keys = append(keys, o.Key)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

// s3Client is an S3 client of the bed's server, with the bed's credentials.
func s3Client(e *env) *s3.Client {
	return s3.New(s3.Options{
		Region: os.Getenv("AWS_REGION"), BaseEndpoint: aws.String(e.S3Endpoint), UsePathStyle: true,
		Credentials: aws.NewCredentialsCache(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: os.Getenv("AWS_ACCESS_KEY_ID"), SecretAccessKey: os.Getenv("AWS_SECRET_ACCESS_KEY")}, nil
		})),
	})
}

// noIncompleteUploads asserts the bucket holds no unfinished multipart upload.
func noIncompleteUploads(t *testing.T, e *env) {
	t.Helper()
	c := ctx(t)
	client := s3Client(e)
	out, err := client.ListMultipartUploads(c, &s3.ListMultipartUploadsInput{Bucket: aws.String(e.Bucket)})
	if err != nil {
		t.Fatalf("list multipart uploads: %v", err)
	}
	if len(out.Uploads) > 0 {
		var keys []string
		for _, u := range out.Uploads {
			keys = append(keys, aws.ToString(u.Key))
		}
		t.Errorf("incomplete multipart uploads left in the bucket: %s", strings.Join(keys, ", "))
	}
}

// restoredRecord extracts a backed-up volume on this machine with kbak's own
// mover and records it the way the pods record live volumes.
func restoredRecord(t *testing.T, e *env, v catalog.Volume) volumeRecord {
	t.Helper()
	dir := t.TempDir()
	r := runKbak(t, e, "mover", "download", "--key", v.Key, "--sha256", v.SHA256, "--target", dir, "--progress-interval", "0")
	if r.code != 0 {
		t.Fatalf("download %s: %s", v.Key, r)
	}
	out, err := exec.Command("sh", "-c", readScript, "read", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("record %s: %v\n%s", dir, err, out)
	}
	rec, err := parseRecord(string(out))
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// checkBackedUp compares every Completed volume of m with what the pods
// wrote: each ordinal's archive holds exactly its own data.
func checkBackedUp(t *testing.T, e *env, m *catalog.Manifest, want dataRecord) {
	t.Helper()
	got := dataRecord{}
	for _, v := range m.Volumes {
		if v.Status == catalog.VolumeCompleted {
			got[recordKey(v.ClaimTemplate, v.Ordinal)] = restoredRecord(t, e, v)
		}
	}
	compareRecords(t, want, got)
}

// sigint interrupts a running kbak as Ctrl-C does and waits for its end.
func sigint(t *testing.T, cmd *exec.Cmd, after func() bool) result {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for !after() {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatal("the moment to interrupt kbak never came")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return result{code: code}
	case <-time.After(3 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatal("kbak did not stop within 3 minutes of SIGINT")
		return result{}
	}
}
