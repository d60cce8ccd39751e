package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/mover"
	"github.com/kbak/kbak/internal/seal"
	"github.com/kbak/kbak/restore"
	"github.com/kbak/kbak/uploader"
)

// writePartialBackup stores a PartiallyFailed backup of format 1: ordinal 0
// backed up, ordinal 1 failed.
func writePartialBackup(t *testing.T, store uploader.Store) *catalog.Manifest {
	t.Helper()
	ctx := context.Background()
	created := time.Date(2026, 11, 22, 2, 0, 0, 0, time.UTC)
	id := "db-20261122T020000Z-3f2a"
	l := catalog.Layout{Namespace: "shop", StatefulSet: "db", ID: id, Format: catalog.FormatArchive}
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "table.db"), []byte("rows"), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := mover.Upload(ctx, store, mover.UploadOptions{Source: src, Key: l.VolumeKey("data-db-0")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := &catalog.Manifest{ID: id, Namespace: "shop", StatefulSet: "db", Created: created, Started: created, Finished: created,
		Status: catalog.StatusPartiallyFailed, Volumes: []catalog.Volume{{
			ClaimTemplate: "data", PVC: "data-db-0", Method: catalog.MethodFiles, Consistency: catalog.ConsistencyLive,
			Key: res.Key, RawBytes: res.RawBytes, StoredBytes: res.StoredBytes, Files: res.Files, SHA256: res.SHA256, Status: catalog.VolumeCompleted,
		}, {
			ClaimTemplate: "data", Ordinal: 1, PVC: "data-db-1", Status: catalog.VolumeFailed, Error: "mover failed: disk on fire",
		}}}
	if err := catalog.New(store, seal.Key{}).WriteManifest(ctx, m); err != nil {
		t.Fatal(err)
	}
	return m
}

// verify of a PartiallyFailed backup checks what it holds, names the
// volumes it could not check and exits 3; a manifest whose archive has no
// digest is corrupt, one line, exit 1.
func TestVerifyPartialAndUndigested(t *testing.T) {
	dir := t.TempDir()
	repo := "file://" + dir
	t.Setenv("KBAK_REPO", repo)
	store, err := uploader.Open(context.Background(), repo, uploader.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := writePartialBackup(t, store)

	code, out, stderr := kbak(t, "verify", m.ID)
	if code != exitPartial {
		t.Errorf("verify of a PartiallyFailed backup: exit %d, want %d\n%s%s", code, exitPartial, out, stderr)
	}
	if !strings.Contains(out, "data-db-0") || !strings.Contains(out, "ok") || !strings.Contains(out, "not checked: failed (mover failed: disk on fire)") {
		t.Errorf("table does not show the checked and the unchecked volume:\n%s", out)
	}
	// The volume read through reports its progress on stderr, then the
	// one error line.
	progressLine, errLine, _ := strings.Cut(stderr, "\n")
	if !strings.HasPrefix(progressLine, "data-db-0 ") || !strings.Contains(progressLine, "done   4 B, 1 files") {
		t.Errorf("first line of stderr %q: want the volume's progress", progressLine)
	}
	oneErrorLine(t, errLine, "PartiallyFailed", "1 volumes checked", "could not check data-db-1")

	code, out, _ = kbak(t, "verify", m.ID, "-o", "json")
	var verification struct{ Volumes []restore.VolumeCheck }
	err = json.Unmarshal([]byte(out), &verification)
	if checks := verification.Volumes; err != nil || code != exitPartial || len(checks) != 2 || !checks[0].OK || checks[1].NotChecked == "" {
		t.Errorf("verify -o json: exit %d, %+v (%v)", code, checks, err)
	}

	// The same manifest without the archive's digest, as a tampered or
	// broken writer would leave it.
	key := m.Layout().ManifestKey()
	rc, err := store.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.NewDecoder(rc).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	delete(raw["volumes"].([]any)[0].(map[string]any), "sha256")
	b, _ := json.Marshal(raw)
	if err := store.Put(context.Background(), key, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = kbak(t, "verify", m.ID)
	if code != exitFailed {
		t.Errorf("verify of a manifest without sha256: exit %d, want %d", code, exitFailed)
	}
	oneErrorLine(t, stderr, "corrupt manifest", "data-db-0", "no sha256")
}
