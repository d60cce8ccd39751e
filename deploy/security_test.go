package deploy

import (
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

// admitted reports whether Pod Security admission at level admits pod, and
// why not.
func admitted(t *testing.T, level api.Level, pod *corev1.Pod) (bool, string) {
	t.Helper()
	ev, err := policy.NewEvaluator(policy.DefaultChecks())
	if err != nil {
		t.Fatal(err)
	}
	res := policy.AggregateCheckResults(ev.EvaluatePod(api.LevelVersion{Level: level, Version: api.LatestVersion()}, &pod.ObjectMeta, &pod.Spec))
	return res.Allowed, res.ForbiddenReason() + ": " + res.ForbiddenDetail()
}

func ptr64(v int64) *int64 { return &v }

// Each mode renders pods that the Pod Security level it is made for
// admits, and no more capable than it needs: privileged backups only pass
// privileged, baseline pods pass baseline but not restricted, unprivileged
// pods pass restricted. Restore movers with every option are checked too.
func TestMoverPodPodSecurity(t *testing.T) {
	app := RunAs{User: ptr64(1001), Group: ptr64(1001), FSGroup: ptr64(1002)}
	full := MoverPod{Restore: true, RestoreDevices: true, RestoreSetID: true}
	tests := []struct {
		name string
		m    MoverPod
		// the strictest level that must admit the pod; the next one up
		// must refuse it (none above restricted)
		level, refusedBy api.Level
	}{
		{"privileged backup", MoverPod{Security: SecurityPrivileged}, api.LevelPrivileged, api.LevelBaseline},
		{"default is privileged", MoverPod{}, api.LevelPrivileged, api.LevelBaseline},
		{"baseline backup", MoverPod{Security: SecurityBaseline, ReadOnly: true}, api.LevelBaseline, api.LevelRestricted},
		{"baseline restore with devices and set-id", func() MoverPod { m := full; m.Security = SecurityBaseline; return m }(), api.LevelBaseline, api.LevelRestricted},
		{"unprivileged backup", MoverPod{Security: SecurityUnprivileged, RunAs: app, ReadOnly: true, Key: KeyRef{Name: "k"}, Secret: SecretRef{Name: "s", CABundle: true}}, api.LevelRestricted, ""},
		{"unprivileged restore", MoverPod{Security: SecurityUnprivileged, RunAs: app, Restore: true, Key: KeyRef{Name: "k"}}, api.LevelRestricted, ""},
		{"binder", MoverPod{Security: SecurityUnprivileged, RunAs: BinderRunAs(), ReadOnly: true}, api.LevelRestricted, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.m.Name, tt.m.Namespace, tt.m.Claim = "p", "ns", "c"
			pod := tt.m.Pod()
			if ok, why := admitted(t, tt.level, pod); !ok {
				t.Errorf("Pod Security %s refuses the pod: %s", tt.level, why)
			}
			if tt.refusedBy != "" {
				if ok, _ := admitted(t, tt.refusedBy, pod); ok {
					t.Errorf("Pod Security %s admits the pod: it asks for more than it needs or the test is wrong", tt.refusedBy)
				}
			}
		})
	}
}

// An unprivileged mover is the application's user and groups with nothing
// more; a backup never sets fsGroup (the kubelet would change the group of
// every file of a live claim) but joins the group, a restore sets it so
// that the fresh claim's root is writable; its key file is readable by a
// user that is not root.
func TestUnprivilegedMoverPod(t *testing.T) {
	app := RunAs{User: ptr64(1001), Group: ptr64(1001), FSGroup: ptr64(1002), SupplementalGroups: []int64{5}}
	for _, restore := range []bool{false, true} {
		m := MoverPod{Name: "p", Claim: "c", Security: SecurityUnprivileged, RunAs: app, Restore: restore, ReadOnly: !restore, Key: KeyRef{Name: "k"}}
		pod := m.Pod()
		ps := pod.Spec.SecurityContext
		if ps == nil || *ps.RunAsUser != 1001 || *ps.RunAsGroup != 1001 || !*ps.RunAsNonRoot {
			t.Fatalf("restore=%v: pod securityContext %+v", restore, ps)
		}
		wantGroups := []int64{5, 1002}
		if restore {
			wantGroups = []int64{5}
			if ps.FSGroup == nil || *ps.FSGroup != 1002 {
				t.Errorf("restore: fsGroup %v, want 1002", ps.FSGroup)
			}
		} else if ps.FSGroup != nil {
			t.Errorf("backup: fsGroup %d set on a pod that mounts a live claim", *ps.FSGroup)
		}
		if !slices.Equal(ps.SupplementalGroups, wantGroups) {
			t.Errorf("restore=%v: supplementalGroups %v, want %v", restore, ps.SupplementalGroups, wantGroups)
		}
		sc := pod.Spec.Containers[0].SecurityContext
		if sc.RunAsUser != nil || len(sc.Capabilities.Add) != 0 || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation {
			t.Errorf("restore=%v: container securityContext %+v", restore, sc)
		}
		for _, v := range pod.Spec.Volumes {
			if v.Name == keyVolume && *v.Secret.DefaultMode != 0o444 {
				t.Errorf("restore=%v: key file mode %o, want 0444", restore, *v.Secret.DefaultMode)
			}
		}
	}
	// The root modes keep the key file to its owner.
	pod := MoverPod{Name: "p", Claim: "c", Security: SecurityBaseline, Key: KeyRef{Name: "k"}}.Pod()
	for _, v := range pod.Spec.Volumes {
		if v.Name == keyVolume && *v.Secret.DefaultMode != 0o400 {
			t.Errorf("baseline: key file mode %o, want 0400", *v.Secret.DefaultMode)
		}
	}
	if got := pod.Spec.Containers[0].SecurityContext.Capabilities.Add; !slices.Equal(got, []corev1.Capability{"DAC_OVERRIDE"}) {
		t.Errorf("baseline backup capabilities %v, want DAC_OVERRIDE", got)
	}
}

func TestRunAsOf(t *testing.T) {
	spec := &corev1.PodSpec{
		SecurityContext: &corev1.PodSecurityContext{RunAsUser: ptr64(1), RunAsGroup: ptr64(2), FSGroup: ptr64(3), SupplementalGroups: []int64{4}},
		Containers:      []corev1.Container{{SecurityContext: &corev1.SecurityContext{RunAsUser: ptr64(10)}}, {SecurityContext: &corev1.SecurityContext{RunAsUser: ptr64(20)}}},
	}
	r := RunAsOf(spec)
	if *r.User != 10 || *r.Group != 2 || *r.FSGroup != 3 || !slices.Equal(r.SupplementalGroups, []int64{4}) || !r.NonRoot() {
		t.Errorf("RunAsOf = user %d group %d fsGroup %d groups %v", *r.User, *r.Group, *r.FSGroup, r.SupplementalGroups)
	}
	if r := RunAsOf(&corev1.PodSpec{Containers: []corev1.Container{{}}}); r.NonRoot() {
		t.Error("a pod template without runAsUser counts as not root")
	}
	if r := RunAsOf(&corev1.PodSpec{SecurityContext: &corev1.PodSecurityContext{RunAsUser: ptr64(0)}}); r.NonRoot() {
		t.Error("runAsUser 0 counts as not root")
	}
}

// The CronJob of a schedule and the agent run kbak itself: restricted
// admits them, so a schedule works in any namespace.
func TestScheduleAndAgentPassRestricted(t *testing.T) {
	cj := testSchedule().CronJob()
	tmpl := cj.Spec.JobTemplate.Spec.Template
	if ok, why := admitted(t, api.LevelRestricted, &corev1.Pod{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec}); !ok {
		t.Errorf("restricted refuses the schedule's pod: %s", why)
	}
	for _, o := range (Agent{Namespace: "ops", Config: []byte("schedules: []\n")}).Objects() {
		if d, ok := o.(*appsv1.Deployment); ok {
			if ok, why := admitted(t, api.LevelRestricted, &corev1.Pod{ObjectMeta: d.Spec.Template.ObjectMeta, Spec: d.Spec.Template.Spec}); !ok {
				t.Errorf("restricted refuses the agent's pod: %s", why)
			}
		}
	}
}
