package hint

import (
	"errors"
	"fmt"
	"strings"
)

// Setting is something a person can change about a run: a flag of the
// command line, a key of the agent's configuration.
type Setting string

// Settings that kbak's advice names.
const (
	Namespace          Setting = "namespace"
	Method             Setting = "method"
	SnapshotClass      Setting = "snapshot-class"
	IncludeRetained    Setting = "include-retained"
	SecretName         Setting = "secret"
	Repo               Setting = "repo"
	MoverImage         Setting = "mover-image"
	TimeZone           Setting = "time-zone"
	KeepLast           Setting = "keep-last"
	KeepHourly         Setting = "keep-hourly"
	KeepDaily          Setting = "keep-daily"
	KeepWeekly         Setting = "keep-weekly"
	KeepMonthly        Setting = "keep-monthly"
	From               Setting = "from"
	ToNamespace        Setting = "to-namespace"
	ToName             Setting = "to-name"
	Ordinals           Setting = "ordinals"
	StorageClassMap    Setting = "storage-class-map"
	CreateStatefulSet  Setting = "create-statefulset"
	RestoreDevices     Setting = "restore-devices"
	RestoreSetID       Setting = "restore-setid"
	Kubeconfig         Setting = "kubeconfig"
	Context            Setting = "context"
	Parallel           Setting = "parallel"
	Compression        Setting = "compression"
	Format             Setting = "format"
	PullPolicy         Setting = "mover-pull-policy"
	PodStartTimeout    Setting = "pod-start-timeout"
	HookTimeout        Setting = "hook-timeout"
	HookDeadman        Setting = "hook-deadman"
	HoldHook           Setting = "hold-hook"
	PreHook            Setting = "pre-hook"
	PostHook           Setting = "post-hook"
	LockDays           Setting = "lock-days"
	LockMode           Setting = "lock-mode"
	MoverSecurity      Setting = "mover-security"
	KeepSnapshots      Setting = "keep-snapshots"
	Group              Setting = "group"
	GroupSnapshotClass Setting = "group-snapshot-class"
)

// Settings lists every Setting, for spellings to be checked against.
var Settings = []Setting{Namespace, Method, SnapshotClass, IncludeRetained, SecretName, Repo, MoverImage, TimeZone,
	KeepLast, KeepHourly, KeepDaily, KeepWeekly, KeepMonthly, From, ToNamespace, ToName, Ordinals, StorageClassMap,
	CreateStatefulSet, RestoreDevices, RestoreSetID, Kubeconfig, Context, Parallel, Compression, Format, PullPolicy,
	PodStartTimeout, HookTimeout, HookDeadman, HoldHook, PreHook, PostHook, LockDays, LockMode, MoverSecurity,
	KeepSnapshots, Group, GroupSnapshotClass}

// Ref is a setting as advice names it, with the value to give it ("" for
// a switch or where any value will do).
type Ref struct {
	Setting Setting
	Value   string
}

// Set refers to setting s given value v.
func Set(s Setting, v string) Ref { return Ref{s, v} }

// Of refers to setting s.
func Of(s Setting) Ref { return Ref{Setting: s} }

// Spelling writes a setting reference in the reader's terms.
type Spelling func(Ref) string

// Plain is the spelling of a reader whose tool is unknown: the setting's
// name, then the value.
func Plain(r Ref) string {
	if r.Value == "" {
		return string(r.Setting)
	}
	return string(r.Setting) + " " + r.Value
}

// Sprintf formats like fmt.Sprintf, writing every Ref argument with sp (nil
// is Plain).
func Sprintf(sp Spelling, format string, args ...any) string {
	return fmt.Sprintf(format, spell(sp, args)...)
}

func spell(sp Spelling, args []any) []any {
	if sp == nil {
		sp = Plain
	}
	out := make([]any, len(args))
	for i, a := range args {
		if r, ok := a.(Ref); ok {
			out[i] = sp(r)
		} else {
			out[i] = a
		}
	}
	return out
}

// Error is an error whose words name settings. Its text spells them Plain;
// Render spells them for a reader.
type Error struct {
	err    error // the text spelled Plain, wrapping what format wraps
	format string
	args   []any
}

// Errorf is fmt.Errorf, %w included, whose Ref arguments are left for the
// reader to spell.
func Errorf(format string, args ...any) error {
	return &Error{err: fmt.Errorf(format, spell(Plain, args)...), format: format, args: args}
}

func (e *Error) Error() string { return e.err.Error() }

// Unwrap returns the errors format wraps.
func (e *Error) Unwrap() []error {
	if j, ok := e.err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if w := errors.Unwrap(e.err); w != nil {
		return []error{w}
	}
	return nil
}

// Text is the error's text spelled by sp.
func (e *Error) Text(sp Spelling) string {
	return fmt.Errorf(e.format, spell(sp, e.args)...).Error()
}

// Names reports whether the error's own words refer to setting s.
func (e *Error) Names(s Setting) bool {
	for _, a := range e.args {
		if r, ok := a.(Ref); ok && r.Setting == s {
			return true
		}
	}
	return false
}

// Render returns err's text with the settings named by every Error in its
// tree spelled by sp. Whoever shows an error to a person calls it.
func Render(err error, sp Spelling) string {
	if err == nil {
		return ""
	}
	text := err.Error()
	walk(err, func(e *Error) {
		text = strings.Replace(text, e.Text(Plain), e.Text(sp), 1)
	})
	return text
}

// Advised reports whether some Error in err's tree names setting s.
func Advised(err error, s Setting) bool {
	found := false
	walk(err, func(e *Error) { found = found || e.Names(s) })
	return found
}

func walk(err error, fn func(*Error)) {
	if err == nil {
		return
	}
	if e, ok := err.(*Error); ok {
		fn(e)
	}
	switch u := err.(type) {
	case interface{ Unwrap() []error }:
		for _, w := range u.Unwrap() {
			walk(w, fn)
		}
	case interface{ Unwrap() error }:
		walk(u.Unwrap(), fn)
	}
}
