//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kbak/kbak/internal/doctor"
	"github.com/kbak/kbak/internal/kube"
)

func TestDoctor(t *testing.T) {
	e := newEnv(t)
	ns := createNamespace(t, e, "doctor")
	applyStatefulSet(t, e, ns, "db", 1, e.SnapClass)
	r := runKbak(t, e, "doctor", "sts/db", "-n", ns, "-o", "json")
	if r.code != 0 {
		t.Fatalf("kbak doctor: %s", r)
	}
	var checks []doctor.Check
	if err := decodeList(r, "DoctorCheckList", &checks); err != nil {
		t.Fatalf("decode: %v\n%s", err, r.stdout)
	}
	want := map[string]doctor.Level{
		"snapshot API":                        doctor.LevelOK,
		"CSI driver snap.csi.kbak.io":         doctor.LevelOK,
		"CSI driver nosnap.csi.kbak.io":       doctor.LevelWarn,
		"permissions in " + ns:                doctor.LevelOK,
		"group snapshot permissions in " + ns: doctor.LevelOK,
		"claim data-db-0":                     doctor.LevelOK,
		"repository":                          doctor.LevelOK,
	}
	got := map[string]doctor.Level{}
	for _, c := range checks {
		got[c.Name] = c.Level
	}
	for name, level := range want {
		if got[name] != level {
			t.Errorf("check %q: %q, want %q (all: %+v)", name, got[name], level, checks)
		}
	}
	// The group snapshot classes are listed, with the driver's default.
	for _, c := range checks {
		if c.Name == "group snapshot classes" && !strings.Contains(c.Detail, e.GroupSnapshotClass+" (snap.csi.kbak.io, default)") {
			t.Errorf("group snapshot classes: %q, want %s of snap.csi.kbak.io as the default", c.Detail, e.GroupSnapshotClass)
		}
	}
	if got["group snapshot classes"] != doctor.LevelOK {
		t.Errorf("no group snapshot classes check: %+v", checks)
	}
	// An unknown StatefulSet is a failing check and exit 1.
	if r := runKbak(t, e, "doctor", "sts/nope", "-n", ns); r.code != 1 {
		t.Errorf("doctor of an unknown StatefulSet: %s", r)
	}
}

func TestGCRemovesLeftoversOfCrashedRuns(t *testing.T) {
	e := newEnv(t)
	ns := createNamespace(t, e, "gc")
	other := createNamespace(t, e, "gc-other")
	// What a killed kbak leaves: a labelled Secret of a run that never ended,
	// beside a Secret of the user's that gc must not touch; and the same
	// leftover in another namespace, which gc -n leaves to gc -A.
	labels := kube.Labels("crashed-run", "db", "")
	for name, l := range map[string]map[string]string{"kbak-crashed": labels, "users-own": {"app": "db"}} {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: l}}
		if _, err := e.Kube.CoreV1().Secrets(ns).Create(ctx(t), s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "kbak-crashed", Namespace: other, Labels: kube.Labels("crashed-other", "db", "")}}
	if _, err := e.Kube.CoreV1().Secrets(other).Create(ctx(t), s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if r := runKbak(t, e, "gc", "-n", ns, "--grace", "1h"); r.code != 0 {
		t.Fatalf("gc: %s", r)
	}
	if _, err := e.Kube.CoreV1().Secrets(ns).Get(ctx(t), "kbak-crashed", metav1.GetOptions{}); err != nil {
		t.Fatalf("gc removed a run younger than the grace period: %v", err)
	}
	time.Sleep(2 * time.Second)
	if r := runKbak(t, e, "gc", "-n", ns, "--grace", "1s"); r.code != 0 {
		t.Fatalf("gc: %s", r)
	}
	waitFor(t, "secret kbak-crashed gone", time.Minute, func(c context.Context) (string, bool, error) {
		_, err := e.Kube.CoreV1().Secrets(ns).Get(c, "kbak-crashed", metav1.GetOptions{})
		return fmt.Sprint(err), apierrors.IsNotFound(err), nil
	})
	if _, err := e.Kube.CoreV1().Secrets(ns).Get(ctx(t), "users-own", metav1.GetOptions{}); err != nil {
		t.Errorf("gc touched a Secret kbak did not make: %v", err)
	}
	if _, err := e.Kube.CoreV1().Secrets(other).Get(ctx(t), "kbak-crashed", metav1.GetOptions{}); err != nil {
		t.Fatalf("gc -n %s removed a leftover of namespace %s: %v", ns, other, err)
	}
	if r := runKbak(t, e, "gc", "-A", "--grace", "1s"); r.code != 0 {
		t.Fatalf("gc -A: %s", r)
	}
	waitFor(t, "the other namespace's secret kbak-crashed gone", time.Minute, func(c context.Context) (string, bool, error) {
		_, err := e.Kube.CoreV1().Secrets(other).Get(c, "kbak-crashed", metav1.GetOptions{})
		return fmt.Sprint(err), apierrors.IsNotFound(err), nil
	})
}
