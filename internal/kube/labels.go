package kube

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
)

// Labels carried by every object kbak creates in a cluster. Cleanup and
// `kbak gc` find leftovers by them, never by name.
const (
	LabelManagedBy   = "app.kubernetes.io/managed-by"
	ManagedByValue   = "kbak"
	LabelBackupID    = "kbak.io/backup-id"
	LabelStatefulSet = "kbak.io/statefulset"
	// LabelRetained marks a VolumeSnapshot that outlives its run on purpose
	// (--keep-snapshots); cleanup leaves it alone.
	LabelRetained = "kbak.io/retained"
	// LabelRole tells what an object is for (mover, temp-claim, snapshot,
	// credentials), which keeps `kubectl get -l` output readable.
	LabelRole = "kbak.io/role"
)

// Roles for LabelRole.
const (
	RoleMover       = "mover"
	RoleTempClaim   = "temp-claim"
	RoleSnapshot    = "snapshot"
	RoleCredentials = "credentials"
)

// Labels returns the labels of an object created by backup or restore run id
// of StatefulSet sts, with role added when not empty. Values longer than a
// label allows are shortened with a hash suffix.
func Labels(id, sts, role string) map[string]string {
	l := map[string]string{
		LabelManagedBy:   ManagedByValue,
		LabelBackupID:    LabelValue(id),
		LabelStatefulSet: LabelValue(sts),
	}
	if role != "" {
		l[LabelRole] = role
	}
	return l
}

// RunSelector selects everything kbak created for run id. An empty id
// selects everything kbak created at all.
func RunSelector(id string) string {
	set := labels.Set{LabelManagedBy: ManagedByValue}
	if id != "" {
		set[LabelBackupID] = LabelValue(id)
	}
	return labels.SelectorFromSet(set).String()
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
