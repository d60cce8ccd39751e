package archive

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// maxSparseMap bounds the sparse map record. archive/tar refuses PAX headers
// over 1 MiB when reading; a file fragmented beyond this is stored dense.
const maxSparseMap = 512 << 10

// Write archives the tree at dir into w as a tar (PAX) stream compressed with
// zstd (plain with WriteOptions.Plain). It closes the zstd stream, so w holds
// complete zstd frames, but does not close w.
//
// The walk is depth first in lexical order of each directory's names, so the
// same tree gives the same stream. Memory holds the names of one directory
// per level of the current path (not the whole tree) plus one record per
// multiply-linked inode whose other names have not been seen yet.
//
// A file that vanishes during the walk (live copies) is left out and counted
// in Stats.Skipped; a file that shrinks while read is padded with zeros to
// the size recorded in its header, and one that grows is cut at that size.
//
// With WriteOptions.Content the stream is a recipe: each regular file's
// entry holds the reference Content returns for its data (see ContentFunc).
func Write(ctx context.Context, dir string, w io.Writer, opts WriteOptions) (Stats, error) {
	out, finish, abort, err := newOutput(w, opts)
	if err != nil {
		return Stats{}, err
	}
	wr := &walker{
		ctx:    ctx,
		tw:     tar.NewWriter(out),
		prog:   opts.Progress,
		unread: opts.Unreadable,
		links:  make(map[fileID]*linkRecord),
		buf:    make([]byte, copyBufSize),
		xbuf:   make([]byte, 4096),
	}
	if opts.Content != nil {
		var cancel context.CancelCauseFunc
		wr.ctx, cancel = context.WithCancelCause(ctx)
		defer cancel(nil)
		wr.q = startRecipe(wr.ctx, cancel, wr.tw, opts)
	}
	err = wr.entry(place{unix.AT_FDCWD, dir, dir}, rootName)
	if wr.q != nil {
		err = wr.q.finish(err, &wr.stats)
	}
	if err == nil {
		if err = wr.tw.Close(); err != nil {
			err = fmt.Errorf("write tar end marker: %w", err)
		}
	}
	if err != nil {
		abort()
		return wr.stats, err
	}
	if err := finish(); err != nil {
		return wr.stats, err
	}
	return wr.stats, nil
}

// newOutput returns what the tar stream is written to, finish to complete
// it in w, and abort to release it without writing more to w.
func newOutput(w io.Writer, opts WriteOptions) (out io.Writer, finish func() error, abort func(), err error) {
	if opts.Plain {
		bw := bufio.NewWriterSize(w, plainBufSize)
		finish = func() error {
			if err := bw.Flush(); err != nil {
				return fmt.Errorf("write archive: %w", err)
			}
			return nil
		}
		return bw, finish, func() {}, nil
	}
	level, err := encoderLevel(opts.Level)
	if err != nil {
		return nil, nil, nil, err
	}
	conc := opts.Concurrency
	if conc < 0 {
		return nil, nil, nil, fmt.Errorf("zstd concurrency %d: want 0 or more", conc)
	}
	enc, err := zstd.NewWriter(w,
		zstd.WithEncoderLevel(level),
		zstd.WithEncoderConcurrency(conc),
		// Without this a stream is compressed one block at a time however
		// many goroutines are allowed.
		zstd.WithConcurrentBlocks(conc != 1),
		// Parallel jobs are four windows long and several are in flight:
		// with the fastest level's default 4 MiB window that is ~140 MiB of
		// buffers, with 256 KiB under 20 MiB. See windowSize.
		zstd.WithWindowSize(windowSize(level)),
	)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("create zstd encoder: %w", err)
	}
	finish = func() error {
		if err := enc.Close(); err != nil {
			return fmt.Errorf("finish zstd stream: %w", err)
		}
		return nil
	}
	abort = func() {
		// Release the encoder's goroutines without sending more to w.
		enc.Reset(io.Discard)
		enc.Close()
	}
	return enc, finish, abort, nil
}

type fileID struct{ dev, ino uint64 }

type linkRecord struct {
	name string
	left uint64 // names of the inode not yet met; the record goes at 0
}

type walker struct {
	ctx    context.Context
	tw     *tar.Writer
	prog   *Counters
	q      *recipeQueue // with content: where entries go, in walk order
	unread *[]string    // WriteOptions.Unreadable
	stats  Stats
	links  map[fileID]*linkRecord
	buf    []byte
	xbuf   []byte
}

// place is where an entry is: base in the open directory dir (for the
// root, the path itself in the working directory), full for messages and
// the calls that need a path. Each call resolves one name, not the whole
// path again, and a directory renamed during the walk is still the one
// being read.
type place struct {
	dir        int
	base, full string
}

func (p place) child(dir int, base string) place { return place{dir, base, p.full + "/" + base} }

func (wr *walker) entry(p place, name string) error {
	if err := wr.ctx.Err(); err != nil {
		return err
	}
	full := p.full
	var st unix.Stat_t
	if err := unix.Fstatat(p.dir, p.base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) && name != rootName {
			wr.stats.Skipped++
			return nil
		}
		if wr.unreadable(name, err) {
			return nil
		}
		return fmt.Errorf("stat %s: %w", full, err)
	}
	if name == rootName && st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("archive %s: not a directory", full)
	}
	hdr := &tar.Header{
		Name:    name,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: time.Unix(st.Mtim.Unix()),
		Format:  tar.FormatPAX,
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR && st.Nlink > 1 {
		id := fileID{uint64(st.Dev), st.Ino}
		if rec, ok := wr.links[id]; ok {
			hdr.Typeflag = tar.TypeLink
			hdr.Linkname = rec.name
			if rec.left--; rec.left == 0 {
				delete(wr.links, id)
			}
			if err := wr.header(hdr); err != nil {
				return err
			}
			wr.stats.HardLinks++
			return nil
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG { // files record theirs once opened
			wr.links[id] = &linkRecord{name: name, left: uint64(st.Nlink) - 1}
		}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return wr.dir(p, name, hdr)
	case unix.S_IFREG:
		return wr.file(p, name, hdr, &st)
	case unix.S_IFLNK:
		target, err := readlinkat(p.dir, p.base)
		if err != nil {
			return fmt.Errorf("read symlink %s: %w", full, err)
		}
		hdr.Typeflag = tar.TypeSymlink
		hdr.Linkname = target
		wr.stats.Symlinks++
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
		wr.stats.Other++
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor = int64(unix.Major(st.Rdev))
		hdr.Devminor = int64(unix.Minor(st.Rdev))
		wr.stats.Other++
	default: // sockets are recreated by their owner, never restored
		wr.stats.Skipped++
		return nil
	}
	if err := wr.xattrs(xattrSource{fd: -1, path: full}, full, hdr); err != nil {
		return err
	}
	return wr.header(hdr)
}

// unreadable reports whether err is a permission the walk lacks to read
// entry name, which it then leaves out: counted, and named among the first
// (WriteOptions.Unreadable). A directory's entry is already written; its
// contents are what is left out.
func (wr *walker) unreadable(name string, err error) bool {
	if wr.unread == nil || name == rootName || !errors.Is(err, unix.EACCES) {
		return false
	}
	wr.stats.Unreadable++
	if len(*wr.unread) < MaxWithheldNames {
		*wr.unread = append(*wr.unread, name)
	}
	return true
}

func (wr *walker) header(hdr *tar.Header) error {
	if wr.q != nil {
		return wr.q.add(hdr, nil)
	}
	return writeHeader(wr.tw, wr.prog, hdr)
}

func writeHeader(tw *tar.Writer, prog *Counters, hdr *tar.Header) error {
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write tar header %s: %w", hdr.Name, err)
	}
	if prog != nil {
		prog.Files.Add(1)
	}
	return nil
}

func (wr *walker) dir(p place, name string, hdr *tar.Header) error {
	full := p.full
	hdr.Typeflag = tar.TypeDir
	prefix := ""
	if name != rootName {
		hdr.Name += "/"
		prefix = hdr.Name
	}
	// Open before the header, for the xattrs; a directory that cannot be
	// opened still gets its entry, with none of its contents.
	fd, openErr := unix.Openat(p.dir, p.base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	xs := xattrSource{fd: fd, path: full}
	if openErr != nil {
		xs.fd = -1
	}
	err := wr.xattrs(xs, full, hdr)
	if err == nil {
		err = wr.header(hdr)
	}
	if err != nil {
		if openErr == nil {
			unix.Close(fd)
		}
		return err
	}
	wr.stats.Dirs++
	if openErr != nil {
		if errors.Is(openErr, unix.ENOENT) && name != rootName {
			return nil
		}
		if wr.unreadable(name, openErr) {
			return nil
		}
		return fmt.Errorf("open directory %s: %w", full, openErr)
	}
	f := os.NewFile(uintptr(fd), full)
	defer f.Close() // open while its entries are archived: they are found through it
	// Names only (not DirEntry values) keep a directory of a million files
	// to its names' bytes; sorting them needs them all at once.
	names, err := f.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("read directory %s: %w", full, err)
	}
	slices.Sort(names)
	for i, n := range names {
		if err := wr.entry(p.child(fd, n), prefix+n); err != nil {
			return err
		}
		names[i] = "" // let the names already archived go
	}
	return nil
}

func (wr *walker) file(p place, name string, hdr *tar.Header, st *unix.Stat_t) error {
	full := p.full
	id := fileID{uint64(st.Dev), st.Ino}
	// O_NONBLOCK: if the name became a fifo since Lstat, do not hang on it.
	fd, err := unix.Openat(p.dir, p.base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) { // O_NOATIME needs ownership or CAP_FOWNER
		fd, err = unix.Openat(p.dir, p.base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	}
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			wr.stats.Skipped++
			return nil
		}
		if wr.unreadable(name, err) {
			return nil
		}
		return fmt.Errorf("open %s: %w", full, err)
	}
	owned := true // until a recipe's reader takes fd
	defer func() {
		if owned {
			unix.Close(fd)
		}
	}()
	if err := unix.Fstat(fd, st); err != nil {
		return fmt.Errorf("stat %s: %w", full, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("archive %s: changed type during the walk", full)
	}
	if st.Nlink > 1 {
		wr.links[id] = &linkRecord{name: name, left: uint64(st.Nlink) - 1}
	}
	hdr.Typeflag = tar.TypeReg
	hdr.Size = st.Size
	hdr.ModTime = time.Unix(st.Mtim.Unix())
	regions := []region{{0, st.Size}}
	if st.Size > 0 && st.Blocks*512 < st.Size {
		regions = dataRegions(fd, st.Size)
		if len(regions) != 1 || regions[0] != (region{0, st.Size}) {
			if m := encodeSparse(regions); len(m) <= maxSparseMap {
				hdr.PAXRecords = map[string]string{
					paxSparseMap:  m,
					paxSparseSize: fmt.Sprint(st.Size),
				}
				hdr.Size = 0
				for _, r := range regions {
					hdr.Size += r.len
				}
			} else {
				regions = []region{{0, st.Size}}
			}
		}
	}
	if err := wr.xattrs(xattrSource{fd: fd, path: full}, full, hdr); err != nil {
		return err
	}
	data := &fileData{ctx: wr.ctx, prog: wr.prog, fd: fd, full: full, regions: regions}
	if wr.q != nil {
		owned = false
		return wr.recipeFile(hdr, st, data)
	}
	if err := wr.header(hdr); err != nil {
		return err
	}
	wr.stats.Files++
	for {
		n, err := data.Read(wr.buf)
		if n > 0 {
			if _, err := wr.tw.Write(wr.buf[:n]); err != nil {
				return fmt.Errorf("write %s to archive: %w", full, err)
			}
		}
		if err == io.EOF {
			wr.stats.RawBytes += data.n
			wr.stats.ReadBytes += data.n
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// recipeFile queues the file for the recipe's readers, which hand its data
// to the ContentFunc; the entry goes into the stream, in walk order, with
// the reference it returns as its data and the data's size in a PAX record.
// The queue owns data's descriptor from here on.
func (wr *walker) recipeFile(hdr *tar.Header, st *unix.Stat_t, data *fileData) error {
	info := FileInfo{
		Name:       hdr.Name,
		Size:       st.Size,
		DataSize:   hdr.Size,
		ModTime:    time.Unix(st.Mtim.Unix()),
		ChangeTime: time.Unix(st.Ctim.Unix()),
		Inode:      st.Ino,
		Device:     uint64(st.Dev),
	}
	wr.stats.Files++
	return wr.q.add(hdr, &contentJob{info: info, data: data, done: make(chan struct{})})
}

// dataRegions lists the data regions of fd with SEEK_DATA/SEEK_HOLE. A file
// system without them reports the whole file as data.
func dataRegions(fd int, size int64) []region {
	var regions []region
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) { // only a hole up to the end
			break
		}
		if err != nil {
			return []region{{0, size}}
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return []region{{0, size}}
		}
		hole = min(hole, size)
		if hole <= data {
			break
		}
		regions = append(regions, region{data, hole - data})
		off = hole
	}
	return regions
}

// fileData reads the data regions of an open file back to back, exactly
// their total size: zeros stand in for what a file that shrank meanwhile no
// longer holds, and what one that grew holds beyond is left out, so an entry
// always has the size its header says. It reads nothing before Read is
// called. It counts what it yields in RawBytes and ReadBytes.
type fileData struct {
	ctx     context.Context
	prog    *Counters
	fd      int
	full    string
	regions []region // what is left to read; the first one shrinks as it is
	eof     bool     // the file ended inside this region: its rest is zeros
	n       int64    // bytes yielded: RawBytes and ReadBytes
	done    bool     // the ContentFunc returned: fd is no longer ours
}

func (d *fileData) Read(p []byte) (int, error) {
	if d.done {
		return 0, fmt.Errorf("read %s: data used after its ContentFunc returned", d.full)
	}
	for len(d.regions) > 0 && d.regions[0].len == 0 {
		d.regions = d.regions[1:]
		d.eof = false
	}
	if len(d.regions) == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if err := d.ctx.Err(); err != nil {
		return 0, context.Cause(d.ctx)
	}
	r := &d.regions[0]
	chunk := p[:min(int64(len(p)), r.len)]
	n := 0
	for !d.eof {
		var err error
		n, err = unix.Pread(d.fd, chunk, r.off)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", d.full, err)
		}
		d.eof = n == 0
		break
	}
	if d.eof {
		clear(chunk)
		n = len(chunk)
	}
	r.off += int64(n)
	r.len -= int64(n)
	d.n += int64(n)
	if d.prog != nil {
		d.prog.RawBytes.Add(int64(n))
	}
	return n, nil
}

// xattrSource is what xattrs reads the extended attributes of: an open
// file, or (fd -1) a path, not followed.
type xattrSource struct {
	fd   int
	path string
}

func (x xattrSource) list(buf []byte) (int, error) {
	if x.fd >= 0 {
		return unix.Flistxattr(x.fd, buf)
	}
	return unix.Llistxattr(x.path, buf)
}

func (x xattrSource) get(attr string, buf []byte) (int, error) {
	if x.fd >= 0 {
		return unix.Fgetxattr(x.fd, attr, buf)
	}
	return unix.Lgetxattr(x.path, attr, buf)
}

// xattrs records the extended attributes of x as SCHILY.xattr PAX records.
func (wr *walker) xattrs(x xattrSource, full string, hdr *tar.Header) error {
	n, err := x.list(wr.xbuf)
	for errors.Is(err, unix.ERANGE) {
		if n, err = x.list(nil); err == nil {
			wr.xbuf = make([]byte, n*2)
			n, err = x.list(wr.xbuf)
		}
	}
	if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list xattrs of %s: %w", full, err)
	}
	list := wr.xbuf[:n]
	for len(list) > 0 {
		i := 0
		for i < len(list) && list[i] != 0 {
			i++
		}
		attr := string(list[:i])
		list = list[min(i+1, len(list)):]
		if attr == "" {
			continue
		}
		val, err := getxattr(x, attr)
		if errors.Is(err, unix.ENODATA) || errors.Is(err, unix.ENOTSUP) {
			continue // removed meanwhile
		}
		if err != nil {
			return fmt.Errorf("read xattr %s of %s: %w", attr, full, err)
		}
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = make(map[string]string)
		}
		hdr.PAXRecords[paxXattr+attr] = string(val)
	}
	return nil
}

func getxattr(x xattrSource, attr string) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := x.get(attr, buf)
		if errors.Is(err, unix.ERANGE) {
			if n, err = x.get(attr, nil); err != nil {
				return nil, err
			}
			buf = make([]byte, n+64)
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

// readlinkat reads the target of the symlink base in the directory dir.
func readlinkat(dir int, base string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dir, base, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// windowSize is the zstd window for a level: small for the fast levels,
// whose speed comes from the CPU, not from long matches. On the
// database-like bench data set 256 KiB stores no more than 1 MiB (0.07%
// less) and keeps a mover's heap, part buffers included, under its 100 MiB
// limit; zstd -1 itself uses 512 KiB.
func windowSize(level zstd.EncoderLevel) int {
	if level <= zstd.SpeedDefault {
		return 256 << 10
	}
	return 8 << 20
}
