package deploy

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/kbak/kbak/internal/kube"
)

func testSchedule() Schedule {
	return Schedule{
		Name: "nightly", Namespace: "shop", StatefulSet: "mariadb", Cron: "0 2 * * *", TimeZone: "Europe/Berlin",
		Repo: "s3://backups/prod", Secret: SecretRef{Name: "store"}, BackupArgs: []string{"--keep-daily", "7"}, Retention: "daily 7",
	}
}

func TestScheduleCronJob(t *testing.T) {
	tests := []struct {
		name         string
		edit         func(*Schedule)
		wantImage    string
		wantPull     corev1.PullPolicy
		wantTZ       bool
		wantDeadline int64 // the Job's activeDeadlineSeconds
	}{
		{"defaults", func(*Schedule) {}, DefaultMoverImage, corev1.PullIfNotPresent, true, 6 * 3600},
		{"own image", func(s *Schedule) {
			s.Image, s.PullPolicy, s.TimeZone = "registry.example/kbak:1.2", corev1.PullAlways, ""
		},
			"registry.example/kbak:1.2", corev1.PullAlways, false, 6 * 3600},
		{"own run deadline, a part second rounded up", func(s *Schedule) { s.RunDeadline = 90*time.Minute + time.Millisecond },
			DefaultMoverImage, corev1.PullIfNotPresent, true, 90*60 + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := testSchedule()
			tt.edit(&s)
			cj := s.CronJob()
			spec := cj.Spec
			if spec.ConcurrencyPolicy != batchv1.ForbidConcurrent || *spec.StartingDeadlineSeconds != DefaultStartingDeadlineSeconds ||
				*spec.SuccessfulJobsHistoryLimit != DefaultSuccessfulJobsHistory || *spec.FailedJobsHistoryLimit != DefaultFailedJobsHistory ||
				*spec.JobTemplate.Spec.BackoffLimit != 0 || *spec.Suspend {
				t.Errorf("CronJob spec %+v", spec)
			}
			if d := spec.JobTemplate.Spec.ActiveDeadlineSeconds; d == nil || *d != tt.wantDeadline {
				t.Errorf("job activeDeadlineSeconds %v, want %d", d, tt.wantDeadline)
			}
			if (spec.TimeZone != nil) != tt.wantTZ || tt.wantTZ && *spec.TimeZone != s.TimeZone {
				t.Errorf("timeZone %v, want %q", spec.TimeZone, s.TimeZone)
			}
			pod := spec.JobTemplate.Spec.Template.Spec
			c := pod.Containers[0]
			if c.Image != tt.wantImage || c.ImagePullPolicy != tt.wantPull {
				t.Errorf("image %s pull %s", c.Image, c.ImagePullPolicy)
			}
			if pod.ServiceAccountName != "kbak-nightly" || pod.RestartPolicy != corev1.RestartPolicyNever {
				t.Errorf("serviceAccountName %q restartPolicy %s", pod.ServiceAccountName, pod.RestartPolicy)
			}
			want := []string{"backup", "sts/mariadb", "-n", "shop", "--repo", "s3://backups/prod", "--secret", "store",
				"--mover-pull-policy", string(tt.wantPull), "--prune", "--keep-daily", "7"}
			if !slices.Equal(c.Args, want) {
				t.Errorf("args %q\nwant %q", c.Args, want)
			}
			for _, e := range c.Env {
				switch {
				case e.Name == "KBAK_MOVER_IMAGE":
					if e.Value != tt.wantImage {
						t.Errorf("movers run %s, the CronJob %s", e.Value, tt.wantImage)
					}
				case e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef.Name != "store":
					t.Errorf("env %s is not a reference to Secret store", e.Name)
				}
			}
			// The Job's pods are not marked as kbak's leftovers: gc and
			// backup cleanup select managed-by=kbak.
			for _, l := range []map[string]string{spec.JobTemplate.Labels, spec.JobTemplate.Spec.Template.Labels} {
				if l[kube.LabelSchedule] != "nightly" || l[kube.LabelManagedBy] != "" {
					t.Errorf("job/pod labels %v", l)
				}
			}
			if cj.Annotations[kube.AnnotationRetention] != "daily 7" {
				t.Errorf("annotations %v", cj.Annotations)
			}
		})
	}
}

func TestScheduleObjects(t *testing.T) {
	s := testSchedule()
	objs := s.Objects()
	var kinds []string
	for _, o := range objs {
		m, err := meta.Accessor(o)
		if err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, o.GetObjectKind().GroupVersionKind().Kind)
		l := m.GetLabels()
		if l[kube.LabelManagedBy] != kube.ManagedByValue || l[kube.LabelSchedule] != "nightly" {
			t.Errorf("%T %s labels %v", o, m.GetName(), l)
		}
		if m.GetNamespace() == "" && l[kube.LabelScheduleNamespace] != "shop" {
			t.Errorf("cluster-scoped %T %s lacks the namespace label", o, m.GetName())
		}
		switch o := o.(type) {
		case *rbacv1.RoleBinding:
			if o.RoleRef.Kind != "Role" || o.RoleRef.Name != "kbak-nightly" || o.Subjects[0].Name != "kbak-nightly" || o.Subjects[0].Namespace != "shop" {
				t.Errorf("RoleBinding %+v", o)
			}
		case *rbacv1.ClusterRoleBinding:
			if o.RoleRef.Name != "kbak:schedule:shop:nightly" || o.Subjects[0].Name != "kbak-nightly" || o.Subjects[0].Namespace != "shop" {
				t.Errorf("ClusterRoleBinding %+v", o)
			}
		}
	}
	want := []string{"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "CronJob"}
	if !slices.Equal(kinds, want) {
		t.Errorf("kinds %v, want %v", kinds, want)
	}

	out, err := YAML(objs...)
	if err != nil {
		t.Fatal(err)
	}
	docs := bytes.Split(out, []byte("---\n"))
	if len(docs) != len(objs) {
		t.Fatalf("%d YAML documents, want %d:\n%s", len(docs), len(objs), out)
	}
	for i, d := range docs {
		var u unstructured.Unstructured
		if err := yaml.Unmarshal(d, &u.Object); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		if u.GetKind() != want[i] || u.GetAPIVersion() == "" {
			t.Errorf("document %d is %s %s, want %s", i, u.GetAPIVersion(), u.GetKind(), want[i])
		}
		if _, ok := u.Object["status"]; ok {
			t.Errorf("document %d has a status", i)
		}
	}
	if strings.Contains(string(out), "creationTimestamp") {
		t.Errorf("YAML carries null creation timestamps:\n%s", out)
	}
}

func TestValidateScheduleName(t *testing.T) {
	for name, ok := range map[string]bool{
		"nightly": true, "a": true, strings.Repeat("a", MaxScheduleNameLen): true,
		strings.Repeat("a", MaxScheduleNameLen+1): false, "Nightly": false, "night_ly": false, "": false, "-a": false,
	} {
		if err := ValidateScheduleName(name); (err == nil) != ok {
			t.Errorf("ValidateScheduleName(%q) = %v, want ok %v", name, err, ok)
		}
	}
}
