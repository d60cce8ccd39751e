package archive

import (
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"sync/atomic"

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
}

// ExtractOptions tune Extract.
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
}

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
}

// Entries is the number of archive entries, the figure Counters.Files shows.
func (s Stats) Entries() int64 {
	return s.Files + s.Dirs + s.Symlinks + s.HardLinks + s.Other
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
