package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type fakeClock struct{ t time.Time }

func (f *fakeClock) now() time.Time { return f.t }

func newTestController(t *testing.T, dir string, snapshots bool) (*controllerServer, *fakeClock) {
	t.Helper()
	st, err := newState(dir)
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	faultDir := filepath.Join(dir, "faults")
	return &controllerServer{st: st, snapshots: snapshots, faults: faults{dir: faultDir}, now: clock.now}, clock
}

func mountCaps() []*csi.VolumeCapability {
	return []*csi.VolumeCapability{{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}}
}

func createVolume(t *testing.T, c *controllerServer, name string, size int64, fromSnap string) (*csi.Volume, error) {
	t.Helper()
	req := &csi.CreateVolumeRequest{
		Name:               name,
		CapacityRange:      &csi.CapacityRange{RequiredBytes: size},
		VolumeCapabilities: mountCaps(),
	}
	if fromSnap != "" {
		req.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: fromSnap},
		}}
	}
	resp, err := c.CreateVolume(context.Background(), req)
	return resp.GetVolume(), err
}

func createSnapshot(c *controllerServer, name, vol, namespace string) (*csi.Snapshot, error) {
	resp, err := c.CreateSnapshot(context.Background(), &csi.CreateSnapshotRequest{
		Name:           name,
		SourceVolumeId: vol,
		Parameters:     map[string]string{paramSnapshotNamespace: namespace, paramSnapshotName: "snap"},
	})
	return resp.GetSnapshot(), err
}

func wantCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("got error %v, want code %v", err, code)
	}
}

func TestCreateDeleteVolumeIdempotent(t *testing.T) {
	c, _ := newTestController(t, t.TempDir(), true)
	v1, err := createVolume(t, c, "pvc-1", 1<<20, "")
	if err != nil {
		t.Fatal(err)
	}
	v2, err := createVolume(t, c, "pvc-1", 1<<20, "")
	if err != nil {
		t.Fatalf("repeated create: %v", err)
	}
	if v1.VolumeId != v2.VolumeId || v2.CapacityBytes != 1<<20 {
		t.Fatalf("repeated create returned %v, first returned %v", v2, v1)
	}
	_, err = createVolume(t, c, "pvc-1", 2<<20, "")
	wantCode(t, err, codes.AlreadyExists)

	// A name the sidecars would never send still gets a safe id.
	odd, err := createVolume(t, c, "../../etc", 1, "")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(odd.VolumeId, "/") || !validID(odd.VolumeId) {
		t.Fatalf("unsafe volume id %q", odd.VolumeId)
	}

	dir := c.st.volumeDir(v1.VolumeId)
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o777 {
		t.Errorf("new volume mode %v, want 0777", fi.Mode().Perm())
	}
	for range 2 {
		if _, err := c.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: v1.VolumeId}); err != nil {
			t.Fatalf("delete: %v", err)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("volume directory still there after delete: %v", err)
	}
	_, err = c.ValidateVolumeCapabilities(context.Background(), &csi.ValidateVolumeCapabilitiesRequest{VolumeId: v1.VolumeId, VolumeCapabilities: mountCaps()})
	wantCode(t, err, codes.NotFound)
}

func TestRejectsBlockAndClones(t *testing.T) {
	c, _ := newTestController(t, t.TempDir(), true)
	_, err := c.CreateVolume(context.Background(), &csi.CreateVolumeRequest{
		Name: "pvc-b",
		VolumeCapabilities: []*csi.VolumeCapability{{
			AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		}},
	})
	wantCode(t, err, codes.InvalidArgument)
	_, err = c.CreateVolume(context.Background(), &csi.CreateVolumeRequest{
		Name:               "pvc-c",
		VolumeCapabilities: mountCaps(),
		VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
			Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: "pvc-1"},
		}},
	})
	wantCode(t, err, codes.InvalidArgument)
}

// fillTree writes a tree with everything a copy must keep.
func fillTree(t *testing.T, dir string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "data/empty"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "data/owned"), []byte("owned by 1000"), 0o644))
	must(os.Lchown(filepath.Join(dir, "data/owned"), 1000, 1000))
	must(os.WriteFile(filepath.Join(dir, "data/secret"), []byte("only the owner"), 0o600))
	must(os.Chmod(filepath.Join(dir, "data/secret"), 0o600))
	must(os.WriteFile(filepath.Join(dir, "data/setuid"), []byte("#!/bin/sh\n"), 0o755))
	must(os.Lchown(filepath.Join(dir, "data/setuid"), 1000, 1001))
	must(unix.Chmod(filepath.Join(dir, "data/setuid"), 0o4755))
	must(os.Link(filepath.Join(dir, "data/owned"), filepath.Join(dir, "hardlink")))
	must(os.Symlink("data/owned", filepath.Join(dir, "symlink")))
	must(os.Symlink("/nowhere", filepath.Join(dir, "dangling")))
	must(os.Lchown(filepath.Join(dir, "dangling"), 1002, 1002))
	must(unix.Mkfifo(filepath.Join(dir, "fifo"), 0o640))
	must(os.Mkdir(filepath.Join(dir, "private"), 0o700))
	must(unix.Chmod(filepath.Join(dir, "private"), 0o1750))
	must(os.Lchown(filepath.Join(dir, "private"), 1000, 1000))
	old := time.Date(2001, 2, 3, 4, 5, 6, 7000, time.UTC)
	for _, p := range []string{"data/owned", "data/empty", "private", "data"} {
		must(os.Chtimes(filepath.Join(dir, p), old, old))
	}
	ts := []unix.Timespec{unix.NsecToTimespec(old.UnixNano()), unix.NsecToTimespec(old.UnixNano())}
	must(unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(dir, "symlink"), ts, unix.AT_SYMLINK_NOFOLLOW))
}

// describeTree renders every entry under dir with its type, mode, owner,
// mtime, content digest or link target, and which earlier path it is a hard
// link of, so two trees compare as strings.
func describeTree(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	firstName := map[inode]string{}
	err := filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %v %o %d:%d %d", rel, fi.Mode().Type(), st.Mode&0o7777, st.Uid, st.Gid, st.Mtim.Nano())
		switch {
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			fmt.Fprintf(&b, " sha256=%s", hex.EncodeToString(sum[:8]))
			key := inode{dev: st.Dev, ino: st.Ino}
			if first, ok := firstName[key]; ok {
				fmt.Fprintf(&b, " link-of=%s", first)
			} else {
				firstName[key] = rel
			}
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " -> %s", target)
		}
		b.WriteByte('\n')
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to set owners and mount")
	}
}

func TestSnapshotAndRestoreKeepMetadata(t *testing.T) {
	requireRoot(t)
	c, _ := newTestController(t, t.TempDir(), true)
	vol, err := createVolume(t, c, "pvc-src", 5<<20, "")
	if err != nil {
		t.Fatal(err)
	}
	src := c.st.volumeDir(vol.VolumeId)
	fillTree(t, src)
	want := describeTree(t, src)
	if !strings.Contains(want, "link-of=data/owned") || !strings.Contains(want, "4755 1000:1001") {
		t.Fatalf("fixture lacks a hard link or setuid file:\n%s", want)
	}

	snap, err := createSnapshot(c, "snapshot-1", vol.VolumeId, "shop")
	if err != nil {
		t.Fatal(err)
	}
	if !snap.ReadyToUse || snap.SizeBytes != 5<<20 || snap.SourceVolumeId != vol.VolumeId {
		t.Fatalf("snapshot %v: want ready, 5 MiB, source %s", snap, vol.VolumeId)
	}
	if got := describeTree(t, c.st.snapshotDir(snap.SnapshotId)); got != want {
		t.Fatalf("snapshot differs from its volume\nvolume:\n%s\nsnapshot:\n%s", want, got)
	}
	again, err := createSnapshot(c, "snapshot-1", vol.VolumeId, "shop")
	if err != nil || again.SnapshotId != snap.SnapshotId {
		t.Fatalf("repeated CreateSnapshot: %v, %v", again, err)
	}
	_, err = createSnapshot(c, "snapshot-1", "pvc-other", "shop")
	wantCode(t, err, codes.AlreadyExists)

	// Later writes to the volume do not reach the snapshot.
	if err := os.WriteFile(filepath.Join(src, "data/owned"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}

	_, err = createVolume(t, c, "pvc-small", 1<<20, snap.SnapshotId)
	wantCode(t, err, codes.OutOfRange)
	restored, err := createVolume(t, c, "pvc-restored", 0, snap.SnapshotId)
	if err != nil {
		t.Fatal(err)
	}
	if restored.CapacityBytes != 5<<20 || restored.GetContentSource().GetSnapshot().GetSnapshotId() != snap.SnapshotId {
		t.Fatalf("restored volume %v: want 5 MiB from %s", restored, snap.SnapshotId)
	}
	if got := describeTree(t, c.st.volumeDir(restored.VolumeId)); got != want {
		t.Fatalf("restored volume differs from the snapshotted one\nwant:\n%s\ngot:\n%s", want, got)
	}

	list, err := c.ListSnapshots(context.Background(), &csi.ListSnapshotsRequest{SnapshotId: snap.SnapshotId})
	if err != nil || len(list.Entries) != 1 || list.Entries[0].Snapshot.SnapshotId != snap.SnapshotId {
		t.Fatalf("ListSnapshots by id: %v, %v", list, err)
	}
	for range 2 {
		if _, err := c.DeleteSnapshot(context.Background(), &csi.DeleteSnapshotRequest{SnapshotId: snap.SnapshotId}); err != nil {
			t.Fatal(err)
		}
	}
	list, err = c.ListSnapshots(context.Background(), &csi.ListSnapshotsRequest{})
	if err != nil || len(list.Entries) != 0 {
		t.Fatalf("ListSnapshots after delete: %v, %v", list, err)
	}
	_, err = createVolume(t, c, "pvc-late", 0, snap.SnapshotId)
	wantCode(t, err, codes.NotFound)
}

func TestStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	c, _ := newTestController(t, dir, true)
	vol, err := createVolume(t, c, "pvc-1", 1<<20, "")
	if err != nil {
		t.Fatal(err)
	}
	snap, err := createSnapshot(c, "snapshot-1", vol.VolumeId, "ns")
	if err != nil {
		t.Fatal(err)
	}
	// A copy a crash interrupted is dropped at start.
	if err := os.MkdirAll(c.st.tempDir("pvc-x"), 0o755); err != nil {
		t.Fatal(err)
	}

	c2, _ := newTestController(t, dir, true)
	if tmp, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(tmp) != 0 {
		t.Errorf("interrupted copies left after restart: %v", tmp)
	}
	v2, err := createVolume(t, c2, "pvc-1", 1<<20, "")
	if err != nil || v2.VolumeId != vol.VolumeId {
		t.Fatalf("volume after restart: %v, %v", v2, err)
	}
	list, err := c2.ListSnapshots(context.Background(), &csi.ListSnapshotsRequest{SourceVolumeId: vol.VolumeId})
	if err != nil || len(list.Entries) != 1 || list.Entries[0].Snapshot.SnapshotId != snap.SnapshotId {
		t.Fatalf("snapshots after restart: %v, %v", list, err)
	}
}

func TestNoSnapshots(t *testing.T) {
	c, _ := newTestController(t, t.TempDir(), false)
	caps, err := c.ControllerGetCapabilities(context.Background(), &csi.ControllerGetCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cp := range caps.Capabilities {
		switch cp.GetRpc().GetType() {
		case csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT, csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS:
			t.Errorf("--no-snapshots driver advertises %v", cp.GetRpc().GetType())
		}
	}
	vol, err := createVolume(t, c, "pvc-1", 1, "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = createSnapshot(c, "snapshot-1", vol.VolumeId, "ns")
	wantCode(t, err, codes.Unimplemented)
}

func TestFaults(t *testing.T) {
	dir := t.TempDir()
	c, clock := newTestController(t, dir, true)
	vol, err := createVolume(t, c, "pvc-1", 1, "")
	if err != nil {
		t.Fatal(err)
	}
	writeFault := func(kind, ns, content string) {
		t.Helper()
		p := filepath.Join(c.faults.dir, kind, ns)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	writeFault("snapshot-error", "broken", "disk on fire\n")
	_, err = createSnapshot(c, "snapshot-e", vol.VolumeId, "broken")
	wantCode(t, err, codes.Internal)
	if msg := status.Convert(err).Message(); msg != "disk on fire" {
		t.Errorf("fault message %q, want %q", msg, "disk on fire")
	}
	if _, err := createSnapshot(c, "snapshot-ok", vol.VolumeId, "fine"); err != nil {
		t.Fatalf("snapshot in a namespace without faults: %v", err)
	}
	// Faults are read at each call: removing the file heals the namespace.
	if err := os.Remove(filepath.Join(c.faults.dir, "snapshot-error", "broken")); err != nil {
		t.Fatal(err)
	}
	if _, err := createSnapshot(c, "snapshot-e", vol.VolumeId, "broken"); err != nil {
		t.Fatalf("snapshot after the fault was removed: %v", err)
	}

	writeFault("snapshot-slow", "slow", "30")
	snap, err := createSnapshot(c, "snapshot-s", vol.VolumeId, "slow")
	if err != nil {
		t.Fatal(err)
	}
	if snap.ReadyToUse {
		t.Fatal("slow snapshot ready at once")
	}
	clock.t = clock.t.Add(29 * time.Second)
	list, err := c.ListSnapshots(context.Background(), &csi.ListSnapshotsRequest{SnapshotId: snap.SnapshotId})
	if err != nil || len(list.Entries) != 1 || list.Entries[0].Snapshot.ReadyToUse {
		t.Fatalf("slow snapshot after 29 s: %v, %v; want one entry, not ready", list, err)
	}
	clock.t = clock.t.Add(time.Second)
	again, err := createSnapshot(c, "snapshot-s", vol.VolumeId, "slow")
	if err != nil || !again.ReadyToUse {
		t.Fatalf("slow snapshot after 30 s: %v, %v; want ready", again, err)
	}

	writeFault("snapshot-slow", "garbled", "soon")
	_, err = createSnapshot(c, "snapshot-g", vol.VolumeId, "garbled")
	wantCode(t, err, codes.Internal)
}

// TestConcurrentRetries: the sidecars retry calls that time out, so the same
// create can arrive while the first is still copying; all must agree.
func TestConcurrentRetries(t *testing.T) {
	c, _ := newTestController(t, t.TempDir(), true)
	vol, err := createVolume(t, c, "pvc-1", 1, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.st.volumeDir(vol.VolumeId), "f"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	const n = 8
	ids := make(chan string, 2*n)
	errs := make(chan error, 2*n)
	for range n {
		go func() {
			s, err := createSnapshot(c, "snapshot-1", vol.VolumeId, "ns")
			errs <- err
			ids <- s.GetSnapshotId()
		}()
		go func() {
			v, err := createVolume(t, c, "pvc-2", 1, "")
			errs <- err
			ids <- "volume " + v.GetVolumeId()
		}()
	}
	got := map[string]int{}
	for range 2 * n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
		got[<-ids]++
	}
	if len(got) != 2 || got["snapshot-1"] != n || got["volume pvc-2"] != n {
		t.Fatalf("concurrent creates returned %v", got)
	}
	entries, err := os.ReadDir(filepath.Join(c.st.dir, "snapshots"))
	if err != nil || len(entries) != 1 {
		t.Fatalf("snapshot directories %v (%v), want one", entries, err)
	}
}

// A slow-delete fault makes DeleteSnapshot of the namespace's snapshots take
// that long; the data stays until the wait is over, and a call given up on
// deletes nothing.
func TestSlowDeleteFault(t *testing.T) {
	dir := t.TempDir()
	c, _ := newTestController(t, dir, true)
	var slept []time.Duration
	giveUp := false
	c.sleep = func(_ context.Context, d time.Duration) error {
		slept = append(slept, d)
		if giveUp {
			return context.DeadlineExceeded
		}
		return nil
	}
	vol, err := createVolume(t, c, "pvc-1", 1, "")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(c.faults.dir, "snapshot-delete-slow", "slow")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("12.5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	slow, err := createSnapshot(c, "snapshot-slow", vol.VolumeId, "slow")
	if err != nil {
		t.Fatal(err)
	}
	fast, err := createSnapshot(c, "snapshot-fast", vol.VolumeId, "fine")
	if err != nil {
		t.Fatal(err)
	}
	del := func(id string) error {
		_, err := c.DeleteSnapshot(context.Background(), &csi.DeleteSnapshotRequest{SnapshotId: id})
		return err
	}
	if err := del(fast.SnapshotId); err != nil || len(slept) != 0 {
		t.Fatalf("delete in a namespace without the fault: %v, slept %v", err, slept)
	}
	giveUp = true
	wantCode(t, del(slow.SnapshotId), codes.DeadlineExceeded)
	if _, err := os.Stat(c.st.snapshotDir(slow.SnapshotId)); err != nil {
		t.Fatalf("a delete given up on removed the snapshot: %v", err)
	}
	giveUp = false
	if err := del(slow.SnapshotId); err != nil {
		t.Fatal(err)
	}
	if want := []time.Duration{12500 * time.Millisecond, 12500 * time.Millisecond}; fmt.Sprint(slept) != fmt.Sprint(want) {
		t.Errorf("slept %v, want %v", slept, want)
	}
	if _, err := os.Stat(c.st.snapshotDir(slow.SnapshotId)); !os.IsNotExist(err) {
		t.Errorf("snapshot still there after its slow delete: %v", err)
	}
	// Deleting what is gone is quick and fine.
	if err := del(slow.SnapshotId); err != nil || len(slept) != 2 {
		t.Errorf("delete again: %v, slept %v", err, slept)
	}
}
