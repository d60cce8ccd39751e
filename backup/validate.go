package backup

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kbak/kbak/deploy"
	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/hint"
	"github.com/kbak/kbak/internal/mover"
	"github.com/kbak/kbak/internal/moverrun"
)

// MaxLockDays is the longest Object Lock retention a backup may ask for.
const MaxLockDays = 36500

// Validate checks the options as a caller gives them, before Run fills in
// its defaults: a zero value stands for the default documented on its
// field, anything else must be usable. The command line, schedules (their
// CronJobs run kbak backup with the same settings) and the agent's
// configuration all call it, so a bad setting is one clear error before
// anything is created instead of a failure in every mover, after the
// snapshots and hooks. Errors wrap ErrUsage and name the setting (package
// hint) for the caller to spell.
func (o *Options) Validate() error {
	if err := o.validateTarget(); err != nil {
		return err
	}
	switch o.Method {
	case "", MethodAuto, MethodSnapshot, MethodFiles:
	default:
		return hint.Errorf("%w: %s %q: use auto, snapshot or files", ErrUsage, hint.Of(hint.Method), o.Method)
	}
	switch o.Group {
	case "", GroupAuto, GroupNever:
	case GroupAlways:
		if o.Method == MethodFiles {
			return hint.Errorf("%w: %s and %s exclude each other: a group snapshot is a snapshot", ErrUsage, hint.Set(hint.Group, "always"), hint.Set(hint.Method, "files"))
		}
		if o.KeepSnapshots {
			return hint.Errorf("%w: %s cannot keep snapshots: the members of a group snapshot go with it; drop %s or use %s", ErrUsage, hint.Set(hint.Group, "always"), hint.Of(hint.KeepSnapshots), hint.Set(hint.Group, "auto"))
		}
	default:
		return hint.Errorf("%w: %s %q: use auto, always or never", ErrUsage, hint.Of(hint.Group), o.Group)
	}
	if o.GroupSnapshotClass != "" && o.Group == GroupNever {
		return hint.Errorf("%w: %s names a class that %s never uses", ErrUsage, hint.Of(hint.GroupSnapshotClass), hint.Set(hint.Group, "never"))
	}
	if o.Format != 0 && o.Format != catalog.FormatRepo && o.Format != catalog.FormatArchive {
		return hint.Errorf("%w: %s %d: use %d (deduplicated) or %d (one archive a volume)", ErrUsage, hint.Of(hint.Format), o.Format, catalog.FormatRepo, catalog.FormatArchive)
	}
	if o.Compression != "" {
		if _, err := mover.ParseCompression(o.Compression); err != nil {
			return hint.Errorf("%w: %s %q: use zstd:1 (fastest) to zstd:4 (smallest)", ErrUsage, hint.Of(hint.Compression), o.Compression)
		}
	}
	if o.Parallel < 0 {
		return hint.Errorf("%w: %s %d: give the number of mover pods to run at once, 1 or more", ErrUsage, hint.Of(hint.Parallel), o.Parallel)
	}
	if o.Image != strings.TrimSpace(o.Image) || strings.ContainsAny(o.Image, " \t\n") {
		return hint.Errorf("%w: %s %q: give the kbak image the movers run, e.g. %s", ErrUsage, hint.Of(hint.MoverImage), o.Image, deploy.DefaultMoverImage)
	}
	switch o.PullPolicy {
	case "", corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		return hint.Errorf("%w: %s %q: use Always, IfNotPresent or Never", ErrUsage, hint.Of(hint.PullPolicy), o.PullPolicy)
	}
	if err := moverrun.CheckSecurity(o.MoverSecurity); err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	for _, d := range []struct {
		what any
		d    time.Duration
	}{
		{hint.Of(hint.HookTimeout), o.HookTimeout}, {hint.Of(hint.HookDeadman), o.HookDeadman}, {hint.Of(hint.PodStartTimeout), o.PodStartTimeout},
		{"snapshot timeout", o.SnapshotTimeout}, {"transfer timeout", o.TransferTimeout},
		{"cleanup timeout", o.CleanupTimeout}, {"snapshot gone timeout", o.SnapshotGoneTimeout},
		{"poll interval", o.PollInterval}, {"dead run age", o.DeadRunAge},
	} {
		if d.d < 0 {
			return hint.Errorf("%w: %s %s: give a positive duration", ErrUsage, d.what, d.d)
		}
	}
	if err := o.validateLock(); err != nil {
		return err
	}
	if err := o.validateDeadman(); err != nil {
		return err
	}
	if o.Credentials != nil && o.SecretName != "" {
		return hint.Errorf("%w: credentials and %s are exclusive: give one", ErrUsage, hint.Of(hint.SecretName))
	}
	return nil
}

// validateTarget checks what the backup is of and where it goes.
func (o *Options) validateTarget() error {
	if o.Namespace == "" {
		return hint.Errorf("%w: no namespace: give the StatefulSet's with %s", ErrUsage, hint.Set(hint.Namespace, "NAMESPACE"))
	}
	if err := catalog.ValidateNamespace(o.Namespace); err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if o.StatefulSet == "" {
		return fmt.Errorf("%w: no StatefulSet: name the one to back up", ErrUsage)
	}
	if err := catalog.ValidateStatefulSetName(o.StatefulSet); err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if o.Repo == "" {
		return hint.Errorf("%w: no repository: pass %s", ErrUsage, hint.Set(hint.Repo, "s3://BUCKET/PREFIX"))
	}
	if err := moverrun.CheckRepo(o.Repo); err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	return nil
}

// validateLock checks the Object Lock settings: days from 0 (none) to
// MaxLockDays, mode compliance or governance (empty: compliance), and no
// mode without days.
func (o *Options) validateLock() error {
	if o.LockDays < 0 || o.LockDays > MaxLockDays {
		return hint.Errorf("%w: %s %d: give a number of days from 1 to %d, or 0 for no Object Lock", ErrUsage, hint.Of(hint.LockDays), o.LockDays, MaxLockDays)
	}
	switch strings.ToLower(o.LockMode) {
	case "", "compliance", "governance":
	default:
		return hint.Errorf("%w: %s %q: use compliance or governance", ErrUsage, hint.Of(hint.LockMode), o.LockMode)
	}
	if o.LockMode != "" && o.LockDays == 0 {
		return hint.Errorf("%w: %s %s without %s: give both", ErrUsage, hint.Of(hint.LockMode), o.LockMode, hint.Of(hint.LockDays))
	}
	return nil
}

// SetHooks parses the pre and post hooks as a person writes them (see
// ParseHook) into PreHook and PostHook. Errors wrap ErrUsage and name the
// hook's setting.
func (o *Options) SetHooks(pre, post string) error {
	for _, h := range []struct {
		text    string
		setting hint.Setting
		argv    *[]string
	}{{pre, hint.PreHook, &o.PreHook}, {post, hint.PostHook, &o.PostHook}} {
		argv, err := ParseHook(h.text)
		if err != nil {
			return hint.Errorf("%w: %s %w", ErrUsage, hint.Of(h.setting), err)
		}
		*h.argv = argv
	}
	return nil
}

// SetHold parses the hold hook as a person writes it (see ParseHook) into
// HoldHook.
func (o *Options) SetHold(s string) error {
	argv, err := ParseHook(s)
	if err != nil {
		return hint.Errorf("%w: %s %w", ErrUsage, hint.Of(hint.HoldHook), err)
	}
	o.HoldHook = argv
	return nil
}

// ParseHook reads a hook as kbak backup --pre-hook, a schedule and the
// agent's configuration take it: a JSON array is an argv, run as it is
// (for images without a shell); anything else a shell command line, run
// with /bin/sh -c. Empty is no hook.
func ParseHook(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	if strings.HasPrefix(s, "[") {
		var argv []string
		if err := json.Unmarshal([]byte(s), &argv); err != nil || len(argv) == 0 || argv[0] == "" {
			return nil, fmt.Errorf("%s is not a JSON array of strings: write [\"cmd\",\"arg\"] or a shell command line", s)
		}
		return argv, nil
	}
	return []string{"/bin/sh", "-c", s}, nil
}

// validateDeadman checks that a deadman given leaves the hooks their time:
// it runs the post hook that long after the pre hook started, so it must
// outlast the pre and the post hook's timeouts together.
func (o *Options) validateDeadman() error {
	if o.NoDeadman && o.HookDeadman != 0 {
		return hint.Errorf("%w: %s off with a duration: give one", ErrUsage, hint.Of(hint.HookDeadman))
	}
	timeout := o.HookTimeout
	if timeout <= 0 {
		timeout = DefaultHookTimeout
	}
	if o.HookDeadman > 0 && o.HookDeadman <= 2*timeout {
		return hint.Errorf("%w: %s %s: give more than twice the hook timeout (%s), the time the pre and the post hook may take, or off", ErrUsage, hint.Of(hint.HookDeadman), o.HookDeadman, timeout)
	}
	return nil
}

// SetDeadman reads a deadman as kbak backup --hook-deadman, a schedule and
// the agent's configuration take it: empty is the default, "off" (or 0)
// no deadman, anything else a duration such as 15m.
func (o *Options) SetDeadman(s string) error {
	o.HookDeadman, o.NoDeadman = 0, false
	switch s = strings.TrimSpace(s); s {
	case "":
		return nil
	case "off", "0":
		o.NoDeadman = true
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return hint.Errorf("%w: %s %q: give a duration such as 15m, or off", ErrUsage, hint.Of(hint.HookDeadman), s)
	}
	o.HookDeadman = d
	return nil
}
