package deploy

import (
	corev1 "k8s.io/api/core/v1"
)

// Security is how a mover pod runs, chosen against the Pod Security level
// its namespace enforces (moverrun.ResolveSecurity).
type Security string

// Mover security modes. SecurityAuto is a request only; a pod is rendered
// in one of the others.
const (
	SecurityAuto Security = "auto"
	// SecurityUnprivileged runs the mover as the application's own user and
	// groups with no capabilities: it passes Pod Security "restricted".
	SecurityUnprivileged Security = "unprivileged"
	// SecurityBaseline runs the mover as root with only capabilities that
	// Pod Security "baseline" allows: a backup mover reads every file with
	// DAC_OVERRIDE on its read-only mount, a restore mover restores owners
	// and modes.
	SecurityBaseline Security = "baseline"
	// SecurityPrivileged is root with DAC_READ_SEARCH for a backup mover,
	// which only a namespace that enforces no level admits.
	SecurityPrivileged Security = "privileged"
)

// Securities are the values a caller may ask for, in the order help lists
// them.
var Securities = []Security{SecurityAuto, SecurityUnprivileged, SecurityBaseline, SecurityPrivileged}

// RunAs is the identity an unprivileged mover takes: the application's,
// from its pod template.
type RunAs struct {
	User, Group        *int64
	FSGroup            *int64
	SupplementalGroups []int64
}

// RunAsOf reads the identity the first container of spec runs as: its own
// securityContext over the pod's.
func RunAsOf(spec *corev1.PodSpec) RunAs {
	var r RunAs
	if sc := spec.SecurityContext; sc != nil {
		r.User, r.Group, r.FSGroup = sc.RunAsUser, sc.RunAsGroup, sc.FSGroup
		r.SupplementalGroups = append([]int64(nil), sc.SupplementalGroups...)
	}
	if len(spec.Containers) > 0 {
		if sc := spec.Containers[0].SecurityContext; sc != nil {
			if sc.RunAsUser != nil {
				r.User = sc.RunAsUser
			}
			if sc.RunAsGroup != nil {
				r.Group = sc.RunAsGroup
			}
		}
	}
	return r
}

// NonRoot reports whether r names a user other than root.
func (r RunAs) NonRoot() bool { return r.User != nil && *r.User != 0 }

// binderUID is who a binder pod runs as: it only mounts its claim.
const binderUID = int64(65534)

// BinderRunAs is the identity of a pod that only mounts a claim (nobody).
func BinderRunAs() RunAs {
	u := binderUID
	return RunAs{User: &u, Group: &u}
}

// secure sets pod's and its mover container's security contexts for m's
// mode. A zero Security is SecurityPrivileged.
func (m MoverPod) secure(pod *corev1.Pod) {
	c := &pod.Spec.Containers[0]
	no, yes := false, true
	seccomp := &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}
	if m.Security != SecurityUnprivileged {
		root := int64(0)
		// Reading every file whatever its owner (or restoring owners)
		// needs root with a few capabilities; nothing else is granted.
		c.SecurityContext = &corev1.SecurityContext{
			RunAsUser:                &root,
			RunAsNonRoot:             &no,
			AllowPrivilegeEscalation: &no,
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: m.capabilities()},
			SeccompProfile:           seccomp,
		}
		return
	}
	ps := &corev1.PodSecurityContext{
		RunAsNonRoot:       &yes,
		RunAsUser:          m.RunAs.User,
		RunAsGroup:         m.RunAs.Group,
		SupplementalGroups: append([]int64(nil), m.RunAs.SupplementalGroups...),
		SeccompProfile:     seccomp,
	}
	if g := m.RunAs.FSGroup; g != nil {
		if m.Restore {
			// The kubelet hands a fresh claim's root to the group, so a
			// mover that is not root can write it.
			ps.FSGroup = g
		} else {
			// Never on a backup: the kubelet would change the group of every
			// file of a live claim. Membership is enough to read.
			ps.SupplementalGroups = append(ps.SupplementalGroups, *g)
		}
	}
	pod.Spec.SecurityContext = ps
	c.SecurityContext = &corev1.SecurityContext{
		RunAsNonRoot:             &yes,
		AllowPrivilegeEscalation: &no,
		ReadOnlyRootFilesystem:   &yes, // the mover writes under its /tmp emptyDir only
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           seccomp,
	}
	// The key file is root's; a mover that is not root reads it through
	// "other" (the pod has this one container).
	for i := range pod.Spec.Volumes {
		if v := &pod.Spec.Volumes[i]; v.Name == keyVolume && v.Secret != nil {
			mode := int32(0o444)
			v.Secret.DefaultMode = &mode
		}
	}
}

// capabilities are the only ones a root mover gets: those of what it
// restores, or of reading every file.
func (m MoverPod) capabilities() []corev1.Capability {
	if !m.Restore {
		if m.Security == SecurityBaseline {
			// DAC_READ_SEARCH is not in baseline's list; on a read-only
			// mount DAC_OVERRIDE reads every file and writes none.
			return []corev1.Capability{"DAC_OVERRIDE"}
		}
		return []corev1.Capability{"DAC_READ_SEARCH"}
	}
	caps := []corev1.Capability{"CHOWN", "DAC_OVERRIDE", "FOWNER"}
	if m.RestoreDevices {
		caps = append(caps, "MKNOD")
	}
	if m.RestoreSetID {
		caps = append(caps, "FSETID", "SETFCAP")
	}
	return caps
}
