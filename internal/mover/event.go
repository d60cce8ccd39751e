package mover

import (
	"encoding/json"
	"fmt"
	"time"
)

// Event is one JSON line a mover prints on stdout. A run prints zero or more
// "progress" events and ends with exactly one "result" or "error" event; the
// CLI reads them from the mover pod's log to draw progress and collect the
// outcome.
type Event struct {
	Type     string    `json:"type"` // "progress", "result" or "error"
	Time     time.Time `json:"time"`
	Progress *Progress `json:"progress,omitempty"`
	Result   *Result   `json:"result,omitempty"`
	Error    string    `json:"error,omitempty"`
}

// Event types.
const (
	EventProgress = "progress"
	EventResult   = "result"
	EventError    = "error"
)

// Progress is a running count of one transfer.
type Progress struct {
	RawBytes    int64 `json:"rawBytes"`    // file content read (upload) or written (download)
	StoredBytes int64 `json:"storedBytes"` // compressed bytes sent to or read from the store
	Files       int64 `json:"files"`       // entries archived or extracted so far
	// TotalBytes is an upload's size hint, the claim's capacity: an upper
	// bound, not an estimate (CLIs before EstimateBytes drew their ETA
	// from it). 0 when unknown.
	TotalBytes int64 `json:"totalBytes,omitempty"`
	// EstimateBytes is the raw bytes the transfer is expected to move: for
	// an upload, the source file system's used bytes when it began
	// (SourceEstimate). 0 when unknown.
	EstimateBytes int64 `json:"estimateBytes,omitempty"`
}

// Result is the outcome of one transfer. For an upload it is also stored as
// the volume's result object beside the data (see catalog.Layout).
type Result struct {
	Key         string    `json:"key"`
	RawBytes    int64     `json:"rawBytes"`
	StoredBytes int64     `json:"storedBytes"`
	Files       int64     `json:"files"`
	SHA256      string    `json:"sha256"`      // hex digest of the stored object: the compressed archive, or the tree
	Compression string    `json:"compression"` // e.g. "zstd:1"
	Started     time.Time `json:"started"`
	Finished    time.Time `json:"finished"`

	// Format is 2 for a volume in the deduplicating repository (Key is its
	// tree), 0 for a tar+zstd archive. The fields below are format 2's:
	// StoredBytes is then what this upload added to the repository.
	Format       int    `json:"format,omitempty"`
	ReadBytes    int64  `json:"readBytes,omitempty"`    // file data read; RawBytes less what was skipped
	SkippedFiles int64  `json:"skippedFiles,omitempty"` // unchanged since the parent: not read
	SkippedBytes int64  `json:"skippedBytes,omitempty"`
	Chunks       int64  `json:"chunks,omitempty"`    // chunks of the volume, its recipe's included
	NewChunks    int64  `json:"newChunks,omitempty"` // of which the repository lacked
	NewBytes     int64  `json:"newBytes,omitempty"`  // their raw bytes
	Parent       string `json:"parent,omitempty"`    // the tree whose file cache was trusted
	// ParentMatch says how unchanged files were recognised: "strict"
	// (size, mtime, ctime, inode) or "size-mtime" (a snapshot's copy has
	// new inodes and ctimes).
	ParentMatch string `json:"parentMatch,omitempty"`

	// A download without --restore-devices skips device nodes, one
	// without --restore-setid restores files without their setuid and
	// setgid bits and file capabilities: how many, and the first names
	// (at most archive.MaxWithheldNames), relative to the volume.
	SkippedDevices     int64    `json:"skippedDevices,omitempty"`
	SkippedDeviceNames []string `json:"skippedDeviceNames,omitempty"`
	ClearedSetID       int64    `json:"clearedSetID,omitempty"`
	ClearedSetIDNames  []string `json:"clearedSetIDNames,omitempty"`

	// A mover that is not root may not read every file, nor set every
	// owner: an upload leaves out what it could not read, a download
	// leaves what it could not hand over to the mover's user. How many,
	// and the first names, relative to the volume.
	Unreadable        int64    `json:"unreadable,omitempty"`
	UnreadableNames   []string `json:"unreadableNames,omitempty"`
	OwnersNotSet      int64    `json:"ownersNotSet,omitempty"`
	OwnersNotSetNames []string `json:"ownersNotSetNames,omitempty"`
}

// ParseEvent decodes one line of mover output. Lines that are not events
// (a runtime panic, a shell message) give an error the caller may log and skip.
func ParseEvent(line []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(line, &e); err != nil {
		return Event{}, fmt.Errorf("parse mover event %q: %w", truncate(line, 120), err)
	}
	switch e.Type {
	case EventProgress, EventResult, EventError:
		return e, nil
	default:
		return Event{}, fmt.Errorf("parse mover event %q: unknown type %q", truncate(line, 120), e.Type)
	}
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
