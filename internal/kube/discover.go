package kube

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kbak/kbak/internal/hint"
)

// Errors Discover wraps, so the command line can tell bad input from a
// broken cluster.
var (
	ErrStatefulSetNotFound = errors.New("statefulset not found")
	ErrNoClaimTemplates    = errors.New("statefulset has no volumeClaimTemplates")
)

// humanError keeps a message written for a person while still wrapping the
// sentinel that classifies it.
type humanError struct {
	kind error
	msg  string
}

func (e *humanError) Error() string { return e.msg }
func (e *humanError) Unwrap() error { return e.kind }

// advised is a person's message of kind with advice whose settings the
// reader's tool spells (see package hint).
func advised(kind error, facts, advice string, args ...any) error {
	return hint.Errorf("%w: "+advice, append([]any{&humanError{kind, facts}}, args...)...)
}

// Claim is one PVC of one StatefulSet ordinal, with what backup needs to know
// about it. PVC and PV are nil when the claim does not exist or is not bound;
// Problem then says why it cannot be backed up.
type Claim struct {
	Template string // volumeClaimTemplate name
	Ordinal  int
	Name     string // PVC name: <template>-<sts>-<ordinal>
	// Retained is true for a claim left by an earlier scale-down (an ordinal
	// outside the StatefulSet's current range).
	Retained bool

	PVC          *corev1.PersistentVolumeClaim
	PV           *corev1.PersistentVolume
	StorageClass string
	Driver       string // CSI driver of the bound PV, "" when not CSI
	AccessModes  []corev1.PersistentVolumeAccessMode
	Size         resource.Quantity
	VolumeMode   corev1.PersistentVolumeMode

	// Pod is the StatefulSet's pod of this ordinal when it exists and runs on
	// a node; nil otherwise.
	Pod *corev1.Pod

	Problem string
}

// OK reports whether the claim exists, is bound and has no other problem.
func (c Claim) OK() bool { return c.Problem == "" }

// HasAccessMode reports whether the claim grants mode m.
func (c Claim) HasAccessMode(m corev1.PersistentVolumeAccessMode) bool {
	for _, a := range c.AccessModes {
		if a == m {
			return true
		}
	}
	return false
}

// Discovery is what Discover found for one StatefulSet.
type Discovery struct {
	StatefulSet *appsv1.StatefulSet
	// Claims covers every template of every current ordinal, ordered by
	// ordinal and then template order, including missing and unbound ones.
	Claims []Claim
	// Retained lists claims of ordinals outside the current range that still
	// exist, in the same order.
	Retained []Claim
}

// Ordinals returns the StatefulSet's current ordinals.
func Ordinals(sts *appsv1.StatefulSet) []int {
	replicas := 1
	if sts.Spec.Replicas != nil {
		replicas = int(*sts.Spec.Replicas)
	}
	start := 0
	if sts.Spec.Ordinals != nil {
		start = int(sts.Spec.Ordinals.Start)
	}
	out := make([]int, 0, replicas)
	for i := 0; i < replicas; i++ {
		out = append(out, start+i)
	}
	return out
}

// ClaimName is the PVC name the StatefulSet controller gives template's claim
// of ordinal.
func ClaimName(template, sts string, ordinal int) string {
	return fmt.Sprintf("%s-%s-%d", template, sts, ordinal)
}

// Discover reads StatefulSet ns/name and describes every claim of every
// ordinal. A claim that is missing or unbound is reported in its Claim, not as
// an error; errors are for an unknown StatefulSet, one without claim
// templates, or an API failure.
func Discover(ctx context.Context, kc kubernetes.Interface, ns, name string) (*Discovery, error) {
	sts, err := kc.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, advised(ErrStatefulSetNotFound, fmt.Sprintf("statefulset %s/%s not found", ns, name), "check the name and %s", hint.Of(hint.Namespace))
	}
	if err != nil {
		return nil, fmt.Errorf("get statefulset %s/%s: %w", ns, name, err)
	}
	if len(sts.Spec.VolumeClaimTemplates) == 0 {
		return nil, &humanError{ErrNoClaimTemplates, fmt.Sprintf("statefulset %s/%s has no volumeClaimTemplates: kbak backs up the claims made from them, and there are none", ns, name)}
	}

	pvcs, err := kc.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list persistentvolumeclaims in %s: %w", ns, err)
	}
	byName := make(map[string]*corev1.PersistentVolumeClaim, len(pvcs.Items))
	for i := range pvcs.Items {
		byName[pvcs.Items[i].Name] = &pvcs.Items[i]
	}

	d := &Discovery{StatefulSet: sts}
	current := map[int]bool{}
	for _, ord := range Ordinals(sts) {
		current[ord] = true
		pod, err := ordinalPod(ctx, kc, sts, ord)
		if err != nil {
			return nil, err
		}
		for _, t := range sts.Spec.VolumeClaimTemplates {
			c := Claim{Template: t.Name, Ordinal: ord, Name: ClaimName(t.Name, name, ord), Pod: pod}
			if err := describeClaim(ctx, kc, &c, byName[c.Name]); err != nil {
				return nil, err
			}
			d.Claims = append(d.Claims, c)
		}
	}

	for _, t := range sts.Spec.VolumeClaimTemplates {
		prefix := t.Name + "-" + name + "-"
		for pvcName, pvc := range byName {
			ord, ok := ordinalSuffix(pvcName, prefix)
			if !ok || current[ord] {
				continue
			}
			c := Claim{Template: t.Name, Ordinal: ord, Name: pvcName, Retained: true}
			if err := describeClaim(ctx, kc, &c, pvc); err != nil {
				return nil, err
			}
			d.Retained = append(d.Retained, c)
		}
	}
	tmplIndex := map[string]int{}
	for i, t := range sts.Spec.VolumeClaimTemplates {
		tmplIndex[t.Name] = i
	}
	sort.Slice(d.Retained, func(i, j int) bool {
		a, b := d.Retained[i], d.Retained[j]
		if a.Ordinal != b.Ordinal {
			return a.Ordinal < b.Ordinal
		}
		return tmplIndex[a.Template] < tmplIndex[b.Template]
	})
	return d, nil
}

// ordinalSuffix parses "<prefix><decimal ordinal>" the way the StatefulSet
// controller writes it: no sign, no leading zeros.
func ordinalSuffix(name, prefix string) (int, bool) {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok || rest == "" || (len(rest) > 1 && rest[0] == '0') {
		return 0, false
	}
	for _, r := range rest {
		if r < '0' || r > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(rest)
	if err != nil {
		return 0, false
	}
	return n, true
}

// ordinalPod returns the StatefulSet's pod of ordinal when it exists, belongs
// to the StatefulSet and has been scheduled to a node.
func ordinalPod(ctx context.Context, kc kubernetes.Interface, sts *appsv1.StatefulSet, ord int) (*corev1.Pod, error) {
	name := fmt.Sprintf("%s-%d", sts.Name, ord)
	pod, err := kc.CoreV1().Pods(sts.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get pod %s/%s: %w", sts.Namespace, name, err)
	}
	owned := false
	for _, ref := range pod.OwnerReferences {
		if ref.Kind == "StatefulSet" && ref.Name == sts.Name {
			owned = true
		}
	}
	if !owned || pod.Spec.NodeName == "" || pod.DeletionTimestamp != nil {
		return nil, nil
	}
	switch pod.Status.Phase {
	case corev1.PodSucceeded, corev1.PodFailed:
		return nil, nil
	}
	return pod, nil
}

// describeClaim fills c from its PVC and bound PV, or sets c.Problem.
func describeClaim(ctx context.Context, kc kubernetes.Interface, c *Claim, pvc *corev1.PersistentVolumeClaim) error {
	if pvc == nil {
		c.Problem = fmt.Sprintf("persistentvolumeclaim %s does not exist (the pod of ordinal %d may never have started)", c.Name, c.Ordinal)
		return nil
	}
	c.PVC = pvc
	c.AccessModes = pvc.Spec.AccessModes
	if pvc.Spec.StorageClassName != nil {
		c.StorageClass = *pvc.Spec.StorageClassName
	}
	c.VolumeMode = corev1.PersistentVolumeFilesystem
	if pvc.Spec.VolumeMode != nil {
		c.VolumeMode = *pvc.Spec.VolumeMode
	}
	if q, ok := pvc.Status.Capacity[corev1.ResourceStorage]; ok {
		c.Size = q
	} else if q, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; ok {
		c.Size = q
	}
	if pvc.DeletionTimestamp != nil {
		c.Problem = fmt.Sprintf("persistentvolumeclaim %s is being deleted", c.Name)
		return nil
	}
	if pvc.Status.Phase != corev1.ClaimBound || pvc.Spec.VolumeName == "" {
		c.Problem = fmt.Sprintf("persistentvolumeclaim %s is not bound (phase %s)", c.Name, pvc.Status.Phase)
		return nil
	}
	pv, err := kc.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		c.Problem = fmt.Sprintf("persistentvolume %s of claim %s does not exist", pvc.Spec.VolumeName, c.Name)
		return nil
	}
	if err != nil {
		return fmt.Errorf("get persistentvolume %s: %w", pvc.Spec.VolumeName, err)
	}
	c.PV = pv
	if pv.Spec.CSI != nil {
		c.Driver = pv.Spec.CSI.Driver
	}
	if c.StorageClass == "" {
		c.StorageClass = pv.Spec.StorageClassName
	}
	if len(c.AccessModes) == 0 {
		c.AccessModes = pv.Spec.AccessModes
	}
	if c.VolumeMode == corev1.PersistentVolumeBlock {
		c.Problem = fmt.Sprintf("persistentvolumeclaim %s is a raw block volume: kbak backs up filesystem volumes only", c.Name)
	}
	return nil
}
