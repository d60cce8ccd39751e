package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// DefaultCleanupTimeout bounds deleting what a run made unless told
// otherwise: it waits for pods to go before their claims.
const DefaultCleanupTimeout = 2 * time.Minute

// CleanupOptions tunes DeleteRun.
type CleanupOptions struct {
	// Namespace to clean; "" cleans every namespace (for gc).
	Namespace string
	// BackupID selects one backup run and RestoreID one restore run; with
	// neither, every object kbak made is selected.
	BackupID  string
	RestoreID string
	// PodGoneTimeout bounds the wait for pods to disappear before their
	// claims are deleted.
	PodGoneTimeout time.Duration
	Interval       time.Duration
	// NoSecrets skips the Secrets step, for runs that made none: a
	// schedule's ServiceAccount may not even list Secrets.
	NoSecrets bool
	// OnlySecrets deletes the run's Secrets and nothing else: what
	// SweepDeadRuns removes of a run whose other objects wait for gc.
	OnlySecrets bool
}

// DeleteRun deletes what a kbak run left in the cluster, found by label:
// pods first, then, once the pods are gone, temporary claims (the
// pvc-protection finalizer would otherwise hold them), then VolumeSnapshots
// not marked retained and not being deleted already, then credential
// Secrets. Objects without kbak's
// labels are never touched, so source claims and user Secrets are safe. It
// carries on past errors and returns them all.
func DeleteRun(ctx context.Context, kc kubernetes.Interface, sc snapclient.Interface, log *slog.Logger, o CleanupOptions) error {
	sel := RunSelector(o.BackupID)
	if o.RestoreID != "" {
		sel = RestoreSelector(o.RestoreID)
	}
	list := metav1.ListOptions{LabelSelector: sel}
	var errs []error
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.PodGoneTimeout <= 0 {
		o.PodGoneTimeout = DefaultCleanupTimeout
	}

	if o.OnlySecrets {
		return deleteSecrets(ctx, kc, log, o.Namespace, sel)
	}
	pods, err := kc.CoreV1().Pods(o.Namespace).List(ctx, list)
	if err != nil {
		errs = append(errs, fmt.Errorf("list pods %s: %w", sel, err))
	} else {
		for _, p := range pods.Items {
			err := kc.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("delete pod %s/%s: %w", p.Namespace, p.Name, err))
				continue
			}
			log.Debug("deleted pod", "namespace", p.Namespace, "pod", p.Name)
		}
		if len(pods.Items) > 0 {
			err := wait.PollUntilContextTimeout(ctx, o.Interval, o.PodGoneTimeout, true, func(ctx context.Context) (bool, error) {
				left, err := kc.CoreV1().Pods(o.Namespace).List(ctx, list)
				if err != nil {
					return false, fmt.Errorf("list pods %s: %w", sel, err)
				}
				return len(left.Items) == 0, nil
			})
			if err != nil {
				// Deleting the claims anyway is safe: pvc-protection keeps
				// them until the pods are gone.
				errs = append(errs, fmt.Errorf("wait for pods %s to go: %w", sel, err))
			}
		}
	}

	pvcs, err := kc.CoreV1().PersistentVolumeClaims(o.Namespace).List(ctx, list)
	if err != nil {
		errs = append(errs, fmt.Errorf("list persistentvolumeclaims %s: %w", sel, err))
	} else {
		for _, p := range pvcs.Items {
			err := kc.CoreV1().PersistentVolumeClaims(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("delete persistentvolumeclaim %s/%s: %w", p.Namespace, p.Name, err))
				continue
			}
			log.Debug("deleted temporary claim", "namespace", p.Namespace, "pvc", p.Name)
		}
	}

	errs = append(errs, deleteGroupSnapshots(ctx, kc, sc, log, o, sel)...)
	snaps, err := runSnapshots(ctx, sc, o)
	if err != nil {
		errs = append(errs, err)
	} else {
		for _, s := range snaps {
			if s.DeletionTimestamp != nil {
				// Deleted already, held by the snapshot controller's
				// finalizers: deleting it again changes nothing.
				log.Debug("snapshot still deleting", "namespace", s.Namespace, "snapshot", s.Name, "finalizers", s.Finalizers)
				continue
			}
			err := sc.SnapshotV1().VolumeSnapshots(s.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("delete VolumeSnapshot %s/%s: %w", s.Namespace, s.Name, err))
				continue
			}
			log.Debug("deleted snapshot", "namespace", s.Namespace, "snapshot", s.Name)
		}
	}

	if o.NoSecrets {
		return errors.Join(errs...)
	}
	return errors.Join(append(errs, deleteSecrets(ctx, kc, log, o.Namespace, sel))...)
}

// deleteGroupSnapshots deletes the VolumeGroupSnapshots sel selects (the
// snapshot controller then deletes their member VolumeSnapshots and
// contents) and, for a backup run, takes the run's LabelGroup off the
// source claims a killed run left it on.
func deleteGroupSnapshots(ctx context.Context, kc kubernetes.Interface, sc snapclient.Interface, log *slog.Logger, o CleanupOptions, sel string) []error {
	var errs []error
	if o.BackupID != "" {
		names := make([]string, MaxGroups)
		for i := range names {
			names[i] = GroupSnapshotName(o.BackupID, i)
		}
		claimSel := LabelGroup + " in (" + strings.Join(names, ",") + ")"
		claims, err := kc.CoreV1().PersistentVolumeClaims(o.Namespace).List(ctx, metav1.ListOptions{LabelSelector: claimSel})
		if err != nil {
			errs = append(errs, fmt.Errorf("list persistentvolumeclaims %s: %w", claimSel, err))
		} else {
			for _, c := range claims.Items {
				if err := SetClaimGroupLabel(ctx, kc, c.Namespace, c.Name, ""); err != nil {
					errs = append(errs, err)
					continue
				}
				log.Debug("removed group label", "namespace", c.Namespace, "pvc", c.Name)
			}
		}
	}
	if sc == nil {
		return errs
	}
	list, err := sc.GroupsnapshotV1beta2().VolumeGroupSnapshots(o.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if apierrors.IsNotFound(err) {
		return errs // no group snapshot CRDs: the run made none
	}
	if err != nil {
		return append(errs, fmt.Errorf("list VolumeGroupSnapshots %s: %w", sel, err))
	}
	for _, g := range list.Items {
		if g.DeletionTimestamp != nil {
			continue
		}
		err := sc.GroupsnapshotV1beta2().VolumeGroupSnapshots(g.Namespace).Delete(ctx, g.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete VolumeGroupSnapshot %s/%s: %w", g.Namespace, g.Name, err))
			continue
		}
		log.Debug("deleted group snapshot", "namespace", g.Namespace, "group_snapshot", g.Name)
	}
	return errs
}

// runSnapshots lists the VolumeSnapshots of the run o selects that are not
// kept on purpose. Without the snapshot client or the snapshot CRDs there
// are none.
func runSnapshots(ctx context.Context, sc snapclient.Interface, o CleanupOptions) ([]snapv1.VolumeSnapshot, error) {
	if sc == nil {
		return nil, nil // a run without the snapshot client made no snapshots
	}
	sel := RunSelector(o.BackupID)
	if o.RestoreID != "" {
		sel = RestoreSelector(o.RestoreID)
	}
	snapSel, _ := labels.Parse(sel) // built from valid keys and values
	snapSel = withoutKey(snapSel, LabelRetained)
	list, err := sc.SnapshotV1().VolumeSnapshots(o.Namespace).List(ctx, metav1.ListOptions{LabelSelector: snapSel.String()})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list VolumeSnapshots %s: %w", snapSel, err)
	}
	var out []snapv1.VolumeSnapshot
	for _, s := range list.Items {
		if s.Labels[LabelRetained] != "" {
			continue // never a kept snapshot, whatever the server made of the selector
		}
		out = append(out, s)
	}
	return out, nil
}

// RunSnapshotRefs records the VolumeSnapshots of the run o selects that
// DeleteRun deletes, with their contents, so that WaitSnapshotsGone can
// follow them after they are gone from the list.
//
// The members of the run's VolumeGroupSnapshots are among them: deleting
// a group deletes them.
func RunSnapshotRefs(ctx context.Context, sc snapclient.Interface, o CleanupOptions) ([]SnapshotRef, error) {
	snaps, err := runSnapshots(ctx, sc, o)
	refs := make([]SnapshotRef, 0, len(snaps))
	for i := range snaps {
		refs = append(refs, RefOf(&snaps[i]))
	}
	if err != nil || sc == nil {
		return refs, err
	}
	sel := RunSelector(o.BackupID)
	if o.RestoreID != "" {
		sel = RestoreSelector(o.RestoreID)
	}
	groups, err := sc.GroupsnapshotV1beta2().VolumeGroupSnapshots(o.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if apierrors.IsNotFound(err) {
		return refs, nil
	}
	if err != nil {
		return refs, fmt.Errorf("list VolumeGroupSnapshots %s: %w", sel, err)
	}
	for i := range groups.Items {
		members, err := GroupMembers(ctx, sc, &groups.Items[i])
		if err != nil {
			return refs, err
		}
		names := make([]string, 0, len(members))
		for n := range members {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			refs = append(refs, RefOf(members[n]))
		}
	}
	return refs, nil
}

// deleteSecrets deletes the Secrets in ns that sel selects.
func deleteSecrets(ctx context.Context, kc kubernetes.Interface, log *slog.Logger, ns, sel string) error {
	secrets, err := kc.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return fmt.Errorf("list secrets %s: %w", sel, err)
	}
	var errs []error
	for _, s := range secrets.Items {
		err := kc.CoreV1().Secrets(s.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete secret %s/%s: %w", s.Namespace, s.Name, err))
			continue
		}
		log.Debug("deleted secret", "namespace", s.Namespace, "secret", s.Name)
	}
	return errors.Join(errs...)
}

// Run names one kbak run that left objects in a namespace.
type Run struct {
	Namespace string `json:"namespace"`
	// ID is the run's id: its LabelBackupID, or of a restore run its
	// LabelRestoreID.
	ID      string `json:"id"`
	Restore bool   `json:"restore,omitempty"`
	// Newest is the run's last sign of life: the creation time of its
	// newest object, or the last time it marked its Secrets alive
	// (AnnotationAlive), whichever is later.
	Newest time.Time `json:"newest"`
}

// CleanupOptions selects r's objects for DeleteRun.
func (r Run) CleanupOptions() CleanupOptions {
	if r.Restore {
		return CleanupOptions{Namespace: r.Namespace, RestoreID: r.ID}
	}
	return CleanupOptions{Namespace: r.Namespace, BackupID: r.ID}
}

// HeartbeatInterval is how often a run refreshes AnnotationAlive;
// DeadRunAge is how long a run may stay silent, with no pod that is not
// over, before the next run in its namespace takes it for dead. The margin
// covers missed refreshes and clocks apart by several minutes.
const (
	HeartbeatInterval = time.Minute
	DeadRunAge        = 10 * time.Minute
)

// StaleQuery selects the runs FindStaleRuns returns.
type StaleQuery struct {
	// Namespace to look in; "" looks in every namespace.
	Namespace string
	// Before: only runs whose last sign of life is older.
	Before time.Time
	// Dead leaves out runs with a pod that is not over (Pending, Running
	// or Unknown: its mover may still work, whatever the run's age) and
	// runs whose Secrets do not carry AnnotationAlive (made by a kbak that
	// does not refresh it: only kbak gc's grace tells those from live
	// ones).
	Dead bool
}

// StaleRuns finds runs whose objects (pods, claims, VolumeSnapshots not kept
// and not being deleted, Secrets) are all older than before, and which have
// not marked themselves alive since: what a crashed or killed kbak left.
// Objects of the agent or of schedules carry no run label and are never
// listed; neither are kept snapshots nor snapshots being deleted (see
// DeletingSnapshots).
func StaleRuns(ctx context.Context, kc kubernetes.Interface, sc snapclient.Interface, before time.Time) ([]Run, error) {
	return FindStaleRuns(ctx, kc, sc, StaleQuery{Before: before})
}

// FindStaleRuns finds the runs q selects: StaleRuns, in one namespace or
// dead ones only. `kbak gc` and the sweep of every backup and restore
// (SweepDeadRuns) share it.
func FindStaleRuns(ctx context.Context, kc kubernetes.Interface, sc snapclient.Interface, q StaleQuery) ([]Run, error) {
	sel := metav1.ListOptions{LabelSelector: ManagedSelector()}
	type key struct {
		ns, id  string
		restore bool
	}
	newest := map[key]time.Time{}
	live := map[key]bool{}    // a pod that is not over
	beating := map[key]bool{} // Secrets that carry AnnotationAlive
	see := func(m metav1.ObjectMeta) (key, bool) {
		id, restore := RunOf(m.Labels)
		if id == "" || m.Labels[LabelRetained] != "" {
			return key{}, false
		}
		k := key{m.Namespace, id, restore}
		if t := m.CreationTimestamp.Time; t.After(newest[k]) {
			newest[k] = t
		}
		return k, true
	}
	pods, err := kc.CoreV1().Pods(q.Namespace).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("list kbak pods: %w", err)
	}
	for _, o := range pods.Items {
		if k, ok := see(o.ObjectMeta); ok && o.Status.Phase != corev1.PodSucceeded && o.Status.Phase != corev1.PodFailed {
			live[k] = true
		}
	}
	pvcs, err := kc.CoreV1().PersistentVolumeClaims(q.Namespace).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("list kbak PVCs: %w", err)
	}
	for _, o := range pvcs.Items {
		see(o.ObjectMeta)
	}
	secrets, err := kc.CoreV1().Secrets(q.Namespace).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("list kbak Secrets: %w", err)
	}
	for _, o := range secrets.Items {
		k, ok := see(o.ObjectMeta)
		v, set := o.Annotations[AnnotationAlive]
		if !ok || !set {
			continue
		}
		beating[k] = true
		if t, err := time.Parse(time.RFC3339, v); err == nil && t.After(newest[k]) {
			newest[k] = t
		}
	}
	if sc != nil {
		groups, err := sc.GroupsnapshotV1beta2().VolumeGroupSnapshots(q.Namespace).List(ctx, sel)
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("list kbak VolumeGroupSnapshots: %w", err)
		}
		if err == nil {
			for _, o := range groups.Items {
				if o.DeletionTimestamp == nil {
					see(o.ObjectMeta)
				}
			}
		}
		snaps, err := sc.SnapshotV1().VolumeSnapshots(q.Namespace).List(ctx, sel)
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("list kbak VolumeSnapshots: %w", err)
		}
		if err == nil {
			for _, o := range snaps.Items {
				if o.DeletionTimestamp != nil {
					continue // deleting, not left behind: DeletingSnapshots
				}
				see(o.ObjectMeta)
			}
		}
	}
	var runs []Run
	for k, t := range newest {
		if !t.Before(q.Before) || q.Dead && (live[k] || !beating[k]) {
			continue
		}
		runs = append(runs, Run{Namespace: k.ns, ID: k.id, Restore: k.restore, Newest: t})
	}
	sort.Slice(runs, func(i, j int) bool {
		if runs[i].Namespace != runs[j].Namespace {
			return runs[i].Namespace < runs[j].Namespace
		}
		return runs[i].ID < runs[j].ID
	})
	return runs, nil
}

// SweepDeadRuns deletes the credential and key Secrets of the dead runs in
// namespace ns (FindStaleRuns with Dead): runs that marked their Secrets
// alive, have no pod that is not over, and have shown no sign of life for
// age (0: DeadRunAge). A backup or restore calls it before it makes its
// own Secrets, so that a killed run's copy of the operator's credentials
// and of the repository key lives until the next run there, not until
// `kbak gc`. The dead runs' other objects (claims, snapshots, finished
// pods) are left to gc. It returns the runs whose Secrets it deleted.
func SweepDeadRuns(ctx context.Context, kc kubernetes.Interface, sc snapclient.Interface, log *slog.Logger, ns string, now time.Time, age time.Duration) ([]Run, error) {
	if age <= 0 {
		age = DeadRunAge
	}
	runs, err := FindStaleRuns(ctx, kc, sc, StaleQuery{Namespace: ns, Before: now.Add(-age), Dead: true})
	if err != nil {
		return nil, err
	}
	var errs []error
	var swept []Run
	for _, r := range runs {
		o := r.CleanupOptions()
		o.OnlySecrets = true
		if err := DeleteRun(ctx, kc, sc, log, o); err != nil {
			errs = append(errs, err)
			continue
		}
		log.Info("deleted the Secrets of a dead kbak run (kbak gc removes the rest)", "run", r.ID, "last_alive", r.Newest.UTC().Format(time.RFC3339))
		swept = append(swept, r)
	}
	return swept, errors.Join(errs...)
}
