package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/mover"
	"github.com/kbak/kbak/internal/seal"
	"github.com/kbak/kbak/internal/upkeep"
	"github.com/kbak/kbak/uploader"
	"github.com/kbak/kbak/uploader/uploadertest"
)

// moverResult is the result line of a `kbak mover upload`.
func moverResult(t *testing.T, stdout string) mover.Result {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(stdout))
	for sc.Scan() {
		var ev mover.Event
		if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Type == mover.EventResult && ev.Result != nil {
			return *ev.Result
		}
	}
	t.Fatalf("no result line in the mover's output:\n%s", stdout)
	return mover.Result{}
}

// lockedBackup backs up src as a backup of format 2 would be, with Object
// Lock: the volume through `kbak mover upload --lock-days 1`, the manifest
// through a store with the same retention, as `kbak backup --lock-days 1`
// opens it.
func lockedBackup(t *testing.T, repoURL string, opts uploader.Options, src string, created time.Time) (*catalog.Manifest, catalog.Layout) {
	t.Helper()
	id, err := catalog.NewID("db", created, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	l, err := catalog.NewLayout("shop", "db", id, catalog.FormatRepo)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errs := kbak(t, "mover", "upload", "--repo", repoURL, "--lock-days", "1", "--progress-interval", "0",
		"--source", src, "--key", l.VolumeKey("data-db-0"), "--result-key", l.ResultKey("data-db-0"))
	if code != exitOK {
		t.Fatalf("mover upload --lock-days 1: exit %d: %s", code, errs)
	}
	res := moverResult(t, out)
	opts.Retention = uploader.Retention{Days: 1}
	store, err := uploader.Open(t.Context(), repoURL, opts)
	if err != nil {
		t.Fatal(err)
	}
	m := &catalog.Manifest{Format: catalog.FormatRepo, ID: id, Namespace: "shop", StatefulSet: "db",
		Created: created, Started: created, Finished: created.Add(time.Second), Status: catalog.StatusCompleted,
		Volumes: []catalog.Volume{{
			ClaimTemplate: "data", PVC: "data-db-0", Method: catalog.MethodFiles, Consistency: catalog.ConsistencyLive,
			Key: res.Key, RawBytes: res.RawBytes, StoredBytes: res.StoredBytes, Files: res.Files,
			Compression: res.Compression, Status: catalog.VolumeCompleted,
		}}}
	if err := catalog.New(store, seal.Key{}).WriteManifest(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	return m, l
}

// Immutable backups against a real bucket with Object Lock (MinIO): what
// `kbak mover upload --lock-days` and the manifest store write is under
// retention, the repository's lock object is not (it is gone after the
// upload); delete and prune leave the locked backups listed and readable
// and say until when, exit 0; gc reports a locked backup without a
// manifest as locked, not removed, and aborts stale multipart uploads; a
// bucket without Object Lock refuses --lock-days and is left empty.
func TestObjectLockCLI(t *testing.T) {
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	srv := uploadertest.StartMinIO(t)
	s3Env(t, srv)
	const bucket = "kbak-locked"
	srv.CreateLockBucket(t, bucket)
	repoURL := srv.BucketURL(bucket, "team")
	t.Setenv("KBAK_REPO", repoURL)
	inNamespace(t, "shop")
	ctx := t.Context()

	src := t.TempDir()
	content := bytes.Repeat([]byte("order 42, alice, 2026\n"), 50000)
	if err := os.WriteFile(filepath.Join(src, "orders.db"), content, 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("a bucket without Object Lock refuses it", func(t *testing.T) {
		code, _, errs := kbak(t, "mover", "upload", "--repo", srv.URL("plain"), "--lock-days", "1", "--progress-interval", "0",
			"--source", src, "--key", "kbak/v2/backups/shop/db/db-20260101T000000Z-0000/volumes/data-db-0.tree")
		if code != exitFailed || !strings.Contains(errs, "Object Lock") {
			t.Errorf("exit %d, stderr %q: want a failure that names Object Lock", code, errs)
		}
		bucketEmpty(t, srv)
		if code, _, errs := kbak(t, "mover", "upload", "--repo", repoURL, "--lock-days", "-3", "--source", src, "--key", "k"); code != exitUsage {
			t.Errorf("--lock-days -3: exit %d (%s), want a usage error", code, errs)
		}
	})

	now := time.Now().UTC().Truncate(time.Second)
	old, _ := lockedBackup(t, repoURL, srv.Options(), src, now.Add(-2*time.Hour))
	newest, _ := lockedBackup(t, repoURL, srv.Options(), src, now.Add(-time.Hour))

	t.Run("what the backup wrote is locked, the repository lock is not", func(t *testing.T) {
		var keys []string
		p := s3.NewListObjectsV2Paginator(srv.Client, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String("team/")})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range page.Contents {
				keys = append(keys, aws.ToString(o.Key))
			}
		}
		kinds := map[string]bool{}
		for _, k := range keys {
			if strings.Contains(k, "/kbak/v2/locks/") {
				t.Errorf("lock object %s left behind: locks must be written without retention so they can be released", k)
				continue
			}
			h, err := srv.Client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(k)})
			if err != nil {
				t.Fatal(err)
			}
			until := aws.ToTime(h.ObjectLockRetainUntilDate)
			if h.ObjectLockMode != types.ObjectLockModeCompliance || until.Before(now.Add(23*time.Hour)) {
				t.Errorf("%s: lock mode %q until %v, want COMPLIANCE for a day", k, h.ObjectLockMode, until)
			}
			for _, kind := range []string{"/config", "/data/", "/index/", ".tree", ".files", ".json", "manifest.json"} {
				if strings.Contains(k, kind) || strings.HasSuffix(k, kind) {
					kinds[kind] = true
				}
			}
		}
		if len(kinds) != 7 {
			t.Errorf("locked objects %q: want config, packs, index, trees, file caches, results and manifests", keys)
		}
	})

	t.Run("delete keeps a locked backup and says until when", func(t *testing.T) {
		code, out, errs := kbak(t, "delete", old.ID, "--yes")
		if code != exitOK || !strings.Contains(out, "kept "+old.ID) || !strings.Contains(out, "Object Lock until") {
			t.Fatalf("delete of a locked backup: exit %d\n%s%s", code, out, errs)
		}
		t.Logf("delete: %s", out)
		if _, out, _ := kbak(t, "list"); !strings.Contains(out, old.ID) {
			t.Errorf("the locked backup is no longer listed:\n%s", out)
		}
	})

	t.Run("prune keeps locked backups and says until when", func(t *testing.T) {
		code, out, errs := kbak(t, "prune", "--keep-last", "1")
		if code != exitOK || !strings.Contains(out, "locked until") {
			t.Fatalf("prune: exit %d\n%s%s", code, out, errs)
		}
		t.Logf("prune:\n%s%s", out, errs)
		code, out, _ = kbak(t, "prune", "--keep-last", "1", "-o", "json")
		if code != exitOK || !strings.Contains(out, `"locked"`) || !strings.Contains(out, old.ID) {
			t.Errorf("prune -o json: exit %d\n%s", code, out)
		}
		if _, out, _ := kbak(t, "list"); !strings.Contains(out, old.ID) || !strings.Contains(out, newest.ID) {
			t.Errorf("locked backups were pruned:\n%s", out)
		}
	})

	t.Run("locked backups stay readable", func(t *testing.T) {
		for _, m := range []*catalog.Manifest{old, newest} {
			if code, out, errs := kbak(t, "verify", m.ID, "--read-data"); code != exitOK {
				t.Errorf("verify %s: exit %d\n%s%s", m.ID, code, out, errs)
			}
		}
		target := t.TempDir()
		if code, _, errs := kbak(t, "mover", "download", "--key", old.Volumes[0].Key, "--target", target, "--progress-interval", "0"); code != exitOK {
			t.Fatalf("download: exit %d: %s", code, errs)
		}
		if got, err := os.ReadFile(filepath.Join(target, "orders.db")); err != nil || !bytes.Equal(got, content) {
			t.Errorf("restored file: %d bytes, %v; want the original %d", len(got), err, len(content))
		}
	})

	t.Run("gc reports locked leftovers and aborts stale uploads", func(t *testing.T) {
		// What a crashed backup leaves: a volume and no manifest.
		code, _, errs := kbak(t, "mover", "upload", "--lock-days", "1", "--progress-interval", "0", "--source", src,
			"--key", "kbak/v2/backups/shop/db/db-20260101T000000Z-dead/volumes/data-db-0.tree",
			"--result-key", "kbak/v2/backups/shop/db/db-20260101T000000Z-dead/volumes/data-db-0.json")
		if code != exitOK {
			t.Fatalf("mover upload: exit %d: %s", code, errs)
		}
		// And a multipart upload a crashed writer never finished.
		if _, err := srv.Client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
			Bucket: aws.String(bucket), Key: aws.String("team/kbak/v2/data/ab/ab-crashed")}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		code, out, errs := kbak(t, "gc", "-A", "--grace", "0s", "--upload-grace", "1s", "--no-cluster", "-o", "json")
		if code != exitOK {
			t.Fatalf("gc: exit %d\n%s%s", code, out, errs)
		}
		var res upkeep.GCResult
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatal(err)
		}
		if len(res.Store) != 1 || res.Store[0].ID != "db-20260101T000000Z-dead" || res.Store[0].Removed ||
			res.Store[0].Locked.Objects != res.Store[0].Objects || res.Store[0].Locked.Until.Before(now) {
			t.Errorf("gc store result %+v, want the leftover reported locked, not removed", res.Store)
		}
		if res.StaleUploads != 1 {
			t.Errorf("gc aborted %d stale uploads, want 1", res.StaleUploads)
		}
		ups, err := srv.Client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
		if err != nil || len(ups.Uploads) != 0 {
			t.Errorf("multipart uploads left after gc: %v, %v", ups, err)
		}
		code, out, errs = kbak(t, "gc", "--grace", "0s", "--no-cluster")
		if code != exitOK || !strings.Contains(out, "locked until") {
			t.Errorf("gc table: exit %d\n%s%s", code, out, errs)
		}
		t.Logf("gc:\n%s%s", out, errs)
		store, err := uploader.Open(ctx, repoURL, srv.Options())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.Stat(ctx, "kbak/v2/backups/shop/db/db-20260101T000000Z-dead/volumes/data-db-0.tree"); err != nil {
			t.Errorf("the locked leftover is gone: %v", err)
		}
	})
}
