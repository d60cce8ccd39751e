package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

type ent struct {
	typ  byte
	name string
	link string
}

// makeArchive builds a stream like Write's from hand-made headers; files
// hold "pwned". It returns nil if archive/tar refuses a header.
func makeArchive(t testing.TB, ents []ent) []byte {
	var buf bytes.Buffer
	enc, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(enc)
	for _, e := range ents {
		hdr := &tar.Header{Typeflag: e.typ, Name: e.name, Linkname: e.link, Mode: 0o755, Format: tar.FormatPAX}
		if e.typ == tar.TypeReg {
			hdr.Size = 5
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte("pwned"))
		}
	}
	if err := tw.Close(); err != nil {
		return nil
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// sandbox is parent/{target,outside/victim}; check verifies that parent and
// outside hold exactly what they held before and the victim is untouched
// (no new content, mode or hard link).
type sandbox struct{ parent, target, outside string }

func newSandbox(t testing.TB) sandbox {
	p := t.TempDir()
	s := sandbox{p, filepath.Join(p, "target"), filepath.Join(p, "outside")}
	for _, d := range []string{s.target, s.outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.outside, "victim"), []byte("safe"), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s sandbox) check(t testing.TB) {
	t.Helper()
	names := func(dir string) []string {
		es, err := os.ReadDir(dir)
		if err != nil {
			t.Fatalf("read %s: %v", dir, err)
		}
		var out []string
		for _, e := range es {
			out = append(out, e.Name())
		}
		return out
	}
	if got := names(s.parent); !slices.Equal(got, []string{"outside", "target"}) {
		t.Errorf("parent holds %v", got)
	}
	if got := names(s.outside); !slices.Equal(got, []string{"victim"}) {
		t.Errorf("outside holds %v", got)
	}
	victim := filepath.Join(s.outside, "victim")
	var st unix.Stat_t
	if err := unix.Lstat(victim, &st); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(victim)
	if string(b) != "safe" || st.Nlink != 1 || st.Mode&0o7777 != 0o644 || st.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Errorf("victim changed: %q nlink %d mode %o", b, st.Nlink, st.Mode)
	}
	var pst unix.Stat_t
	if err := unix.Lstat(s.outside, &pst); err != nil || pst.Mode&0o7777 != 0o755 {
		t.Errorf("outside dir changed: mode %o, %v", pst.Mode, err)
	}
}

// withResolvers runs f with openat2 and with the component-walk fallback.
func withResolvers(t *testing.T, f func(t *testing.T)) {
	for _, on := range []bool{true, false} {
		name := "openat2"
		if !on {
			name = "walk"
		}
		t.Run(name, func(t *testing.T) {
			defer useOpenat2.Store(true)
			useOpenat2.Store(on)
			f(t)
		})
	}
}

func TestExtractRefusesEscapes(t *testing.T) {
	tests := []struct {
		name string
		ents func(s sandbox) []ent
	}{
		{"dotdot file", func(s sandbox) []ent { return []ent{{tar.TypeReg, "../outside/victim", ""}} }},
		{"dotdot new file", func(s sandbox) []ent { return []ent{{tar.TypeReg, "../outside/new", ""}} }},
		{"dotdot inside", func(s sandbox) []ent {
			return []ent{{tar.TypeDir, "a/", ""}, {tar.TypeReg, "a/../../outside/new", ""}}
		}},
		{"absolute", func(s sandbox) []ent { return []ent{{tar.TypeReg, s.outside + "/new", ""}} }},
		{"symlink dir then file", func(s sandbox) []ent {
			return []ent{{tar.TypeSymlink, "s", "../outside"}, {tar.TypeReg, "s/new", ""}}
		}},
		{"absolute symlink then file", func(s sandbox) []ent {
			return []ent{{tar.TypeSymlink, "s", s.outside}, {tar.TypeReg, "s/victim", ""}}
		}},
		{"symlink then dir", func(s sandbox) []ent {
			return []ent{{tar.TypeSymlink, "s", s.outside}, {tar.TypeDir, "s/d/", ""}}
		}},
		{"nested symlink parent", func(s sandbox) []ent {
			return []ent{{tar.TypeDir, "a/", ""}, {tar.TypeSymlink, "a/s", "../../outside"}, {tar.TypeReg, "a/s/new", ""}}
		}},
		{"symlink then symlink under it", func(s sandbox) []ent {
			return []ent{{tar.TypeSymlink, "s", s.outside}, {tar.TypeSymlink, "s/x", "/etc"}}
		}},
		{"hard link out", func(s sandbox) []ent { return []ent{{tar.TypeLink, "h", "../outside/victim"}} }},
		{"hard link absolute", func(s sandbox) []ent { return []ent{{tar.TypeLink, "h", s.outside + "/victim"}} }},
		{"hard link through symlink", func(s sandbox) []ent {
			return []ent{{tar.TypeSymlink, "s", s.outside}, {tar.TypeLink, "h", "s/victim"}}
		}},
		{"file over symlink", func(s sandbox) []ent {
			return []ent{{tar.TypeSymlink, "v", s.outside + "/victim"}, {tar.TypeReg, "v", ""}}
		}},
		{"root as file", func(s sandbox) []ent { return []ent{{tar.TypeReg, ".", ""}} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			withResolvers(t, func(t *testing.T) {
				for _, overwrite := range []bool{false, true} {
					s := newSandbox(t)
					data := makeArchive(t, tc.ents(s))
					if data == nil {
						t.Fatal("archive/tar refused the headers")
					}
					_, err := Extract(context.Background(), bytes.NewReader(data), s.target, ExtractOptions{Overwrite: overwrite})
					s.check(t)
					if tc.name == "file over symlink" && overwrite {
						// Overwrite replaces the symlink itself, never its target.
						if err != nil {
							t.Errorf("Overwrite of a symlink: %v", err)
						}
						continue
					}
					if err == nil {
						t.Errorf("Extract succeeded (overwrite %v)", overwrite)
					}
				}
			})
		})
	}
}

// FuzzExtract builds small archives from fuzzed names, link targets and
// types; whatever Extract does with them, nothing outside the target changes.
// "@" in a name or link target stands for the absolute path of a directory
// beside the target.
func FuzzExtract(f *testing.F) {
	seeds := []struct {
		n1, l1 string
		t1     byte
		n2, l2 string
		t2     byte
		n3, l3 string
		t3     byte
	}{
		{"../outside/victim", "", 0, "", "", 0, "", "", 0},
		{"a/../../outside/x", "", 1, "", "", 0, "", "", 0},
		{"@/x", "", 0, "./", "", 1, "", "", 0},
		{"s", "../outside", 2, "s/x", "", 0, "", "", 0},
		{"s", "@", 2, "s/victim", "", 0, "", "", 0},
		{"d/", "", 1, "d/s", "../../outside", 2, "d/s/x", "", 1},
		{"h", "../outside/victim", 3, "", "", 0, "", "", 0},
		{"s", "@", 2, "h", "s/victim", 3, "", "", 0},
		{"v", "@/victim", 2, "v", "", 0, "", "", 0},
		{"x", "", 0, "x/", "", 1, "x/y", "", 4},
		{"./a", "", 1, "a//b", "", 0, "a/./b", "", 3},
		{"s", "..", 2, "s/outside/victim", "", 0, "", "", 0},
	}
	for _, s := range seeds {
		f.Add(s.n1, s.l1, s.t1, s.n2, s.l2, s.t2, s.n3, s.l3, s.t3)
	}
	types := []byte{tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeFifo}
	f.Fuzz(func(t *testing.T, n1, l1 string, t1 byte, n2, l2 string, t2 byte, n3, l3 string, t3 byte) {
		for _, on := range []bool{true, false} {
			useOpenat2.Store(on)
			s := newSandbox(t)
			sub := func(v string) string { return strings.ReplaceAll(v, "@", s.outside) }
			ents := []ent{
				{types[int(t1)%len(types)], sub(n1), sub(l1)},
				{types[int(t2)%len(types)], sub(n2), sub(l2)},
				{types[int(t3)%len(types)], sub(n3), sub(l3)},
			}
			data := makeArchive(t, ents)
			if data == nil {
				return
			}
			Extract(context.Background(), bytes.NewReader(data), s.target, ExtractOptions{NoSameOwner: true, Overwrite: t1&0x80 != 0})
			s.check(t)
		}
		useOpenat2.Store(true)
	})
}
