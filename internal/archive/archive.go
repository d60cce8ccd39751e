package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
)

// WriteOptions tune Write.
type WriteOptions struct {
	// Level is the zstd level 1..4, mapped to the klauspost encoder levels
	// (1 SpeedFastest, 2 SpeedDefault, 3 SpeedBetterCompression,
	// 4 SpeedBestCompression). 0 means 1.
	Level int
	// Concurrency is the number of zstd encoder goroutines; 0 means GOMAXPROCS.
	// It sets most of Write's memory: about 10 MiB of heap with 1, several
	// times that with 2 (klauspost/compress 1.20; jobs are four windows
	// long, see windowSize), whatever the number of files.
	Concurrency int
	// Progress, when set, is updated atomically while writing.
	Progress *Counters
	// Plain makes Write emit the tar stream as it is, without zstd; Level
	// and Concurrency are then ignored. A recipe (see Content) is written
	// plain because its caller chunks and compresses it.
	Plain bool
	// Unreadable, when set, receives the names of the first entries
	// (at most MaxWithheldNames) Write could not read: it leaves them out
	// and goes on, where without it the first stops it. For a walk
	// without the right to read everything (a mover that is not root).
	Unreadable *[]string
	// Content, when set, makes Write a recipe writer: each regular file's
	// data is handed to Content and the entry holds the reference it
	// returns instead (see ContentFunc and the package documentation).
	Content ContentFunc
	// Written, when set with Content, is called for each file once its
	// entry is in the recipe: in recipe order, from one goroutine, with
	// the reference Content returned. An error stops Write.
	Written func(f FileInfo, ref []byte) error
	// Readers is how many files a recipe writer hands to Content at
	// once; 0 means 4, or GOMAXPROCS if that is more. The entries still go
	// into the recipe in walk order.
	Readers int
}

// ContentFunc stores, or recognises as already stored, the data of one
// regular file and returns a reference to it, at most MaxRefSize bytes,
// which Write puts in the recipe in place of the data; Rehydrate hands it
// back. data yields exactly f.DataSize bytes, the file's data regions back to
// back, and reads nothing from the file until Read is called, so a caller that
// knows the file unchanged (same size, times and inode as last time) returns
// its old reference without reading it. data is valid only until the call
// returns. An error stops Write. Write calls it from several goroutines at
// once (WriteOptions.Readers), in no set order.
type ContentFunc func(ctx context.Context, f FileInfo, data io.Reader) (ref []byte, err error)

// FileInfo describes the file a ContentFunc is given, as Write saw it once
// the file was open.
type FileInfo struct {
	Name     string // archive name, as in the entry's header
	Size     int64  // apparent size
	DataSize int64  // bytes of the data regions: what data yields
	// ModTime and ChangeTime have nanosecond precision.
	ModTime, ChangeTime time.Time
	Inode, Device       uint64
}

// MaxRefSize bounds a content reference. Rehydrate reads each one into
// memory, so a tampered recipe must not be able to ask for more.
const MaxRefSize = 64 << 20

// ExtractOptions tune Extract and ExtractTar.
type ExtractOptions struct {
	// Progress, when set, is updated atomically while extracting.
	Progress *Counters
	// NoSameOwner skips restoring numeric uid/gid. By default (restore runs
	// as root) owners are restored.
	NoSameOwner bool
	// Overwrite lets an entry replace an existing non-directory of the same
	// name in the target. Without it Extract refuses, so a restore into a
	// volume that already holds data never silently mixes two trees. An
	// existing directory is never replaced by a non-directory; an existing
	// directory for a directory entry is reused (a fresh volume's lost+found,
	// the target root itself).
	Overwrite bool
	// Devices creates the character and block device nodes an archive
	// holds. Without it they are skipped, hard links to them too, and
	// counted in Stats.DevicesSkipped: a device node in a volume gives
	// whoever can open it the device, and a restore must not make one from
	// an archive by default. Fifos are always created.
	Devices bool
	// SetID keeps the setuid and setgid bits and the file capabilities
	// (the security.capability xattr) of files, fifos and device nodes.
	// Without it they are restored with their other mode bits and xattrs
	// only, and counted in Stats.SetIDCleared. Directories always keep
	// their bits: a setgid directory only hands its group to new entries.
	SetID bool
	// Withheld, when set, receives the names of the first entries skipped
	// or cleared for want of Devices or SetID.
	Withheld *Withheld
	// NotRoot is for an extracting user without CHOWN or FOWNER (a mover
	// that runs as the application's user): an owner or mode it is not
	// allowed to set (EPERM: an entry of another user, a root it does not
	// own) is left as it is, counted in Stats.OwnersNotSet and named in
	// Withheld.Owners, and a directory's mtime it may not set is left.
	NotRoot bool
}

// Withheld names what an extraction without ExtractOptions.Devices or
// SetID left out or changed: at most MaxWithheldNames of each, in archive
// order; Stats counts them all.
type Withheld struct {
	Devices []string `json:"devices,omitempty"` // device nodes not created
	SetID   []string `json:"setID,omitempty"`   // restored without setuid/setgid bits or file capabilities
	Owners  []string `json:"owners,omitempty"`  // owner or mode not set (ExtractOptions.NotRoot)
}

// MaxWithheldNames bounds the names Withheld keeps of each kind.
const MaxWithheldNames = 10

// capabilityXattr holds a file's capabilities, which grant privileges
// like a setuid bit.
const capabilityXattr = "security.capability"

// Counters are live progress figures, readable while Write or Extract runs.
type Counters struct {
	// RawBytes counts file content bytes (data regions only for sparse files).
	RawBytes atomic.Int64
	// Files counts every entry: files, directories, links, special files.
	Files atomic.Int64
}

// Stats summarises one Write or Extract.
type Stats struct {
	Files     int64 // regular files (first occurrence of each inode)
	Dirs      int64 // directories, the root included
	Symlinks  int64
	HardLinks int64 // second and later names of an inode
	Other     int64 // fifos, character and block devices
	Skipped   int64 // sockets: they cannot be archived and are left out
	RawBytes  int64 // file content bytes (data regions only for sparse files)
	// ReadBytes is the part of RawBytes actually read: by Write from the
	// files (less than RawBytes when a ContentFunc skips unchanged files),
	// by Extract and Verify from the stream (all of it).
	ReadBytes int64
	// DevicesSkipped counts the device nodes, and hard links to them,
	// that Extract did not create (ExtractOptions.Devices unset).
	DevicesSkipped int64
	// SetIDCleared counts the entries Extract restored without their
	// setuid or setgid bits or file capabilities (ExtractOptions.SetID
	// unset).
	SetIDCleared int64
	// OwnersNotSet counts the entries whose owner or mode Extract was not
	// allowed to set (ExtractOptions.NotRoot).
	OwnersNotSet int64
	// Unreadable counts the files and directories Write could not read
	// (EACCES) and left out, or whose entries it left out (a directory);
	// WriteOptions.Unreadable names the first.
	Unreadable int64
}

// Entries is the number of archive entries, the figure Counters.Files shows.
func (s Stats) Entries() int64 {
	return s.Files + s.Dirs + s.Symlinks + s.HardLinks + s.Other + s.DevicesSkipped
}

// Sparse files are stored as a regular entry whose content is only the data
// regions, back to back, plus two PAX records: paxSparseMap lists the regions
// as "offset:length,offset:length,..." and paxSparseSize is the apparent size.
// archive/tar reads GNU sparse headers but cannot write them, and our own
// records keep the entry readable by any tar (it shows the packed data).
const (
	paxSparseMap  = "KBAK.sparse.map"
	paxSparseSize = "KBAK.sparse.size"
	paxXattr      = "SCHILY.xattr."
)

// paxContentSize marks a recipe entry: its data is a content reference and
// the record is the size of the data it stands for (data regions only).
const paxContentSize = "KBAK.content.size"

// copyBufSize is the read size for file content: large enough that syscalls
// and zstd block hand-offs are cheap, small enough to check ctx often.
const copyBufSize = 1 << 20

// plainBufSize gathers the small writes of a plain stream (headers, content
// references) into fewer writes to w; file data larger than it goes straight
// through.
const plainBufSize = 64 << 10

// rootName is the entry for the archived directory itself: it carries the
// owner, mode and mtime of the volume root.
const rootName = "./"

// ErrTruncated marks an archive stream that ends early.
var ErrTruncated = errors.New("archive truncated")

type region struct{ off, len int64 }

func encodeSparse(regions []region) string {
	var b strings.Builder
	for i, r := range regions {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(r.off, 10))
		b.WriteByte(':')
		b.WriteString(strconv.FormatInt(r.len, 10))
	}
	return b.String()
}

// decodeSparse parses and checks a sparse map: regions ascending, disjoint,
// inside size, and together exactly stored bytes long.
func decodeSparse(s string, size, stored int64) ([]region, error) {
	var regions []region
	var end, total int64
	if s != "" {
		for _, part := range strings.Split(s, ",") {
			o, l, ok := strings.Cut(part, ":")
			if !ok {
				return nil, fmt.Errorf("sparse region %q: want offset:length", part)
			}
			off, err1 := strconv.ParseInt(o, 10, 64)
			n, err2 := strconv.ParseInt(l, 10, 64)
			if err1 != nil || err2 != nil || off < end || n < 0 || off > size || n > size-off {
				return nil, fmt.Errorf("sparse region %q out of order or outside size %d", part, size)
			}
			regions = append(regions, region{off, n})
			end = off + n
			total += n
		}
	}
	if total != stored {
		return nil, fmt.Errorf("sparse map holds %d bytes, entry %d", total, stored)
	}
	return regions, nil
}

// cleanName turns an entry name into a relative slash path inside the target,
// or "." for the root. It refuses absolute names, ".." components and NUL.
func cleanName(name string) (string, error) {
	if name == "" || strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("entry name %q: empty or contains NUL", name)
	}
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("entry name %q: absolute", name)
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", fmt.Errorf("entry name %q: has a parent (..) component", name)
		}
	}
	return path.Clean(name), nil
}

func encoderLevel(level int) (zstd.EncoderLevel, error) {
	switch level {
	case 0, 1:
		return zstd.SpeedFastest, nil
	case 2:
		return zstd.SpeedDefault, nil
	case 3:
		return zstd.SpeedBetterCompression, nil
	case 4:
		return zstd.SpeedBestCompression, nil
	}
	return 0, fmt.Errorf("zstd level %d: want 1..4", level)
}
