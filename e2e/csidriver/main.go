// Command csidriver is the test bed's CSI driver: volumes are directories on
// the node, snapshots are full copies of them, and publishing is a bind mount.
// It runs as one host process serving the Identity, Controller and Node
// services and registers itself with the kubelet, so the real sidecars
// (csi-provisioner, csi-snapshotter, snapshot-controller) drive it exactly as
// they drive a production driver. A second instance started with
// --no-snapshots stands for drivers that cannot snapshot, and a fault
// directory lets tests make snapshots fail or be slow.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

type config struct {
	endpoint        string
	name            string
	nodeID          string
	stateDir        string
	registrationDir string
	noSnapshots     bool
	faultDir        string
}

func main() {
	var cfg config
	flag.StringVar(&cfg.endpoint, "endpoint", "", "CSI socket, unix:///path/csi.sock")
	flag.StringVar(&cfg.name, "name", "", "driver name, e.g. snap.csi.kbak.io")
	flag.StringVar(&cfg.nodeID, "node-id", "", "name of the node this driver runs on")
	flag.StringVar(&cfg.stateDir, "state-dir", "", "directory holding volumes, snapshots and their metadata")
	flag.StringVar(&cfg.registrationDir, "registration-dir", "/var/lib/kubelet/plugins_registry", "the kubelet's plugin registration directory (empty: do not register)")
	flag.BoolVar(&cfg.noSnapshots, "no-snapshots", false, "advertise no snapshot support")
	flag.StringVar(&cfg.faultDir, "fault-dir", "", "directory of fault-injection files (see README.md)")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("driver", cfg.name)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, cfg, log); err != nil {
		log.Error("csidriver stopped", "error", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config, log *slog.Logger) error {
	if cfg.name == "" || cfg.nodeID == "" || cfg.stateDir == "" {
		return errors.New("--name, --node-id and --state-dir are required")
	}
	sock, ok := strings.CutPrefix(cfg.endpoint, "unix://")
	if !ok || sock == "" {
		return fmt.Errorf("--endpoint %q: want unix:///path/to/csi.sock", cfg.endpoint)
	}
	st, err := newState(cfg.stateDir)
	if err != nil {
		return err
	}

	csiLis, err := listenUnix(sock)
	if err != nil {
		return err
	}
	defer os.Remove(sock)
	srv := grpc.NewServer(grpc.UnaryInterceptor(logCalls(log)))
	csi.RegisterIdentityServer(srv, &identityServer{name: cfg.name, groups: !cfg.noSnapshots})
	ctrl := &controllerServer{
		st: st, snapshots: !cfg.noSnapshots, faults: faults{dir: cfg.faultDir}, now: time.Now,
	}
	csi.RegisterControllerServer(srv, ctrl)
	if !cfg.noSnapshots {
		csi.RegisterGroupControllerServer(srv, &groupControllerServer{c: ctrl})
	}
	csi.RegisterNodeServer(srv, &nodeServer{st: st, nodeID: cfg.nodeID})
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(csiLis) }()
	defer stopGracefully(srv, 10*time.Second)

	// The registration socket appears only once the CSI socket serves: the
	// kubelet calls the endpoint as soon as it has registered the plugin.
	if cfg.registrationDir != "" {
		regSock := filepath.Join(cfg.registrationDir, cfg.name+"-reg.sock")
		if err := os.MkdirAll(cfg.registrationDir, 0o750); err != nil {
			return fmt.Errorf("create registration directory: %w", err)
		}
		regLis, err := listenUnix(regSock)
		if err != nil {
			return err
		}
		// Removing the socket is how the kubelet learns the driver is gone.
		defer os.Remove(regSock)
		reg := grpc.NewServer()
		registerapi.RegisterRegistrationServer(reg, &registrationServer{name: cfg.name, endpoint: sock, log: log})
		go func() { errc <- reg.Serve(regLis) }()
		defer reg.Stop()
	}
	log.Info("serving", "endpoint", sock, "node", cfg.nodeID, "state_dir", cfg.stateDir,
		"snapshots", !cfg.noSnapshots, "fault_dir", cfg.faultDir)

	select {
	case <-ctx.Done():
		log.Info("stopping")
		return nil
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	}
}

// stopGracefully lets running calls finish, but not for ever: a long copy
// must not keep a stopping driver alive past its supervisor's patience.
func stopGracefully(srv *grpc.Server, timeout time.Duration) {
	done := make(chan struct{})
	go func() { srv.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		srv.Stop()
	}
}

// listenUnix listens on a Unix socket, removing one a dead process left.
func listenUnix(path string) (net.Listener, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	return lis, nil
}

// logCalls logs every CSI call with its outcome: the driver's log is what a
// failed end-to-end test shows of the storage side.
func logCalls(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		attrs := []any{"method", info.FullMethod, "duration", time.Since(start).Round(time.Millisecond)}
		if strings.HasSuffix(info.FullMethod, "/Probe") || strings.HasSuffix(info.FullMethod, "Capabilities") || strings.HasSuffix(info.FullMethod, "GetPluginInfo") {
			if err == nil {
				return resp, err // polled often, uninteresting when fine
			}
		}
		if sr, ok := req.(interface{ GetSecrets() map[string]string }); !ok || len(sr.GetSecrets()) == 0 {
			attrs = append(attrs, "request", fmt.Sprint(req))
		}
		if err != nil {
			log.Warn("csi call", append(attrs, "error", err)...)
		} else {
			log.Info("csi call", attrs...)
		}
		return resp, err
	}
}
