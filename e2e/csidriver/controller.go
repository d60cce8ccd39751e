package main

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// controllerServer keeps volumes and snapshots as directories in the state
// directory; a snapshot is a full copy, so it outlives its volume as a real
// snapshot does.
type controllerServer struct {
	csi.UnimplementedControllerServer
	st        *state
	snapshots bool // false: the driver advertises no snapshot support (file-level backups)
	faults    faults
	now       func() time.Time
	// sleep waits out injected delays; nil is a real, cancellable sleep.
	sleep func(ctx context.Context, d time.Duration) error
}

func (c *controllerServer) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	caps := []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
	}
	if c.snapshots {
		caps = append(caps,
			csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
			csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS)
	}
	resp := &csi.ControllerGetCapabilitiesResponse{}
	for _, t := range caps {
		resp.Capabilities = append(resp.Capabilities, &csi.ControllerServiceCapability{
			Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{Type: t}},
		})
	}
	return resp, nil
}

func (c *controllerServer) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	name := req.GetName()
	if name == "" {
		return nil, status.Error(codes.InvalidArgument, "volume name missing")
	}
	if err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
		return nil, err
	}
	if req.GetVolumeContentSource().GetVolume() != nil {
		return nil, status.Error(codes.InvalidArgument, "cloning volumes is not supported")
	}
	required := req.GetCapacityRange().GetRequiredBytes()
	limit := req.GetCapacityRange().GetLimitBytes()
	fromSnap := req.GetVolumeContentSource().GetSnapshot().GetSnapshotId()

	id := idFor("vol-", name)
	defer c.st.locks.lock("volume/" + id)()

	existing, err := c.st.volume(id)
	switch {
	case err == nil:
		if existing.Name != name || existing.SourceSnapshot != fromSnap ||
			existing.CapacityBytes < required || (limit > 0 && existing.CapacityBytes > limit) {
			return nil, status.Errorf(codes.AlreadyExists, "volume %s exists with a different size or source", name)
		}
		return c.volumeResponse(existing, req), nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, status.Errorf(codes.Internal, "read volume %s: %v", id, err)
	}

	capacity := required
	tmp := c.st.tempDir(id)
	if fromSnap != "" {
		if !c.snapshots || !validID(fromSnap) {
			return nil, status.Errorf(codes.NotFound, "snapshot %s not found", fromSnap)
		}
		unlock := c.st.locks.lock("snapshot/" + fromSnap)
		defer unlock()
		snap, err := c.st.snapshot(fromSnap)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, status.Errorf(codes.NotFound, "snapshot %s not found", fromSnap)
		}
		if err != nil {
			return nil, status.Errorf(codes.Internal, "read snapshot %s: %v", fromSnap, err)
		}
		if capacity == 0 {
			capacity = snap.SizeBytes
		}
		if capacity < snap.SizeBytes {
			return nil, status.Errorf(codes.OutOfRange, "requested %d bytes, snapshot %s needs %d", capacity, fromSnap, snap.SizeBytes)
		}
		// Not cancelled with the call: a sidecar that times out retries,
		// waits for this lock and then finds the finished volume instead
		// of restarting a long copy.
		if err := copyTree(context.WithoutCancel(ctx), c.st.snapshotDir(fromSnap), tmp); err != nil {
			os.RemoveAll(tmp)
			return nil, status.Errorf(codes.Internal, "copy snapshot %s into volume %s: %v", fromSnap, id, err)
		}
	} else {
		if err := os.Mkdir(tmp, 0o777); err != nil {
			return nil, status.Errorf(codes.Internal, "create volume directory %s: %v", id, err)
		}
		// World-writable like a fresh filesystem a pod formats for itself,
		// so pods running as any user can write without an fsGroup.
		if err := os.Chmod(tmp, 0o777); err != nil {
			return nil, status.Errorf(codes.Internal, "chmod volume directory %s: %v", id, err)
		}
	}
	if err := c.replaceDir(tmp, c.st.volumeDir(id)); err != nil {
		return nil, status.Errorf(codes.Internal, "place volume %s: %v", id, err)
	}
	m := &volumeMeta{ID: id, Name: name, CapacityBytes: capacity, SourceSnapshot: fromSnap, Created: c.now().UTC()}
	if p := req.GetParameters(); p[paramPVCName] != "" {
		m.PVC = p[paramPVCNamespace] + "/" + p[paramPVCName]
	}
	if err := c.st.putVolume(m); err != nil {
		return nil, status.Errorf(codes.Internal, "record volume %s: %v", id, err)
	}
	return c.volumeResponse(m, req), nil
}

// replaceDir moves a finished copy into place, dropping data a crash left
// there without metadata.
func (c *controllerServer) replaceDir(tmp, dst string) error {
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

func (c *controllerServer) volumeResponse(m *volumeMeta, req *csi.CreateVolumeRequest) *csi.CreateVolumeResponse {
	// The provisioner insists on seeing the content source it asked for.
	return &csi.CreateVolumeResponse{Volume: &csi.Volume{
		VolumeId:      m.ID,
		CapacityBytes: m.CapacityBytes,
		ContentSource: req.GetVolumeContentSource(),
	}}
}

func (c *controllerServer) DeleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id missing")
	}
	if !validID(id) {
		return &csi.DeleteVolumeResponse{}, nil // never created by this driver
	}
	defer c.st.locks.lock("volume/" + id)()
	// Metadata first: it must never name data that is gone.
	if err := os.Remove(c.st.volumeMetaPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, status.Errorf(codes.Internal, "delete volume %s: %v", id, err)
	}
	if err := os.RemoveAll(c.st.volumeDir(id)); err != nil {
		return nil, status.Errorf(codes.Internal, "delete volume %s: %v", id, err)
	}
	return &csi.DeleteVolumeResponse{}, nil
}

func (c *controllerServer) ValidateVolumeCapabilities(ctx context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id missing")
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "volume capabilities missing")
	}
	if !validID(id) {
		return nil, status.Errorf(codes.NotFound, "volume %s not found", id)
	}
	if _, err := c.st.volume(id); errors.Is(err, fs.ErrNotExist) {
		return nil, status.Errorf(codes.NotFound, "volume %s not found", id)
	} else if err != nil {
		return nil, status.Errorf(codes.Internal, "read volume %s: %v", id, err)
	}
	if err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: status.Convert(err).Message()}, nil
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext:      req.GetVolumeContext(),
		VolumeCapabilities: req.GetVolumeCapabilities(),
		Parameters:         req.GetParameters(),
	}}, nil
}

// checkCapabilities accepts filesystem volumes in every access mode: on a
// single node a bind mount serves them all. Raw block volumes are refused.
func checkCapabilities(caps []*csi.VolumeCapability) error {
	if len(caps) == 0 {
		return status.Error(codes.InvalidArgument, "volume capabilities missing")
	}
	for _, c := range caps {
		if c.GetBlock() != nil {
			return status.Error(codes.InvalidArgument, "block volumes are not supported")
		}
		if c.GetMount() == nil {
			return status.Error(codes.InvalidArgument, "access type missing")
		}
		if c.GetAccessMode().GetMode() == csi.VolumeCapability_AccessMode_UNKNOWN {
			return status.Error(codes.InvalidArgument, "access mode missing")
		}
	}
	return nil
}

func (c *controllerServer) CreateSnapshot(ctx context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	if !c.snapshots {
		return nil, status.Error(codes.Unimplemented, "this driver does not support snapshots")
	}
	name, src := req.GetName(), req.GetSourceVolumeId()
	if name == "" {
		return nil, status.Error(codes.InvalidArgument, "snapshot name missing")
	}
	if src == "" {
		return nil, status.Error(codes.InvalidArgument, "source volume id missing")
	}
	ns := req.GetParameters()[paramSnapshotNamespace]
	if msg, ok, err := c.faults.snapshotError(ns); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	} else if ok {
		return nil, status.Error(codes.Internal, msg)
	}
	if !validID(src) {
		return nil, status.Errorf(codes.NotFound, "volume %s not found", src)
	}
	id := idFor("snap-", name)
	// Volume before snapshot, as in CreateVolume, so the two never deadlock.
	defer c.st.locks.lock("volume/" + src)()
	defer c.st.locks.lock("snapshot/" + id)()

	existing, err := c.st.snapshot(id)
	switch {
	case err == nil:
		if existing.Name != name || existing.SourceVolume != src {
			return nil, status.Errorf(codes.AlreadyExists, "snapshot %s exists for another volume", name)
		}
		return &csi.CreateSnapshotResponse{Snapshot: c.snapshotProto(existing)}, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, status.Errorf(codes.Internal, "read snapshot %s: %v", id, err)
	}
	vol, err := c.st.volume(src)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, status.Errorf(codes.NotFound, "volume %s not found", src)
	}
	if err != nil {
		return nil, status.Errorf(codes.Internal, "read volume %s: %v", src, err)
	}
	delay, err := c.faults.snapshotDelay(ns)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	now := c.now().UTC()
	m := &snapshotMeta{
		ID: id, Name: name, SourceVolume: src, SizeBytes: vol.CapacityBytes,
		Created: now, ReadyAt: now.Add(delay), Namespace: ns,
	}
	if err := c.copySnapshot(ctx, m); err != nil {
		return nil, err
	}
	return &csi.CreateSnapshotResponse{Snapshot: c.snapshotProto(m)}, nil
}

// copySnapshot copies m's source volume into snapshot m.ID and records m.
// The caller holds the volume's and the snapshot's locks.
func (c *controllerServer) copySnapshot(ctx context.Context, m *snapshotMeta) error {
	id, src := m.ID, m.SourceVolume
	tmp := c.st.tempDir(id)
	// Not cancelled with the call, for the reason given in CreateVolume.
	if err := copyTree(context.WithoutCancel(ctx), c.st.volumeDir(src), tmp); err != nil {
		os.RemoveAll(tmp)
		return status.Errorf(codes.Internal, "copy volume %s into snapshot %s: %v", src, id, err)
	}
	if err := c.replaceDir(tmp, c.st.snapshotDir(id)); err != nil {
		return status.Errorf(codes.Internal, "place snapshot %s: %v", id, err)
	}
	if err := c.st.putSnapshot(m); err != nil {
		return status.Errorf(codes.Internal, "record snapshot %s: %v", id, err)
	}
	return nil
}

func (c *controllerServer) snapshotProto(m *snapshotMeta) *csi.Snapshot {
	return &csi.Snapshot{
		SnapshotId:     m.ID,
		SourceVolumeId: m.SourceVolume,
		SizeBytes:      m.SizeBytes,
		CreationTime:   timestamppb.New(m.Created),
		ReadyToUse:     !c.now().Before(m.ReadyAt),
	}
}

func (c *controllerServer) DeleteSnapshot(ctx context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	if !c.snapshots {
		return nil, status.Error(codes.Unimplemented, "this driver does not support snapshots")
	}
	id := req.GetSnapshotId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "snapshot id missing")
	}
	if !validID(id) {
		return &csi.DeleteSnapshotResponse{}, nil
	}
	if err := c.slowDelete(ctx, id); err != nil {
		return nil, err
	}
	if err := c.removeSnapshot(id); err != nil {
		return nil, err
	}
	return &csi.DeleteSnapshotResponse{}, nil
}

// removeSnapshot deletes snapshot id's metadata, then its data.
func (c *controllerServer) removeSnapshot(id string) error {
	defer c.st.locks.lock("snapshot/" + id)()
	if err := os.Remove(c.st.snapshotMetaPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return status.Errorf(codes.Internal, "delete snapshot %s: %v", id, err)
	}
	if err := os.RemoveAll(c.st.snapshotDir(id)); err != nil {
		return status.Errorf(codes.Internal, "delete snapshot %s: %v", id, err)
	}
	return nil
}

// slowDelete waits out the slow-delete fault of the namespace snapshot id
// was made in, if one is set. A call the sidecar gives up on deletes
// nothing: its retry waits again.
func (c *controllerServer) slowDelete(ctx context.Context, id string) error {
	m, err := c.st.snapshot(id)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return status.Errorf(codes.Internal, "read snapshot %s: %v", id, err)
	}
	d, err := c.faults.deleteDelay(m.Namespace)
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	if d <= 0 {
		return nil
	}
	sleep := c.sleep
	if sleep == nil {
		sleep = sleepCtx
	}
	if err := sleep(ctx, d); err != nil {
		return status.Errorf(codes.DeadlineExceeded, "delete snapshot %s: %v", id, err)
	}
	return nil
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ListSnapshots filters by snapshot id or source volume and does not page:
// csi-snapshotter uses it to look up one snapshot's readiness.
func (c *controllerServer) ListSnapshots(ctx context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	if !c.snapshots {
		return nil, status.Error(codes.Unimplemented, "this driver does not support snapshots")
	}
	if req.GetStartingToken() != "" {
		return nil, status.Error(codes.Aborted, "paging is not supported")
	}
	all, err := c.st.snapshots()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	slices.SortFunc(all, func(a, b *snapshotMeta) int { return strings.Compare(a.ID, b.ID) })
	resp := &csi.ListSnapshotsResponse{}
	for _, m := range all {
		if id := req.GetSnapshotId(); id != "" && m.ID != id {
			continue
		}
		if v := req.GetSourceVolumeId(); v != "" && m.SourceVolume != v {
			continue
		}
		resp.Entries = append(resp.Entries, &csi.ListSnapshotsResponse_Entry{Snapshot: c.snapshotProto(m)})
	}
	return resp, nil
}
