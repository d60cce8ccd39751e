package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
)

func createGroup(g *groupControllerServer, name, namespace string, vols ...string) (*csi.VolumeGroupSnapshot, error) {
	resp, err := g.CreateVolumeGroupSnapshot(context.Background(), &csi.CreateVolumeGroupSnapshotRequest{
		Name:            name,
		SourceVolumeIds: vols,
		Parameters:      map[string]string{paramGroupSnapshotNamespace: namespace},
	})
	return resp.GetGroupSnapshot(), err
}

func TestGroupSnapshotLifecycle(t *testing.T) {
	dir := t.TempDir()
	c, _ := newTestController(t, dir, true)
	g := &groupControllerServer{c: c}
	var vols []string
	for i, name := range []string{"pvc-a", "pvc-b", "pvc-c"} {
		v, err := createVolume(t, c, name, 1<<20, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(c.st.volumeDir(v.VolumeId), "f"), []byte{byte('a' + i)}, 0o644); err != nil {
			t.Fatal(err)
		}
		vols = append(vols, v.VolumeId)
	}
	gs, err := createGroup(g, "groupsnapshot-1", "ns", vols[2], vols[0], vols[1])
	if err != nil {
		t.Fatal(err)
	}
	if !gs.ReadyToUse || len(gs.Snapshots) != 3 || gs.CreationTime == nil {
		t.Fatalf("group snapshot: %+v", gs)
	}
	seen := map[string]bool{}
	for _, s := range gs.Snapshots {
		if s.GroupSnapshotId != gs.GroupSnapshotId || !s.ReadyToUse {
			t.Fatalf("member %+v of group %s", s, gs.GroupSnapshotId)
		}
		seen[s.SourceVolumeId] = true
		// A member restores like any snapshot.
		v, err := createVolume(t, c, "restore-"+s.SourceVolumeId, 1<<20, s.SnapshotId)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(c.st.volumeDir(v.VolumeId), "f"))
		want, _ := os.ReadFile(filepath.Join(c.st.volumeDir(s.SourceVolumeId), "f"))
		if err != nil || string(got) != string(want) {
			t.Fatalf("restored member of %s: %q, %v; want %q", s.SourceVolumeId, got, err, want)
		}
	}
	if len(seen) != 3 {
		t.Fatalf("members cover %v, want all three volumes", seen)
	}

	// A retried create returns the same group; other volumes under the
	// same name are refused.
	again, err := createGroup(g, "groupsnapshot-1", "ns", vols...)
	if err != nil || again.GroupSnapshotId != gs.GroupSnapshotId || len(again.Snapshots) != 3 {
		t.Fatalf("retry: %+v, %v", again, err)
	}
	_, err = createGroup(g, "groupsnapshot-1", "ns", vols[0])
	wantCode(t, err, codes.AlreadyExists)

	got, err := g.GetVolumeGroupSnapshot(context.Background(), &csi.GetVolumeGroupSnapshotRequest{GroupSnapshotId: gs.GroupSnapshotId})
	if err != nil || len(got.GroupSnapshot.Snapshots) != 3 {
		t.Fatalf("get: %+v, %v", got, err)
	}
	// The snapshot controller may delete a member on its own first.
	if _, err := c.DeleteSnapshot(context.Background(), &csi.DeleteSnapshotRequest{SnapshotId: gs.Snapshots[0].SnapshotId}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := g.DeleteVolumeGroupSnapshot(context.Background(), &csi.DeleteVolumeGroupSnapshotRequest{GroupSnapshotId: gs.GroupSnapshotId}); err != nil {
			t.Fatal(err)
		}
	}
	left, err := c.st.snapshots()
	if err != nil || len(left) != 0 {
		t.Fatalf("snapshots left after the group was deleted: %v, %v", left, err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "snapshots"))
	if len(entries) != 0 {
		t.Fatalf("snapshot data left: %v", entries)
	}
	_, err = g.GetVolumeGroupSnapshot(context.Background(), &csi.GetVolumeGroupSnapshotRequest{GroupSnapshotId: gs.GroupSnapshotId})
	wantCode(t, err, codes.NotFound)
	_, err = createGroup(g, "groupsnapshot-2", "ns", vols[0], "vol-missing")
	wantCode(t, err, codes.NotFound)
	if left, _ := c.st.snapshots(); len(left) != 0 {
		t.Fatalf("a failed group left snapshots: %v", left)
	}
}

func TestGroupSnapshotFaults(t *testing.T) {
	dir := t.TempDir()
	c, clock := newTestController(t, dir, true)
	g := &groupControllerServer{c: c}
	v, err := createVolume(t, c, "pvc-a", 1<<20, "")
	if err != nil {
		t.Fatal(err)
	}
	faultDir := filepath.Join(dir, "faults")
	for _, d := range []string{"group-snapshot-error", "group-snapshot-slow"} {
		if err := os.MkdirAll(filepath.Join(faultDir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(faultDir, "group-snapshot-error", "bad"), []byte("disk on fire\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := createGroup(g, "gs-bad", "bad", v.VolumeId); err == nil || err.Error() != "rpc error: code = Internal desc = disk on fire" {
		t.Fatalf("error fault: %v", err)
	}
	if left, _ := c.st.snapshots(); len(left) != 0 {
		t.Fatalf("a failed group left snapshots: %v", left)
	}
	// Single snapshots in that namespace are not affected; a single
	// snapshot fault fails groups too.
	if _, err := createSnapshot(c, "single", v.VolumeId, "bad"); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(faultDir, "snapshot-error"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(faultDir, "snapshot-error", "all"), []byte("no snapshots today"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := createGroup(g, "gs-all", "all", v.VolumeId); err == nil || !strings.Contains(err.Error(), "no snapshots today") {
		t.Fatalf("single snapshot fault on a group: %v", err)
	}
	if err := os.WriteFile(filepath.Join(faultDir, "group-snapshot-slow", "slow"), []byte("30"), 0o644); err != nil {
		t.Fatal(err)
	}
	gs, err := createGroup(g, "gs-slow", "slow", v.VolumeId)
	if err != nil || gs.ReadyToUse || gs.Snapshots[0].ReadyToUse {
		t.Fatalf("slow group: %+v, %v", gs, err)
	}
	clock.t = clock.t.Add(31 * time.Second)
	got, err := g.GetVolumeGroupSnapshot(context.Background(), &csi.GetVolumeGroupSnapshotRequest{GroupSnapshotId: gs.GroupSnapshotId})
	if err != nil || !got.GroupSnapshot.ReadyToUse {
		t.Fatalf("slow group after its delay: %+v, %v", got, err)
	}
}
