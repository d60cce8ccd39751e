package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// copyTree copies the directory src to dst (which must not exist) keeping
// what a backup tool must preserve: owners, modes (with setuid/setgid/sticky),
// access and modification times, symlinks, hard links (within the tree),
// empty directories, FIFOs and device nodes. Sockets are skipped: they are
// not data. Extended attributes are not copied.
func copyTree(ctx context.Context, src, dst string) error {
	c := &treeCopier{ctx: ctx, links: map[inode]string{}}
	return c.copy(src, dst)
}

type inode struct{ dev, ino uint64 }

type treeCopier struct {
	ctx context.Context
	// links maps a multiply-linked source inode to its first copy, so the
	// other names become hard links to it instead of separate files.
	links map[inode]string
}

func (c *treeCopier) copy(src, dst string) error {
	if err := c.ctx.Err(); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return fmt.Errorf("stat %s: %w", src, err)
	}
	mode := st.Mode & unix.S_IFMT
	if mode == unix.S_IFDIR {
		return c.copyDir(src, dst, &st)
	}
	if mode == unix.S_IFSOCK {
		return nil
	}
	if st.Nlink > 1 {
		key := inode{dev: st.Dev, ino: st.Ino}
		if first, ok := c.links[key]; ok {
			if err := os.Link(first, dst); err != nil {
				return fmt.Errorf("hard link %s: %w", dst, err)
			}
			return nil
		}
		c.links[key] = dst
	}
	switch mode {
	case unix.S_IFREG:
		if err := copyFileData(src, dst); err != nil {
			return err
		}
	case unix.S_IFLNK:
		target, err := os.Readlink(src)
		if err != nil {
			return fmt.Errorf("read symlink %s: %w", src, err)
		}
		if err := os.Symlink(target, dst); err != nil {
			return fmt.Errorf("create symlink %s: %w", dst, err)
		}
	default: // FIFO, character and block devices
		if err := unix.Mknod(dst, st.Mode, int(st.Rdev)); err != nil {
			return fmt.Errorf("create special file %s: %w", dst, err)
		}
	}
	return setMeta(dst, &st)
}

func (c *treeCopier) copyDir(src, dst string, st *unix.Stat_t) error {
	// Owner-writable while filling; the real mode is set once it is full.
	if err := os.Mkdir(dst, 0o700); err != nil {
		return fmt.Errorf("create directory %s: %w", dst, err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return fmt.Errorf("read directory %s: %w", src, err)
	}
	for _, e := range entries {
		if err := c.copy(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	// Times last: creating the children changed the directory's mtime.
	return setMeta(dst, st)
}

// copyFileData copies the regular file src to a new file dst keeping holes
// as holes: only the data regions SEEK_DATA and SEEK_HOLE find are written,
// each at its offset, and dst is truncated to src's size. A snapshot of a
// volume with a 1 GiB sparse file then costs the bed its data, not 1 GiB,
// and a restore from it is as sparse as the volume was.
func copyFileData(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("open %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	if err := copySparse(in, out); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("close %s: %w", dst, err)
	}
	return nil
}

// copySparse copies in's data regions into the empty file out at the same
// offsets and gives out in's size. A file system that cannot tell data from
// holes gets the whole file as one region, with runs of zero blocks skipped.
func copySparse(in, out *os.File) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(in.Fd()), &st); err != nil {
		return err
	}
	size := st.Size
	regions, ok := dataRegions(int(in.Fd()), size)
	for _, r := range regions {
		if err := copyRegion(in, out, r.off, r.len, !ok); err != nil {
			return err
		}
	}
	// The tail hole, if any: the size without writing a byte.
	return out.Truncate(size)
}

type region struct{ off, len int64 }

// dataRegions lists fd's data regions below size with SEEK_DATA/SEEK_HOLE;
// ok is false when the file system does not support them and the list is
// the whole file.
func dataRegions(fd int, size int64) (regions []region, ok bool) {
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) { // only a hole up to the end
			break
		}
		if err != nil {
			return []region{{0, size}}, false
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return []region{{0, size}}, false
		}
		hole = min(hole, size)
		if hole <= data {
			break
		}
		regions = append(regions, region{data, hole - data})
		off = hole
	}
	return regions, true
}

// copyBlock is the unit copyRegion reads, writes and, with skipZeros,
// leaves out when it holds only zeros.
const copyBlock = 1 << 20

// copyRegion copies n bytes at off from in to the same offset of out. With
// skipZeros, blocks of zeros are not written (they stay holes). A file that
// shrank meanwhile ends the copy early; Truncate gives out the size src had.
func copyRegion(in, out *os.File, off, n int64, skipZeros bool) error {
	buf := make([]byte, min(n, copyBlock))
	for n > 0 {
		want := min(n, int64(len(buf)))
		got, err := in.ReadAt(buf[:want], off)
		if got > 0 && !(skipZeros && allZero(buf[:got])) {
			if _, werr := out.WriteAt(buf[:got], off); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		off += int64(got)
		n -= int64(got)
	}
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// setMeta gives dst the owner, mode and times of st. The owner goes first
// because chown clears setuid and setgid bits.
func setMeta(dst string, st *unix.Stat_t) error {
	if err := unix.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("chown %s: %w", dst, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		if err := unix.Chmod(dst, st.Mode&0o7777); err != nil {
			return fmt.Errorf("chmod %s: %w", dst, err)
		}
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times of %s: %w", dst, err)
	}
	return nil
}
