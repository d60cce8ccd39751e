package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// Extract unpacks a stream made by Write into dir, which must exist and may
// already hold entries (see ExtractOptions.Overwrite). It reads r to its end:
// after the tar end marker only zero padding may follow, and a stream that
// stops early is an ErrTruncated error, never a partial success.
//
// Nothing is created outside dir: names with ".." or a leading "/" are
// refused, every parent directory is resolved beneath dir without following
// symlinks (openat2 RESOLVE_NO_SYMLINKS, or one O_NOFOLLOW openat per
// component on kernels without it), and hard link targets are resolved the
// same way.
//
// Directories are created mode 0700 and owned by the extracting user; their
// owner, mode, xattrs and mtime are applied after all entries, so a read-only
// directory can still be filled and its mtime is not disturbed by its
// children. That keeps one small record per directory in memory until the end.
//
// By default device nodes are not created and files lose their setuid and
// setgid bits and file capabilities; ExtractOptions.Devices and SetID
// restore them.
func Extract(ctx context.Context, r io.Reader, dir string, opts ExtractOptions) (Stats, error) {
	// Lowmem: without it the decoder keeps about 80 MiB of block buffers
	// (measured with klauspost/compress 1.20), with it about 5 MiB.
	// Concurrency 1 decodes in the read-ahead goroutine, already beside the
	// file writes; the decoder's own goroutines only added hand-offs (a
	// quarter more CPU time on the bench data set).
	dec, err := zstd.NewReader(r, zstd.WithDecoderMaxWindow(maxDecoderWindow), zstd.WithDecoderLowmem(true), zstd.WithDecoderConcurrency(1))
	if err != nil {
		return Stats{}, fmt.Errorf("create zstd decoder: %w", err)
	}
	ra := newReadAhead(dec) // closes dec
	defer ra.stop()
	return ExtractTar(ctx, ra, dir, opts)
}

// ExtractTar is Extract for a plain tar stream: one made by Write with
// Plain, or by Rehydrate. A recipe is refused; rehydrate it first. It reads
// r in the calling goroutine, without Extract's read-ahead: a caller whose
// reader blocks (a network, a pipe from Rehydrate) buffers it itself.
func ExtractTar(ctx context.Context, r io.Reader, dir string, opts ExtractOptions) (Stats, error) {
	return extract(ctx, r, dir, opts, nil)
}

// ExtractRecipe extracts a recipe (a plain stream made by Write with
// Content) into dir as ExtractTar would extract what Rehydrate makes of it,
// without rebuilding the tar stream: for each recipe entry data is called
// with the content reference and the size of the data it stands for, and
// writes exactly size bytes, the file's data regions back to back, to its
// writer, which puts them straight into the file at their offsets (holes
// stay holes). Writing fewer or more fails naming the file. ref is valid
// only during the call; the writer does not keep the slices it is given.
func ExtractRecipe(ctx context.Context, recipe io.Reader, dir string, opts ExtractOptions, data DataFunc) (Stats, error) {
	if data == nil {
		return Stats{}, errors.New("extract recipe: no data function")
	}
	return extract(ctx, recipe, dir, opts, data)
}

func extract(ctx context.Context, r io.Reader, dir string, opts ExtractOptions, data DataFunc) (Stats, error) {
	rootFd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return Stats{}, fmt.Errorf("open target directory %s: %w", dir, err)
	}
	defer unix.Close(rootFd)
	ex := &extractor{
		ctx:    ctx,
		opts:   opts,
		rootFd: rootFd,
		parent: -1,
		buf:    make([]byte, copyBufSize),
	}
	defer ex.dropParent()

	defer ex.stopWriters()

	err = eachEntry(ctx, r, func(hdr *tar.Header, tr io.Reader) error {
		small := false
		fill := func(fd int, rel string, regions []region) error {
			for _, r := range regions {
				if err := ex.content(fd, rel, r, tr); err != nil {
					return err
				}
			}
			return nil
		}
		if data != nil {
			out, ref, ok, err := recipeEntry(hdr, tr)
			if err != nil {
				return err
			}
			switch {
			case ok && out.Size <= smallFileSize:
				// The data is fetched now, in order; the file is
				// written by one of the file writers.
				b, err := collectData(ex.ctx, out.Name, ref, out.Size, data)
				if err != nil {
					return err
				}
				hdr, small = out, true
				fill = func(fd int, rel string, regions []region) error {
					return writeRegions(fd, rel, regions, b, ex.opts.Progress)
				}
			case ok:
				hdr = out
				fill = func(fd int, rel string, regions []region) error {
					return ex.recipeContent(fd, rel, regions, ref, hdr.Size, data)
				}
			}
		}
		if err := ex.entry(hdr, fill, small); err != nil {
			return err
		}
		if opts.Progress != nil {
			opts.Progress.Files.Add(1)
		}
		return nil
	})
	if err == nil {
		err = ex.wait()
	}
	if err != nil {
		return ex.stats, err
	}
	if err := ex.fixDirs(); err != nil {
		return ex.stats, err
	}
	return ex.stats, nil
}

type dirMeta struct {
	rel      string
	mode     uint32
	uid, gid int
	mtime    unix.Timespec
	xattrs   map[string]string
}

type extractor struct {
	ctx    context.Context
	opts   ExtractOptions
	rootFd int
	stats  Stats
	dirs   []dirMeta
	buf    []byte
	// noDevices holds the names of the device nodes not created, so that
	// hard links to them are skipped too.
	noDevices map[string]bool
	// lastNotOwned is the last entry counted by ownerNotSet; ownMu guards
	// it and what ownerNotSet counts, which the file writers reach too.
	ownMu        sync.Mutex
	lastNotOwned string

	// The parent directory of the last entry stays open: entries arrive in
	// walk order, so most share it. Directories are never removed or renamed
	// during Extract, so the descriptor stays beneath the root.
	parentRel string
	parent    int

	// The file writers (ExtractRecipe): small files, all in the parent
	// directory, are created and written fileWriters at a time. writing
	// holds their names until wait.
	jobs     chan func() error
	inflight sync.WaitGroup
	writers  sync.WaitGroup
	writing  map[string]bool
	errMu    sync.Mutex
	writeErr error
}

// Files of up to smallFileSize bytes of data are written by fileWriters
// goroutines: creating a file costs more than writing its data, and
// several at once keep both the disk and the CPUs busy. At most
// 2*fileWriters+1 such files are in memory and fileWriters open.
const (
	smallFileSize = 256 << 10
	fileWriters   = 4
)

// write has a file writer run job, which creates the file base in the
// parent directory.
func (ex *extractor) write(base string, job func() error) error {
	if err := ex.failed(); err != nil {
		return err
	}
	if ex.writing[base] {
		if err := ex.wait(); err != nil {
			return err
		}
	}
	if ex.jobs == nil {
		ex.jobs = make(chan func() error, fileWriters)
		ex.writing = make(map[string]bool)
		for range fileWriters {
			ex.writers.Add(1)
			go func() {
				defer ex.writers.Done()
				for job := range ex.jobs {
					if ex.ctx.Err() == nil && ex.failed() == nil {
						if err := job(); err != nil {
							ex.fail(err)
						}
					}
					ex.inflight.Done()
				}
			}()
		}
	}
	ex.writing[base] = true
	ex.inflight.Add(1)
	select {
	case ex.jobs <- job:
		return nil
	case <-ex.ctx.Done():
		ex.inflight.Done()
		return ex.ctx.Err()
	}
}

// wait returns when every file handed to the writers is written, with
// the first error of any.
func (ex *extractor) wait() error {
	if ex.jobs == nil {
		return nil
	}
	ex.inflight.Wait()
	clear(ex.writing)
	if err := ex.failed(); err != nil {
		return err
	}
	return ex.ctx.Err()
}

func (ex *extractor) stopWriters() {
	if ex.jobs != nil {
		close(ex.jobs)
		ex.writers.Wait()
	}
}

func (ex *extractor) fail(err error) {
	ex.errMu.Lock()
	defer ex.errMu.Unlock()
	if ex.writeErr == nil {
		ex.writeErr = err
	}
}

func (ex *extractor) failed() error {
	ex.errMu.Lock()
	defer ex.errMu.Unlock()
	return ex.writeErr
}

// dropParent closes the parent directory kept open, once the file
// writers are done with it.
func (ex *extractor) dropParent() {
	ex.wait() // an error stays for the next wait to return
	if ex.parent >= 0 {
		unix.Close(ex.parent)
		ex.parent = -1
	}
}

// parentOf returns an O_PATH descriptor of rel's parent and rel's last name.
func (ex *extractor) parentOf(rel string) (int, string, error) {
	dir, base := path.Split(rel)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		return ex.rootFd, base, nil
	}
	if ex.parent >= 0 && ex.parentRel == dir {
		return ex.parent, base, nil
	}
	ex.dropParent()
	fd, err := resolveDir(ex.rootFd, dir)
	if err != nil {
		return -1, "", fmt.Errorf("entry %s: parent directory: %w", rel, err)
	}
	ex.parent, ex.parentRel = fd, dir
	return fd, base, nil
}

// useOpenat2 turns false once the kernel (or a seccomp filter) refuses openat2.
var useOpenat2 atomic.Bool

func init() { useOpenat2.Store(true) }

// resolveDir opens rel beneath rootFd as an O_PATH directory without
// following any symlink.
func resolveDir(rootFd int, rel string) (int, error) {
	if useOpenat2.Load() {
		fd, err := unix.Openat2(rootFd, rel, &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		})
		if err == nil {
			return fd, nil
		}
		if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EPERM) {
			return -1, fmt.Errorf("resolve %s: %w", rel, err)
		}
		useOpenat2.Store(false)
	}
	return resolveDirWalk(rootFd, rel)
}

// resolveDirWalk is resolveDir one component at a time; with O_DIRECTORY,
// O_NOFOLLOW makes a symlink component fail with ENOTDIR.
func resolveDirWalk(rootFd int, rel string) (int, error) {
	fd := rootFd
	for _, c := range strings.Split(rel, "/") {
		if c == "" || c == "." {
			continue
		}
		if c == ".." {
			return -1, fmt.Errorf("resolve %s: has a parent (..) component", rel)
		}
		next, err := unix.Openat(fd, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if fd != rootFd {
			unix.Close(fd)
		}
		if err != nil {
			return -1, fmt.Errorf("resolve %s: %w", rel, err)
		}
		fd = next
	}
	if fd == rootFd {
		return unix.Dup(rootFd)
	}
	return fd, nil
}

func timespec(hdr *tar.Header) unix.Timespec {
	return unix.NsecToTimespec(hdr.ModTime.UnixNano())
}

func headerXattrs(hdr *tar.Header) map[string]string {
	var m map[string]string
	for k, v := range hdr.PAXRecords {
		if name, ok := strings.CutPrefix(k, paxXattr); ok && name != "" {
			if m == nil {
				m = make(map[string]string)
			}
			m[name] = v
		}
	}
	return m
}

// entry extracts one entry; fill writes a regular file's data regions
// into its descriptor. A small file (its data already in memory) is
// created and written by a file writer while the next entries are read.
func (ex *extractor) entry(hdr *tar.Header, fill func(fd int, rel string, regions []region) error, small bool) error {
	rel, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if err := notRecipe(hdr); err != nil {
		return err
	}
	perm := uint32(hdr.Mode) & 0o7777
	xattrs := headerXattrs(hdr)
	if rel == "." {
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("entry %q: the root must be a directory", hdr.Name)
		}
		ex.dirs = append(ex.dirs, dirMeta{rel: ".", mode: perm, uid: hdr.Uid, gid: hdr.Gid, mtime: timespec(hdr), xattrs: xattrs})
		ex.stats.Dirs++
		return nil
	}
	pfd, base, err := ex.parentOf(rel)
	if err != nil {
		return err
	}
	// Anything but a file waits for the file writers: a hard link's target
	// must exist, and no two entries of one name are made at once.
	if !small && (hdr.Typeflag != tar.TypeReg || ex.writing[base]) {
		if err := ex.wait(); err != nil {
			return err
		}
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		err = ex.mkdir(pfd, base, rel)
		if err == nil {
			ex.dirs = append(ex.dirs, dirMeta{rel: rel, mode: perm, uid: hdr.Uid, gid: hdr.Gid, mtime: timespec(hdr), xattrs: xattrs})
			ex.stats.Dirs++
		}
		return err
	case tar.TypeReg:
		perm, xattrs = ex.withholdSetID(rel, perm, xattrs)
		ex.stats.Files++
		if small {
			ex.stats.RawBytes += hdr.Size
			ex.stats.ReadBytes += hdr.Size
			return ex.write(base, func() error { return ex.file(pfd, base, rel, hdr, perm, xattrs, fill) })
		}
		return ex.file(pfd, base, rel, hdr, perm, xattrs, fill)
	case tar.TypeSymlink:
		err = ex.create(pfd, base, rel, func() error { return unix.Symlinkat(hdr.Linkname, pfd, base) })
		ex.stats.Symlinks++
	case tar.TypeLink:
		return ex.hardlink(pfd, base, rel, hdr.Linkname)
	case tar.TypeChar, tar.TypeBlock:
		if !ex.opts.Devices {
			ex.withholdDevice(rel)
			return nil
		}
		fallthrough
	case tar.TypeFifo:
		perm, xattrs = ex.withholdSetID(rel, perm, xattrs)
		mode := perm | unix.S_IFIFO
		switch hdr.Typeflag {
		case tar.TypeChar:
			mode = perm | unix.S_IFCHR
		case tar.TypeBlock:
			mode = perm | unix.S_IFBLK
		}
		dev := int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
		err = ex.create(pfd, base, rel, func() error { return unix.Mknodat(pfd, base, mode, dev) })
		ex.stats.Other++
	case tar.TypeXGlobalHeader:
		return nil
	default:
		return fmt.Errorf("entry %s: unsupported type %q", rel, hdr.Typeflag)
	}
	if err != nil {
		return err
	}
	// Symlinks and special files: metadata by name, never following.
	if !ex.opts.NoSameOwner {
		if err := ex.owned(rel, unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW)); err != nil {
			return fmt.Errorf("chown %s: %w", rel, err)
		}
	}
	if hdr.Typeflag != tar.TypeSymlink {
		// Fchmodat follows symlinks; the name was made just now as a node.
		if err := ex.owned(rel, unix.Fchmodat(pfd, base, perm, 0)); err != nil {
			return fmt.Errorf("chmod %s: %w", rel, err)
		}
	}
	if xattrs != nil {
		// The /proc path goes through the parent descriptor, not the name.
		p := "/proc/self/fd/" + strconv.Itoa(pfd) + "/" + base
		for k, v := range xattrs {
			if err := xattrErr(rel, k, unix.Lsetxattr(p, k, []byte(v), 0)); err != nil {
				return err
			}
		}
	}
	ts := timespec(hdr)
	if err := unix.UtimesNanoAt(pfd, base, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set mtime of %s: %w", rel, err)
	}
	return nil
}

// withholdDevice skips the device node rel (ExtractOptions.Devices unset).
func (ex *extractor) withholdDevice(rel string) {
	if ex.noDevices == nil {
		ex.noDevices = make(map[string]bool)
	}
	ex.noDevices[rel] = true
	ex.stats.DevicesSkipped++
	if w := ex.opts.Withheld; w != nil && len(w.Devices) < MaxWithheldNames {
		w.Devices = append(w.Devices, rel)
	}
}

// withholdSetID returns the mode and xattrs to give the non-directory rel:
// without ExtractOptions.SetID, perm without its setuid and setgid bits and
// xattrs without file capabilities.
func (ex *extractor) withholdSetID(rel string, perm uint32, xattrs map[string]string) (uint32, map[string]string) {
	if ex.opts.SetID {
		return perm, xattrs
	}
	_, fcaps := xattrs[capabilityXattr]
	if perm&(unix.S_ISUID|unix.S_ISGID) == 0 && !fcaps {
		return perm, xattrs
	}
	perm &^= unix.S_ISUID | unix.S_ISGID
	delete(xattrs, capabilityXattr)
	ex.stats.SetIDCleared++
	if w := ex.opts.Withheld; w != nil && len(w.SetID) < MaxWithheldNames {
		w.SetID = append(w.SetID, rel)
	}
	return perm, xattrs
}

// xattrErr drops errors of file systems that cannot hold an attribute
// (ENOTSUP) and, outside the user namespace, refusals by security modules
// (EPERM): a restore onto such a volume must not fail for them.
func xattrErr(rel, name string, err error) error {
	if err == nil || errors.Is(err, unix.ENOTSUP) {
		return nil
	}
	if errors.Is(err, unix.EPERM) && !strings.HasPrefix(name, "user.") {
		return nil
	}
	return fmt.Errorf("set xattr %s on %s: %w", name, rel, err)
}

// create runs mk and, if the name exists, replaces it when allowed.
func (ex *extractor) create(pfd int, base, rel string, mk func() error) error {
	err := mk()
	if errors.Is(err, unix.EEXIST) {
		if err = ex.replace(pfd, base, rel); err == nil {
			err = mk()
		}
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", rel, err)
	}
	return nil
}

// replace removes an existing non-directory at base if Overwrite allows it.
func (ex *extractor) replace(pfd int, base, rel string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("stat existing %s: %w", rel, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("a directory of that name exists; it is never replaced")
	}
	if !ex.opts.Overwrite {
		return fmt.Errorf("it already exists in the target (Overwrite replaces it)")
	}
	if err := unix.Unlinkat(pfd, base, 0); err != nil {
		return fmt.Errorf("remove existing %s: %w", rel, err)
	}
	return nil
}

func (ex *extractor) mkdir(pfd int, base, rel string) error {
	err := unix.Mkdirat(pfd, base, 0o700)
	if !errors.Is(err, unix.EEXIST) {
		if err != nil {
			return fmt.Errorf("create directory %s: %w", rel, err)
		}
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("stat existing %s: %w", rel, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return nil
	}
	if err := ex.replace(pfd, base, rel); err != nil {
		return fmt.Errorf("create directory %s: %w", rel, err)
	}
	if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
		return fmt.Errorf("create directory %s: %w", rel, err)
	}
	return nil
}

func (ex *extractor) hardlink(pfd int, base, rel, linkname string) error {
	target, err := cleanName(linkname)
	if err != nil {
		return fmt.Errorf("entry %s: link target: %w", rel, err)
	}
	if target == "." {
		return fmt.Errorf("entry %s: hard link to the root", rel)
	}
	if ex.noDevices[target] {
		ex.withholdDevice(rel)
		return nil
	}
	tdir, tbase := path.Split(target)
	tfd := ex.rootFd
	if tdir = strings.TrimSuffix(tdir, "/"); tdir != "" {
		if tfd, err = resolveDir(ex.rootFd, tdir); err != nil {
			return fmt.Errorf("entry %s: link target %s: %w", rel, target, err)
		}
		defer unix.Close(tfd)
	}
	// Flags 0: a link to a symlink links the symlink itself, never its target.
	if err := ex.create(pfd, base, rel, func() error { return unix.Linkat(tfd, tbase, pfd, base, 0) }); err != nil {
		return err
	}
	ex.stats.HardLinks++
	return nil
}

func (ex *extractor) file(pfd int, base, rel string, hdr *tar.Header, perm uint32, xattrs map[string]string, fill func(fd int, rel string, regions []region) error) error {
	size := hdr.Size
	regions := []region{{0, hdr.Size}}
	if m, ok := hdr.PAXRecords[paxSparseMap]; ok {
		var err error
		if size, err = strconv.ParseInt(hdr.PAXRecords[paxSparseSize], 10, 64); err != nil || size < 0 {
			return fmt.Errorf("entry %s: sparse size %q", rel, hdr.PAXRecords[paxSparseSize])
		}
		if regions, err = decodeSparse(m, size, hdr.Size); err != nil {
			return fmt.Errorf("entry %s: %w", rel, err)
		}
	}
	var fd int
	err := ex.create(pfd, base, rel, func() (err error) {
		fd, err = unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		return err
	})
	if err != nil {
		return err
	}
	defer func() {
		if fd >= 0 {
			unix.Close(fd)
		}
	}()
	if err := fill(fd, rel, regions); err != nil {
		return err
	}
	if size != hdr.Size || len(regions) != 1 {
		if err := unix.Ftruncate(fd, size); err != nil {
			return fmt.Errorf("set size of %s: %w", rel, err)
		}
	}
	if !ex.opts.NoSameOwner {
		if err := ex.owned(rel, unix.Fchown(fd, hdr.Uid, hdr.Gid)); err != nil {
			return fmt.Errorf("chown %s: %w", rel, err)
		}
	}
	// After chown, which clears setuid and setgid.
	if err := unix.Fchmod(fd, perm); err != nil {
		return fmt.Errorf("chmod %s: %w", rel, err)
	}
	for k, v := range xattrs {
		if err := xattrErr(rel, k, unix.Fsetxattr(fd, k, []byte(v), 0)); err != nil {
			return err
		}
	}
	err = unix.Close(fd)
	fd = -1
	if err != nil {
		return fmt.Errorf("close %s: %w", rel, err)
	}
	ts := timespec(hdr)
	if err := unix.UtimesNanoAt(pfd, base, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set mtime of %s: %w", rel, err)
	}
	return nil
}

// content writes one region read from the tar entry at its offset.
func (ex *extractor) content(fd int, rel string, r region, tr io.Reader) error {
	off, end := r.off, r.off+r.len
	for off < end {
		if err := ex.ctx.Err(); err != nil {
			return err
		}
		chunk := ex.buf[:min(int64(len(ex.buf)), end-off)]
		n, err := io.ReadFull(tr, chunk)
		if err != nil {
			return streamErr(err)
		}
		if err := pwriteAll(fd, chunk[:n], off); err != nil {
			return fmt.Errorf("write %s: %w", rel, err)
		}
		off += int64(n)
		ex.stats.RawBytes += int64(n)
		ex.stats.ReadBytes += int64(n)
		if ex.opts.Progress != nil {
			ex.opts.Progress.RawBytes.Add(int64(n))
		}
	}
	return nil
}

// recipeContent has data write a recipe entry's size bytes into the
// regions of fd, checking that it writes exactly that many.
func (ex *extractor) recipeContent(fd int, rel string, regions []region, ref []byte, size int64, data DataFunc) error {
	rw := &regionWriter{ex: ex, fd: fd, rel: rel, regions: slices.Clone(regions)}
	err := data(ex.ctx, ref, size, rw)
	if rw.err != nil && !rw.over { // the file write failed, not the data
		return rw.err
	}
	return dataErr(rel, size, rw.written, rw.over, err)
}

// collectData has data write a recipe entry's size bytes into memory,
// checking that it writes exactly that many.
func collectData(ctx context.Context, name string, ref []byte, size int64, data DataFunc) ([]byte, error) {
	c := &collector{b: make([]byte, 0, size)}
	err := data(ctx, ref, size, c)
	rel, cerr := cleanName(name)
	if cerr != nil {
		return nil, cerr
	}
	if err := dataErr(rel, size, int64(len(c.b)), c.over, err); err != nil {
		return nil, err
	}
	return c.b, nil
}

// dataErr says what is wrong with the data written for the recipe entry
// rel: more or fewer than size bytes, or err.
func dataErr(rel string, size, written int64, over bool, err error) error {
	switch {
	case over:
		return fmt.Errorf("restore %s: its data is longer than the %d bytes the recipe records: the recipe or the stored data is corrupt", rel, size)
	case err != nil:
		return fmt.Errorf("restore %s: %w", rel, err)
	case written < size:
		return fmt.Errorf("restore %s: got %d bytes of data, the recipe records %d: the recipe or the stored data is corrupt", rel, written, size)
	}
	return nil
}

// collector keeps what is written, up to its capacity.
type collector struct {
	b    []byte
	over bool
}

func (c *collector) Write(p []byte) (int, error) {
	if c.over {
		return 0, errTooLong
	}
	n := min(len(p), cap(c.b)-len(c.b))
	c.b = append(c.b, p[:n]...)
	if n < len(p) {
		c.over = true
		return n, errTooLong
	}
	return n, nil
}

// writeRegions writes data, a file's regions back to back, at their
// offsets.
func writeRegions(fd int, rel string, regions []region, data []byte, progress *Counters) error {
	n := int64(len(data))
	for _, r := range regions {
		if err := pwriteAll(fd, data[:r.len], r.off); err != nil {
			return fmt.Errorf("write %s: %w", rel, err)
		}
		data = data[r.len:]
	}
	if progress != nil {
		progress.RawBytes.Add(n)
	}
	return nil
}

// regionWriter writes a file's data regions, given back to back, at their
// offsets: one pwrite per region a Write covers.
type regionWriter struct {
	ex      *extractor
	fd      int
	rel     string
	regions []region // what is left to write
	written int64
	over    bool
	err     error
}

func (w *regionWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n := 0
	for len(p) > 0 {
		for len(w.regions) > 0 && w.regions[0].len == 0 {
			w.regions = w.regions[1:]
		}
		if len(w.regions) == 0 {
			w.over = true
			return n, errTooLong
		}
		r := &w.regions[0]
		q := p[:min(int64(len(p)), r.len)]
		if err := pwriteAll(w.fd, q, r.off); err != nil {
			w.err = fmt.Errorf("write %s: %w", w.rel, err)
			return n, w.err
		}
		r.off += int64(len(q))
		r.len -= int64(len(q))
		n += len(q)
		p = p[len(q):]
		w.written += int64(len(q))
		w.ex.stats.RawBytes += int64(len(q))
		w.ex.stats.ReadBytes += int64(len(q))
		if w.ex.opts.Progress != nil {
			w.ex.opts.Progress.RawBytes.Add(int64(len(q)))
		}
	}
	return n, nil
}

// pwriteAll writes all of b at off.
func pwriteAll(fd int, b []byte, off int64) error {
	for w := 0; w < len(b); {
		m, err := unix.Pwrite(fd, b[w:], off+int64(w))
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return err
		}
		w += m
	}
	return nil
}

// fixDirs applies directory metadata, deepest entries first.
func (ex *extractor) fixDirs() error {
	for i := len(ex.dirs) - 1; i >= 0; i-- {
		d := ex.dirs[i]
		ex.dirs[i] = dirMeta{}
		pfd, base := ex.rootFd, "."
		if d.rel != "." {
			var err error
			if pfd, base, err = ex.parentOf(d.rel); err != nil {
				return err
			}
		}
		fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open directory %s: %w", d.rel, err)
		}
		err = ex.fixDir(fd, d)
		unix.Close(fd)
		if err != nil {
			return err
		}
		err = unix.UtimesNanoAt(pfd, base, []unix.Timespec{d.mtime, d.mtime}, unix.AT_SYMLINK_NOFOLLOW)
		if err != nil && !(ex.opts.NotRoot && errors.Is(err, unix.EPERM)) {
			return fmt.Errorf("set mtime of %s: %w", d.rel, err)
		}
	}
	ex.dirs = nil
	return nil
}

// fixDir applies a directory's xattrs, mode and owner, in that order.
// chmod (and an ACL xattr) keep a directory's setgid bit only for a caller
// in the directory's group or with CAP_FSETID, and chown never clears a
// directory's setgid bit: so the directory is handed to the extracting
// user's group first and to its owner last, and a restore needs no
// CAP_FSETID for setgid directories.
func (ex *extractor) fixDir(fd int, d dirMeta) error {
	if ex.opts.NotRoot {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return fmt.Errorf("stat %s: %w", d.rel, err)
		}
		if int(st.Uid) != unix.Geteuid() {
			// Not ours (the volume's root): only what it lacks counts.
			if st.Mode&0o7777 != d.mode || int(st.Uid) != d.uid || int(st.Gid) != d.gid {
				ex.ownerNotSet(d.rel)
			}
			return nil
		}
	}
	if !ex.opts.NoSameOwner && d.mode&unix.S_ISGID != 0 {
		if err := unix.Fchown(fd, -1, unix.Getegid()); err != nil {
			return fmt.Errorf("chown %s: %w", d.rel, err)
		}
	}
	for k, v := range d.xattrs {
		if err := xattrErr(d.rel, k, unix.Fsetxattr(fd, k, []byte(v), 0)); err != nil {
			return err
		}
	}
	if err := unix.Fchmod(fd, d.mode); err != nil {
		return fmt.Errorf("chmod %s: %w", d.rel, err)
	}
	if !ex.opts.NoSameOwner {
		if err := ex.owned(d.rel, unix.Fchown(fd, d.uid, d.gid)); err != nil {
			return fmt.Errorf("chown %s: %w", d.rel, err)
		}
	}
	return nil
}

// owned passes err on, but for an extraction by a user that is not root
// that was not allowed to set rel's owner or mode: rel is counted and
// named, once however many of its calls failed.
func (ex *extractor) owned(rel string, err error) error {
	if err == nil || !ex.opts.NotRoot || !errors.Is(err, unix.EPERM) {
		return err
	}
	ex.ownerNotSet(rel)
	return nil
}

func (ex *extractor) ownerNotSet(rel string) {
	ex.ownMu.Lock()
	defer ex.ownMu.Unlock()
	if ex.lastNotOwned == rel {
		return
	}
	ex.lastNotOwned = rel
	ex.stats.OwnersNotSet++
	if w := ex.opts.Withheld; w != nil && len(w.Owners) < MaxWithheldNames {
		w.Owners = append(w.Owners, rel)
	}
}
