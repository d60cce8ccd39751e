package restore

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/mover"
	"github.com/kbak/kbak/internal/seal"
	"github.com/kbak/kbak/uploader"
)

// checkFixture is a store holding one backup of two volumes (ordinals 0 and
// 1) in format, each uploaded by the mover from its own files.
func checkFixture(t *testing.T, format int) (uploader.Store, *catalog.Manifest) {
	t.Helper()
	ctx := t.Context()
	st, err := uploader.NewFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	created := time.Date(2026, 11, 22, 2, 0, 0, 0, time.UTC)
	l := catalog.Layout{Namespace: "shop", StatefulSet: "db", ID: backupID, Format: format}
	m := &catalog.Manifest{Format: format, ID: backupID, Namespace: "shop", StatefulSet: "db",
		Created: created, Started: created, Finished: created, Status: catalog.StatusCompleted}
	for ord, content := range []string{"the data of ordinal 0", "ordinal 1 holds other rows"} {
		v := vol("data", ord).v
		src := t.TempDir()
		if err := os.WriteFile(filepath.Join(src, "table.db"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		v.Key = l.VolumeKey(v.PVC)
		res, err := mover.Upload(ctx, st, mover.UploadOptions{Source: src, Key: v.Key, TempDir: t.TempDir()}, nil)
		if err != nil {
			t.Fatal(err)
		}
		v.Files, v.RawBytes, v.StoredBytes, v.SHA256 = res.Files, res.RawBytes, res.StoredBytes, res.SHA256
		m.Volumes = append(m.Volumes, v)
	}
	return st, m
}

// copyObject puts the object at from over the one at to: a swapped object.
func copyObject(t *testing.T, st uploader.Store, from, to string) {
	t.Helper()
	rc, err := st.Get(t.Context(), from)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(t.Context(), to, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
}

// verify checks every volume by its digest: an archive (format 1) or a tree
// (format 2) swapped for another volume's fails, also when its own counts
// would pass; an archive whose manifest records no digest fails instead of
// passing unchecked.
func TestCheckBackupDigests(t *testing.T) {
	for _, tt := range []struct {
		name     string
		format   int
		readData bool
	}{
		{"format 1", catalog.FormatArchive, false},
		{"format 2", catalog.FormatRepo, false},
		{"format 2 --read-data", catalog.FormatRepo, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st, m := checkFixture(t, tt.format)
			checks, err := CheckBackup(t.Context(), st, seal.Key{}, m, CheckOptions{ReadData: tt.readData})
			if err != nil || len(checks) != 2 || !checks[0].OK || !checks[1].OK {
				t.Fatalf("the whole backup: %+v, %v; want both volumes ok", checks, err)
			}
			// The swapped object holds as many files; only the digest tells.
			copyObject(t, st, m.Volumes[1].Key, m.Volumes[0].Key)
			checks, err = CheckBackup(t.Context(), st, seal.Key{}, m, CheckOptions{ReadData: tt.readData})
			if !errors.Is(err, ErrCheckFailed) || len(checks) != 2 || checks[0].OK || !checks[1].OK {
				t.Fatalf("a swapped object: %+v, %v; want the first volume failed", checks, err)
			}
			if !strings.Contains(checks[0].Error, "sha256") || strings.Contains(checks[0].Error, "\n") {
				t.Errorf("error %q, want one line naming the digest", checks[0].Error)
			}
		})
	}
	t.Run("format 1 without a digest", func(t *testing.T) {
		st, m := checkFixture(t, catalog.FormatArchive)
		m.Volumes[0].SHA256 = ""
		checks, err := CheckBackup(t.Context(), st, seal.Key{}, m, CheckOptions{})
		if !errors.Is(err, ErrCheckFailed) || checks[0].OK || !strings.Contains(checks[0].Error, "no sha256") {
			t.Errorf("an archive without a recorded digest: %+v, %v; want it failed, not passed unchecked", checks, err)
		}
	})
}

// verify of a PartiallyFailed backup checks what it holds and names the
// volumes it could not check, which is no failure of the check.
func TestCheckBackupPartial(t *testing.T) {
	st, m := checkFixture(t, catalog.FormatRepo)
	m.Volumes[1] = vol("data", 1).failed("mover failed: disk on fire").v
	m.Status = catalog.StatusPartiallyFailed
	checks, err := CheckBackup(t.Context(), st, seal.Key{}, m, CheckOptions{})
	if err != nil {
		t.Fatalf("CheckBackup: %v", err)
	}
	if len(checks) != 2 || !checks[0].OK || checks[1].OK || checks[1].Error != "" {
		t.Fatalf("checks %+v, want the first ok and the second not checked", checks)
	}
	want := []string{"data-db-1 (failed (mover failed: disk on fire): no data in the backup)"}
	if got := Unchecked(checks); !slices.Equal(got, want) {
		t.Errorf("Unchecked = %q, want %q", got, want)
	}
}

// A volume stored without what its mover could not read checks out, and
// is listed as not wholly checked: the backup is partial.
func TestCheckBackupUnreadable(t *testing.T) {
	st, m := checkFixture(t, catalog.FormatRepo)
	m.Volumes[1].Unreadable, m.Volumes[1].UnreadableNames = 2, []string{"a", "b"}
	m.Status = catalog.StatusPartiallyFailed
	checks, err := CheckBackup(t.Context(), st, seal.Key{}, m, CheckOptions{})
	if err != nil {
		t.Fatalf("CheckBackup: %v", err)
	}
	if len(checks) != 2 || !checks[0].OK || !checks[1].OK {
		t.Fatalf("checks %+v, want both ok", checks)
	}
	want := []string{"data-db-1 (2 file(s) or directories the mover could not read were never backed up)"}
	if got := Unchecked(checks); !slices.Equal(got, want) {
		t.Errorf("Unchecked = %q, want %q", got, want)
	}
}

// A restore counts a claim as restored only when the mover read the object
// of the digest the manifest records, and extracted what it records.
func TestCheckMoved(t *testing.T) {
	c := Claim{Name: "data-db-0", Key: "kbak/v1/shop/db/x/volumes/data-db-0.tar.zst", SHA256: strings.Repeat("a", 64), Files: 3, RawBytes: 10}
	for _, tt := range []struct {
		name    string
		out     mover.Result
		wantErr string
	}{
		{"as recorded", mover.Result{SHA256: strings.Repeat("A", 64), Files: 3, RawBytes: 10}, ""},
		{"another object", mover.Result{SHA256: strings.Repeat("b", 64), Files: 3, RawBytes: 10}, "the backup recorded " + c.SHA256},
		{"a mover that reports no digest", mover.Result{Files: 3, RawBytes: 10}, `sha256 ""`},
		{"other counts", mover.Result{SHA256: c.SHA256, Files: 2, RawBytes: 10}, "extracted 2 files"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := checkMoved(c, &tt.out)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("checkMoved = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// A format 1 claim whose manifest lost its digest is refused before a
// mover runs.
func TestNeedDigest(t *testing.T) {
	v := vol("data", 0).v
	c := Claim{Name: "data-db-0", Key: v.Key, Source: SourceStore}
	if err := needDigest(c); err == nil || !strings.Contains(err.Error(), "records no sha256") {
		t.Errorf("needDigest = %v, want a refusal naming the missing sha256", err)
	}
	c.Key = strings.TrimSuffix(c.Key, ".tar.zst") + ".tree"
	if err := needDigest(c); err != nil {
		t.Errorf("a tree without a recorded digest (written before trees had one): %v", err)
	}
}

// A volume read through is announced with the manifest's bytes, then
// reports progress and ends with a result, or an error, as a mover does;
// a check of the index alone reads nothing through and says nothing.
func TestCheckBackupProgress(t *testing.T) {
	for _, tt := range []struct {
		name     string
		format   int
		readData bool
		events   bool
	}{
		{"format 1", catalog.FormatArchive, false, true},
		{"format 2", catalog.FormatRepo, false, false},
		{"format 2 --read-data", catalog.FormatRepo, true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st, m := checkFixture(t, tt.format)
			queued := map[string]int64{}
			last := map[string]mover.Event{}
			progress := 0
			opts := CheckOptions{ReadData: tt.readData,
				Queued: func(pvc string, bytes int64) {
					if len(last) > 0 {
						t.Errorf("%s queued after the first event", pvc)
					}
					queued[pvc] = bytes
				},
				Progress: func(pvc string, ev mover.Event) {
					if ev.Type == mover.EventProgress {
						progress++
					}
					last[pvc] = ev
				}}
			// The second volume's object is damaged: it ends in an error.
			copyObject(t, st, m.Volumes[0].Key, m.Volumes[1].Key)
			if _, err := CheckBackup(t.Context(), st, seal.Key{}, m, opts); !errors.Is(err, ErrCheckFailed) {
				t.Fatalf("check: %v, want the second volume failed", err)
			}
			if !tt.events {
				if len(queued)+len(last) > 0 {
					t.Errorf("queued %v, events %v: want none", queued, last)
				}
				return
			}
			v0, v1 := m.Volumes[0], m.Volumes[1]
			if len(queued) != 2 || queued[v0.PVC] != v0.RawBytes || queued[v1.PVC] != v1.RawBytes {
				t.Errorf("queued %v, want both volumes with the manifest's bytes", queued)
			}
			if e := last[v0.PVC]; progress == 0 || e.Type != mover.EventResult || e.Result.RawBytes != v0.RawBytes {
				t.Errorf("%s: %d progress events, last %+v; want progress, then the result", v0.PVC, progress, e)
			}
			if e := last[v1.PVC]; e.Type != mover.EventError || !strings.Contains(e.Error, "sha256") {
				t.Errorf("%s: last event %+v, want the digest's error", v1.PVC, e)
			}
		})
	}
}
