package moverrun

import (
	"fmt"

	"github.com/kbak/kbak/deploy"
	"github.com/kbak/kbak/internal/hint"
	"github.com/kbak/kbak/internal/kube"
)

// CheckSecurity checks a requested mover security mode as a person gives
// it; empty is auto.
func CheckSecurity(s deploy.Security) error {
	if s == "" {
		return nil
	}
	for _, v := range deploy.Securities {
		if s == v {
			return nil
		}
	}
	return hint.Errorf("%s %q: use auto, unprivileged, baseline or privileged", hint.Of(hint.MoverSecurity), s)
}

// SecurityNeeds is what the movers of a run must be able to do beyond
// moving files.
type SecurityNeeds struct {
	// Devices and SetID: a restore that creates device nodes, or keeps
	// setuid bits and file capabilities, needs a root mover.
	Devices, SetID bool
}

// ResolveSecurity decides how the movers of a run in a namespace with
// Pod Security ps run, for a request want (empty is auto), when the
// application runs as app. Auto picks the most capable mode the namespace
// admits: privileged only where an admin opted the namespace in, root with
// baseline's capabilities where the namespace does not enforce restricted,
// and the application's own user under restricted. An explicit mode the
// namespace refuses, or an unprivileged mode for an application that runs
// as root, is an error saying what to do, before anything is created.
func ResolveSecurity(want deploy.Security, ps kube.PodSecurity, app deploy.RunAs, needs SecurityNeeds) (deploy.Security, error) {
	if err := CheckSecurity(want); err != nil {
		return "", err
	}
	got := want
	if want == "" || want == deploy.SecurityAuto {
		switch {
		case ps.Enforce == kube.LevelRestricted:
			got = deploy.SecurityUnprivileged
		case ps.Enforce == kube.LevelPrivileged && ps.PrivilegedMovers && !ps.Unknown:
			got = deploy.SecurityPrivileged
		default:
			got = deploy.SecurityBaseline
		}
	}
	admits := func(level string) bool {
		switch level {
		case kube.LevelPrivileged:
			return ps.Enforce == kube.LevelPrivileged
		case kube.LevelBaseline:
			return ps.Enforce != kube.LevelRestricted
		}
		return true
	}
	switch got {
	case deploy.SecurityPrivileged:
		if !admits(kube.LevelPrivileged) {
			return "", hint.Errorf("privileged movers (root with DAC_READ_SEARCH) are refused by the namespace's Pod Security level %q: use %s, or %s", ps.Enforce, hint.Set(hint.MoverSecurity, "auto"), hint.Set(hint.MoverSecurity, "unprivileged"))
		}
	case deploy.SecurityBaseline:
		if !admits(kube.LevelBaseline) {
			return "", hint.Errorf("root movers are refused by the namespace's Pod Security level %q: use %s, or %s", ps.Enforce, hint.Set(hint.MoverSecurity, "auto"), hint.Set(hint.MoverSecurity, "unprivileged"))
		}
	case deploy.SecurityUnprivileged:
		if !app.NonRoot() {
			return "", unprivilegedErr(ps, app)
		}
		if needs.Devices || needs.SetID {
			return "", hint.Errorf("unprivileged movers cannot create device nodes nor keep setuid bits and file capabilities: drop %s and %s, or restore into a namespace that admits root movers", hint.Of(hint.RestoreDevices), hint.Of(hint.RestoreSetID))
		}
	}
	return got, nil
}

func unprivilegedErr(ps kube.PodSecurity, app deploy.RunAs) error {
	why := "sets no runAsUser"
	if app.User != nil {
		why = "runs as root"
	}
	if ps.Enforce == kube.LevelRestricted {
		return fmt.Errorf("the namespace enforces Pod Security \"restricted\", so movers run as the application's user, and the StatefulSet's pod template %s: set runAsUser (and fsGroup) in its securityContext", why)
	}
	return hint.Errorf("unprivileged movers run as the application's user, and the StatefulSet's pod template %s: set runAsUser (and fsGroup) in its securityContext, or use %s", why, hint.Set(hint.MoverSecurity, "auto"))
}
