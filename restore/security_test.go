package restore

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kbak/kbak/deploy"
	"github.com/kbak/kbak/internal/kube"
)

// The plan decides how download movers run in the target namespace, as the
// backed-up StatefulSet's user where it enforces restricted; what the
// namespace refuses is a usage error before anything is created.
func TestNewPlanMoverSecurity(t *testing.T) {
	uid := int64(1001)
	restricted := namespace("shop")
	restricted.Labels = map[string]string{kube.LabelPodSecurityEnforce: kube.LevelRestricted}
	tests := []struct {
		name    string
		ns      *corev1.Namespace
		user    *int64
		opts    Options
		want    deploy.Security
		wantErr string
	}{
		{"unlabelled: root with baseline's capabilities", namespace("shop"), nil, Options{}, deploy.SecurityBaseline, ""},
		{"restricted: the app's user", restricted, &uid, Options{}, deploy.SecurityUnprivileged, ""},
		{"restricted, app as root", restricted, nil, Options{}, "", "runAsUser"},
		{"restricted refuses privileged", restricted, &uid, Options{MoverSecurity: deploy.SecurityPrivileged}, "", `"restricted"`},
		{"unprivileged cannot restore devices", restricted, &uid, Options{RestoreDevices: true}, "", "device nodes"},
		{"a bad value", namespace("shop"), nil, Options{MoverSecurity: "root"}, "", `mover-security "root"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := manifest(vol("data", 0))
			m.Spec.Spec.Template.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: tt.user}
			deps := Deps{Kube: fake.NewClientset(tt.ns, storageClass("fast", driver, false))}
			tt.opts.ID, tt.opts.Repo = "r", "s3://bkt/x"
			p, err := NewPlan(context.Background(), deps, m, tt.opts)
			if tt.wantErr != "" {
				if err == nil || !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), tt.wantErr) || p != nil {
					t.Fatalf("NewPlan = %v, %v; want no plan and a usage error saying %q", p, err, tt.wantErr)
				}
				return
			}
			if err != nil || p.MoverSecurity != tt.want {
				t.Fatalf("NewPlan = %v, %v; want mover security %q", p, err, tt.want)
			}
		})
	}
}
