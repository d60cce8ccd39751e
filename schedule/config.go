package schedule

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/kbak/kbak/backup"
	"github.com/kbak/kbak/deploy"
	"github.com/kbak/kbak/internal/hint"
	"github.com/kbak/kbak/internal/retention"
	"github.com/kbak/kbak/uploader"
)

// DefaultListen is where the agent serves /metrics and /healthz unless its
// configuration says otherwise.
const DefaultListen = ":9090"

// Config is the agent's configuration file.
//
//	listen: ":9090"
//	repo: s3://backups/prod?endpoint=https://minio.example:9000
//	secret: kbak-store            # in every schedule's namespace, for the movers
//	runDeadline: 6h               # a run still going is stopped; default 6h
//	schedules:
//	- name: shop-nightly
//	  statefulset: mariadb
//	  namespace: shop
//	  cron: "0 2 * * *"
//	  timeZone: Europe/Berlin
//	  keepDaily: 7
//	  keepWeekly: 4
//	  lockDays: 30                # S3 Object Lock on what each run writes
type Config struct {
	Listen string `json:"listen,omitempty"`
	Repo   string `json:"repo,omitempty"`
	Secret string `json:"secret,omitempty"`
	// RunDeadline bounds every run; nil is deploy.DefaultRunDeadline.
	RunDeadline *metav1.Duration `json:"runDeadline,omitempty"`
	Schedules   []ScheduleSpec   `json:"schedules"`
}

// runDeadline is how long one run may take.
func (c Config) runDeadline() time.Duration {
	if c.RunDeadline == nil {
		return deploy.DefaultRunDeadline
	}
	return c.RunDeadline.Duration
}

// ScheduleSpec is one schedule the agent runs. Repo and Secret default to
// the Config's; the agent hands the spec, with them filled in, to its run
// function.
type ScheduleSpec struct {
	Name        string `json:"name"`
	StatefulSet string `json:"statefulset"`
	Namespace   string `json:"namespace"`
	// Cron may be any spec ParseSpec accepts, @every included.
	Cron     string `json:"cron"`
	TimeZone string `json:"timeZone,omitempty"`

	KeepLast    int `json:"keepLast,omitempty"`
	KeepHourly  int `json:"keepHourly,omitempty"`
	KeepDaily   int `json:"keepDaily,omitempty"`
	KeepWeekly  int `json:"keepWeekly,omitempty"`
	KeepMonthly int `json:"keepMonthly,omitempty"`

	Repo   string `json:"repo,omitempty"`
	Secret string `json:"secret,omitempty"`

	Method        string `json:"method,omitempty"`
	SnapshotClass string `json:"snapshotClass,omitempty"`
	KeepSnapshots bool   `json:"keepSnapshots,omitempty"`
	// Group and GroupSnapshotClass as kbak backup --group and
	// --group-snapshot-class.
	Group              string `json:"group,omitempty"`
	GroupSnapshotClass string `json:"groupSnapshotClass,omitempty"`
	// Hooks as `kbak backup` takes them: a shell command line or a JSON
	// array.
	PreHook       string `json:"preHook,omitempty"`
	PostHook      string `json:"postHook,omitempty"`
	HookContainer string `json:"hookContainer,omitempty"`
	// HookDeadman as kbak backup --hook-deadman: a duration such as 15m,
	// or off; empty is the default.
	HookDeadman string `json:"hookDeadman,omitempty"`
	// HoldHook as kbak backup --hold-hook.
	HoldHook string `json:"holdHook,omitempty"`
	// LockDays keeps what each run writes under S3 Object Lock for that
	// many days, in LockMode: compliance (the default) or governance (as
	// kbak backup --lock-days and --lock-mode).
	LockDays int    `json:"lockDays,omitempty"`
	LockMode string `json:"lockMode,omitempty"`
}

// Retention is the Object Lock retention of what the schedule's runs
// write; the zero Retention without lockDays.
func (s ScheduleSpec) Retention() uploader.Retention {
	if s.LockDays == 0 {
		return uploader.Retention{}
	}
	return uploader.Retention{Days: s.LockDays, Mode: uploader.RetentionMode(strings.ToUpper(s.LockMode))}
}

// Policy is the schedule's retention policy.
func (s ScheduleSpec) Policy() retention.Policy {
	return retention.Policy{KeepLast: s.KeepLast, Hourly: s.KeepHourly, Daily: s.KeepDaily, Weekly: s.KeepWeekly, Monthly: s.KeepMonthly}
}

// ConfigSpelling names a setting as the agent's configuration does, so
// that what the agent reports tells its operator what to change in the
// file. What the agent does not offer names the command that does.
func ConfigSpelling(r hint.Ref) string {
	key, ok := map[hint.Setting]string{
		hint.Namespace: "namespace", hint.Method: "method", hint.SnapshotClass: "snapshotClass",
		hint.KeepSnapshots: "keepSnapshots", hint.Group: "group", hint.GroupSnapshotClass: "groupSnapshotClass",
		hint.SecretName: "secret", hint.Repo: "repo", hint.TimeZone: "timeZone",
		hint.KeepLast: "keepLast", hint.KeepHourly: "keepHourly", hint.KeepDaily: "keepDaily",
		hint.KeepWeekly: "keepWeekly", hint.KeepMonthly: "keepMonthly",
		hint.PreHook: "preHook", hint.PostHook: "postHook", hint.HookDeadman: "hookDeadman", hint.HoldHook: "holdHook", hint.LockDays: "lockDays", hint.LockMode: "lockMode",
	}[r.Setting]
	switch {
	case r.Setting == hint.IncludeRetained:
		return "kbak backup --include-retained, run by hand (the agent backs up the current replicas only)"
	case r.Setting == hint.MoverImage:
		return "the agent's image (kbak deploy agent --image)"
	case r.Setting == hint.Parallel || r.Setting == hint.PullPolicy || r.Setting == hint.PodStartTimeout || r.Setting == hint.MoverSecurity:
		// Settings of every run, from the agent's own flags.
		if r.Value == "" {
			return "kbak agent --" + string(r.Setting)
		}
		return "kbak agent --" + string(r.Setting) + " " + r.Value
	case !ok:
		return hint.Plain(r)
	case r.Value == "":
		return key
	}
	return key + ": " + r.Value
}

// LoadConfig reads and checks the agent configuration file at path.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read agent configuration: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("agent configuration %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig decodes an agent configuration, fills in defaults and checks
// every schedule. Unknown fields are errors: a misspelt keepDaily must not
// silently keep nothing. No schedules is valid: the agent then only serves
// /healthz, as the kustomize base deploys it until an overlay adds some.
func ParseConfig(data []byte) (Config, error) {
	var cfg Config
	if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
		return Config{}, fmt.Errorf("decode: %w", err)
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.RunDeadline != nil && cfg.RunDeadline.Duration <= 0 {
		return Config{}, fmt.Errorf("runDeadline %s: give a positive duration, e.g. 6h", cfg.RunDeadline.Duration)
	}
	seen := map[string]bool{}
	for i := range cfg.Schedules {
		s := &cfg.Schedules[i]
		if s.Repo == "" {
			s.Repo = cfg.Repo
		}
		if s.Secret == "" {
			s.Secret = cfg.Secret
		}
		if err := s.validate(); err != nil {
			// In the file's own words: its reader edits keys, not flags.
			return Config{}, fmt.Errorf("schedule %d (%s): %s", i+1, s.Name, hint.Render(err, ConfigSpelling))
		}
		if seen[s.Name] {
			return Config{}, fmt.Errorf("schedule %s is named twice: names label the metrics and must be unique", s.Name)
		}
		seen[s.Name] = true
	}
	return cfg, nil
}

func (s ScheduleSpec) validate() error {
	if err := deploy.ValidateScheduleName(s.Name); err != nil {
		return err
	}
	if s.Repo == "" {
		return errors.New("no repository: set repo at the top or in the schedule")
	}
	if _, err := s.BackupOptions(backup.Options{}); err != nil {
		return err
	}
	if _, err := ParseSpec(s.Cron, s.TimeZone); err != nil {
		return err
	}
	return s.Policy().Validate()
}

// BackupOptions are the options of the schedule's runs: defaults (the
// agent's image, pull policy, parallelism, version) with the schedule's
// settings over them, checked as kbak backup checks its own
// (backup.Options.Validate). Errors name the settings in the
// configuration's terms when rendered with ConfigSpelling.
func (s ScheduleSpec) BackupOptions(defaults backup.Options) (backup.Options, error) {
	opts := defaults
	opts.Namespace, opts.StatefulSet, opts.Repo = s.Namespace, s.StatefulSet, s.Repo
	opts.LockDays, opts.LockMode = s.LockDays, strings.ToLower(s.LockMode)
	opts.SecretName, opts.Credentials = s.Secret, nil
	opts.KeepSnapshots = s.KeepSnapshots
	opts.SnapshotClass = s.SnapshotClass
	opts.Group, opts.GroupSnapshotClass = backup.Group(s.Group), s.GroupSnapshotClass
	opts.HookContainer = s.HookContainer
	opts.ID = ""
	// What a run writes into its manifest and log names the schedule's
	// keys, not kbak backup's flags.
	opts.Spell = ConfigSpelling
	if s.Method != "" {
		opts.Method = backup.Method(s.Method)
	}
	if err := opts.SetHooks(s.PreHook, s.PostHook); err != nil {
		return opts, err
	}
	if err := opts.SetDeadman(s.HookDeadman); err != nil {
		return opts, err
	}
	if err := opts.SetHold(s.HoldHook); err != nil {
		return opts, err
	}
	return opts, opts.Validate()
}
