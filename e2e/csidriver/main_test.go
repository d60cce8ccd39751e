package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// TestServeAndRegister runs the driver on real Unix sockets and talks to it
// as the kubelet does: registration first, then the CSI endpoint it names.
func TestServeAndRegister(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "plugins/csi.sock")
	regDir := filepath.Join(dir, "plugins_registry")
	// A socket a killed driver left behind must not stop the next start.
	if err := os.MkdirAll(regDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(regDir, "snap.csi.kbak.io-reg.sock"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, config{
			endpoint: "unix://" + sock, name: "snap.csi.kbak.io", nodeID: "node-1",
			stateDir: filepath.Join(dir, "state"), registrationDir: regDir,
		}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()

	regSock := filepath.Join(regDir, "snap.csi.kbak.io-reg.sock")
	reg := dial(t, regSock)
	var info *registerapi.PluginInfo
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		info, err = registerapi.NewRegistrationClient(reg).GetInfo(ctx, &registerapi.InfoRequest{})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("registration GetInfo: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if info.Type != registerapi.CSIPlugin || info.Name != "snap.csi.kbak.io" || info.Endpoint != sock || len(info.SupportedVersions) != 1 || info.SupportedVersions[0] != "1.0.0" {
		t.Fatalf("registration info %v", info)
	}

	conn := dial(t, info.Endpoint)
	pi, err := csi.NewIdentityClient(conn).GetPluginInfo(ctx, &csi.GetPluginInfoRequest{})
	if err != nil || pi.Name != "snap.csi.kbak.io" {
		t.Fatalf("GetPluginInfo: %v, %v", pi, err)
	}
	ni, err := csi.NewNodeClient(conn).NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
	if err != nil || ni.NodeId != "node-1" {
		t.Fatalf("NodeGetInfo: %v, %v", ni, err)
	}
	vol, err := csi.NewControllerClient(conn).CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "pvc-1", VolumeCapabilities: mountCaps()})
	if err != nil || vol.Volume.VolumeId != "pvc-1" {
		t.Fatalf("CreateVolume: %v, %v", vol, err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("driver did not stop")
	}
	for _, p := range []string{sock, regSock} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("socket %s left after stop: %v", p, err)
		}
	}
}

func dial(t *testing.T, path string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
