package mover

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kbak/kbak/internal/archive"
	"github.com/kbak/kbak/internal/repo"
	"github.com/kbak/kbak/internal/seal"
)

// Store is what a mover needs of a repository.
type Store = repo.Store

// UploadOptions say what to archive and where to put it.
type UploadOptions struct {
	Source      string // directory to archive
	Key         string // object key of the archive
	ResultKey   string // object key of the JSON Result; empty writes none
	SizeHint    int64  // expected raw bytes, chooses the part size; 0 or less when unknown
	Compression string // "zstd:LEVEL"; empty means zstd:1
	Concurrency int    // zstd encoder goroutines; 0 means all cores

	// A Key ending in repo.TreeSuffix stores the volume in the
	// deduplicating repository; these apply to that form only.
	Parent      string // tree key of an earlier upload of the same volume; its unchanged files are not read
	ParentMatch string // ParentMatchStrict (default) or ParentMatchSizeMTime
	TempDir     string // for the file caches; default TMPDIR
	KbakVersion string // recorded when the upload creates the repository
	// RepoKey opens an encrypted repository: its write key (or a read
	// key). With a read key, an upload into an empty store creates the
	// repository encrypted to it.
	RepoKey seal.Key
}

// How an upload recognises a file unchanged since its parent.
const (
	ParentMatchStrict    = "strict"     // size, mtime, ctime and inode
	ParentMatchSizeMTime = "size-mtime" // where a copy has new inodes and ctimes (a snapshot restored to a new volume)
)

// DownloadOptions say which object to extract where.
type DownloadOptions struct {
	Key    string // object key of the archive
	SHA256 string // expected hex digest of the stored object (the archive, or a volume's tree); empty skips the check
	Target string // directory to extract into; empty only verifies the archive
	// RepoKey opens an encrypted repository: a read key.
	RepoKey seal.Key
	// RestoreDevices creates the archive's device nodes and RestoreSetID
	// keeps setuid and setgid bits and file capabilities; without them the
	// Result counts and names what was left out (archive.ExtractOptions).
	RestoreDevices, RestoreSetID bool
}

// extractOptions are the archive's options for a download into Target.
func (o DownloadOptions) extractOptions(progress *archive.Counters, withheld *archive.Withheld) archive.ExtractOptions {
	return archive.ExtractOptions{Progress: progress, Devices: o.RestoreDevices, SetID: o.RestoreSetID, Withheld: withheld,
		NotRoot: os.Geteuid() != 0}
}

// setWithheld records in res what the extraction left out or changed.
func (res *Result) setWithheld(stats archive.Stats, w *archive.Withheld) {
	res.SkippedDevices, res.SkippedDeviceNames = stats.DevicesSkipped, w.Devices
	res.ClearedSetID, res.ClearedSetIDNames = stats.SetIDCleared, w.SetID
	res.OwnersNotSet, res.OwnersNotSetNames = stats.OwnersNotSet, w.Owners
}

// setUnreadable records in res what an upload could not read.
func (res *Result) setUnreadable(stats archive.Stats, names []string) {
	res.Unreadable, res.UnreadableNames = stats.Unreadable, names
}

// DefaultCompression is what kbak writes unless told otherwise: zstd's
// fastest level keeps a mover at disk speed on one core.
const DefaultCompression = "zstd:1"

// ParseCompression reads "zstd:LEVEL" (LEVEL 1..4) and returns the level.
func ParseCompression(s string) (int, error) {
	if s == "" {
		s = DefaultCompression
	}
	algo, lvl, ok := strings.Cut(s, ":")
	if !ok {
		lvl = "1"
	}
	n, err := strconv.Atoi(lvl)
	if algo != "zstd" || err != nil || n < 1 || n > 4 {
		return 0, fmt.Errorf("compression %q is not supported: use zstd:1 (fastest) to zstd:4 (smallest)", s)
	}
	return n, nil
}

// Upload archives opts.Source into opts.Key, then stores the Result at
// opts.ResultKey. Progress goes to ev every interval. The archive object is
// complete or absent: a failed or cancelled upload leaves nothing (the store's
// Put contract), and the result object is written only after the archive.
func Upload(ctx context.Context, store Store, opts UploadOptions, ev *Emitter) (Result, error) {
	level, err := ParseCompression(opts.Compression)
	if err != nil {
		return Result{}, err
	}
	if strings.HasSuffix(opts.Key, repo.TreeSuffix) {
		return uploadTree(ctx, store, opts, level, ev)
	}
	res := Result{Key: opts.Key, Compression: fmt.Sprintf("zstd:%d", level), Started: time.Now().UTC()}

	var counters archive.Counters
	stored := &countingWriter{h: sha256.New()}
	estimate := SourceEstimate(opts.Source, opts.SizeHint)
	stop := ev.every(func() Progress {
		return Progress{RawBytes: counters.RawBytes.Load(), Files: counters.Files.Load(),
			StoredBytes: stored.n.Load(), TotalBytes: max(opts.SizeHint, 0), EstimateBytes: estimate}
	})
	defer stop()

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	pr, pw := io.Pipe()
	var stats archive.Stats
	var unreadable []string
	archived := make(chan error, 1)
	go func() {
		var err error
		stats, err = archive.Write(ctx, opts.Source, io.MultiWriter(pw, stored), archive.WriteOptions{
			Level: level, Concurrency: opts.Concurrency, Progress: &counters, Unreadable: &unreadable,
		})
		if err != nil {
			err = fmt.Errorf("archive %s: %w", opts.Source, err)
			cancel(err) // the store must abort, not complete a short object
		}
		pw.CloseWithError(err)
		archived <- err
	}()
	size := opts.SizeHint
	if size <= 0 {
		size = -1
	}
	putErr := store.Put(ctx, opts.Key, pr, size)
	pr.CloseWithError(errors.Join(putErr, io.ErrClosedPipe)) // unblock the archiver if Put gave up early
	if archErr := <-archived; archErr != nil {
		return Result{}, archErr
	}
	if putErr != nil {
		return Result{}, fmt.Errorf("upload %s: %w", opts.Key, putErr)
	}

	res.RawBytes, res.Files = stats.RawBytes, stats.Files
	res.setUnreadable(stats, unreadable)
	res.StoredBytes, res.SHA256 = stored.n.Load(), hex.EncodeToString(stored.h.Sum(nil))
	res.Finished = time.Now().UTC()
	return res, writeResult(ctx, store, opts.ResultKey, res)
}

// Download reads opts.Key, checks its sha256 and extracts it into
// opts.Target (or only reads the archive through when Target is empty). A
// checksum mismatch or a truncated object is an error: the caller must treat
// whatever was extracted as garbage.
func Download(ctx context.Context, store Store, opts DownloadOptions, ev *Emitter) (Result, error) {
	if strings.HasSuffix(opts.Key, repo.TreeSuffix) {
		return downloadTree(ctx, store, opts, ev)
	}
	res := Result{Key: opts.Key, Compression: DefaultCompression, Started: time.Now().UTC()}
	rc, err := store.Get(ctx, opts.Key)
	if err != nil {
		return Result{}, fmt.Errorf("download %s: %w", opts.Key, err)
	}
	defer rc.Close()

	var counters archive.Counters
	read := &countingWriter{h: sha256.New()}
	stop := ev.every(func() Progress {
		return Progress{RawBytes: counters.RawBytes.Load(), Files: counters.Files.Load(), StoredBytes: read.n.Load()}
	})
	defer stop()

	// The decoder asks for a block header, then the block: straight from
	// an HTTP body that is a 4 KiB socket read and a second one per block.
	src := io.TeeReader(bufio.NewReaderSize(rc, downloadBufSize), read)
	var stats archive.Stats
	var withheld archive.Withheld
	if opts.Target == "" {
		stats, err = archive.Verify(ctx, src, &counters)
	} else {
		stats, err = archive.Extract(ctx, src, opts.Target, opts.extractOptions(&counters, &withheld))
	}
	if err != nil {
		return Result{}, fmt.Errorf("extract %s: %w", opts.Key, err)
	}
	res.RawBytes, res.Files = stats.RawBytes, stats.Files
	res.setWithheld(stats, &withheld)
	res.StoredBytes, res.SHA256 = read.n.Load(), hex.EncodeToString(read.h.Sum(nil))
	res.Finished = time.Now().UTC()
	if opts.SHA256 != "" && !strings.EqualFold(opts.SHA256, res.SHA256) {
		return Result{}, fmt.Errorf("checksum mismatch for %s: stored object has sha256 %s, the backup recorded %s: the object is corrupt, do not use what was extracted", opts.Key, res.SHA256, opts.SHA256)
	}
	return res, nil
}

// downloadBufSize is the read size on an archive being downloaded.
const downloadBufSize = 256 << 10

// countingWriter hashes and counts what passes through it.
type countingWriter struct {
	h hash.Hash
	n atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.h.Write(p)
	c.n.Add(int64(len(p)))
	return len(p), nil
}
