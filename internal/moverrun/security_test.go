package moverrun

import (
	"strings"
	"testing"

	"github.com/kbak/kbak/deploy"
	"github.com/kbak/kbak/internal/kube"
)

func TestResolveSecurity(t *testing.T) {
	uid, root := int64(1001), int64(0)
	app := deploy.RunAs{User: &uid}
	rootApp := deploy.RunAs{User: &root}
	open := kube.PodSecurity{Enforce: kube.LevelPrivileged}
	optedIn := kube.PodSecurity{Enforce: kube.LevelPrivileged, PrivilegedMovers: true}
	unknownOptIn := kube.PodSecurity{Enforce: kube.LevelPrivileged, PrivilegedMovers: true, Unknown: true}
	baseline := kube.PodSecurity{Enforce: kube.LevelBaseline}
	baselineOptIn := kube.PodSecurity{Enforce: kube.LevelBaseline, PrivilegedMovers: true}
	restricted := kube.PodSecurity{Enforce: kube.LevelRestricted}
	tests := []struct {
		name    string
		want    deploy.Security
		ps      kube.PodSecurity
		app     deploy.RunAs
		needs   SecurityNeeds
		got     deploy.Security
		errWith []string // words the one line must hold
	}{
		{"auto, no level: root with baseline's capabilities", "", open, app, SecurityNeeds{}, deploy.SecurityBaseline, nil},
		{"auto, opted in: privileged", deploy.SecurityAuto, optedIn, app, SecurityNeeds{}, deploy.SecurityPrivileged, nil},
		{"auto, an opt-in kbak cannot read is no opt-in", deploy.SecurityAuto, unknownOptIn, app, SecurityNeeds{}, deploy.SecurityBaseline, nil},
		{"auto, baseline", deploy.SecurityAuto, baseline, rootApp, SecurityNeeds{}, deploy.SecurityBaseline, nil},
		{"auto, baseline ignores the opt-in", deploy.SecurityAuto, baselineOptIn, app, SecurityNeeds{}, deploy.SecurityBaseline, nil},
		{"auto, restricted: the app's user", deploy.SecurityAuto, restricted, app, SecurityNeeds{}, deploy.SecurityUnprivileged, nil},
		{"auto, restricted, app as root", deploy.SecurityAuto, restricted, rootApp, SecurityNeeds{}, "", []string{"restricted", "runs as root", "runAsUser"}},
		{"auto, restricted, no runAsUser", deploy.SecurityAuto, restricted, deploy.RunAs{}, SecurityNeeds{}, "", []string{"sets no runAsUser"}},
		{"privileged asked, no level", deploy.SecurityPrivileged, open, app, SecurityNeeds{}, deploy.SecurityPrivileged, nil},
		{"privileged asked under baseline", deploy.SecurityPrivileged, baseline, app, SecurityNeeds{}, "", []string{`"baseline"`, "mover-security auto"}},
		{"privileged asked under restricted", deploy.SecurityPrivileged, restricted, app, SecurityNeeds{}, "", []string{`"restricted"`, "mover-security unprivileged"}},
		{"baseline asked under restricted", deploy.SecurityBaseline, restricted, app, SecurityNeeds{}, "", []string{"root movers", `"restricted"`}},
		{"unprivileged asked anywhere", deploy.SecurityUnprivileged, open, app, SecurityNeeds{}, deploy.SecurityUnprivileged, nil},
		{"unprivileged asked for an app as root", deploy.SecurityUnprivileged, open, rootApp, SecurityNeeds{}, "", []string{"runs as root", "mover-security auto"}},
		{"unprivileged cannot make devices", deploy.SecurityAuto, restricted, app, SecurityNeeds{Devices: true}, "", []string{"device nodes", "restore-devices"}},
		{"root restores devices", deploy.SecurityAuto, baseline, app, SecurityNeeds{Devices: true, SetID: true}, deploy.SecurityBaseline, nil},
		{"a bad value", "root", open, app, SecurityNeeds{}, "", []string{`mover-security "root"`, "auto, unprivileged, baseline or privileged"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ResolveSecurity(tt.want, tt.ps, tt.app, tt.needs)
			if tt.errWith == nil {
				if err != nil || got != tt.got {
					t.Fatalf("ResolveSecurity = %q, %v; want %q", got, err, tt.got)
				}
				return
			}
			if err == nil {
				t.Fatalf("ResolveSecurity = %q, want an error", got)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			for _, w := range tt.errWith {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}
