package backup

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kbak/kbak/deploy"
	"github.com/kbak/kbak/internal/hint"
	"github.com/kbak/kbak/internal/hint/hinttest"
)

// Validate refuses every setting a mover, a snapshot or a hook would fail
// on later, or that Run would quietly replace with its default, in one
// error wrapping ErrUsage that names the setting.
func TestValidate(t *testing.T) {
	valid := func() Options {
		return Options{Namespace: "shop", StatefulSet: "db", Repo: "s3://bkt/prod?region=us-east-1"}
	}
	tests := []struct {
		name string
		edit func(*Options)
		want string // in the error rendered as flags; "" for valid
	}{
		{"zero values take the defaults", func(*Options) {}, ""},
		{"everything set", func(o *Options) {
			o.Method, o.Format, o.Compression, o.Parallel = MethodFiles, 1, "zstd:4", 8
			o.Image, o.PullPolicy, o.HookTimeout, o.PodStartTimeout = "registry.example/kbak:1", "Always", time.Second, time.Minute
			o.LockDays, o.LockMode = 30, "GOVERNANCE"
		}, ""},
		{"no namespace", func(o *Options) { o.Namespace = "" }, "no namespace: give the StatefulSet's with -n NAMESPACE"},
		{"bad namespace", func(o *Options) { o.Namespace = "Shop" }, `invalid namespace "Shop"`},
		{"no StatefulSet", func(o *Options) { o.StatefulSet = "" }, "no StatefulSet"},
		{"bad StatefulSet name", func(o *Options) { o.StatefulSet = "db/../x" }, `invalid StatefulSet name "db/../x"`},
		{"no repository", func(o *Options) { o.Repo = "" }, "no repository: pass --repo s3://BUCKET/PREFIX"},
		{"file repository", func(o *Options) { o.Repo = "file:///srv/kbak" },
			"repository file:///srv/kbak is on this machine's disk, which mover pods in the cluster cannot reach: use an S3 bucket (--repo s3://BUCKET/PREFIX)"},
		{"bad repository URL", func(o *Options) { o.Repo = "s4://bkt" }, `unsupported scheme "s4"`},
		{"bad method", func(o *Options) { o.Method = "copy" }, `--method "copy": use auto, snapshot or files`},
		{"bad format", func(o *Options) { o.Format = 3 }, "--format 3"},
		{"compression level too high", func(o *Options) { o.Compression = "zstd:99" }, `--compression "zstd:99": use zstd:1 (fastest) to zstd:4 (smallest)`},
		{"unknown compression", func(o *Options) { o.Compression = "gzip" }, `--compression "gzip"`},
		{"negative parallel", func(o *Options) { o.Parallel = -1 }, "--parallel -1"},
		{"image with spaces", func(o *Options) { o.Image = "kbak :1" }, `--mover-image "kbak :1"`},
		{"blank image", func(o *Options) { o.Image = " " }, `--mover-image " "`},
		{"bad pull policy", func(o *Options) { o.PullPolicy = "Sometimes" }, `--mover-pull-policy "Sometimes"`},
		{"negative hook timeout", func(o *Options) { o.HookTimeout = -time.Second }, "--hook-timeout -1s: give a positive duration"},
		{"negative pod start timeout", func(o *Options) { o.PodStartTimeout = -time.Minute }, "--pod-start-timeout -1m0s"},
		{"negative snapshot timeout", func(o *Options) { o.SnapshotTimeout = -time.Minute }, "snapshot timeout -1m0s"},
		{"negative transfer timeout", func(o *Options) { o.TransferTimeout = -time.Minute }, "transfer timeout -1m0s"},
		{"negative cleanup timeout", func(o *Options) { o.CleanupTimeout = -time.Minute }, "cleanup timeout -1m0s"},
		{"negative dead run age", func(o *Options) { o.DeadRunAge = -time.Minute }, "dead run age -1m0s"},
		{"negative lock days", func(o *Options) { o.LockDays = -1 }, "--lock-days -1"},
		{"too many lock days", func(o *Options) { o.LockDays = MaxLockDays + 1 }, "--lock-days 36501"},
		{"bad lock mode", func(o *Options) { o.LockDays, o.LockMode = 1, "forever" }, `--lock-mode "forever"`},
		{"lock mode without days", func(o *Options) { o.LockMode = "governance" }, "--lock-mode governance without --lock-days"},
		{"deadman set", func(o *Options) { o.HookTimeout, o.HookDeadman = time.Minute, 3*time.Minute }, ""},
		{"deadman off", func(o *Options) { o.NoDeadman = true }, ""},
		{"negative deadman", func(o *Options) { o.HookDeadman = -time.Minute }, "--hook-deadman -1m0s: give a positive duration"},
		{"deadman within the hooks' time", func(o *Options) { o.HookDeadman = 2 * DefaultHookTimeout },
			"--hook-deadman 2m0s: give more than twice the hook timeout (1m0s)"},
		{"deadman within a given hook timeout", func(o *Options) { o.HookTimeout, o.HookDeadman = 5*time.Minute, 10*time.Minute },
			"--hook-deadman 10m0s: give more than twice the hook timeout (5m0s)"},
		{"deadman off and a duration", func(o *Options) { o.NoDeadman, o.HookDeadman = true, time.Hour }, "--hook-deadman off with a duration"},
		{"credentials and a Secret", func(o *Options) { o.Credentials, o.SecretName = &deploy.Credentials{AccessKeyID: "a"}, "s" }, "--secret are exclusive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := valid()
			tt.edit(&o)
			err := o.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrUsage) {
				t.Fatalf("Validate = %v, want ErrUsage", err)
			}
			if got := hint.Render(err, hinttest.Flags); !strings.Contains(got, tt.want) || strings.Contains(got, "\n") {
				t.Errorf("error %q, want one line containing %q", got, tt.want)
			}
		})
	}
}

func TestSetHooks(t *testing.T) {
	var o Options
	if err := o.SetHooks("sync", `["fsfreeze","--freeze","/data"]`); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.PreHook, []string{"/bin/sh", "-c", "sync"}) || !slices.Equal(o.PostHook, []string{"fsfreeze", "--freeze", "/data"}) {
		t.Errorf("hooks %q %q", o.PreHook, o.PostHook)
	}
	if err := o.SetHooks(" ", ""); err != nil || o.PreHook != nil || o.PostHook != nil {
		t.Errorf("blank hooks: %q %q %v, want none", o.PreHook, o.PostHook, err)
	}
	for _, tt := range []struct{ pre, post, want string }{
		{`["sync"`, "", `--pre-hook ["sync" is not a JSON array of strings`},
		{"", `[]`, `--post-hook [] is not a JSON array of strings`},
		{"", `[""]`, `--post-hook [""] is not a JSON array of strings`},
		{"", `[1, 2]`, `--post-hook [1, 2] is not a JSON array of strings`},
	} {
		err := o.SetHooks(tt.pre, tt.post)
		if !errors.Is(err, ErrUsage) || !strings.Contains(hint.Render(err, hinttest.Flags), tt.want) {
			t.Errorf("SetHooks(%q, %q) = %v, want ErrUsage with %q", tt.pre, tt.post, err, tt.want)
		}
	}
}

func TestSetDeadman(t *testing.T) {
	for _, tt := range []struct {
		in   string
		d    time.Duration
		off  bool
		want string // error
	}{
		{"", 0, false, ""},
		{"15m", 15 * time.Minute, false, ""},
		{" 1h ", time.Hour, false, ""},
		{"off", 0, true, ""},
		{"0", 0, true, ""},
		{"soon", 0, false, `--hook-deadman "soon": give a duration such as 15m, or off`},
		{"-5m", 0, false, `--hook-deadman "-5m"`},
	} {
		o := Options{HookDeadman: time.Second, NoDeadman: true}
		err := o.SetDeadman(tt.in)
		if tt.want != "" {
			if !errors.Is(err, ErrUsage) || !strings.Contains(hint.Render(err, hinttest.Flags), tt.want) {
				t.Errorf("SetDeadman(%q) = %v, want ErrUsage with %q", tt.in, err, tt.want)
			}
			continue
		}
		if err != nil || o.HookDeadman != tt.d || o.NoDeadman != tt.off {
			t.Errorf("SetDeadman(%q): %s off=%v err=%v, want %s off=%v", tt.in, o.HookDeadman, o.NoDeadman, err, tt.d, tt.off)
		}
	}
}

func TestSetHold(t *testing.T) {
	var o Options
	if err := o.SetHold("cat"); err != nil || !slices.Equal(o.HoldHook, []string{"/bin/sh", "-c", "cat"}) {
		t.Errorf("hold %q, err %v", o.HoldHook, err)
	}
	err := o.SetHold(`["mariadb"`)
	if !errors.Is(err, ErrUsage) || !strings.Contains(hint.Render(err, hinttest.Flags), `--hold-hook ["mariadb" is not a JSON array of strings`) {
		t.Errorf("SetHold of bad JSON = %v", err)
	}
}
