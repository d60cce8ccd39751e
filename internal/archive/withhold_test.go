package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// hdrEnt is one hand-made entry of a privileged archive.
type hdrEnt struct {
	hdr  tar.Header
	data string
}

// privilegedArchive writes ents as a plain PAX stream, the form a format 2
// recipe is rehydrated into.
func privilegedArchive(t *testing.T, ents []hdrEnt) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := e.hdr
		h.Format = tar.FormatPAX
		h.Size = int64(len(e.data))
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// fileCaps is a security.capability value (VFS_CAP_REVISION_2, effective)
// granting CAP_NET_RAW, as setcap cap_net_raw+ep writes it.
func fileCaps() string {
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], 0x02000000|0x1)
	binary.LittleEndian.PutUint32(b[4:], 1<<unix.CAP_NET_RAW)
	return string(b)
}

func statOf(t *testing.T, p string) (unix.Stat_t, bool) {
	t.Helper()
	var st unix.Stat_t
	err := unix.Lstat(p, &st)
	if errors.Is(err, unix.ENOENT) {
		return st, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return st, true
}

func hasCaps(t *testing.T, p string) bool {
	t.Helper()
	_, err := unix.Lgetxattr(p, capabilityXattr, make([]byte, 64))
	switch {
	case err == nil:
		return true
	case errors.Is(err, unix.ENODATA):
		return false
	}
	t.Fatalf("get %s of %s: %v", capabilityXattr, p, err)
	return false
}

// The capabilities of a restore mover (deploy.MoverPod): the defaults
// restore owners, modes and times with these alone; devices need MKNOD,
// set-id bits FSETID (a setgid file of another group) and file
// capabilities SETFCAP.
var (
	moverCaps    = []int{unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE, unix.CAP_FOWNER}
	moverAllCaps = append(slices.Clone(moverCaps), unix.CAP_MKNOD, unix.CAP_FSETID, unix.CAP_SETFCAP)
)

// withCaps runs f on a thread whose effective capabilities are only caps,
// as in a mover pod; the thread ends with f. As root only.
func withCaps(t *testing.T, caps []int, f func()) {
	t.Helper()
	done := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			done <- fmt.Errorf("capget: %w", err)
			return
		}
		data[0].Effective, data[1].Effective = 0, 0
		for _, c := range caps {
			data[c/32].Effective |= 1 << (c % 32)
		}
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			done <- fmt.Errorf("capset: %w", err)
			return
		}
		f()
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// By default an archive's device nodes are not created (hard links to them
// neither) and its files lose their setuid and setgid bits and file
// capabilities, counted and named; a fifo and a setgid directory are
// restored. ExtractOptions.Devices and SetID restore all of it. Format 1
// (Extract) and format 2 (ExtractTar of a rehydrated recipe) share the
// extractor; both are run. As root, each runs with only the capabilities
// the restore mover gets for it.
func TestExtractWithholdsDevicesAndSetID(t *testing.T) {
	root := os.Geteuid() == 0
	const tty = 5 // a group the extracting user is not in
	ents := []hdrEnt{
		{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755}},
		{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "bin/", Mode: 0o755}},
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "bin/plain", Mode: 0o755}, data: "plain"},
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "bin/su", Mode: 0o4755}, data: "su"},
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "bin/wall", Mode: 0o2755, Gid: tty}, data: "wall"},
		{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "dev/", Mode: 0o755}},
		{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}},
		{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/vda", Mode: 0o660, Devmajor: 253, Devminor: 0, Gid: 6}},
		{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "dev/null-too", Linkname: "dev/null"}},
		{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "fifo", Mode: 0o620}},
		{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "shared/", Mode: 0o2775, Gid: tty}},
	}
	wantSetID := []string{"bin/su", "bin/wall"}
	if root {
		// Setting file capabilities needs CAP_SETFCAP.
		ents = slices.Insert(ents, 3, hdrEnt{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "bin/ping", Mode: 0o755,
			PAXRecords: map[string]string{paxXattr + capabilityXattr: fileCaps()}}, data: "ping"})
		wantSetID = []string{"bin/ping", "bin/su", "bin/wall"}
	} else {
		// Without root the owners cannot be restored and tty is not ours.
		for i := range ents {
			ents[i].hdr.Gid = os.Getegid()
		}
	}
	plain := privilegedArchive(t, ents)
	var compressed bytes.Buffer
	enc, err := zstd.NewWriter(&compressed)
	if err != nil {
		t.Fatal(err)
	}
	enc.Write(plain)
	enc.Close()

	for _, format := range []struct {
		name    string
		extract func(dst string, opts ExtractOptions) (Stats, error)
	}{
		{"format 1", func(dst string, opts ExtractOptions) (Stats, error) {
			return Extract(context.Background(), bytes.NewReader(compressed.Bytes()), dst, opts)
		}},
		{"format 2", func(dst string, opts ExtractOptions) (Stats, error) {
			return ExtractTar(context.Background(), bytes.NewReader(plain), dst, opts)
		}},
	} {
		name, extract := format.name, format.extract
		t.Run(name+"/by default", func(t *testing.T) {
			dst := t.TempDir()
			var w Withheld
			var st Stats
			var err error
			run := func() { st, err = extract(dst, ExtractOptions{NoSameOwner: !root, Withheld: &w}) }
			if root {
				withCaps(t, moverCaps, run)
			} else {
				run()
			}
			if err != nil {
				t.Fatal(err)
			}
			if st.DevicesSkipped != 3 || st.SetIDCleared != int64(len(wantSetID)) || st.Other != 1 || st.Entries() != int64(len(ents)) {
				t.Errorf("stats %+v: want 3 devices skipped, %d set-id cleared, the fifo made", st, len(wantSetID))
			}
			if want := []string{"dev/null", "dev/vda", "dev/null-too"}; !slices.Equal(w.Devices, want) {
				t.Errorf("withheld devices %q, want %q", w.Devices, want)
			}
			if !slices.Equal(w.SetID, wantSetID) {
				t.Errorf("withheld set-id %q, want %q", w.SetID, wantSetID)
			}
			for _, dev := range []string{"dev/null", "dev/vda", "dev/null-too"} {
				if _, ok := statOf(t, filepath.Join(dst, dev)); ok {
					t.Errorf("%s was created", dev)
				}
			}
			if s, ok := statOf(t, filepath.Join(dst, "fifo")); !ok || s.Mode != unix.S_IFIFO|0o620 {
				t.Errorf("fifo: exists %v mode %o, want a fifo 0620", ok, s.Mode)
			}
			for _, f := range []struct {
				name, data string
				gid        uint32
			}{{"bin/su", "su", 0}, {"bin/wall", "wall", tty}, {"bin/plain", "plain", 0}} {
				p := filepath.Join(dst, f.name)
				s, _ := statOf(t, p)
				b, _ := os.ReadFile(p)
				if s.Mode != unix.S_IFREG|0o755 || string(b) != f.data || (root && s.Gid != f.gid) {
					t.Errorf("%s: mode %o gid %d data %q, want a file 0755 of gid %d holding %q", f.name, s.Mode, s.Gid, b, f.gid, f.data)
				}
			}
			if root && hasCaps(t, filepath.Join(dst, "bin/ping")) {
				t.Error("bin/ping kept its file capabilities")
			}
			if s, _ := statOf(t, filepath.Join(dst, "shared")); s.Mode != unix.S_IFDIR|0o2775 || (root && s.Gid != tty) {
				t.Errorf("shared: mode %o gid %d, want a setgid directory 2775 of gid %d", s.Mode, s.Gid, tty)
			}
		})
		t.Run(name+"/with Devices and SetID", func(t *testing.T) {
			if !root {
				t.Skip("needs root: creates device nodes and restores owners and file capabilities (the defaults above ran without it)")
			}
			dst := t.TempDir()
			var w Withheld
			var st Stats
			var err error
			withCaps(t, moverAllCaps, func() { st, err = extract(dst, ExtractOptions{Devices: true, SetID: true, Withheld: &w}) })
			if err != nil {
				t.Fatal(err)
			}
			if st.DevicesSkipped != 0 || st.SetIDCleared != 0 || st.Other != 3 || st.HardLinks != 1 || len(w.Devices)+len(w.SetID) != 0 {
				t.Errorf("stats %+v withheld %+v: want everything restored", st, w)
			}
			for _, d := range []struct {
				name  string
				mode  uint32
				rdev  uint64
				inode string // the hard link's first name
			}{
				{"dev/null", unix.S_IFCHR | 0o666, unix.Mkdev(1, 3), ""},
				{"dev/vda", unix.S_IFBLK | 0o660, unix.Mkdev(253, 0), ""},
				{"dev/null-too", unix.S_IFCHR | 0o666, unix.Mkdev(1, 3), "dev/null"},
			} {
				s, ok := statOf(t, filepath.Join(dst, d.name))
				if !ok || s.Mode != d.mode || s.Rdev != d.rdev {
					t.Errorf("%s: exists %v mode %o rdev %d, want mode %o rdev %d", d.name, ok, s.Mode, s.Rdev, d.mode, d.rdev)
				}
				if d.inode != "" {
					if first, _ := statOf(t, filepath.Join(dst, d.inode)); first.Ino != s.Ino {
						t.Errorf("%s is not a hard link to %s", d.name, d.inode)
					}
				}
			}
			for _, f := range []struct {
				name string
				mode uint32
				gid  uint32
			}{{"bin/su", 0o4755, 0}, {"bin/wall", 0o2755, tty}, {"bin/ping", 0o755, 0}} {
				if s, _ := statOf(t, filepath.Join(dst, f.name)); s.Mode != unix.S_IFREG|f.mode || s.Gid != f.gid {
					t.Errorf("%s: mode %o gid %d, want %o gid %d", f.name, s.Mode, s.Gid, unix.S_IFREG|f.mode, f.gid)
				}
			}
			if !hasCaps(t, filepath.Join(dst, "bin/ping")) {
				t.Error("bin/ping lost its file capabilities")
			}
		})
	}
}

// Withheld keeps the first MaxWithheldNames names of each kind; Stats
// counts them all. No device is made, so this runs without root.
func TestWithheldNamesBounded(t *testing.T) {
	ents := []hdrEnt{{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755}}}
	for i := range MaxWithheldNames + 5 {
		ents = append(ents,
			hdrEnt{hdr: tar.Header{Typeflag: tar.TypeChar, Name: fmt.Sprintf("tty%02d", i), Mode: 0o620, Devmajor: 4, Devminor: int64(i)}},
			hdrEnt{hdr: tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("suid%02d", i), Mode: 0o4711}, data: "x"})
	}
	var w Withheld
	st, err := ExtractTar(context.Background(), bytes.NewReader(privilegedArchive(t, ents)), t.TempDir(), ExtractOptions{NoSameOwner: true, Withheld: &w})
	if err != nil {
		t.Fatal(err)
	}
	if st.DevicesSkipped != MaxWithheldNames+5 || st.SetIDCleared != MaxWithheldNames+5 {
		t.Errorf("stats %+v", st)
	}
	if len(w.Devices) != MaxWithheldNames || w.Devices[0] != "tty00" || len(w.SetID) != MaxWithheldNames || w.SetID[MaxWithheldNames-1] != fmt.Sprintf("suid%02d", MaxWithheldNames-1) {
		t.Errorf("withheld %+v: want the first %d of each", w, MaxWithheldNames)
	}
}
