package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// nodeServer publishes a volume by bind-mounting its directory onto the
// kubelet's target path. The driver runs in the host mount namespace, so the
// kubelet and the container runtime see the mount directly.
type nodeServer struct {
	csi.UnimplementedNodeServer
	st     *state
	nodeID string
}

func (n *nodeServer) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{NodeId: n.nodeID}, nil
}

func (n *nodeServer) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	// SINGLE_NODE_MULTI_WRITER lets the kubelet pass ReadWriteOncePod
	// through as its own access mode instead of folding it into RWO.
	return &csi.NodeGetCapabilitiesResponse{Capabilities: []*csi.NodeServiceCapability{{
		Type: &csi.NodeServiceCapability_Rpc{Rpc: &csi.NodeServiceCapability_RPC{
			Type: csi.NodeServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
		}},
	}}}, nil
}

func (n *nodeServer) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	id, target := req.GetVolumeId(), req.GetTargetPath()
	if id == "" || target == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id and target path are required")
	}
	if req.GetVolumeCapability() == nil {
		return nil, status.Error(codes.InvalidArgument, "volume capability missing")
	}
	if err := checkCapabilities([]*csi.VolumeCapability{req.GetVolumeCapability()}); err != nil {
		return nil, err
	}
	if !validID(id) {
		return nil, status.Errorf(codes.NotFound, "volume %s not found", id)
	}
	if _, err := n.st.volume(id); errors.Is(err, fs.ErrNotExist) {
		return nil, status.Errorf(codes.NotFound, "volume %s not found", id)
	} else if err != nil {
		return nil, status.Errorf(codes.Internal, "read volume %s: %v", id, err)
	}
	defer n.st.locks.lock("target/" + target)()

	readonly := req.GetReadonly() || slices.Contains(req.GetVolumeCapability().GetMount().GetMountFlags(), "ro")
	if err := bindMount(n.st.volumeDir(id), target, readonly); err != nil {
		return nil, status.Errorf(codes.Internal, "publish volume %s at %s: %v", id, target, err)
	}
	return &csi.NodePublishVolumeResponse{}, nil
}

func (n *nodeServer) NodeUnpublishVolume(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	id, target := req.GetVolumeId(), req.GetTargetPath()
	if id == "" || target == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id and target path are required")
	}
	defer n.st.locks.lock("target/" + target)()
	if err := unmountAndRemove(target); err != nil {
		return nil, status.Errorf(codes.Internal, "unpublish volume %s from %s: %v", id, target, err)
	}
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

// bindMount mounts src onto target, read-only when asked. A bind mount
// ignores MS_RDONLY on creation, so read-only takes a second remount. An
// existing mount at target counts as done (calls are retried).
func bindMount(src, target string, readonly bool) error {
	if err := os.MkdirAll(target, 0o750); err != nil {
		return fmt.Errorf("create target: %w", err)
	}
	mounted, err := isMountPoint(target)
	if err != nil {
		return err
	}
	if mounted {
		return nil
	}
	if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind mount: %w", err)
	}
	if readonly {
		if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			// Never leave a writable mount where a read-only one was asked for.
			_ = unix.Unmount(target, 0)
			return fmt.Errorf("remount read-only: %w", err)
		}
	}
	return nil
}

// unmountAndRemove unmounts every mount stacked on target and removes the
// directory; a target that is already gone is fine.
func unmountAndRemove(target string) error {
	for range 10 {
		mounted, err := isMountPoint(target)
		if err != nil {
			return err
		}
		if !mounted {
			break
		}
		if err := unix.Unmount(target, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("unmount: %w", err)
		}
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove target: %w", err)
	}
	return nil
}

// isMountPoint reports whether path is the mount point of some mount. Unlike
// comparing device numbers with the parent, this also sees a bind mount of a
// directory from the same filesystem.
func isMountPoint(path string) (bool, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return false, err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	} else if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint options ...
		fields := strings.Fields(sc.Text())
		if len(fields) >= 5 && unescapeMountPath(fields[4]) == abs {
			return true, nil
		}
	}
	if err := sc.Err(); err != nil {
		return false, fmt.Errorf("read mount table: %w", err)
	}
	return false, nil
}

// unescapeMountPath undoes the kernel's octal escapes (\040 for a space) in
// /proc/self/mountinfo.
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
