package main

import (
	"context"
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
	// File to file: io.Copy uses copy_file_range, which keeps it in the kernel.
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("close %s: %w", dst, err)
	}
	return nil
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
