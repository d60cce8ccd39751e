//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kbak/kbak/internal/repo"
	"github.com/kbak/kbak/uploader"
)

// Immutable backups on the test bed: the mover pods write every object of a
// --lock-days backup under Object Lock retention; kbak delete keeps the
// backup and says until when, in one line, and it stays listed and
// restorable; --lock-days into a bucket without Object Lock is one line
// and creates nothing.
func TestImmutableBackups(t *testing.T) {
	e := newEnv(t)
	ns := createNamespace(t, e, "lock")
	sts := applyStatefulSet(t, e, ns, "db", 1, e.SnapClass)
	writeOrdinalData(t, e, ns, sts)

	bucket := "kbak-e2e-" + ns
	if _, err := s3Client(e).CreateBucket(ctx(t), &s3.CreateBucketInput{Bucket: aws.String(bucket), ObjectLockEnabledForBucket: aws.Bool(true)}); err != nil {
		t.Fatalf("create a bucket with Object Lock: %v", err)
	}
	loc, err := uploader.ParseURL(e.Repo)
	if err != nil {
		t.Fatal(err)
	}
	loc.Bucket, loc.Prefix = bucket, ""
	env := []string{"KBAK_REPO=" + loc.String()}

	before := claimNames(t, e, ns)
	r := runKbak(t, e, "backup", "sts/db", "-n", ns, "--lock-days", "1")
	if r.code != 1 {
		t.Fatalf("--lock-days into a bucket without Object Lock: %s", r)
	}
	lastErrorLine(t, r, "Object Lock")
	if after := claimNames(t, e, ns); len(after) != len(before) {
		t.Errorf("a refused backup made claims: %v -> %v", before, after)
	}

	r = runKbakEnv(t, e, env, "backup", "sts/db", "-n", ns, "--lock-days", "1", "-o", "json")
	if r.code != 0 {
		t.Fatalf("backup --lock-days 1: %s", r)
	}
	id := backupIDOf(t, r.stdout)
	st, err := uploader.Open(ctx(t), loc.String(), uploader.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var packs []string
	st.List(ctx(t), repo.Keys.PackPrefix(), func(oi uploader.ObjectInfo) error { packs = append(packs, oi.Key); return nil })
	if len(packs) == 0 {
		t.Fatal("the backup wrote no pack")
	}
	for _, k := range packs {
		oi, err := st.Stat(ctx(t), k)
		if err != nil || !oi.Locked(time.Now()) || oi.RetainUntil.Before(time.Now().Add(23*time.Hour)) {
			t.Errorf("pack %s written by a mover pod: retain until %v (%v); want about a day from now", k, oi.RetainUntil, err)
		}
	}

	r = runKbakEnv(t, e, env, "delete", id, "--yes")
	if r.code != 0 || !strings.Contains(r.stdout+r.stderr, "Object Lock") {
		t.Fatalf("delete of a locked backup: want exit 0 and the lock named: %s", r)
	}
	if r := runKbakEnv(t, e, env, "list", "-n", ns); r.code != 0 || !strings.Contains(r.stdout, id) {
		t.Errorf("the locked backup is gone from the listing: %s", r)
	}
	if r := runKbakEnv(t, e, env, "verify", id, "--read-data"); r.code != 0 {
		t.Errorf("verify --read-data of the locked backup: %s", r)
	}
	noLeftovers(t, e, ns, false)
}
