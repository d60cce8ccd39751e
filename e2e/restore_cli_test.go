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
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/restore"
	"github.com/kbak/kbak/uploader"
)

// deleteStatefulSetAndClaims removes a StatefulSet and its claims, as a
// disaster would, and waits until they are gone.
func deleteStatefulSetAndClaims(t *testing.T, e *env, ns, name string, replicas int) {
	t.Helper()
	c := ctx(t)
	if err := e.Kube.AppsV1().StatefulSets(ns).Delete(c, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pods of "+name+" gone", 2*time.Minute, func(c context.Context) (string, bool, error) {
		pods, err := e.Kube.CoreV1().Pods(ns).List(c, metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil {
			return "", false, err
		}
		return fmt.Sprintf("%d pods", len(pods.Items)), len(pods.Items) == 0, nil
	})
	for i := range replicas {
		pvc := fmt.Sprintf("data-%s-%d", name, i)
		if err := e.Kube.CoreV1().PersistentVolumeClaims(ns).Delete(c, pvc, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		waitFor(t, "claim "+pvc+" gone", 2*time.Minute, func(c context.Context) (string, bool, error) {
			_, err := e.Kube.CoreV1().PersistentVolumeClaims(ns).Get(c, pvc, metav1.GetOptions{})
			return fmt.Sprint(err), apierrors.IsNotFound(err), nil
		})
	}
}

func statefulSet(t *testing.T, e *env, ns, name string) *appsv1.StatefulSet {
	t.Helper()
	s, err := e.Kube.AppsV1().StatefulSets(ns).Get(ctx(t), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("restored StatefulSet %s/%s: %v", ns, name, err)
	}
	return s
}

// claimNames lists the PVC names of ns that are not being deleted, to show
// that a refused or failed restore left none: a claim kbak deleted may
// linger a moment under its pvc-protection finalizer.
func claimNames(t *testing.T, e *env, ns string) []string {
	t.Helper()
	l, err := e.Kube.CoreV1().PersistentVolumeClaims(ns).List(ctx(t), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range l.Items {
		if p.DeletionTimestamp == nil {
			names = append(names, p.Name)
		}
	}
	return names
}

func restoreJSON(t *testing.T, e *env, wantCode int, args ...string) (*restore.Result, result) {
	t.Helper()
	r := runKbak(t, e, append([]string{"restore", "-o", "json", "--pod-start-timeout", "3m"}, args...)...)
	if r.code != wantCode {
		t.Fatalf("kbak restore: want exit %d, got %s", wantCode, r)
	}
	var res restore.Result
	if wantCode == 0 {
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
			t.Fatalf("decode restore result: %v\n%s", err, r.stdout)
		}
	}
	return &res, r
}

// roundTrip backs up a StatefulSet on class, deletes it and its claims,
// restores with --create-statefulset and compares every file.
func roundTrip(t *testing.T, class string, replicas int32, latest bool) {
	t.Parallel() // its own namespace and backups: runs beside the others
	e := newEnv(t)
	ns := createNamespace(t, e, "rs-trip")
	sts := applyStatefulSet(t, e, ns, "db", replicas, class)
	want := writeOrdinalData(t, e, ns, sts)
	m, _ := backupJSON(t, e, ns, "db", 0)

	deleteStatefulSetAndClaims(t, e, ns, "db", int(replicas))
	ref := []string{m.ID}
	if latest {
		ref = []string{"latest", "--from", "sts/db", "-n", ns}
	}
	res, _ := restoreJSON(t, e, 0, append(ref, "--create-statefulset")...)
	if !res.StatefulSetCreated || !res.StatefulSetReady {
		t.Fatalf("StatefulSet created %v ready %v", res.StatefulSetCreated, res.StatefulSetReady)
	}
	got := readStatefulSetData(t, e, ns, statefulSet(t, e, ns, "db"))
	compareRecords(t, want, got)
	noLeftovers(t, e, ns, false)
}

func TestRestoreSnapshotRoundTrip(t *testing.T) { roundTrip(t, "kbak-snap", 3, false) }

func TestRestoreFilesRoundTrip(t *testing.T) { roundTrip(t, "kbak-nosnap", 2, true) }

func TestRestoreNewNameNamespaceSubsetClassMap(t *testing.T) {
	t.Parallel() // its own namespace and backups: runs beside the others
	e := newEnv(t)
	ns := createNamespace(t, e, "rs-map")
	sts := applyStatefulSet(t, e, ns, "db", 3, e.SnapClass)
	want := writeOrdinalData(t, e, ns, sts)
	m, _ := backupJSON(t, e, ns, "db", 0)

	t.Run("new name beside the running original", func(t *testing.T) {
		res, _ := restoreJSON(t, e, 0, m.ID, "--to-name", "copy", "--create-statefulset")
		if res.StatefulSet != "copy" || !res.StatefulSetReady {
			t.Fatalf("restored %s ready %v", res.StatefulSet, res.StatefulSetReady)
		}
		compareRecords(t, want, readStatefulSetData(t, e, ns, statefulSet(t, e, ns, "copy")))
	})
	t.Run("new namespace", func(t *testing.T) {
		ns2 := createNamespace(t, e, "rs-map-to")
		res, _ := restoreJSON(t, e, 0, m.ID, "--to-namespace", ns2, "--create-statefulset")
		if res.Namespace != ns2 || !res.StatefulSetReady {
			t.Fatalf("restored into %s ready %v", res.Namespace, res.StatefulSetReady)
		}
		compareRecords(t, want, readStatefulSetData(t, e, ns2, statefulSet(t, e, ns2, "db")))
		noLeftovers(t, e, ns2, false)
	})
	t.Run("one ordinal onto another class", func(t *testing.T) {
		_, r := restoreJSON(t, e, 0, m.ID, "--to-name", "part", "--ordinals", "1", "--storage-class-map", e.SnapClass+"="+e.NoSnapClass)
		if !strings.Contains(r.stdout, "part") {
			t.Errorf("result does not name the StatefulSet to create: %s", r.stdout)
		}
		pvc, err := e.Kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx(t), "data-part-1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if cls := *pvc.Spec.StorageClassName; cls != e.NoSnapClass {
			t.Errorf("data-part-1 has class %s, want %s", cls, e.NoSnapClass)
		}
		for _, other := range []string{"data-part-0", "data-part-2"} {
			if _, err := e.Kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx(t), other, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("%s: %v, want not found (only ordinal 1 was asked for)", other, err)
			}
		}
		compareVolumes(t, want[recordKey("data", 1)], readClaim(t, e, ns, "data-part-1"))
	})
	noLeftovers(t, e, ns, false)
}

func TestRestoreConflictsCreateNothing(t *testing.T) {
	e := newEnv(t)
	ns := createNamespace(t, e, "rs-conflict")
	applyStatefulSet(t, e, ns, "db", 2, e.SnapClass)
	m, _ := backupJSON(t, e, ns, "db", 0)
	before := claimNames(t, e, ns)

	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		contains []string
	}{
		{"existing claims and a running StatefulSet", []string{m.ID}, 1, []string{"data-db-0", "already exists"}},
		{"missing storage class", []string{m.ID, "--to-name", "other", "--storage-class-map", e.SnapClass + "=gold"}, 1, []string{"gold"}},
		{"ordinal not in the backup", []string{m.ID, "--to-name", "other", "--ordinals", "7"}, 2, []string{"7"}},
		{"unknown backup", []string{"db-20200101T000000Z-0000"}, 1, []string{"kbak list"}},
		{"latest without --from", []string{"latest", "-n", ns}, 2, []string{"--from"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runKbak(t, e, append([]string{"restore"}, tc.args...)...)
			if r.code != tc.code {
				t.Fatalf("want exit %d, got %s", tc.code, r)
			}
			lastErrorLine(t, r, tc.contains...)
			if after := claimNames(t, e, ns); len(after) != len(before) {
				t.Errorf("a refused restore changed the claims: %v -> %v", before, after)
			}
			noLeftovers(t, e, ns, false)
		})
	}
	// --dry-run prints the plan and creates nothing.
	r := runKbak(t, e, "restore", m.ID, "--to-name", "planned", "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, "data-planned-0") || !strings.Contains(r.stdout, "data-planned-1") {
		t.Fatalf("dry run: %s", r)
	}
	if after := claimNames(t, e, ns); len(after) != len(before) {
		t.Errorf("--dry-run created claims: %v", after)
	}
}

func TestRestoreAndVerifyRejectCorruptObject(t *testing.T) {
	e := newEnv(t)
	ns := createNamespace(t, e, "rs-corrupt")
	sts := applyStatefulSet(t, e, ns, "db", 1, e.SnapClass)
	writeOrdinalData(t, e, ns, sts)
	m, _ := backupJSON(t, e, ns, "db", 0)

	// A good backup verifies, also by a test restore into a scratch namespace.
	r := runKbak(t, e, "verify", m.ID, "--restore-test")
	if r.code != 0 {
		t.Fatalf("verify --restore-test of a good backup: %s", r)
	}
	if _, err := e.Kube.CoreV1().Namespaces().Get(ctx(t), "kbak-verify-"+strings.ToLower(m.ID), metav1.GetOptions{}); err == nil {
		t.Error("the scratch namespace of the test restore is still there")
	}

	// Flip one byte in the middle of the stored archive.
	st := store(t, e)
	key := m.Volumes[0].Key
	rc, err := st.Get(ctx(t), key)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x01
	if err := st.Put(ctx(t), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}

	r = runKbak(t, e, "verify", m.ID)
	if r.code != 1 {
		t.Fatalf("verify of a corrupt backup: %s", r)
	}
	lastErrorLine(t, r, "failed the check")

	before := claimNames(t, e, ns)
	r = runKbak(t, e, "restore", m.ID, "--to-name", "bad", "--pod-start-timeout", "3m")
	if r.code != 1 {
		t.Fatalf("restore of a corrupt backup: %s", r)
	}
	if after := claimNames(t, e, ns); len(after) != len(before) {
		t.Errorf("a failed restore left claims: %v -> %v", before, after)
	}
	noLeftovers(t, e, ns, false)
}

// The disaster-recovery test runs in two phases around a fresh test bed
// (e2e/run.sh): prepare backs up and records the data; the bed is torn down
// and brought up anew with nothing kept but the bucket's objects; restore
// lists and restores from the bucket alone.
func drDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("KBAK_E2E_DR_DIR")
	if dir == "" {
		t.Skip("KBAK_E2E_DR_DIR is not set: e2e/run.sh runs the disaster-recovery phases")
	}
	return dir
}

const drNamespace = "kbak-dr"

func TestDRPrepare(t *testing.T) {
	dir := drDir(t)
	e := newEnv(t)
	if _, err := e.Kube.CoreV1().Namespaces().Create(ctx(t), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: drNamespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sts := applyStatefulSet(t, e, drNamespace, "db", 3, e.SnapClass)
	want := writeOrdinalData(t, e, drNamespace, sts)
	m, _ := backupJSON(t, e, drNamespace, "db", 0)
	b, _ := json.Marshal(want)
	if err := os.WriteFile(filepath.Join(dir, "data.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "backup-id"), []byte(m.ID), 0o600); err != nil {
		t.Fatal(err)
	}

	// An encrypted repository whose read key is stored in it under a
	// passphrase: the read key file is thrown away, the runbook keeps the
	// passphrase.
	enc := drEncryptedRepo(t, e)
	pass := filepath.Join(dir, "passphrase")
	if err := os.WriteFile(pass, []byte("the passphrase of the runbook, kept offline\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wk := filepath.Join(dir, "write.key")
	r := runKbak(t, e, "repo", "init", "--repo", enc, "--write-key-out", wk, "--read-key-out", filepath.Join(t.TempDir(), "read.key"), "--passphrase-file", pass)
	if r.code != 0 {
		t.Fatalf("kbak repo init: %s", r)
	}
	encSts := applyStatefulSet(t, e, drNamespace, "enc", 2, e.SnapClass)
	wantEnc := writeOrdinalData(t, e, drNamespace, encSts)
	if r := runKbakEnv(t, e, []string{"KBAK_REPO=" + enc, "KBAK_KEY_FILE=" + wk}, "backup", "sts/enc", "-n", drNamespace); r.code != 0 {
		t.Fatalf("encrypted backup: %s", r)
	}
	b, _ = json.Marshal(wantEnc)
	if err := os.WriteFile(filepath.Join(dir, "data-enc.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// drEncryptedRepo is the URL of the encrypted repository of the
// disaster-recovery phases: a prefix of the bed's bucket.
func drEncryptedRepo(t *testing.T, e *env) string {
	t.Helper()
	loc, err := uploader.ParseURL(e.Repo)
	if err != nil {
		t.Fatal(err)
	}
	loc.Prefix = "dr-encrypted"
	return loc.String()
}

func TestDRRestore(t *testing.T) {
	dir := drDir(t)
	e := newEnv(t)
	b, err := os.ReadFile(filepath.Join(dir, "data.json"))
	if err != nil {
		t.Fatal(err)
	}
	var want dataRecord
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	id, err := os.ReadFile(filepath.Join(dir, "backup-id"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Kube.CoreV1().Namespaces().Get(ctx(t), drNamespace, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("namespace %s exists on the new cluster (%v): the test bed was not fresh", drNamespace, err)
	}
	// The bucket alone lists the backup.
	r := runKbak(t, e, "list", "-A", "-o", "json")
	var list []catalog.Summary
	if err := decodeList(r, "BackupList", &list); err != nil || r.code != 0 {
		t.Fatalf("kbak list on the new cluster: %v\n%s", err, r)
	}
	found := false
	for _, s := range list {
		found = found || (s.ID == string(id) && s.Status == catalog.StatusCompleted)
	}
	if !found {
		t.Fatalf("kbak list does not show %s as Completed: %+v", id, list)
	}
	t.Cleanup(func() { deleteNamespace(context.Background(), t, e, drNamespace) })
	res, _ := restoreJSON(t, e, 0, "latest", "--from", "sts/db", "-n", drNamespace, "--create-statefulset")
	if !res.StatefulSetReady || !res.CreatedNamespace {
		t.Fatalf("restore on the new cluster: ready %v, created namespace %v", res.StatefulSetReady, res.CreatedNamespace)
	}
	compareRecords(t, want, readStatefulSetData(t, e, drNamespace, statefulSet(t, e, drNamespace, "db")))

	// The encrypted repository, from the bucket and the passphrase alone.
	b, err = os.ReadFile(filepath.Join(dir, "data-enc.json"))
	if err != nil {
		t.Fatal(err)
	}
	var wantEnc dataRecord
	if err := json.Unmarshal(b, &wantEnc); err != nil {
		t.Fatal(err)
	}
	env := []string{"KBAK_REPO=" + drEncryptedRepo(t, e), "KBAK_PASSPHRASE_FILE=" + filepath.Join(dir, "passphrase")}
	r = runKbakEnv(t, e, env, "restore", "latest", "--from", "sts/enc", "-n", drNamespace, "--create-statefulset", "--pod-start-timeout", "3m", "-o", "json")
	var res2 restore.Result
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &res2) != nil || !res2.StatefulSetReady {
		t.Fatalf("encrypted restore from the bucket and the passphrase: %s", r)
	}
	compareRecords(t, wantEnc, readStatefulSetData(t, e, drNamespace, statefulSet(t, e, drNamespace, "enc")))
	noLeftovers(t, e, drNamespace, false)
}

// The S3 endpoint given only by KBAK_S3_ENDPOINT (the repository URL names
// none) reaches the mover pods: a backup and a restore through it succeed,
// and the manifest records the URL the movers were given.
func TestEndpointFromEnvironment(t *testing.T) {
	e := newEnv(t)
	ns := createNamespace(t, e, "s3-env")
	sts := applyStatefulSet(t, e, ns, "db", 1, e.SnapClass)
	want := writeOrdinalData(t, e, ns, sts)
	env := []string{"KBAK_REPO=s3://" + e.Bucket, "KBAK_S3_ENDPOINT=" + e.S3Endpoint}

	r := runKbakEnv(t, e, env, "backup", "sts/db", "-n", ns, "-o", "json")
	if r.code != 0 {
		t.Fatalf("kbak backup with the endpoint in KBAK_S3_ENDPOINT: %s", r)
	}
	var m catalog.Manifest
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
		t.Fatalf("decode backup output: %v\n%s", err, r.stdout)
	}
	checkBackedUp(t, e, &m, want)

	deleteStatefulSetAndClaims(t, e, ns, "db", 1)
	r = runKbakEnv(t, e, env, "restore", m.ID, "--create-statefulset", "--pod-start-timeout", "3m", "-o", "json")
	if r.code != 0 {
		t.Fatalf("kbak restore with the endpoint in KBAK_S3_ENDPOINT: %s", r)
	}
	compareRecords(t, want, readStatefulSetData(t, e, ns, statefulSet(t, e, ns, "db")))
	noLeftovers(t, e, ns, false)
}
