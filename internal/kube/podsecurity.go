package kube

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Pod Security: the level a namespace enforces, and the annotation by which
// a cluster admin lets kbak run privileged movers in a namespace that
// enforces none.
const (
	LabelPodSecurityEnforce = "pod-security.kubernetes.io/enforce"
	// AnnotationPrivilegedMovers="true" on a namespace opts it in to
	// privileged movers (DAC_READ_SEARCH) when kbak chooses the mode.
	AnnotationPrivilegedMovers = "kbak.io/privileged-movers"
)

// Pod Security levels, as the enforce label spells them.
const (
	LevelPrivileged = "privileged"
	LevelBaseline   = "baseline"
	LevelRestricted = "restricted"
)

// PodSecurity is what a namespace says about the pods it admits.
type PodSecurity struct {
	// Enforce is the enforced level: LevelPrivileged when the namespace
	// sets none (or does not exist yet).
	Enforce string
	// PrivilegedMovers is the namespace's opt-in to privileged movers.
	PrivilegedMovers bool
	// Unknown is set when the namespace could not be read (no right to);
	// Enforce is then LevelPrivileged, a guess.
	Unknown bool
}

// NamespacePodSecurity reads namespace ns's Pod Security level and kbak's
// opt-in annotation. A namespace that does not exist enforces nothing (a
// restore creates it unlabelled); one kbak may not read is Unknown.
func NamespacePodSecurity(ctx context.Context, kc kubernetes.Interface, ns string) (PodSecurity, error) {
	got, err := kc.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return PodSecurity{Enforce: LevelPrivileged}, nil
	case apierrors.IsForbidden(err):
		return PodSecurity{Enforce: LevelPrivileged, Unknown: true}, nil
	case err != nil:
		return PodSecurity{}, fmt.Errorf("get namespace %s: %w", ns, err)
	}
	ps := PodSecurity{Enforce: got.Labels[LabelPodSecurityEnforce], PrivilegedMovers: got.Annotations[AnnotationPrivilegedMovers] == "true"}
	switch ps.Enforce {
	case LevelBaseline, LevelRestricted:
	default:
		// Unset, privileged, or a value the admission plugin refuses to
		// be set.
		ps.Enforce = LevelPrivileged
	}
	return ps, nil
}
