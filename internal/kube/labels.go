package kube

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
)

// The label vocabulary of everything kbak makes in a cluster: the objects
// of backup and restore runs, of schedules and of the agent. This file is
// its one owner; every label set and selector is built here from it.
const (
	// LabelManagedBy=ManagedByValue marks what kbak made. On an object that
	// also carries a run id (LabelBackupID or LabelRestoreID) it means
	// "temporary": cleanup and `kbak gc` find leftovers by it, never by
	// name.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedByValue = "kbak"
	// LabelBackupID names the backup run that made an object (and, on a
	// kept VolumeSnapshot, the backup it belongs to).
	LabelBackupID = "kbak.io/backup-id"
	// LabelRestoreID names the restore run that made an object: a claim, a
	// namespace, a StatefulSet, and the run's temporary objects. Nothing of
	// a restore is deleted without it.
	LabelRestoreID = "kbak.io/restore-id"
	// LabelRestoredFrom names the backup a restored object came from.
	LabelRestoredFrom = "kbak.io/restored-from"
	LabelStatefulSet  = "kbak.io/statefulset"
	// LabelRetained marks a VolumeSnapshot that outlives its run on purpose
	// (--keep-snapshots); cleanup leaves it alone.
	LabelRetained = "kbak.io/retained"
	// LabelRole tells what an object is for, which keeps `kubectl get -l`
	// output readable.
	LabelRole = "kbak.io/role"
	// LabelGroup is the one label kbak puts on a source claim, and only
	// while the VolumeGroupSnapshot it names (whose selector it is) is cut;
	// the run removes it on every path, `kbak gc` when the run was killed.
	LabelGroup = "kbak.io/group"

	// LabelSchedule names the schedule an object belongs to; cluster-scoped
	// ones also carry LabelScheduleNamespace, as two namespaces may each
	// have a schedule of the same name.
	LabelSchedule          = "kbak.io/schedule"
	LabelScheduleNamespace = "kbak.io/schedule-namespace"
	// AnnotationRetention and AnnotationRepo keep a schedule's policy and
	// repository on its CronJob, for `kbak schedule list`.
	AnnotationRetention = "kbak.io/retention"
	AnnotationRepo      = "kbak.io/repo"
	// AnnotationAlive is on the Secrets a backup or restore run makes: the
	// time (RFC 3339) the run last said it was alive. The run sets it when
	// it creates them and refreshes it every HeartbeatInterval
	// (moverrun.KeepAlive) until it ends, so that a run killed outright is
	// told from one waiting long without a pod (a snapshot that takes an
	// hour to become ready): SweepDeadRuns, StaleRuns.
	AnnotationAlive = "kbak.io/alive"

	// LabelName=NameValue and LabelComponent (the role) are the
	// recommended labels of what a run or a schedule makes; only
	// LabelManagedBy marks what cleanup may delete. The agent's objects
	// carry its name and component "agent" instead: its Deployment
	// selects its pod by them, and a selector cannot change.
	LabelName      = "app.kubernetes.io/name"
	LabelComponent = "app.kubernetes.io/component"
	NameValue      = "kbak"
	// AnnotationConfigHash is the sha256 of the agent's configuration, on
	// its pod.
	AnnotationConfigHash = "kbak.io/config-sha256"
)

// Roles for LabelRole.
const (
	RoleMover        = "mover"
	RoleTempClaim    = "temp-claim"
	RoleSnapshot     = "snapshot"
	RoleGroup        = "group-snapshot"
	RoleCredentials  = "credentials"
	RoleRestoreClaim = "restore-claim"
	RoleBinder       = "binder"
	RoleVerify       = "verify"
)

// Labels returns the labels of an object created by backup run id of
// StatefulSet sts, with role added when not empty. Values longer than a
// label allows are shortened with a hash suffix.
func Labels(id, sts, role string) map[string]string {
	return runLabels(LabelBackupID, id, sts, role)
}

// RestoreLabels returns the labels of an object created by restore run id
// for StatefulSet sts, with role added when not empty.
func RestoreLabels(id, sts, role string) map[string]string {
	return runLabels(LabelRestoreID, id, sts, role)
}

func runLabels(key, id, sts, role string) map[string]string {
	l := map[string]string{
		LabelManagedBy:   ManagedByValue,
		LabelName:        NameValue,
		key:              LabelValue(id),
		LabelStatefulSet: LabelValue(sts),
	}
	if role != "" {
		l[LabelRole] = role
		l[LabelComponent] = role
	}
	return l
}

// TemporaryLabels are the labels of a restore run's object that a restored
// claim sheds once its data is in place, so that `kbak gc` never takes it
// for a leftover; LabelRestoreID and LabelRestoredFrom stay.
var TemporaryLabels = []string{LabelManagedBy, LabelName, LabelComponent, LabelStatefulSet, LabelRole}

// RunSelector selects everything kbak created for backup run id. An empty
// id selects everything kbak created at all.
func RunSelector(id string) string { return runSelector(LabelBackupID, id) }

// RestoreSelector selects what restore run id created and has not yet
// handed over (a restored claim sheds LabelManagedBy).
func RestoreSelector(id string) string { return runSelector(LabelRestoreID, id) }

func runSelector(key, id string) string {
	set := labels.Set{LabelManagedBy: ManagedByValue}
	if id != "" {
		set[key] = LabelValue(id)
	}
	return labels.SelectorFromSet(set).String()
}

// RunOf returns the run an object of kbak's belongs to by its labels: its id
// and whether it is a restore run; "" for an object of no run (the agent's,
// a schedule's).
func RunOf(l map[string]string) (id string, restore bool) {
	if id := l[LabelBackupID]; id != "" {
		return id, false
	}
	return l[LabelRestoreID], l[LabelRestoreID] != ""
}

// ScheduleLabels are the labels of every namespaced object of schedule
// name of StatefulSet sts.
func ScheduleLabels(name, sts string) map[string]string {
	return map[string]string{LabelManagedBy: ManagedByValue, LabelName: NameValue, LabelComponent: "schedule", LabelSchedule: name, LabelStatefulSet: sts}
}

// ScheduleSelector selects every object of schedule name; with ns set it
// adds the namespace label, which cluster-scoped objects carry.
func ScheduleSelector(ns, name string) string {
	set := labels.Set{LabelManagedBy: ManagedByValue, LabelSchedule: name}
	if ns != "" {
		set[LabelScheduleNamespace] = ns
	}
	return labels.SelectorFromSet(set).String()
}

// SchedulesSelector selects the objects of every schedule.
func SchedulesSelector() string {
	return withKey(labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedByValue}), LabelSchedule).String()
}

// ManagedSelector selects everything kbak made.
func ManagedSelector() string {
	return labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedByValue}).String()
}

// AgentLabels are the labels of every object of the agent name.
func AgentLabels(name string) map[string]string {
	l := AgentPodLabels(name)
	l[LabelManagedBy] = ManagedByValue
	return l
}

// AgentPodLabels are the labels of the agent's pod, which its Deployment
// and Service select. They lack LabelManagedBy: that marks what cleanup
// may delete, and the agent is not a run's leftover.
func AgentPodLabels(name string) map[string]string {
	return map[string]string{LabelName: name, LabelComponent: "agent"}
}

// withKey adds "key exists" to sel.
func withKey(sel labels.Selector, key string) labels.Selector {
	r, _ := labels.NewRequirement(key, selection.Exists, nil) // a valid constant key
	return sel.Add(*r)
}

// withoutKey adds "key does not exist" to sel.
func withoutKey(sel labels.Selector, key string) labels.Selector {
	r, _ := labels.NewRequirement(key, selection.DoesNotExist, nil) // a valid constant key
	return sel.Add(*r)
}

const maxNameLen = 63

// Name builds a deterministic object name from parts: lowercase, joined by
// "-", characters outside [a-z0-9-] replaced by "-", and at most 63 characters
// (a DNS label, valid for pods, PVCs, snapshots and secrets alike). A name
// that would be longer keeps its start and ends with a hash of the full
// name, so two long names still differ and a retry computes the same one.
func Name(parts ...string) string {
	full := sanitize(strings.Join(parts, "-"))
	if len(full) <= maxNameLen {
		return full
	}
	sum := sha256.Sum256([]byte(full))
	suffix := hex.EncodeToString(sum[:])[:8]
	head := strings.TrimRight(full[:maxNameLen-len(suffix)-1], "-")
	return head + "-" + suffix
}

// VolumeObjectName is the name of the objects backup run id makes for the
// claim of template and ordinal: its VolumeSnapshot, temporary claim and
// mover pod. Whoever deletes a snapshot a manifest names checks it against
// this.
func VolumeObjectName(id string, ordinal int, template string) string {
	return Name("kbak", id, strconv.Itoa(ordinal), template)
}

// LabelValue shortens v to a valid label value length the same way Name does.
func LabelValue(v string) string {
	if len(v) <= maxNameLen {
		return v
	}
	sum := sha256.Sum256([]byte(v))
	suffix := hex.EncodeToString(sum[:])[:8]
	head := strings.TrimRight(v[:maxNameLen-len(suffix)-1], "-_.")
	return head + "-" + suffix
}

func sanitize(s string) string {
	b := []byte(strings.ToLower(s))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			b[i] = '-'
		}
	}
	return strings.Trim(string(b), "-")
}
