package kube

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestNamespacePodSecurity(t *testing.T) {
	ns := func(name string, labels, annotations map[string]string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: annotations}}
	}
	kc := fake.NewClientset(
		ns("plain", nil, nil),
		ns("strict", map[string]string{LabelPodSecurityEnforce: "restricted"}, nil),
		ns("base", map[string]string{LabelPodSecurityEnforce: "baseline"}, map[string]string{AnnotationPrivilegedMovers: "true"}),
		ns("open", map[string]string{LabelPodSecurityEnforce: "privileged"}, map[string]string{AnnotationPrivilegedMovers: "true"}),
		ns("halfway", nil, map[string]string{AnnotationPrivilegedMovers: "yes"}),
	)
	kc.PrependReactor("get", "namespaces", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.(k8stesting.GetAction).GetName() == "secret" {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "namespaces"}, "secret", nil)
		}
		return false, nil, nil
	})
	for _, tt := range []struct {
		ns   string
		want PodSecurity
	}{
		{"plain", PodSecurity{Enforce: LevelPrivileged}},
		{"strict", PodSecurity{Enforce: LevelRestricted}},
		{"base", PodSecurity{Enforce: LevelBaseline, PrivilegedMovers: true}},
		{"open", PodSecurity{Enforce: LevelPrivileged, PrivilegedMovers: true}},
		{"halfway", PodSecurity{Enforce: LevelPrivileged}},
		{"missing", PodSecurity{Enforce: LevelPrivileged}},
		{"secret", PodSecurity{Enforce: LevelPrivileged, Unknown: true}},
	} {
		got, err := NamespacePodSecurity(context.Background(), kc, tt.ns)
		if err != nil || got != tt.want {
			t.Errorf("%s: %+v, %v; want %+v", tt.ns, got, err, tt.want)
		}
	}
}
