package restore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/mover"
	"github.com/kbak/kbak/internal/repo"
	"github.com/kbak/kbak/internal/seal"
	"github.com/kbak/kbak/uploader"
)

// ErrCheckFailed is wrapped by the error of a backup some of whose volumes
// CheckBackup could not read back as the manifest records them.
var ErrCheckFailed = errors.New("failed the check")

// VolumeCheck is the outcome of reading one volume of a backup back.
type VolumeCheck struct {
	PVC   string `json:"pvc"`
	Files int64  `json:"files"`
	Bytes int64  `json:"bytes"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// NotChecked says why a volume of a PartiallyFailed backup could not
	// be checked: the backup holds no data for it (OK is false, Error
	// empty).
	NotChecked string `json:"notChecked,omitempty"`
}

// Unchecked lists the volumes of checks that could not be checked, as
// "PVC (why)".
func Unchecked(checks []VolumeCheck) []string {
	var out []string
	for _, ck := range checks {
		if ck.NotChecked != "" {
			out = append(out, fmt.Sprintf("%s (%s)", ck.PVC, ck.NotChecked))
		}
	}
	return out
}

// CheckOptions say how much CheckBackup reads, and whom it tells.
type CheckOptions struct {
	ReadData bool    // read every volume's stream through
	Subset   float64 // also read this fraction of each volume's chunks
	// Queued is told of every volume read through, before the first is,
	// with the raw bytes the manifest records; Progress receives the
	// events of its reading, as of a mover's, one call at a time.
	Queued   func(pvc string, bytes int64)
	Progress func(pvc string, ev mover.Event)
}

// progressInterval is how often a volume read through reports progress.
const progressInterval = time.Second

// CheckBackup reads every backed-up volume of m back from store, writing
// nothing, and compares it with the manifest; it is what `kbak verify` does
// before a test restore. For the deduplicating format it checks the tree
// against the digest the manifest records (backups since trees have one)
// and that every chunk a volume references is indexed in a pack that
// exists, unless readData asks, as the archive format always does, to read
// each volume's stream through, checking its digest and its file and byte
// counts. An archive whose manifest records no digest fails: nothing could
// tell it from another. A volume that fails gives an error wrapping
// ErrCheckFailed with the checks; an error reading the repository or the
// end of ctx comes alone. Volumes the backup holds no data for (a
// PartiallyFailed backup's) are listed with NotChecked set; they are no
// failure of the check.
//
// opts.Subset, between 0 and 1, also reads that fraction of each volume's
// chunks (chosen at random) and checks them against their ids.
func CheckBackup(ctx context.Context, store uploader.Store, key seal.Key, m *catalog.Manifest, opts CheckOptions) ([]VolumeCheck, error) {
	readData, subset := opts.ReadData, opts.Subset
	var checker *repo.Checker
	var r *repo.Repo
	if m.Format == catalog.FormatRepo {
		var err error
		r, err = repo.Open(ctx, store, key)
		if err != nil {
			return nil, err
		}
		if (readData || subset > 0) && !r.CanRead() {
			return nil, r.NeedRead("verify --read-data")
		}
		if !readData {
			if checker, err = r.NewChecker(ctx); err != nil {
				return nil, err
			}
		}
	}
	if checker == nil && opts.Queued != nil {
		for _, v := range m.Volumes {
			if v.Status == catalog.VolumeCompleted && (m.Format == catalog.FormatRepo || v.SHA256 != "") {
				opts.Queued(v.PVC, v.RawBytes)
			}
		}
	}
	var checks []VolumeCheck
	failed, checked := 0, 0
	for _, v := range m.Volumes {
		if v.Status != catalog.VolumeCompleted {
			why := strings.ToLower(string(v.Status)) + ": no data in the backup"
			if v.Error != "" {
				why = strings.ToLower(string(v.Status)) + " (" + v.Error + "): no data in the backup"
			}
			checks = append(checks, VolumeCheck{PVC: v.PVC, NotChecked: why})
			continue
		}
		checked++
		ck := VolumeCheck{PVC: v.PVC}
		if m.Format != catalog.FormatRepo && v.SHA256 == "" {
			ck.Error = "the manifest records no sha256 of the archive: it cannot be checked"
			failed++
			checks = append(checks, ck)
			continue
		}
		if checker != nil {
			var err error
			if v.SHA256 != "" {
				_, _, err = r.OpenTree(ctx, v.Key, v.SHA256)
			}
			var res repo.CheckResult
			if err == nil {
				res, err = checker.Check(ctx, v.Key)
			}
			switch {
			case err != nil:
				ck.Error = err.Error()
			case res.Missing > 0:
				ck.Error = fmt.Sprintf("%d of %d chunks missing (%s)", res.Missing, res.Chunks, res.First)
			default:
				ck.OK, ck.Files, ck.Bytes = true, v.Files, v.RawBytes
			}
			if ck.OK && subset > 0 {
				if _, err := checker.ReadSubset(ctx, v.Key, subset); err != nil {
					ck.OK, ck.Error = false, err.Error()
				}
			}
		} else {
			var ev *mover.Emitter
			if opts.Progress != nil {
				ev = mover.NewEventEmitter(func(e mover.Event) { opts.Progress(v.PVC, e) }, progressInterval)
			}
			res, err := mover.Download(ctx, store, mover.DownloadOptions{Key: v.Key, SHA256: v.SHA256, RepoKey: key}, ev)
			if err != nil {
				ev.Emit(mover.Event{Type: mover.EventError, Error: catalog.OneLine(err.Error())})
			} else {
				ev.Emit(mover.Event{Type: mover.EventResult, Result: &res})
			}
			switch {
			case err != nil:
				ck.Error = err.Error()
			case res.Files != v.Files || res.RawBytes != v.RawBytes:
				ck.Error = fmt.Sprintf("archive holds %d entries and %d bytes, the manifest recorded %d and %d", res.Files, res.RawBytes, v.Files, v.RawBytes)
			default:
				ck.OK, ck.Files, ck.Bytes = true, res.Files, res.RawBytes
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		if !ck.OK {
			failed++
		} else if v.Unreadable > 0 {
			// What is stored checks out; what the mover could not read
			// is in no backup, and the backup is partial.
			ck.NotChecked = fmt.Sprintf("%d file(s) or directories the mover could not read were never backed up", v.Unreadable)
		}
		checks = append(checks, ck)
	}
	if failed > 0 {
		return checks, fmt.Errorf("verify %s: %d of %d volumes %w", m.ID, failed, checked, ErrCheckFailed)
	}
	return checks, nil
}
