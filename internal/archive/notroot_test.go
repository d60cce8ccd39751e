//go:build linux

package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

// The user the helper process runs as: what an unprivileged mover is.
const appUID, appGID = 1001, 1002

// notRootRun is what the helper reports.
type notRootRun struct {
	Stats Stats
	Names []string
	Err   string
}

// TestNotRootHelper is the helper process: it writes or extracts as the
// user it was started as, and prints what happened.
func TestNotRootHelper(t *testing.T) {
	mode := os.Getenv("KBAK_NOTROOT_HELPER")
	if mode == "" {
		t.Skip("helper process only")
	}
	var out notRootRun
	var err error
	switch mode {
	case "write":
		out.Stats, err = Write(context.Background(), os.Getenv("KBAK_NOTROOT_SRC"), io.Discard, WriteOptions{Unreadable: &out.Names})
	case "extract":
		var w Withheld
		f, ferr := os.Open(os.Getenv("KBAK_NOTROOT_ARCHIVE"))
		if ferr != nil {
			t.Fatal(ferr)
		}
		defer f.Close()
		out.Stats, err = Extract(context.Background(), f, os.Getenv("KBAK_NOTROOT_DST"), ExtractOptions{NotRoot: true, Withheld: &w})
		out.Names = w.Owners
	}
	if err != nil {
		out.Err = err.Error()
	}
	json.NewEncoder(os.Stdout).Encode(out)
}

// asApp runs the helper as appUID:appGID (in appGID too) and decodes its
// report.
func asApp(t *testing.T, env ...string) notRootRun {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to start a process as another user")
	}
	// The test binary's own directory is root's only: copy it where the
	// app's user may run it.
	dir, err := os.MkdirTemp("", "kbak-notroot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "archive.test")
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestNotRootHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: appUID, Gid: appUID, Groups: []uint32{appGID}}}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("helper: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	var out notRootRun
	line, _, _ := bytes.Cut(stdout.Bytes(), []byte("\n"))
	if err := json.Unmarshal(line, &out); err != nil {
		t.Fatalf("helper output %q: %v", stdout.String(), err)
	}
	return out
}

// worldDir makes a directory every user may enter.
func worldDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "kbak-notroot-data-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A walk without the right to read everything leaves out what it cannot
// read, counts and names it, and archives the rest: the app's own private
// files included.
func TestWriteNotRootLeavesOutUnreadable(t *testing.T) {
	src := worldDir(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(src, "public"), []byte("p"), 0o644))
	must(os.WriteFile(filepath.Join(src, "root-only"), []byte("r"), 0o600))
	must(os.Mkdir(filepath.Join(src, "root-dir"), 0o700))
	must(os.WriteFile(filepath.Join(src, "root-dir", "inside"), []byte("i"), 0o644))
	must(os.Mkdir(filepath.Join(src, "app"), 0o700))
	must(os.WriteFile(filepath.Join(src, "app", "db"), []byte("d"), 0o600))
	must(os.Chown(filepath.Join(src, "app"), appUID, appGID))
	must(os.Chown(filepath.Join(src, "app", "db"), appUID, appGID))

	out := asApp(t, "KBAK_NOTROOT_HELPER=write", "KBAK_NOTROOT_SRC="+src)
	if out.Err != "" {
		t.Fatalf("Write as the app's user failed: %s", out.Err)
	}
	if out.Stats.Unreadable != 2 || !slices.Equal(out.Names, []string{"root-dir", "root-only"}) {
		t.Errorf("unreadable %d %q, want 2: root-dir and root-only", out.Stats.Unreadable, out.Names)
	}
	if out.Stats.Files != 2 { // public and app/db
		t.Errorf("archived %d files, want 2", out.Stats.Files)
	}

	// Without Unreadable the first such file stops the walk, as before.
	if _, err := Write(context.Background(), src, io.Discard, WriteOptions{}); err != nil {
		t.Fatalf("root reads everything: %v", err)
	}
}

// An extraction by the app's user restores what it owns whole, and counts
// and names the entries whose owner it may not set, without failing.
func TestExtractNotRootCountsOwners(t *testing.T) {
	src := worldDir(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Mkdir(filepath.Join(src, "pgdata"), 0o700))
	must(os.WriteFile(filepath.Join(src, "pgdata", "PG_VERSION"), []byte("16"), 0o600))
	must(os.WriteFile(filepath.Join(src, "other"), []byte("o"), 0o640))
	must(os.Symlink("pgdata/PG_VERSION", filepath.Join(src, "link")))
	for _, p := range []string{"pgdata", "pgdata/PG_VERSION"} {
		must(os.Chown(filepath.Join(src, p), appUID, appGID))
	}
	must(os.Lchown(filepath.Join(src, "link"), appUID, appGID))
	must(os.Chown(filepath.Join(src, "other"), 2000, 2000))
	must(os.Chown(src, appUID, appGID))
	arch := filepath.Join(worldDir(t), "a.tar.zst")
	must(os.WriteFile(arch, archiveOf(t, src), 0o644))

	// The target's root is root's, as a fresh volume's is.
	dst := worldDir(t)
	must(os.Chmod(dst, 0o777))
	out := asApp(t, "KBAK_NOTROOT_HELPER=extract", "KBAK_NOTROOT_ARCHIVE="+arch, "KBAK_NOTROOT_DST="+dst)
	if out.Err != "" {
		t.Fatalf("Extract as the app's user failed: %s", out.Err)
	}
	if out.Stats.OwnersNotSet != 2 || !slices.Equal(out.Names, []string{"other", "."}) {
		t.Errorf("owners not set %d %q, want 2: other and .", out.Stats.OwnersNotSet, out.Names)
	}
	for _, tt := range []struct {
		rel      string
		uid, gid int
		mode     os.FileMode
	}{
		{"pgdata", appUID, appGID, os.ModeDir | 0o700},
		{"pgdata/PG_VERSION", appUID, appGID, 0o600},
		{"other", appUID, appUID, 0o640}, // kept by the mover's user
	} {
		fi, err := os.Lstat(filepath.Join(dst, tt.rel))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if int(st.Uid) != tt.uid || int(st.Gid) != tt.gid || fi.Mode() != tt.mode {
			t.Errorf("%s: %d:%d %v, want %d:%d %v", tt.rel, st.Uid, st.Gid, fi.Mode(), tt.uid, tt.gid, tt.mode)
		}
	}
}
