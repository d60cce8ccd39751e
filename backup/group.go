package backup

import (
	"context"
	"time"

	groupv1beta2 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumegroupsnapshot/v1beta2"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/kube"
)

// groupCut is one VolumeGroupSnapshot of a run: the claims of one CSI
// driver, cut at once.
type groupCut struct {
	name string
	vols []*volume
	err  error
	// vgs and cutAt: the group snapshot once cut, and when.
	vgs   *groupv1beta2.VolumeGroupSnapshot
	cutAt time.Time
}

// fail records err on the group and every volume in it.
func (g *groupCut) fail(err error) {
	g.err = err
	for _, v := range g.vols {
		v.err = err
	}
}

// createGroup labels the group's claims with LabelGroup (the group
// snapshot's selector; nothing else of a claim changes) and creates the
// VolumeGroupSnapshot.
func (r *run) createGroup(ctx context.Context, g *groupCut) {
	for _, v := range g.vols {
		if err := kube.SetClaimGroupLabel(ctx, r.deps.Kube, r.opts.Namespace, v.claim.Name, g.name); err != nil {
			g.fail(err)
			return
		}
	}
	class := g.vols[0].groupClass
	vgs := kube.NewVolumeGroupSnapshot(r.opts.Namespace, g.name, class, kube.Labels(r.id, r.opts.StatefulSet, kube.RoleGroup))
	if _, err := kube.CreateVolumeGroupSnapshot(ctx, r.deps.Snap, vgs); err != nil {
		g.fail(err)
		return
	}
	now := r.deps.Now()
	for _, v := range g.vols {
		v.requested = now
		v.quiesced = r.hooksEnabled() && v.claim.Pod != nil
		v.snapshot = &catalog.Snapshot{Namespace: r.opts.Namespace, Group: g.name, GroupClass: class}
	}
	r.log.Info("created group snapshot", "group_snapshot", g.name, "driver", g.vols[0].claim.Driver, "claims", len(g.vols))
}

// waitGroup waits until the storage has cut the group: what a quiesced
// application waits for.
func (r *run) waitGroup(ctx context.Context, g *groupCut) {
	vgs, cutAt, err := kube.WaitGroupSnapshot(ctx, r.deps.Snap, r.opts.Namespace, g.name, r.cutPollInterval(), r.opts.SnapshotTimeout)
	if err != nil {
		g.fail(err)
		return
	}
	g.vgs, g.cutAt = vgs, cutAt
	r.log.Info("group snapshot cut", "group_snapshot", g.name)
}

// groupMembers finds, once the group is cut, the member VolumeSnapshot of
// each claim, which the volume is backed up from as from a snapshot of its
// own. The snapshot controller makes them after the cut, so the
// application need not wait for them.
func (r *run) groupMembers(ctx context.Context, g *groupCut) {
	claims := make([]string, len(g.vols))
	for i, v := range g.vols {
		claims[i] = v.claim.Name
	}
	members, err := kube.WaitGroupMembers(ctx, r.deps.Snap, g.vgs, claims, r.opts.PollInterval, r.opts.SnapshotTimeout)
	if err != nil {
		g.fail(err)
		return
	}
	for _, v := range g.vols {
		m := members[v.claim.Name]
		v.snap = m.Name
		v.snapshot.Name = m.Name
		v.cut = g.cutAt
		if m.Status != nil && m.Status.CreationTime != nil {
			v.cut = m.Status.CreationTime.Time
		}
	}
	r.log.Info("found group snapshot members", "group_snapshot", g.name, "members", len(members))
}

// unlabelClaims takes LabelGroup off the group's claims, on every path.
func (r *run) unlabelClaims(ctx context.Context, g *groupCut) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.CleanupTimeout)
	defer cancel()
	for _, v := range g.vols {
		if err := kube.SetClaimGroupLabel(ctx, r.deps.Kube, r.opts.Namespace, v.claim.Name, ""); err != nil {
			r.log.Warn("remove the group label from a claim (kbak gc retries)", "pvc", v.claim.Name, "err", err)
		}
	}
}
