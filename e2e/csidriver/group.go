package main

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Parameters csi-snapshotter adds to a group snapshot with
// --extra-create-metadata.
const (
	paramGroupSnapshotNamespace = "csi.storage.k8s.io/volumegroupsnapshot/namespace"
)

// groupMeta is what the driver remembers about a group snapshot. Its
// members are ordinary snapshots (snapshotMeta), so DeleteSnapshot and
// ListSnapshots serve them as they serve single snapshots.
type groupMeta struct {
	ID        string   `json:"id"`
	Name      string   `json:"name"`
	Snapshots []string `json:"snapshots"`
	Sources   []string `json:"sources"`
}

func (s *state) groupMetaPath(id string) string {
	return filepath.Join(s.dir, "meta", "groups", id+".json")
}

func (s *state) group(id string) (*groupMeta, error) {
	var m groupMeta
	if err := readJSON(s.groupMetaPath(id), &m); err != nil {
		return nil, err
	}
	return &m, nil
}

func (s *state) putGroup(m *groupMeta) error { return writeJSON(s.groupMetaPath(m.ID), m) }

// groupControllerServer cuts the volumes of a group back to back while it
// holds every one's lock, so no driver operation on them (a restore into a
// volume, a single snapshot) lands between the members' copies.
type groupControllerServer struct {
	csi.UnimplementedGroupControllerServer
	c *controllerServer
}

func (g *groupControllerServer) GroupControllerGetCapabilities(context.Context, *csi.GroupControllerGetCapabilitiesRequest) (*csi.GroupControllerGetCapabilitiesResponse, error) {
	return &csi.GroupControllerGetCapabilitiesResponse{Capabilities: []*csi.GroupControllerServiceCapability{{
		Type: &csi.GroupControllerServiceCapability_Rpc{Rpc: &csi.GroupControllerServiceCapability_RPC{
			Type: csi.GroupControllerServiceCapability_RPC_CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT,
		}},
	}}}, nil
}

// memberID names the snapshot of volume src in group id, so a retried
// create finds the members the first attempt made.
func memberID(group, src string) string { return idFor("snap-", group+"/"+src) }

func (g *groupControllerServer) CreateVolumeGroupSnapshot(ctx context.Context, req *csi.CreateVolumeGroupSnapshotRequest) (*csi.CreateVolumeGroupSnapshotResponse, error) {
	c := g.c
	name := req.GetName()
	if name == "" {
		return nil, status.Error(codes.InvalidArgument, "group snapshot name missing")
	}
	srcs := slices.Clone(req.GetSourceVolumeIds())
	if len(srcs) == 0 {
		return nil, status.Error(codes.InvalidArgument, "source volume ids missing")
	}
	slices.Sort(srcs)
	if len(slices.Compact(slices.Clone(srcs))) != len(srcs) {
		return nil, status.Error(codes.InvalidArgument, "a source volume is listed twice")
	}
	ns := req.GetParameters()[paramGroupSnapshotNamespace]
	// A storage whose snapshots fail fails its group snapshots too.
	for _, fault := range []func(string) (string, bool, error){c.faults.groupSnapshotError, c.faults.snapshotError} {
		if msg, ok, err := fault(ns); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		} else if ok {
			return nil, status.Error(codes.Internal, msg)
		}
	}
	for _, src := range srcs {
		if !validID(src) {
			return nil, status.Errorf(codes.NotFound, "volume %s not found", src)
		}
	}
	id := idFor("group-", name)
	defer c.st.locks.lock("group/" + id)()
	if existing, err := c.st.group(id); err == nil {
		if !slices.Equal(existing.Sources, srcs) {
			return nil, status.Errorf(codes.AlreadyExists, "group snapshot %s exists for other volumes", name)
		}
		return g.response(existing)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, status.Errorf(codes.Internal, "read group snapshot %s: %v", id, err)
	}
	delay, err := c.faults.groupSnapshotDelay(ns)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	single, err := c.faults.snapshotDelay(ns)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	delay = max(delay, single)
	// Every volume is locked, in sorted order as everywhere else, before
	// the first copy starts and until the last one is in place.
	for _, src := range srcs {
		defer c.st.locks.lock("volume/" + src)()
	}
	vols := make([]*volumeMeta, len(srcs))
	for i, src := range srcs {
		v, err := c.st.volume(src)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, status.Errorf(codes.NotFound, "volume %s not found", src)
		}
		if err != nil {
			return nil, status.Errorf(codes.Internal, "read volume %s: %v", src, err)
		}
		vols[i] = v
	}
	now := c.now().UTC()
	m := &groupMeta{ID: id, Name: name, Sources: srcs}
	for i, src := range srcs {
		sid := memberID(id, src)
		unlock := c.st.locks.lock("snapshot/" + sid)
		err := c.copySnapshot(ctx, &snapshotMeta{
			ID: sid, Name: name + "/" + src, SourceVolume: src, SizeBytes: vols[i].CapacityBytes,
			Created: now, ReadyAt: now.Add(delay), Namespace: ns,
		})
		unlock()
		if err != nil {
			g.removeMembers(m.Snapshots)
			return nil, err
		}
		m.Snapshots = append(m.Snapshots, sid)
	}
	if err := c.st.putGroup(m); err != nil {
		g.removeMembers(m.Snapshots)
		return nil, status.Errorf(codes.Internal, "record group snapshot %s: %v", id, err)
	}
	return g.response(m)
}

// removeMembers undoes a group snapshot that could not be completed.
func (g *groupControllerServer) removeMembers(ids []string) {
	for _, sid := range ids {
		_ = g.c.removeSnapshot(sid)
	}
}

func (g *groupControllerServer) response(m *groupMeta) (*csi.CreateVolumeGroupSnapshotResponse, error) {
	gs, err := g.proto(m)
	if err != nil {
		return nil, err
	}
	return &csi.CreateVolumeGroupSnapshotResponse{GroupSnapshot: gs}, nil
}

func (g *groupControllerServer) proto(m *groupMeta) (*csi.VolumeGroupSnapshot, error) {
	gs := &csi.VolumeGroupSnapshot{GroupSnapshotId: m.ID, ReadyToUse: true}
	for _, sid := range m.Snapshots {
		sm, err := g.c.st.snapshot(sid)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "read member snapshot %s of group %s: %v", sid, m.ID, err)
		}
		p := g.c.snapshotProto(sm)
		p.GroupSnapshotId = m.ID
		gs.Snapshots = append(gs.Snapshots, p)
		gs.ReadyToUse = gs.ReadyToUse && p.ReadyToUse
		if gs.CreationTime == nil {
			gs.CreationTime = timestamppb.New(sm.Created)
		}
	}
	return gs, nil
}

func (g *groupControllerServer) GetVolumeGroupSnapshot(ctx context.Context, req *csi.GetVolumeGroupSnapshotRequest) (*csi.GetVolumeGroupSnapshotResponse, error) {
	id := req.GetGroupSnapshotId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "group snapshot id missing")
	}
	if !validID(id) {
		return nil, status.Errorf(codes.NotFound, "group snapshot %s not found", id)
	}
	m, err := g.c.st.group(id)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, status.Errorf(codes.NotFound, "group snapshot %s not found", id)
	}
	if err != nil {
		return nil, status.Errorf(codes.Internal, "read group snapshot %s: %v", id, err)
	}
	gs, err := g.proto(m)
	if err != nil {
		return nil, err
	}
	return &csi.GetVolumeGroupSnapshotResponse{GroupSnapshot: gs}, nil
}

// DeleteVolumeGroupSnapshot deletes the group and those of its members
// still there (the snapshot controller may have deleted some one by one).
func (g *groupControllerServer) DeleteVolumeGroupSnapshot(ctx context.Context, req *csi.DeleteVolumeGroupSnapshotRequest) (*csi.DeleteVolumeGroupSnapshotResponse, error) {
	id := req.GetGroupSnapshotId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "group snapshot id missing")
	}
	if !validID(id) {
		return &csi.DeleteVolumeGroupSnapshotResponse{}, nil
	}
	defer g.c.st.locks.lock("group/" + id)()
	ids := slices.Clone(req.GetSnapshotIds())
	m, err := g.c.st.group(id)
	switch {
	case err == nil:
		ids = append(ids, m.Snapshots...)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, status.Errorf(codes.Internal, "read group snapshot %s: %v", id, err)
	}
	slices.Sort(ids)
	for _, sid := range slices.Compact(ids) {
		if !validID(sid) {
			continue
		}
		if err := g.c.slowDelete(ctx, sid); err != nil {
			return nil, err
		}
		if err := g.c.removeSnapshot(sid); err != nil {
			return nil, err
		}
	}
	if err := os.Remove(g.c.st.groupMetaPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, status.Errorf(codes.Internal, "delete group snapshot %s: %v", id, err)
	}
	return &csi.DeleteVolumeGroupSnapshotResponse{}, nil
}
