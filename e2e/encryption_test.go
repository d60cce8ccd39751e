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
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kbak/kbak/deploy"
	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/repo"
	"github.com/kbak/kbak/internal/seal"
	"github.com/kbak/kbak/restore"
	"github.com/kbak/kbak/uploader"
)

// encryptedRepo is a repository of a test's own (a prefix of the bed's
// bucket), created encrypted with its key files.
type encryptedRepo struct {
	url               string
	store             uploader.Store
	writeKey, readKey string // key files
}

// newEncryptedRepo runs kbak repo init under prefix "t-"+ns; extra are
// further init flags. Its objects go when the test ends.
func newEncryptedRepo(t *testing.T, e *env, ns string, extra ...string) encryptedRepo {
	t.Helper()
	url, st := ownRepository(t, e, ns)
	dir := t.TempDir()
	er := encryptedRepo{url: url, store: st, writeKey: filepath.Join(dir, "write.key"), readKey: filepath.Join(dir, "read.key")}
	r := runKbak(t, e, append([]string{"repo", "init", "--repo", er.url, "--write-key-out", er.writeKey, "--read-key-out", er.readKey}, extra...)...)
	if r.code != 0 {
		t.Fatalf("kbak repo init: %s", r)
	}
	return er
}

// run runs kbak against the repository with key (a key file, or "").
func (er encryptedRepo) run(t *testing.T, e *env, key string, args ...string) result {
	t.Helper()
	env := []string{"KBAK_REPO=" + er.url}
	if key != "" {
		env = append(env, "KBAK_KEY_FILE="+key)
	}
	return runKbakEnv(t, e, env, args...)
}

// catalog opens the repository's catalog in the test with key file f.
func (er encryptedRepo) catalog(t *testing.T, f string) *catalog.Catalog {
	t.Helper()
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	k, err := seal.ParseKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return catalog.New(er.store, k)
}

// The promise of the two keys, on the test bed: a schedule whose Secret
// holds only the write key backs up and prunes by its policy; with that
// key, list works while describe of the spec, verify --read-data and
// restore each fail with one line naming the read key and create nothing;
// no object of the bucket holds plaintext of the volumes or of the spec;
// the operator restores with the read key; a wrong key, no key and a
// tampered pack each fail with one clear line and leave nothing.
func TestEncryptedBackups(t *testing.T) {
	t.Parallel() // waits for CronJob runs: beside the other waiters
	e := newEnv(t)
	ns := createNamespace(t, e, "enc")
	er := newEncryptedRepo(t, e, ns)
	const specMarker = "SPEC-PLAINTEXT-9f3c2d"
	const dataMarker = "VOLUME-PLAINTEXT-71b0e4"
	sts := applyStatefulSet(t, e, ns, "db", 2, e.SnapClass, withPodSpec(func(ps *corev1.PodSpec) {
		ps.Containers[0].Env = append(ps.Containers[0].Env, corev1.EnvVar{Name: "DB_PASSWORD", Value: specMarker})
	}))
	writeOrdinalData(t, e, ns, sts)
	dir := mountPathOf(t, sts, "data")
	for i := range 2 {
		mustExec(t, e, ns, fmt.Sprintf("db-%d", i), "app", "sh", "-c", "for i in $(seq 2000); do echo "+dataMarker+"; done > "+dir+"/marker.txt && sync")
	}
	want := readStatefulSetData(t, e, ns, sts)

	// The schedule's Secret holds the write key; one holding a read key
	// is refused.
	createStoreSecret(t, e, ns)
	keySecret := func(name, file string) {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		_, err = e.Kube.CoreV1().Secrets(ns).Create(ctx(t), &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Data:       map[string][]byte{deploy.KeyRepoKey: b},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
	keySecret("kbak-write-key", er.writeKey)
	keySecret("kbak-read-key", er.readKey)
	t.Cleanup(func() { deleteClusterObjects(t, e, ns) })
	schedule := func(name, secret string) result {
		return er.run(t, e, "", "schedule", "create", name, "sts/db", "-n", ns, "--cron", "*/1 * * * *",
			"--secret", storeSecret, "--key-secret", secret, "--image", e.KbakImage, "--keep-last", "1")
	}
	if r := schedule("withread", "kbak-read-key"); r.code == 0 {
		t.Fatalf("a schedule with a read key in its Secret was created: %s", r)
	} else {
		lastErrorLine(t, r, "read key", "write key")
	}
	if r := schedule("enc", "kbak-write-key"); r.code != 0 {
		t.Fatalf("kbak schedule create: %s", r)
	}
	cat := er.catalog(t, er.writeKey)
	seen := map[string]bool{}
	waitFor(t, "two scheduled backups, the first pruned", 6*time.Minute, func(c context.Context) (string, bool, error) {
		jobs, err := scheduleJobs(c, e, ns, "enc")
		if err != nil {
			return "", false, err
		}
		if f := failedJobs(jobs); len(f) > 0 {
			return "", false, fmt.Errorf("scheduled Jobs failed: %v", f)
		}
		list, err := completedBackups(c, cat, ns, "db")
		if err != nil {
			return "", false, err
		}
		for _, b := range list {
			seen[b.ID] = true
		}
		running := slices.ContainsFunc(jobs, func(j batchv1.Job) bool { return j.Status.Active > 0 })
		return fmt.Sprintf("%d seen, %d kept", len(seen), len(list)), len(seen) >= 2 && len(list) == 1 && !running, nil
	})
	if r := runKbak(t, e, "schedule", "delete", "enc", "-n", ns); r.code != 0 {
		t.Fatalf("kbak schedule delete: %s", r)
	}
	list, err := completedBackups(ctx(t), cat, ns, "db")
	if err != nil || len(list) != 1 {
		t.Fatalf("after the schedule: %v %v", list, err)
	}
	id := list[0].ID

	// What the write key does and does not do.
	r := er.run(t, e, er.writeKey, "list", "-n", ns, "-o", "json")
	var summaries []catalog.Summary
	if r.code != 0 || decodeList(r, "BackupList", &summaries) != nil || len(summaries) != 1 || summaries[0].ID != id {
		t.Fatalf("list with the write key: %s", r)
	}
	// What the backup added, and the shared data it draws on.
	if s := summaries[0]; s.StoredBytes <= 0 || s.RepositoryBytes < s.StoredBytes || s.RawBytes <= 0 {
		t.Errorf("list -o json: source %d, added %d, repository %d bytes; want all three", s.RawBytes, s.StoredBytes, s.RepositoryBytes)
	}
	if r := er.run(t, e, er.writeKey, "describe", id); r.code != 0 || !strings.Contains(r.stdout, "sealed") {
		t.Errorf("describe with the write key: %s", r)
	}
	before := claimNames(t, e, ns)
	for _, args := range [][]string{
		{"describe", id, "-o", "json"},
		{"verify", id, "--read-data"},
		{"restore", id, "--to-name", "bad", "--pod-start-timeout", "3m"},
	} {
		r := er.run(t, e, er.writeKey, args...)
		if r.code == 0 {
			t.Errorf("%s with the write key succeeded: %s", args[0], r)
			continue
		}
		lastErrorLine(t, r, "read key")
	}
	if after := claimNames(t, e, ns); len(after) != len(before) {
		t.Errorf("a refused restore made claims: %v -> %v", before, after)
	}

	// Nothing in the bucket reads as the volumes or the spec.
	var keys []string
	er.store.List(ctx(t), "", func(oi uploader.ObjectInfo) error { keys = append(keys, oi.Key); return nil })
	for _, k := range keys {
		rc, err := er.store.Get(ctx(t), k)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		for _, plain := range []string{specMarker, dataMarker, "marker.txt", "DB_PASSWORD"} {
			if bytes.Contains(b, []byte(plain)) {
				t.Errorf("object %s holds %q in plaintext", k, plain)
			}
		}
	}
	t.Logf("%d objects of the bucket checked for plaintext", len(keys))

	// The operator restores with the read key.
	deleteStatefulSetAndClaims(t, e, ns, "db", 2)
	r = er.run(t, e, er.readKey, "restore", id, "-o", "json", "--create-statefulset", "--pod-start-timeout", "3m")
	var res restore.Result
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &res) != nil || !res.StatefulSetReady {
		t.Fatalf("restore with the read key: %s", r)
	}
	got := readStatefulSetData(t, e, ns, statefulSet(t, e, ns, "db"))
	compareRecords(t, want, got)
	restored := statefulSet(t, e, ns, "db")
	if env := restored.Spec.Template.Spec.Containers[0].Env; !slices.ContainsFunc(env, func(v corev1.EnvVar) bool { return v.Value == specMarker }) {
		t.Errorf("the restored StatefulSet lost its sealed spec's env: %v", env)
	}

	// A wrong key and no key.
	other, _ := age.GenerateX25519Identity()
	wrong := filepath.Join(t.TempDir(), "wrong.key")
	os.WriteFile(wrong, []byte(other.String()+"\n"), 0o600)
	if r := er.run(t, e, wrong, "list"); r.code == 0 {
		t.Errorf("list with a wrong key: %s", r)
	} else {
		lastErrorLine(t, r, "does not open")
	}
	if r := er.run(t, e, "", "list"); r.code == 0 {
		t.Errorf("list with no key: %s", r)
	} else {
		lastErrorLine(t, r, "encrypted", "--key-file")
	}

	// A tampered pack: verify and restore fail, the restore leaves nothing.
	var packs []string
	er.store.List(ctx(t), repo.Keys.PackPrefix(), func(oi uploader.ObjectInfo) error { packs = append(packs, oi.Key); return nil })
	for _, p := range packs {
		rc, err := er.store.Get(ctx(t), p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		for i := 100; i < len(b); i += 64 << 10 {
			b[i] ^= 0x40 // a byte in every blob of more than 64 KiB
		}
		if err := er.store.Put(ctx(t), p, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
	if r := er.run(t, e, er.readKey, "verify", id, "--read-data"); r.code != 1 {
		t.Errorf("verify --read-data of a tampered pack: %s", r)
	}
	before = claimNames(t, e, ns)
	r = er.run(t, e, er.readKey, "restore", id, "--to-name", "bad", "--pod-start-timeout", "3m")
	if r.code != 1 {
		t.Fatalf("restore from a tampered pack: %s", r)
	}
	lastErrorLine(t, r, "pack")
	if after := claimNames(t, e, ns); len(after) != len(before) {
		t.Errorf("a failed restore left claims: %v -> %v", before, after)
	}
	noLeftovers(t, e, ns, false)
}
