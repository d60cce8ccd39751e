package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/mover"
	"github.com/kbak/kbak/internal/repo"
	"github.com/kbak/kbak/internal/seal"
	"github.com/kbak/kbak/internal/upkeep"
	"github.com/kbak/kbak/uploader"
	"github.com/kbak/kbak/uploader/uploadertest"
)

// kbak runs the whole CLI in-process and returns its exit code and output.
func kbak(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(append([]string{"kbak"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// oneErrorLine checks the promise every bad input gets: one line on stderr
// that starts with "kbak: " and says what to do.
func oneErrorLine(t *testing.T, stderr string, contains ...string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "kbak: ") {
		t.Fatalf("stderr is not one kbak error line:\n%s", stderr)
	}
	for _, c := range contains {
		if !strings.Contains(lines[0], c) {
			t.Errorf("error line %q does not mention %q", lines[0], c)
		}
	}
}

func s3Env(t *testing.T, srv *uploadertest.Server) {
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	t.Setenv("KBAK_REPO", "")
}

func bucketEmpty(t *testing.T, srv *uploadertest.Server) {
	t.Helper()
	out, err := srv.Client.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: &srv.Bucket})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Contents) != 0 {
		t.Errorf("bucket holds %d objects after a failed command, want none", len(out.Contents))
	}
}

func TestBadInput(t *testing.T) {
	srv := uploadertest.StartVersityGW(t)
	s3Env(t, srv)
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		code     int
		contains []string
	}{
		{"no repository", []string{"list"}, nil, exitUsage, []string{"--repo", "KBAK_REPO"}},
		{"malformed URL", []string{"list", "--repo", "s4://x"}, nil, exitUsage, []string{"s4", "s3://"}},
		{"bucket missing", []string{"list", "--repo", strings.Replace(srv.URL("p"), srv.Bucket, "no-such-bucket", 1)}, nil, exitFailed, []string{"no-such-bucket"}},
		{"wrong credentials", []string{"list", "--repo", srv.URL("p")}, map[string]string{"AWS_SECRET_ACCESS_KEY": "wrong"}, exitFailed, []string{"denied"}},
		{"unreachable endpoint", []string{"list", "--repo", "s3://bkt?endpoint=http://127.0.0.1:1&region=us-east-1"}, nil, exitFailed, []string{"127.0.0.1:1"}},
		{"unknown backup id", []string{"describe", "db-20260101T000000Z-abcd", "--repo", srv.URL("p")}, nil, exitFailed, []string{"kbak list"}},
		{"describe without id", []string{"describe", "--repo", srv.URL("p")}, nil, exitUsage, []string{"ID"}},
		{"unknown flag", []string{"list", "--nope"}, nil, exitUsage, []string{"nope"}},
		{"unknown command", []string{"bakcup"}, nil, exitUsage, []string{"bakcup"}},
		{"bad output format", []string{"list", "-o", "xml", "--repo", srv.URL("p")}, nil, exitUsage, []string{"xml", "-o json"}},
		{"empty retention", []string{"prune", "--repo", srv.URL("p")}, nil, exitUsage, []string{"keep"}},
		{"bad compression", []string{"mover", "upload", "--repo", srv.URL("p"), "--source", t.TempDir(), "--key", "k", "--compression", "gzip"}, nil, exitFailed, []string{"zstd"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			code, _, stderr := kbak(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tt.code, stderr)
			}
			if tt.name != "bad compression" { // the mover prints its error as a JSON line too
				oneErrorLine(t, stderr, tt.contains...)
			}
			bucketEmpty(t, srv)
		})
	}
}

// writeBackup makes a real backup in the repository through the mover and the
// catalog, as a backup run does, and returns its id.
func writeBackup(t *testing.T, repo string, ns, sts string, created time.Time, corrupt bool) string {
	t.Helper()
	return writeBackupFrom(t, repo, ns, sts, created, corrupt, rand.Reader)
}

// writeBackupFrom is writeBackup with the randomness of the backup's ID
// from rnd, so that tests can pin it.
func writeBackupFrom(t *testing.T, repo string, ns, sts string, created time.Time, corrupt bool, rnd io.Reader) string {
	t.Helper()
	ctx := context.Background()
	store, err := uploader.Open(ctx, repo, uploader.Options{})
	if err != nil {
		t.Fatal(err)
	}
	id, err := catalog.NewID(sts, created, rnd)
	if err != nil {
		t.Fatal(err)
	}
	l, err := catalog.NewLayout(ns, sts, id, catalog.FormatArchive)
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "table.db"), bytes.Repeat([]byte("row 42, alice, 2026\n"), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	// The archive, and so its digest, is the same at every run.
	for _, p := range []string{filepath.Join(src, "table.db"), src} {
		if err := os.Chtimes(p, created, created); err != nil {
			t.Fatal(err)
		}
	}
	pvc := "data-" + sts + "-0"
	res, err := mover.Upload(ctx, store, mover.UploadOptions{Source: src, Key: l.VolumeKey(pvc), ResultKey: l.ResultKey(pvc)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := &catalog.Manifest{ID: id, Namespace: ns, StatefulSet: sts, Created: created, Started: created, Finished: created.Add(time.Second),
		Status: catalog.StatusCompleted, Volumes: []catalog.Volume{{
			ClaimTemplate: "data", PVC: pvc, Method: catalog.MethodFiles, Consistency: catalog.ConsistencyLive,
			Key: res.Key, RawBytes: res.RawBytes, StoredBytes: res.StoredBytes, Files: res.Files, SHA256: res.SHA256,
			Compression: res.Compression, Status: catalog.VolumeCompleted,
		}}}
	if err := catalog.New(store, seal.Key{}).WriteManifest(ctx, m); err != nil {
		t.Fatal(err)
	}
	if corrupt {
		if err := store.Put(ctx, l.ManifestKey(), strings.NewReader("{not json"), -1); err != nil {
			t.Fatal(err)
		}
	}
	return id
}

func TestRepositoryVerbs(t *testing.T) {
	srv := uploadertest.StartVersityGW(t)
	s3Env(t, srv)
	repoURL := srv.URL("team")
	t.Setenv("KBAK_REPO", repoURL)
	inNamespace(t, "shop")
	now := time.Now().UTC().Truncate(time.Second)
	old := writeBackup(t, repoURL, "shop", "db", now.Add(-3*time.Hour), false)
	mid := writeBackup(t, repoURL, "shop", "db", now.Add(-2*time.Hour), false)
	newest := writeBackup(t, repoURL, "shop", "db", now.Add(-1*time.Hour), false)
	bad := writeBackup(t, repoURL, "shop", "cache", now.Add(-time.Hour), true)

	t.Run("list", func(t *testing.T) {
		code, out, stderr := kbak(t, "list", "-o", "json")
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var backups struct{ Items []catalog.Summary }
		if err := json.Unmarshal([]byte(out), &backups); err != nil {
			t.Fatal(err)
		}
		list := backups.Items
		if len(list) != 4 || list[0].ID != newest && list[0].ID != bad {
			t.Fatalf("list = %+v", list)
		}
		code, out, _ = kbak(t, "list", "--statefulset", "db")
		if code != exitOK || strings.Count(out, "\n") != 4 || !strings.Contains(out, mid) {
			t.Errorf("table listing (exit %d):\n%s", code, out)
		}
	})
	t.Run("describe corrupt manifest", func(t *testing.T) {
		code, _, stderr := kbak(t, "describe", bad)
		if code != exitFailed {
			t.Errorf("exit %d, want %d", code, exitFailed)
		}
		oneErrorLine(t, stderr, "manifest.json")
	})
	t.Run("describe", func(t *testing.T) {
		code, out, stderr := kbak(t, "describe", old)
		if code != exitOK || !strings.Contains(out, "data-db-0") || !strings.Contains(out, "Completed") {
			t.Errorf("exit %d, out:\n%s\nstderr: %s", code, out, stderr)
		}
	})
	t.Run("verify", func(t *testing.T) {
		code, out, stderr := kbak(t, "verify", old)
		if code != exitOK || !strings.Contains(out, "ok") {
			t.Errorf("exit %d, out:\n%s\nstderr: %s", code, out, stderr)
		}
	})
	t.Run("prune keeps the newest", func(t *testing.T) {
		code, out, stderr := kbak(t, "prune", "--keep-last", "1", "--statefulset", "db", "--dry-run")
		if code != exitOK || !strings.Contains(out, "would remove") {
			t.Fatalf("dry run exit %d:\n%s%s", code, out, stderr)
		}
		code, _, stderr = kbak(t, "prune", "--keep-last", "1", "--statefulset", "db")
		if code != exitOK {
			t.Fatalf("prune exit %d: %s", code, stderr)
		}
		_, out, _ = kbak(t, "list", "--statefulset", "db")
		if !strings.Contains(out, newest) || strings.Contains(out, old) || strings.Contains(out, mid) {
			t.Errorf("after prune --keep-last 1:\n%s", out)
		}
	})
	t.Run("delete", func(t *testing.T) {
		if code, _, stderr := kbak(t, "delete", newest, "--yes"); code != exitOK {
			t.Fatalf("delete exit %d: %s", code, stderr)
		}
		code, _, stderr := kbak(t, "describe", newest)
		if code != exitFailed {
			t.Errorf("describe of a deleted backup: exit %d", code)
		}
		oneErrorLine(t, stderr, "kbak list")
	})
	t.Run("gc removes a backup that never got a manifest", func(t *testing.T) {
		// An upload without a manifest is what a crashed backup leaves.
		code, _, stderr := kbak(t, "mover", "upload", "--source", t.TempDir(), "--progress-interval", "0",
			"--key", "kbak/v1/shop/db/db-20260101T000000Z-dead/volumes/data-db-0.tar.zst")
		if code != exitOK {
			t.Fatalf("mover upload exit %d: %s", code, stderr)
		}
		_, out, _ := kbak(t, "list")
		if strings.Contains(out, "db-20260101T000000Z-dead") {
			t.Errorf("incomplete backup listed:\n%s", out)
		}
		if code, out, _ := kbak(t, "gc", "--grace", "1h", "--no-cluster"); code != exitOK || strings.Contains(out, "dead") {
			t.Errorf("gc within the grace period removed it (exit %d):\n%s", code, out)
		}
		code, out, stderr = kbak(t, "gc", "--grace", "0s", "--no-cluster", "-o", "json")
		if code != exitOK {
			t.Fatalf("gc exit %d: %s", code, stderr)
		}
		var res upkeep.GCResult
		if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Store) != 1 || !res.Store[0].Removed {
			t.Errorf("gc result %s (%v)", out, err)
		}
	})
	t.Run("gc while a backup uploads leaves the shared data to the next gc", func(t *testing.T) {
		ctx := t.Context()
		store, err := uploader.Open(ctx, repoURL, uploader.Options{})
		if err != nil {
			t.Fatal(err)
		}
		r, _, err := repo.OpenOrInit(ctx, store, seal.Key{}, repo.InitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// What a backup's mover holds while it uploads.
		l, err := r.Lock(ctx, repo.LockShared, "upload of data-db-0")
		if err != nil {
			t.Fatal(err)
		}
		code, out, stderr := kbak(t, "gc", "--no-cluster", "-o", "json")
		var res upkeep.GCResult
		if err := json.Unmarshal([]byte(out), &res); code != exitOK || err != nil || res.Data != nil ||
			!strings.Contains(res.DataDeferred, "repository is locked") || !strings.Contains(res.DataDeferred, "upload of data-db-0") {
			t.Errorf("gc during an upload: exit %d, %s (%v), stderr %s; want exit 0 and the sweep deferred, naming the upload", code, out, err, stderr)
		}
		if code, _, stderr := kbak(t, "gc", "--no-cluster"); code != exitOK || !strings.Contains(stderr, "not swept now") {
			t.Errorf("gc during an upload: exit %d, stderr %s; want it to say the data was not swept", code, stderr)
		}
		l.Unlock(ctx)
		code, out, stderr = kbak(t, "gc", "--no-cluster", "-o", "json")
		res = upkeep.GCResult{}
		if err := json.Unmarshal([]byte(out), &res); code != exitOK || err != nil || res.Data == nil || res.DataDeferred != "" {
			t.Errorf("gc after the upload: exit %d, %s (%v), stderr %s; want the data swept", code, out, err, stderr)
		}
	})
}
