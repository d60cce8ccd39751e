package doctor

import (
	"context"
	"strings"
	"testing"

	groupv1beta2 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumegroupsnapshot/v1beta2"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapfake "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/fake"
	appsv1 "k8s.io/api/apps/v1"
	authv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kbak/kbak/internal/kube"
)

func find(checks []Check, name string) (Check, bool) {
	for _, c := range checks {
		if c.Name == name {
			return c, true
		}
	}
	return Check{}, false
}

func TestRun(t *testing.T) {
	kc := fake.NewClientset(
		&storagev1.CSIDriver{ObjectMeta: metav1.ObjectMeta{Name: "snap.example"}},
		&storagev1.CSIDriver{ObjectMeta: metav1.ObjectMeta{Name: "plain.example"}},
		&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "fast"}, Provisioner: "snap.example"},
		&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "slow"}, Provisioner: "plain.example"},
	)
	kc.Discovery().(*fakediscovery.FakeDiscovery).Resources = []*metav1.APIResourceList{{
		GroupVersion: "snapshot.storage.k8s.io/v1",
		APIResources: []metav1.APIResource{{Name: "volumesnapshots"}, {Name: "volumesnapshots/status"}, {Name: "volumesnapshotclasses"}},
	}, {
		GroupVersion: "groupsnapshot.storage.k8s.io/v1beta2",
		APIResources: []metav1.APIResource{{Name: "volumegroupsnapshots"}, {Name: "volumegroupsnapshotclasses"}},
	}}
	// Deny pods/exec and creating group snapshots only: the doctor names
	// exactly what is missing.
	kc.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		r := a.(k8stesting.CreateAction).GetObject().(*authv1.SelfSubjectAccessReview)
		ra := r.Spec.ResourceAttributes
		r.Status.Allowed = ra.Subresource != "exec" && (ra.Resource != "volumegroupsnapshots" || ra.Verb != "create")
		return true, r, nil
	})
	sc := snapfake.NewSimpleClientset(&snapv1.VolumeSnapshotClass{
		ObjectMeta: metav1.ObjectMeta{Name: "fast-snap", Annotations: map[string]string{kube.DefaultSnapshotClassAnnotation: "true"}},
		Driver:     "snap.example",
	}, &groupv1beta2.VolumeGroupSnapshotClass{
		ObjectMeta: metav1.ObjectMeta{Name: "fast-group", Annotations: map[string]string{kube.DefaultGroupSnapshotClassAnnotation: "true"}},
		Driver:     "snap.example",
	}, &groupv1beta2.VolumeGroupSnapshotClass{
		ObjectMeta: metav1.ObjectMeta{Name: "other-group"},
		Driver:     "plain.example",
	})

	checks, err := Run(context.Background(), kc, sc, Options{Namespace: "shop", StatefulSet: "missing"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		level    Level
		contains string
	}{
		{"snapshot API", LevelOK, "volumesnapshotclasses, volumesnapshots"},
		{"CSI driver snap.example", LevelOK, "default VolumeSnapshotClass fast-snap and VolumeGroupSnapshotClass fast-group"},
		{"group snapshot classes", LevelOK, "fast-group (snap.example, default), other-group (plain.example)"},
		{"CSI driver plain.example", LevelWarn, "live files"},
		{"storage class fast", LevelOK, "uses snapshot"},
		{"storage class slow", LevelOK, "uses files"},
		{"permissions in shop", LevelFail, "create pods/exec (run hooks)"},
		{"group snapshot permissions in shop", LevelWarn, "create volumegroupsnapshots (cut group snapshots)"},
		{"statefulset shop/missing", LevelFail, "not found"},
	}
	for _, tt := range tests {
		c, ok := find(checks, tt.name)
		if !ok {
			t.Errorf("no check %q in %+v", tt.name, checks)
			continue
		}
		if c.Level != tt.level || !strings.Contains(c.Detail, tt.contains) {
			t.Errorf("%s: %s %q, want %s containing %q", tt.name, c.Level, c.Detail, tt.level, tt.contains)
		}
	}
	if !Failed(checks) {
		t.Error("Failed() is false with failing checks")
	}
}

// The doctor says what a namespace's Pod Security level makes of movers:
// the mode auto picks, and a StatefulSet whose user the restricted level
// leaves no mover for.
func TestPodSecurity(t *testing.T) {
	uid := int64(1001)
	sts := func(name string, user *int64) *appsv1.StatefulSet {
		s := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "strict"}}
		s.Spec.Template.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: user}
		return s
	}
	kc := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "strict", Labels: map[string]string{kube.LabelPodSecurityEnforce: "restricted"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "base", Labels: map[string]string{kube.LabelPodSecurityEnforce: "baseline"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "open", Annotations: map[string]string{kube.AnnotationPrivilegedMovers: "true"}}},
		sts("db", &uid), sts("rootdb", nil),
	)
	for _, tt := range []struct {
		ns, sts  string
		level    Level
		contains []string
	}{
		{"strict", "", LevelOK, []string{"enforces restricted", "unprivileged"}},
		{"strict", "db", LevelOK, []string{"unprivileged, as uid 1001"}},
		{"strict", "rootdb", LevelFail, []string{"runAsUser"}},
		{"base", "", LevelOK, []string{"enforces baseline", "baseline's capabilities"}},
		{"open", "", LevelOK, []string{"enforces no level", "opted in", "privileged (root with DAC_READ_SEARCH)"}},
	} {
		c := podSecurity(context.Background(), kc, Options{Namespace: tt.ns, StatefulSet: tt.sts})
		if c.Level != tt.level {
			t.Errorf("%s %s: level %s, want %s: %+v", tt.ns, tt.sts, c.Level, tt.level, c)
		}
		for _, w := range tt.contains {
			if !strings.Contains(c.Detail, w) {
				t.Errorf("%s %s: %q does not say %q", tt.ns, tt.sts, c.Detail, w)
			}
		}
	}
}
