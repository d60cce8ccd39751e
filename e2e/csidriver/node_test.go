package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
)

func TestPublishReadOnlyAndUnpublish(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	c, _ := newTestController(t, dir, true)
	n := &nodeServer{st: c.st, nodeID: "node-1"}
	vol, err := createVolume(t, c, "pvc-1", 1, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.st.volumeDir(vol.VolumeId), "hello"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	publish := func(target string, readonly bool) error {
		_, err := n.NodePublishVolume(context.Background(), &csi.NodePublishVolumeRequest{
			VolumeId: vol.VolumeId, TargetPath: target, VolumeCapability: mountCaps()[0], Readonly: readonly,
		})
		return err
	}
	unpublish := func(target string) error {
		_, err := n.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: vol.VolumeId, TargetPath: target})
		return err
	}

	rw, ro := filepath.Join(dir, "pods/rw/mount"), filepath.Join(dir, "pods/ro/mount")
	for range 2 { // publishing is retried by the kubelet
		if err := publish(rw, false); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { unix.Unmount(rw, unix.MNT_DETACH); unix.Unmount(ro, unix.MNT_DETACH) })
	if err := publish(ro, true); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rw, "written"), []byte("x"), 0o644); err != nil {
		t.Fatalf("write through the read-write mount: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(ro, "written")); err != nil || string(b) != "x" {
		t.Fatalf("read through the read-only mount: %q, %v", b, err)
	}
	err = os.WriteFile(filepath.Join(ro, "denied"), []byte("x"), 0o644)
	if !errors.Is(err, unix.EROFS) {
		t.Fatalf("write through the read-only mount: got %v, want EROFS", err)
	}

	for _, target := range []string{rw, ro} {
		for range 2 {
			if err := unpublish(target); err != nil {
				t.Fatal(err)
			}
		}
		if mounted, err := isMountPoint(target); err != nil || mounted {
			t.Fatalf("%s still mounted (%v)", target, err)
		}
		if _, err := os.Stat(target); !os.IsNotExist(err) {
			t.Fatalf("%s not removed: %v", target, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(c.st.volumeDir(vol.VolumeId), "written")); err != nil || string(b) != "x" {
		t.Fatalf("volume lost data across unpublish: %q, %v", b, err)
	}

	_, err = n.NodePublishVolume(context.Background(), &csi.NodePublishVolumeRequest{
		VolumeId: "pvc-missing", TargetPath: filepath.Join(dir, "x"), VolumeCapability: mountCaps()[0],
	})
	wantCode(t, err, codes.NotFound)
}

func TestUnescapeMountPath(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/var/lib/kubelet", "/var/lib/kubelet"},
		{`/a\040b`, "/a b"},
		{`/tab\011x\134y`, "/tab\tx\\y"},
		{`/trailing\04`, `/trailing\04`},
	} {
		if got := unescapeMountPath(tc.in); got != tc.want {
			t.Errorf("unescapeMountPath(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
