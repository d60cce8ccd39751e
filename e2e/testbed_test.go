//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The tests in this file prove the test bed itself: what kbak's end-to-end
// tests take for granted about the cluster, the CSI drivers and the S3
// server.

// TestBedSnapshotDriver: StatefulSet volumes on the snapshotting driver hold
// the data written to them, a VolumeSnapshot of one becomes ready, a PVC
// restored from it holds the same data, and a second pod can mount a live
// ReadWriteOnce volume read-only next to the app (what kbak's live copy does).
func TestBedSnapshotDriver(t *testing.T) {
	e := newEnv(t)
	ns := createNamespace(t, e, "bed-snap")
	sts := applyStatefulSet(t, e, ns, "web", 3, e.SnapClass)
	want := writeOrdinalData(t, e, ns, sts)
	checkWrittenRecord(t, want, sts.Name, 3)

	t.Run("snapshot restores into a new claim", func(t *testing.T) {
		createSnapshot(t, e, ns, "web-1", "data-web-1", e.SnapshotClass)
		vs := waitSnapshotReady(t, e, ns, "web-1")
		if vs.Status.RestoreSize == nil || vs.Status.RestoreSize.String() != "64Mi" {
			t.Errorf("restoreSize %v, want the claim's 64Mi", vs.Status.RestoreSize)
		}
		createClaim(t, e, ns, "restored", e.SnapClass, "64Mi", "web-1")
		compareVolumes(t, want[recordKey("data", 1)], readClaim(t, e, ns, "restored"))
	})

	t.Run("live claim mounts read-only beside the app", func(t *testing.T) {
		peek := runPod(t, e, ns, "peek", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data-web-0", ReadOnly: true},
			}}}
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "v", MountPath: "/data", ReadOnly: true}}
		})
		defer deletePod(t, e, ns, peek.Name)

		if got := mustExec(t, e, ns, peek.Name, "main", "cat", "/data/hello.txt"); got != "sts=web ordinal=0 claim=data\n" {
			t.Errorf("read through the read-only mount: %q", got)
		}
		_, stderr, err := podExec(ctx(t), e, ns, peek.Name, "main", nil, "sh", "-c", "echo x > /data/denied")
		if err == nil {
			t.Fatal("write through the read-only mount succeeded")
		}
		if !strings.Contains(stderr, "Read-only file system") {
			t.Errorf("write through the read-only mount failed with %q, want a read-only file system error", stderr)
		}
		// The app's own mount stays writable, and the reader sees its writes.
		mustExec(t, e, ns, "web-0", "app", "sh", "-c", "echo live > /data/live.txt")
		defer mustExec(t, e, ns, "web-0", "app", "rm", "/data/live.txt")
		if got := mustExec(t, e, ns, peek.Name, "main", "cat", "/data/live.txt"); got != "live\n" {
			t.Errorf("reader sees %q of the app's write, want %q", got, "live\n")
		}
		compareVolumes(t, want[recordKey("data", 0)], withoutPath(readData(t, e, ns, peek.Name, "main", "/data"), "./live.txt"))
	})
}

// TestBedSnapshotFaults: the CSI driver's fault files make a snapshot fail
// with a given message or stay not ready for a while, per namespace.
func TestBedSnapshotFaults(t *testing.T) {
	e := newEnv(t)
	ns := createNamespace(t, e, "bed-faults")
	applyStatefulSet(t, e, ns, "db", 1, e.SnapClass)

	t.Run("error", func(t *testing.T) {
		setFault(t, e, "snapshot-error", ns, "injected: storage backend offline")
		createSnapshot(t, e, ns, "broken", "data-db-0", e.SnapshotClass)
		msg := waitSnapshotError(t, e, ns, "broken", time.Minute)
		if !strings.Contains(msg, "injected: storage backend offline") {
			t.Errorf("VolumeSnapshot error %q does not carry the injected message", msg)
		}
	})

	t.Run("slow", func(t *testing.T) {
		setFault(t, e, "snapshot-slow", ns, "6")
		start := time.Now()
		createSnapshot(t, e, ns, "slow", "data-db-0", e.SnapshotClass)
		waitFor(t, "VolumeSnapshot "+ns+"/slow bound to a content", time.Minute, func(c context.Context) (string, bool, error) {
			vs, err := e.Snap.SnapshotV1().VolumeSnapshots(ns).Get(c, "slow", metav1.GetOptions{})
			if err != nil {
				return "", false, err
			}
			if vs.Status == nil || vs.Status.BoundVolumeSnapshotContentName == nil {
				return "not bound", false, nil
			}
			if vs.Status.ReadyToUse != nil && *vs.Status.ReadyToUse && time.Since(start) < 6*time.Second {
				return "", false, fmt.Errorf("slow snapshot ready after %s", time.Since(start))
			}
			return "bound", true, nil
		})
		waitSnapshotReady(t, e, ns, "slow")
		if d := time.Since(start); d < 6*time.Second {
			t.Errorf("slow snapshot ready after %s, want at least 6s", d)
		}
	})
}

// checkWrittenRecord makes sure writeOrdinalData wrote what the other tests
// rely on: distinct data per ordinal and the metadata a backup must keep.
func checkWrittenRecord(t *testing.T, rec dataRecord, sts string, replicas int) {
	t.Helper()
	if len(rec) != replicas {
		t.Fatalf("record of %d volumes, want %d", len(rec), replicas)
	}
	seen := map[string]int{}
	for i := range replicas {
		v := rec[recordKey("data", i)]
		checks := []struct {
			path string
			ok   func(fileInfo) bool
		}{
			{"./hello.txt", func(f fileInfo) bool { return f.Type == "file" && f.Mode == "0644" && f.Links == 2 }},
			{"./hardlink.txt", func(f fileInfo) bool { return f.Links == 2 && f.SHA256 == v["./hello.txt"].SHA256 }},
			{"./link", func(f fileInfo) bool { return f.Type == "symlink" && f.Target == "hello.txt" }},
			{"./owned", func(f fileInfo) bool { return f.Type == "dir" && f.Mode == "0755" && f.UID == 1000 && f.GID == 1000 }},
			{"./owned/secret", func(f fileInfo) bool { return f.Mode == "0600" && f.UID == 1000 && f.GID == 1000 }},
			{"./empty", func(f fileInfo) bool { return f.Type == "dir" && f.Mode == "0750" }},
			{"./nested/a", func(f fileInfo) bool { return f.Mode == "2775" && f.UID == 1001 && f.GID == 1002 }},
			{"./nested/a/b/tool.sh", func(f fileInfo) bool { return f.Mode == "0755" }},
			{"./random.bin", func(f fileInfo) bool { return f.Size == 262144 }},
		}
		for _, c := range checks {
			f, ok := v[c.path]
			if !ok || !c.ok(f) {
				t.Errorf("ordinal %d: %s is %v (present %v)", i, c.path, f, ok)
			}
		}
		if _, ok := v["./empty/"]; ok {
			t.Errorf("ordinal %d: empty directory has entries", i)
		}
		seen[v["./hello.txt"].SHA256]++
		seen[v["./random.bin"].SHA256]++
	}
	if len(seen) != 2*replicas {
		t.Errorf("ordinals of %s share content: %v", sts, seen)
	}
}

func withoutPath(v volumeRecord, path string) volumeRecord {
	out := volumeRecord{}
	for k, f := range v {
		if k != path {
			out[k] = f
		}
	}
	// Adding and removing a file changed the root's children only; the root
	// itself is not recorded.
	return out
}

// TestBedFileOnlyDriver: the driver without snapshot support serves volumes,
// and a VolumeSnapshot of one of them reports why it cannot be taken (the
// situation in which kbak falls back to copying files).
func TestBedFileOnlyDriver(t *testing.T) {
	e := newEnv(t)
	ns := createNamespace(t, e, "bed-nosnap")
	sts := applyStatefulSet(t, e, ns, "files", 1, e.NoSnapClass)
	want := writeOrdinalData(t, e, ns, sts)
	checkWrittenRecord(t, want, sts.Name, 1)

	pv := boundVolume(t, e, ns, "data-files-0")
	if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != "nosnap.csi.kbak.io" {
		t.Fatalf("PV %s is not from nosnap.csi.kbak.io: %+v", pv.Name, pv.Spec.PersistentVolumeSource)
	}

	// No class: the snapshot controller looks for a default class of the
	// PVC's driver and finds none.
	createSnapshot(t, e, ns, "files-0", "data-files-0", "")
	msg := waitSnapshotError(t, e, ns, "files-0", time.Minute)
	t.Logf("VolumeSnapshot error: %s", msg)
	if !strings.Contains(msg, "cannot find default snapshot class") {
		t.Errorf("VolumeSnapshot error %q, want it to say no default snapshot class exists", msg)
	}
}

func boundVolume(t *testing.T, e *env, ns, pvc string) *corev1.PersistentVolume {
	t.Helper()
	claim, err := e.Kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx(t), pvc, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get PVC %s/%s: %v", ns, pvc, err)
	}
	if claim.Spec.VolumeName == "" {
		t.Fatalf("PVC %s/%s is not bound", ns, pvc)
	}
	pv, err := e.Kube.CoreV1().PersistentVolumes().Get(ctx(t), claim.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get PV %s: %v", claim.Spec.VolumeName, err)
	}
	return pv
}

// TestBedS3FromPods: a pod reaches the S3 server at the address kbak's
// mover pods are given, and with a presigned request lists the bucket and
// sees an object the host put there.
func TestBedS3FromPods(t *testing.T) {
	e := newEnv(t)
	if e.S3Endpoint == "" || e.Bucket == "" {
		t.Fatal("KBAK_E2E_S3_ENDPOINT and KBAK_E2E_BUCKET must be set by the test bed's env.sh")
	}
	ns := createNamespace(t, e, "bed-s3")
	key := "bed-check/" + ns + ".txt"
	putURL := presign(t, http.MethodPut, e.S3Endpoint+"/"+e.Bucket+"/"+key, nil)
	req, err := http.NewRequestWithContext(ctx(t), http.MethodPut, putURL, strings.NewReader("from the host\n"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("put s3 object %s: %v", key, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("put s3 object %s: %s", key, resp.Status)
	}
	t.Cleanup(func() {
		delURL := presign(t, http.MethodDelete, e.S3Endpoint+"/"+e.Bucket+"/"+key, nil)
		req, _ := http.NewRequest(http.MethodDelete, delURL, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	})

	u, err := url.Parse(e.S3Endpoint)
	if err != nil {
		t.Fatalf("parse KBAK_E2E_S3_ENDPOINT: %v", err)
	}
	listURL := presign(t, http.MethodGet, e.S3Endpoint+"/"+e.Bucket, url.Values{"list-type": {"2"}, "prefix": {"bed-check/"}})
	script := fmt.Sprintf(`set -e
echo '--- unsigned'
printf 'GET /%s HTTP/1.0\r\nHost: %s\r\n\r\n' | nc -w 10 %s %s
echo
echo '--- presigned'
wget -q -O - '%s'
`, e.Bucket, u.Host, u.Hostname(), u.Port(), listURL)
	out := runPodToCompletion(t, e, ns, "s3-check", script, nil)
	unsigned, presigned, _ := strings.Cut(out, "--- presigned")
	t.Logf("anonymous request:\n%s", unsigned)
	if !strings.Contains(unsigned, " 403 ") || !strings.Contains(unsigned, "<Code>AccessDenied</Code>") {
		t.Errorf("anonymous request from a pod: want a 403 AccessDenied S3 error, got:\n%s", unsigned)
	}
	if !strings.Contains(presigned, "<ListBucketResult") || !strings.Contains(presigned, "<Key>"+key+"</Key>") {
		t.Errorf("presigned listing from a pod: want a ListBucketResult naming %s, got:\n%s", key, presigned)
	}
}

// presign returns a URL for one S3 request signed with the test bed's
// credentials, for pods that have no S3 client (busybox wget).
func presign(t *testing.T, method, rawURL string, query url.Values) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	for k, v := range query {
		q[k] = v
	}
	q.Set("X-Amz-Expires", "900")
	u.RawQuery = q.Encode()
	req, err := http.NewRequest(method, u.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	region := os.Getenv("AWS_REGION")
	if region == "" {
		region = "us-east-1"
	}
	creds := aws.Credentials{AccessKeyID: os.Getenv("AWS_ACCESS_KEY_ID"), SecretAccessKey: os.Getenv("AWS_SECRET_ACCESS_KEY")}
	signed, _, err := v4.NewSigner().PresignHTTP(context.Background(), creds, req, "UNSIGNED-PAYLOAD", "s3", region, time.Now())
	if err != nil {
		t.Fatalf("presign %s %s: %v", method, rawURL, err)
	}
	return signed
}

// TestBedAPIServerFromPods: a pod reaches the API server through the
// kubernetes Service and is authenticated as its ServiceAccount, which is
// how kbak's scheduled CronJob talks to the cluster. The client is the test
// bed's kubectl image: client-go's in-cluster configuration, as kbak uses.
func TestBedAPIServerFromPods(t *testing.T) {
	e := newEnv(t)
	ns := createNamespace(t, e, "bed-api")
	out := runPodToCompletion(t, e, ns, "api-check", "", func(p *corev1.Pod) {
		p.Spec.Containers[0].Image = e.KubectlImage
		p.Spec.Containers[0].Command = []string{"/kubectl", "auth", "whoami", "-o", "json"}
	})
	var review struct {
		Status struct {
			UserInfo struct {
				Username string   `json:"username"`
				Groups   []string `json:"groups"`
			} `json:"userInfo"`
		} `json:"status"`
	}
	if err := json.NewDecoder(bytes.NewReader([]byte(out))).Decode(&review); err != nil {
		t.Fatalf("decode SelfSubjectReview from the pod: %v; output:\n%s", err, out)
	}
	want := "system:serviceaccount:" + ns + ":default"
	if review.Status.UserInfo.Username != want {
		t.Errorf("pod authenticated as %q, want %q", review.Status.UserInfo.Username, want)
	}
	t.Logf("pod authenticated as %s, groups %v", review.Status.UserInfo.Username, review.Status.UserInfo.Groups)
}
