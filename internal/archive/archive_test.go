package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// node is what a round trip must keep of one tree entry.
type node struct {
	mode     fs.FileMode
	uid, gid uint32
	mtime    int64 // ns; zero for symlinks (see below)
	size     int64
	sum      string
	link     string
	xattrs   string
	rdev     uint64
	linkedTo string // first name (lexical) of a multiply-linked inode
	blocks   int64
}

// snapshot records every entry under root, root included as ".".
func snapshot(t *testing.T, root string) map[string]node {
	t.Helper()
	out := make(map[string]node)
	inodes := make(map[uint64]string)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		n := node{mode: fi.Mode(), uid: st.Uid, gid: st.Gid, mtime: st.Mtim.Nano(), blocks: st.Blocks, rdev: st.Rdev}
		switch {
		case fi.Mode().IsRegular():
			n.size = st.Size
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s := sha256.Sum256(b)
			n.sum = hex.EncodeToString(s[:])
		case fi.Mode()&fs.ModeSymlink != 0:
			n.link, _ = os.Readlink(p)
		}
		if !fi.IsDir() && st.Nlink > 1 {
			if first, ok := inodes[st.Ino]; ok {
				n.linkedTo = first
			} else {
				inodes[st.Ino] = rel
			}
		}
		n.xattrs = listXattrs(t, p)
		out[rel] = n
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", root, err)
	}
	return out
}

func listXattrs(t *testing.T, p string) string {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return ""
	}
	names := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00")
	slices.Sort(names)
	var b strings.Builder
	for _, name := range names {
		if name == "" {
			continue
		}
		v := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			t.Fatalf("get xattr %s of %s: %v", name, p, err)
		}
		b.WriteString(name + "=" + string(v[:m]) + ";")
	}
	return b.String()
}

func compareTrees(t *testing.T, want, got map[string]node) {
	t.Helper()
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("%s: missing after round trip", name)
			continue
		}
		// Blocks are compared separately (allocation may differ slightly).
		w.blocks, g.blocks = 0, 0
		if w != g {
			t.Errorf("%s:\n before %+v\n after  %+v", name, w, g)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: appeared after round trip", name)
		}
	}
}

// tree builds fixtures; each method fails the test on error.
type tree struct {
	t    *testing.T
	root string
}

func (tr tree) p(rel string) string { return filepath.Join(tr.root, rel) }

func (tr tree) must(err error) {
	tr.t.Helper()
	if err != nil {
		tr.t.Fatal(err)
	}
}

// dir and file take the mode as chmod(2) does: os.Chmod would drop the
// setuid, setgid and sticky bits of an octal mode.
func (tr tree) dir(rel string, mode uint32) {
	tr.t.Helper()
	tr.must(os.MkdirAll(tr.p(rel), 0o755))
	tr.must(unix.Chmod(tr.p(rel), mode))
}

func (tr tree) file(rel, content string, mode uint32) {
	tr.t.Helper()
	tr.must(os.WriteFile(tr.p(rel), []byte(content), 0o600))
	tr.must(unix.Chmod(tr.p(rel), mode))
}

func (tr tree) chown(rel string, uid, gid int) {
	tr.t.Helper()
	tr.must(os.Lchown(tr.p(rel), uid, gid))
}

func (tr tree) mtime(rel string, ts time.Time) {
	tr.t.Helper()
	t := unix.NsecToTimespec(ts.UnixNano())
	tr.must(unix.UtimesNanoAt(unix.AT_FDCWD, tr.p(rel), []unix.Timespec{t, t}, unix.AT_SYMLINK_NOFOLLOW))
}

// sparse writes a file of size with data only at the given offsets.
func (tr tree) sparse(rel string, size int64, data map[int64]string) {
	tr.t.Helper()
	f, err := os.Create(tr.p(rel))
	tr.must(err)
	defer f.Close()
	for off, s := range data {
		_, err := f.WriteAt([]byte(s), off)
		tr.must(err)
	}
	tr.must(f.Truncate(size))
}

func isRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: restores owners and makes device nodes")
	}
}

// everything extracts all an archive holds, device nodes, set-id bits and
// file capabilities included: what a round trip must keep.
var everything = ExtractOptions{Devices: true, SetID: true}

func roundTrip(t *testing.T, src string, opts WriteOptions) (string, Stats, Stats) {
	t.Helper()
	var buf bytes.Buffer
	ws, err := Write(context.Background(), src, &buf, opts)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	dst := t.TempDir()
	cr := &countingReader{r: bytes.NewReader(buf.Bytes())}
	es, err := Extract(context.Background(), cr, dst, everything)
	if err != nil {
		t.Fatalf("Extract: %v", err)
	}
	if cr.n != int64(buf.Len()) {
		t.Errorf("Extract read %d of %d bytes", cr.n, buf.Len())
	}
	return dst, ws, es
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// roundTripCase is a tree and the Stats archiving it gives.
type roundTripCase struct {
	name  string
	build func(tree)
	want  Stats // ReadBytes is filled in from RawBytes
	// sparse names files whose allocation must stay well under their size.
	sparse []string
}

// roundTripCases are the trees every round trip (archive or recipe) keeps:
// owners, modes, ns mtimes, xattrs, symlinks, hard links, sparse files,
// empty directories and special files.
func roundTripCases() []roundTripCase {
	ts := time.Date(2021, 3, 4, 5, 6, 7, 123456789, time.UTC)
	return []roundTripCase{
		{
			name:  "empty root",
			build: func(tree) {},
			want:  Stats{Dirs: 1},
		},
		{
			name: "modes owners mtimes",
			build: func(tr tree) {
				tr.dir("empty", 0o755)
				tr.dir("sticky", 0o1777)
				tr.dir("a/b/c", 0o750)
				tr.file("a/b/c/setuid", "x", 0o4755)
				tr.file("a/setgid", "y", 0o2711)
				tr.file("a/private", "secret", 0o600)
				tr.file("zero", "", 0o644)
				tr.chown("a/private", 999, 999)
				tr.chown("a/b", 1234, 5678)
				tr.chown("a/b/c/setuid", 1000, 50)
				tr.must(unix.Chmod(tr.p("a/b/c/setuid"), 0o4755)) // chown cleared it
				tr.dir("shared", 0o2770)
				tr.chown("shared", 1234, 5678) // a directory keeps its setgid bit
				tr.mtime("a/private", ts)
				tr.mtime("a/b", ts.Add(time.Hour))
				tr.mtime("empty", ts.Add(-time.Hour))
				tr.chown(".", 999, 998)
				tr.must(os.Chmod(tr.root, 0o700))
			},
			want: Stats{Files: 4, Dirs: 7, RawBytes: 8},
		},
		{
			name: "read-only directories are still filled",
			build: func(tr tree) {
				tr.dir("ro/inner", 0o755)
				tr.file("ro/inner/f", "data", 0o444)
				tr.must(os.Chmod(tr.p("ro/inner"), 0o500))
				tr.must(os.Chmod(tr.p("ro"), 0o000))
			},
			want: Stats{Files: 1, Dirs: 3, RawBytes: 4},
		},
		{
			name: "symlinks",
			build: func(tr tree) {
				tr.dir("d", 0o755)
				tr.file("d/f", "target", 0o644)
				tr.must(os.Symlink("d/f", tr.p("rel")))
				tr.must(os.Symlink("/etc/passwd", tr.p("abs")))
				tr.must(os.Symlink("../../nowhere", tr.p("d/dangling")))
				tr.must(os.Symlink("d", tr.p("dirlink")))
				tr.chown("rel", 7, 8)
				tr.mtime("rel", ts)
			},
			want: Stats{Files: 1, Dirs: 2, Symlinks: 4, RawBytes: 6},
		},
		{
			name: "hard links",
			build: func(tr tree) {
				tr.dir("x/y", 0o755)
				tr.file("a", "shared", 0o640)
				tr.must(os.Link(tr.p("a"), tr.p("x/b")))
				tr.must(os.Link(tr.p("a"), tr.p("x/y/c")))
				tr.file("x/single", "one", 0o644)
				tr.must(os.Symlink("a", tr.p("s")))
				tr.must(os.Link(tr.p("s"), tr.p("x/s2"))) // link to a symlink
				tr.must(unix.Mkfifo(tr.p("p"), 0o600))
				tr.must(os.Link(tr.p("p"), tr.p("x/p2")))
			},
			want: Stats{Files: 2, Dirs: 3, Symlinks: 1, Other: 1, HardLinks: 4, RawBytes: 9},
		},
		{
			name: "xattrs",
			build: func(tr tree) {
				tr.dir("d", 0o755)
				tr.file("d/f", "x", 0o644)
				tr.must(unix.Setxattr(tr.p("d/f"), "user.kbak", []byte("v1"), 0))
				tr.must(unix.Setxattr(tr.p("d/f"), "user.bin", []byte{0, 1, 2, 255}, 0))
				tr.must(unix.Setxattr(tr.p("d"), "user.dir", []byte("dv"), 0))
				tr.must(unix.Setxattr(tr.p("d/f"), "trusted.t", []byte("tv"), 0))
				tr.must(os.Symlink("f", tr.p("d/l")))
				tr.must(unix.Lsetxattr(tr.p("d/l"), "trusted.l", []byte("lv"), 0))
			},
			want: Stats{Files: 1, Dirs: 2, Symlinks: 1, RawBytes: 1},
		},
		{
			name: "sparse",
			build: func(tr tree) {
				tr.sparse("holes", 64<<20, map[int64]string{
					0:        strings.Repeat("a", 5000),
					20 << 20: strings.Repeat("b", 70000),
					40 << 20: "c",
				})
				tr.sparse("trailing-data", 32<<20, map[int64]string{32<<20 - 3: "end"})
				tr.sparse("all-hole", 16<<20, nil)
				tr.file("dense", strings.Repeat("d", 100000), 0o644)
			},
			sparse: []string{"holes", "trailing-data", "all-hole"},
			want:   Stats{Files: 4, Dirs: 1}, // RawBytes depends on block size
		},
		{
			name: "special files",
			build: func(tr tree) {
				tr.must(unix.Mkfifo(tr.p("fifo"), 0o620))
				tr.must(unix.Mknod(tr.p("null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
				tr.must(unix.Mknod(tr.p("blk"), unix.S_IFBLK|0o600, int(unix.Mkdev(7, 200))))
				tr.chown("fifo", 5, 6)
				tr.mtime("null", ts)
			},
			want: Stats{Dirs: 1, Other: 3},
		},
	}
}

// checkHoles fails if a sparse file's holes were filled on the way.
func checkHoles(t *testing.T, names []string, before, after map[string]node) {
	t.Helper()
	for _, name := range names {
		b, a := before[name], after[name]
		if a.blocks > b.blocks+16 || a.blocks*512 >= a.size/2 {
			t.Errorf("%s: %d blocks after, %d before, size %d: holes inflated", name, a.blocks, b.blocks, a.size)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	isRoot(t)
	for _, tc := range roundTripCases() {
		t.Run(tc.name, func(t *testing.T) {
			src := t.TempDir()
			tc.build(tree{t, src})
			before := snapshot(t, src)
			dst, ws, es := roundTrip(t, src, WriteOptions{})
			after := snapshot(t, dst)
			compareTrees(t, before, after)
			if tc.sparse != nil {
				tc.want.RawBytes = ws.RawBytes
			}
			tc.want.ReadBytes = tc.want.RawBytes
			if ws != tc.want {
				t.Errorf("Write stats %+v, want %+v", ws, tc.want)
			}
			if es != tc.want {
				t.Errorf("Extract stats %+v, want %+v", es, tc.want)
			}
			checkHoles(t, tc.sparse, before, after)
		})
	}
}

func TestWriteSkipsSockets(t *testing.T) {
	src := t.TempDir()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: filepath.Join(src, "sock")}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	dst, ws, _ := roundTrip(t, src, WriteOptions{})
	if want := (Stats{Files: 1, Dirs: 1, Skipped: 1, RawBytes: 1, ReadBytes: 1}); ws != want {
		t.Errorf("stats %+v, want %+v", ws, want)
	}
	if _, err := os.Lstat(filepath.Join(dst, "sock")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket restored: %v", err)
	}
}

func TestWriteDeterministic(t *testing.T) {
	src := t.TempDir()
	tr := tree{t, src}
	for _, d := range []string{"b", "a", "c/z", "c/a", "B"} {
		tr.dir(d, 0o755)
		tr.file(d+"/f", d, 0o644)
	}
	var first []byte
	for i := range 3 {
		var buf bytes.Buffer
		if _, err := Write(context.Background(), src, &buf, WriteOptions{Concurrency: 1 + i}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = buf.Bytes()
		} else if !bytes.Equal(first, buf.Bytes()) {
			t.Fatalf("run %d gave a different stream", i)
		}
	}
}

func TestWriteProgressAndLevels(t *testing.T) {
	src := t.TempDir()
	tr := tree{t, src}
	tr.dir("d", 0o755)
	tr.file("d/f", strings.Repeat("row,", 100000), 0o644)
	tr.must(os.Symlink("d/f", tr.p("l")))
	for level := 0; level <= 4; level++ {
		var c Counters
		var buf bytes.Buffer
		st, err := Write(context.Background(), src, &buf, WriteOptions{Level: level, Progress: &c})
		if err != nil {
			t.Fatalf("level %d: %v", level, err)
		}
		if c.Files.Load() != st.Entries() || c.RawBytes.Load() != st.RawBytes || st.RawBytes != 400000 {
			t.Errorf("level %d: counters %d files %d bytes, stats %+v", level, c.Files.Load(), c.RawBytes.Load(), st)
		}
		var ec Counters
		if _, err := Extract(context.Background(), bytes.NewReader(buf.Bytes()), t.TempDir(), ExtractOptions{Progress: &ec}); err != nil {
			t.Fatalf("level %d: extract: %v", level, err)
		}
		if ec.Files.Load() != st.Entries() || ec.RawBytes.Load() != st.RawBytes {
			t.Errorf("level %d: extract counters %d files %d bytes, want %d, %d", level, ec.Files.Load(), ec.RawBytes.Load(), st.Entries(), st.RawBytes)
		}
	}
	if _, err := Write(context.Background(), src, io.Discard, WriteOptions{Level: 5}); err == nil {
		t.Error("level 5 accepted")
	}
	if _, err := Write(context.Background(), tr.p("d/f"), io.Discard, WriteOptions{}); err == nil {
		t.Error("a regular file accepted as the tree root")
	}
}

func TestCancel(t *testing.T) {
	src := t.TempDir()
	tree{t, src}.file("f", "x", 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Write(ctx, src, io.Discard, WriteOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Write: %v, want context.Canceled", err)
	}
	var buf bytes.Buffer
	if _, err := Write(context.Background(), src, &buf, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Extract(ctx, &buf, t.TempDir(), ExtractOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Extract: %v, want context.Canceled", err)
	}
}

func archiveOf(t *testing.T, src string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := Write(context.Background(), src, &buf, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestExtractBrokenStreams(t *testing.T) {
	src := t.TempDir()
	tr := tree{t, src}
	tr.dir("d", 0o755)
	// Incompressible content keeps the compressed stream long enough to cut.
	rnd := make([]byte, 300000)
	for i := range rnd {
		rnd[i] = byte(i*7919 + i/251*31 + i*i)
	}
	tr.must(os.WriteFile(tr.p("d/f"), rnd, 0o644))
	good := archiveOf(t, src)
	tests := []struct {
		name      string
		data      []byte
		truncated bool
	}{
		{"empty", nil, true},
		{"first byte", good[:1], true},
		{"half", good[:len(good)/2], true},
		{"all but one byte", good[:len(good)-1], true},
		{"all but the checksum", good[:len(good)-4], true},
		{"trailing garbage", append(slices.Clone(good), "garbage"...), false},
		{"second stream appended", append(slices.Clone(good), good...), false},
		{"flipped byte", func() []byte { b := slices.Clone(good); b[len(b)/2] ^= 0x40; return b }(), false},
		{"not zstd", []byte("plain text, not an archive at all"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Extract(context.Background(), bytes.NewReader(tc.data), t.TempDir(), ExtractOptions{})
			if err == nil {
				t.Fatal("Extract succeeded")
			}
			if tc.truncated && !errors.Is(err, ErrTruncated) {
				t.Errorf("error %q is not ErrTruncated", err)
			}
			t.Logf("error: %v", err)
		})
	}
}

func TestExtractExisting(t *testing.T) {
	src := t.TempDir()
	tr := tree{t, src}
	tr.dir("d", 0o755)
	tr.file("d/f", "new", 0o644)
	tr.must(os.Symlink("d/f", tr.p("s")))
	data := archiveOf(t, src)

	dst := t.TempDir()
	os.Mkdir(filepath.Join(dst, "lost+found"), 0o700)
	if _, err := Extract(context.Background(), bytes.NewReader(data), dst, ExtractOptions{}); err != nil {
		t.Fatalf("into a fresh volume: %v", err)
	}
	if _, err := Extract(context.Background(), bytes.NewReader(data), dst, ExtractOptions{}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second extract without Overwrite: %v", err)
	}
	os.WriteFile(filepath.Join(dst, "d/f"), []byte("old"), 0o644)
	if _, err := Extract(context.Background(), bytes.NewReader(data), dst, ExtractOptions{Overwrite: true}); err != nil {
		t.Fatalf("with Overwrite: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "d/f")); string(b) != "new" {
		t.Errorf("d/f holds %q after Overwrite", b)
	}
	if _, err := os.Stat(filepath.Join(dst, "lost+found")); err != nil {
		t.Errorf("lost+found: %v", err)
	}

	// A directory in the way of a file is never removed.
	dst2 := t.TempDir()
	os.MkdirAll(filepath.Join(dst2, "d/f/keep"), 0o755)
	if _, err := Extract(context.Background(), bytes.NewReader(data), dst2, ExtractOptions{Overwrite: true}); err == nil {
		t.Error("a directory was replaced by a file")
	}
	if _, err := os.Stat(filepath.Join(dst2, "d/f/keep")); err != nil {
		t.Errorf("d/f/keep: %v", err)
	}
}

func TestRoundTripBothResolvers(t *testing.T) {
	src := t.TempDir()
	tr := tree{t, src}
	tr.dir("a/b/c/d", 0o751)
	tr.file("a/b/c/d/f", "deep", 0o640)
	tr.file("a/x", "x", 0o600)
	tr.must(os.Link(tr.p("a/b/c/d/f"), tr.p("a/b/g")))
	tr.must(os.Symlink("b/c", tr.p("a/s")))
	withResolvers(t, func(t *testing.T) {
		before := snapshot(t, src)
		dst, _, _ := roundTrip(t, src, WriteOptions{})
		compareTrees(t, before, snapshot(t, dst))
	})
}
