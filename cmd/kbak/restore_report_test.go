package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kbak/kbak/internal/mover"
	"github.com/kbak/kbak/restore"
)

// The table of a real restore says what the plan knew (the ordinals left
// out, the namespace made, the notes) and what the movers left out.
func TestPrintRestoreResult(t *testing.T) {
	res := &restore.Result{
		Namespace: "dr", StatefulSet: "db", CreatedNamespace: true,
		Ordinals: []restore.OrdinalResult{{Ordinal: 0, Status: restore.StatusRestored, Claims: []restore.ClaimResult{
			{PVC: "data-db-0", Source: restore.SourceStore, Status: restore.StatusRestored, Files: 3, SkippedDevices: 1, SkippedDeviceNames: []string{"dev/null"}},
		}}},
		Skipped:  []restore.Skipped{{Ordinal: 1, Reason: "volume data-db-1 was not backed up (failed: timeout)"}},
		Notes:    []string{"ordinal(s) 1 not restored: with 3 replicas the StatefulSet creates their claims empty", "data-db-0: 1 device node(s) of the backup not created (dev/null): --restore-devices creates them"},
		NextStep: "create the StatefulSet",
	}
	var out bytes.Buffer
	printRestoreResult(&out, res)
	for _, want := range []string{
		"created namespace dr\n",
		"skipped ordinal 1: volume data-db-1 was not backed up (failed: timeout)\n",
		"note: ordinal(s) 1 not restored: with 3 replicas the StatefulSet creates their claims empty\n",
		"note: data-db-0: 1 device node(s) of the backup not created (dev/null): --restore-devices creates them\n",
		"next: create the StatefulSet\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	res.Ordinals[0].Status = restore.StatusFailed
	out.Reset()
	printRestoreResult(&out, res)
	if !strings.Contains(out.String(), "created namespace dr, deleted again: nothing was restored\n") {
		t.Errorf("a failed restore's namespace:\n%s", out.String())
	}
}

// kbak mover download skips device nodes and clears set-id bits unless
// --restore-devices and --restore-setid say otherwise, and its result event
// says what it left out.
func TestMoverDownloadRestoreFlags(t *testing.T) {
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	root := os.Geteuid() == 0
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "su"), []byte("su"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(filepath.Join(src, "su"), 0o4755); err != nil {
		t.Fatal(err)
	}
	var devices []string
	if root {
		if err := unix.Mknod(filepath.Join(src, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
		devices = []string{"null"}
	} else {
		t.Log("not root: no device node in the volume (making one needs root)")
	}
	repo := "file://" + t.TempDir()
	const key = "kbak/v2/backups/ns/db/db-1/volumes/data-db-0.tree"
	if code, _, errs := kbak(t, "mover", "upload", "--repo", repo, "--source", src, "--key", key, "--progress-interval", "0"); code != 0 {
		t.Fatalf("upload: exit %d: %s", code, errs)
	}
	download := func(t *testing.T, flags ...string) (string, mover.Result) {
		t.Helper()
		target := t.TempDir()
		code, out, errs := kbak(t, append([]string{"mover", "download", "--repo", repo, "--key", key, "--target", target, "--progress-interval", "0"}, flags...)...)
		if code != 0 {
			t.Fatalf("download: exit %d: %s", code, errs)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		var ev mover.Event
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &ev); err != nil || ev.Result == nil {
			t.Fatalf("last line %q: %v", lines[len(lines)-1], err)
		}
		return target, *ev.Result
	}

	target, res := download(t)
	if res.SkippedDevices != int64(len(devices)) || !slices.Equal(res.SkippedDeviceNames, devices) || res.ClearedSetID != 1 || !slices.Equal(res.ClearedSetIDNames, []string{"su"}) {
		t.Errorf("by default: result %+v, want devices %q skipped and su cleared", res, devices)
	}
	if fi, err := os.Stat(filepath.Join(target, "su")); err != nil || fi.Mode() != 0o755 {
		t.Errorf("by default: su %v %v, want 0755", fi.Mode(), err)
	}
	if !root {
		return
	}
	target, res = download(t, "--restore-devices", "--restore-setid")
	if res.SkippedDevices != 0 || res.ClearedSetID != 0 {
		t.Errorf("with the flags: result %+v, want nothing left out", res)
	}
	if fi, err := os.Stat(filepath.Join(target, "su")); err != nil || fi.Mode() != 0o755|os.ModeSetuid {
		t.Errorf("with the flags: su %v %v, want setuid 0755", fi.Mode(), err)
	}
	if fi, err := os.Lstat(filepath.Join(target, "null")); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Errorf("with the flags: null %v %v, want a character device", fi.Mode(), err)
	}
}
