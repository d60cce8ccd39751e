package mover

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// A download skips the volume's device nodes and clears its set-id bits
// unless told otherwise, in both formats, and its Result counts and names
// what it left out.
func TestDownloadWithholdsDevicesAndSetID(t *testing.T) {
	ctx := t.Context()
	root := os.Geteuid() == 0
	src := tree(t)
	if err := unix.Chmod(filepath.Join(src, "a.txt"), 0o4755); err != nil {
		t.Fatal(err)
	}
	var devices []string
	if root {
		if err := unix.Mknod(filepath.Join(src, "sub/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
		if err := unix.Chmod(filepath.Join(src, "sub/null"), 0o666); err != nil { // past the umask
			t.Fatal(err)
		}
		devices = []string{"sub/null"}
	} else {
		t.Log("not root: the volume holds no device node (making one needs root); only set-id bits are checked")
	}
	store := fileStore(t)
	for _, f := range []struct{ name, key string }{
		{"format 1", "kbak/v1/ns/s/s-1/volumes/d.tar.zst"},
		{"format 2", "kbak/v2/backups/ns/s/s-1/volumes/d.tree"},
	} {
		key := f.key
		if _, err := Upload(ctx, store, UploadOptions{Source: src, Key: key, TempDir: t.TempDir()}, nil); err != nil {
			t.Fatal(err)
		}
		t.Run(f.name+" by default", func(t *testing.T) {
			dst := t.TempDir()
			res, err := Download(ctx, store, DownloadOptions{Key: key, Target: dst}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.SkippedDevices != int64(len(devices)) || !slices.Equal(res.SkippedDeviceNames, devices) ||
				res.ClearedSetID != 1 || !slices.Equal(res.ClearedSetIDNames, []string{"a.txt"}) || res.Files != 3 {
				t.Errorf("result %+v: want devices %q skipped, a.txt cleared, 3 files", res, devices)
			}
			if fi, err := os.Lstat(filepath.Join(dst, "a.txt")); err != nil || fi.Mode() != 0o755 {
				t.Errorf("a.txt: %v %v, want mode 0755", fi.Mode(), err)
			}
			if _, err := os.Lstat(filepath.Join(dst, "sub/null")); !os.IsNotExist(err) {
				t.Errorf("sub/null: %v, want it not created", err)
			}
		})
		t.Run(f.name+" with RestoreDevices and RestoreSetID", func(t *testing.T) {
			if !root {
				t.Skip("needs root: restores device nodes")
			}
			dst := t.TempDir()
			res, err := Download(ctx, store, DownloadOptions{Key: key, Target: dst, RestoreDevices: true, RestoreSetID: true}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.SkippedDevices != 0 || res.ClearedSetID != 0 || res.SkippedDeviceNames != nil || res.ClearedSetIDNames != nil {
				t.Errorf("result %+v: want nothing left out", res)
			}
			if fi, err := os.Lstat(filepath.Join(dst, "a.txt")); err != nil || fi.Mode() != 0o755|os.ModeSetuid {
				t.Errorf("a.txt: %v %v, want setuid 0755", fi.Mode(), err)
			}
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(dst, "sub/null"), &st); err != nil || st.Mode != unix.S_IFCHR|0o666 || st.Rdev != unix.Mkdev(1, 3) {
				t.Errorf("sub/null: mode %o rdev %d %v, want the character device 1,3", st.Mode, st.Rdev, err)
			}
		})
	}
}
