package backup

import (
	"context"
	"errors"
	"log/slog"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	utilexec "k8s.io/client-go/util/exec"

	"github.com/kbak/kbak/internal/hint"
	"github.com/kbak/kbak/internal/hint/hinttest"

	"github.com/kbak/kbak/internal/kube"
	"github.com/kbak/kbak/internal/kube/kubetest"
)

func TestHookTargets(t *testing.T) {
	p0 := kubetest.Pod(ns, "db", 0, "n").Result()
	p1 := kubetest.Pod(ns, "db", 1, "n").Result()
	vols := []*volume{
		{claim: kube.Claim{Name: "data-db-0", Pod: p0}},
		{claim: kube.Claim{Name: "logs-db-0", Pod: p0}},
		{claim: kube.Claim{Name: "data-db-1", Pod: p1}},
		{claim: kube.Claim{Name: "data-db-2"}}, // no running pod: nothing to quiesce
	}
	tests := []struct {
		container string
		want      []hookTarget
	}{
		{"", []hookTarget{{"db-0", "app"}, {"db-1", "app"}}},
		{"sidecar", []hookTarget{{"db-0", "sidecar"}, {"db-1", "sidecar"}}},
	}
	for _, tt := range tests {
		r := &run{opts: Options{HookContainer: tt.container}}
		if got := r.hookTargets(vols); !slices.Equal(got, tt.want) {
			t.Errorf("container %q: targets %v, want %v", tt.container, got, tt.want)
		}
	}
}

// shellPods runs exec'd commands with the machine's /bin/sh, each pod a
// directory of its own: the kbak hook directory of the run becomes
// DIR/POD/hook, and the hooks find their pod's directory in $POD. Like a
// pod exec whose stream ends, a command whose context ends has its first
// process killed and what it started left running.
type shellPods struct {
	dir string
	mu  sync.Mutex
	ran []string // pod and argv[0] of every exec
}

func (s *shellPods) exec(ctx context.Context, _, pod, _ string, argv []string) (string, error) {
	s.mu.Lock()
	s.ran = append(s.ran, pod+" "+argv[len(argv)-1])
	s.mu.Unlock()
	podDir := filepath.Join(s.dir, pod)
	if err := os.MkdirAll(podDir, 0o755); err != nil {
		return "", err
	}
	argv = slices.Clone(argv)
	for i := range argv {
		argv[i] = strings.ReplaceAll(argv[i], "/tmp/kbak-hook-"+id, filepath.Join(podDir, "hook"))
	}
	cmd := osexec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "POD="+podDir)
	cmd.WaitDelay = 50 * time.Millisecond
	out, err := cmd.CombinedOutput()
	var ee *osexec.ExitError
	if errors.As(err, &ee) && ctx.Err() == nil {
		err = utilexec.CodeExitError{Err: err, Code: ee.ExitCode()}
	}
	return string(out), err
}

func (s *shellPods) read(t *testing.T, pod, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.dir, pod, name))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

func newShellRun(t *testing.T, pre, post string) (*run, *shellPods) {
	t.Helper()
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	pods := &shellPods{dir: t.TempDir()}
	o := Options{HookTimeout: 2 * time.Second}
	if err := o.SetHooks(pre, post); err != nil {
		t.Fatal(err)
	}
	r := &run{id: id, opts: o, log: slog.New(slog.DiscardHandler), deps: Deps{Exec: pods.exec, Now: time.Now}}
	return r, pods
}

var podTargets = []hookTarget{{"db-0", "app"}, {"db-1", "app"}}

// waitFile waits up to d for pod's file name to hold want.
func waitFile(t *testing.T, pods *shellPods, pod, name, want string, d time.Duration) bool {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if pods.read(t, pod, name) == want {
			return true
		}
	}
	return false
}

// When kbak never runs the post hook (it was killed), the deadman left by
// the pre hook runs it in every pod at its deadline; kbak's post hook, should
// it come later, does not run it again and records that the deadman thawed.
func TestDeadmanThawsWithoutKbak(t *testing.T) {
	r, pods := newShellRun(t, `echo frozen >> "$POD/state"`, `echo thawed >> "$POD/state"`)
	r.opts.HookDeadman = time.Second
	if _, err := r.quiesce(context.Background(), podTargets, time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, tg := range podTargets {
		if got := pods.read(t, tg.pod, "state"); got != "frozen\n" {
			t.Fatalf("%s right after the pre hook: state %q", tg.pod, got)
		}
	}
	for _, tg := range podTargets {
		if !waitFile(t, pods, tg.pod, "state", "frozen\nthawed\n", 3*time.Second) {
			t.Fatalf("%s: state %q 3s after a deadman of 1s, want thawed", tg.pod, pods.read(t, tg.pod, "state"))
		}
	}
	// kbak comes back after all: it finds the deadman's claim.
	if deadman, err := r.runHooks(context.Background(), "post", r.opts.PostHook, podTargets, 0); err != nil || !deadman {
		t.Fatalf("late post hook: deadman %v, err %v; want the deadman's thaw found", deadman, err)
	}
	for _, tg := range podTargets {
		if got := pods.read(t, tg.pod, "state"); got != "frozen\nthawed\n" {
			t.Errorf("%s: state %q, want the post hook run once", tg.pod, got)
		}
	}
	var pre, post int
	for _, h := range r.hooks {
		switch {
		case h.Phase == "pre" && h.DeadmanSeconds == 1:
			pre++
		case h.Phase == "post" && h.ThawedBy == ThawedByDeadman:
			post++
		}
	}
	if pre != 2 || post != 2 {
		t.Errorf("hook records %+v, want 2 pre with a deadman of 1s and 2 post thawed by the deadman", r.hooks)
	}
}

// kbak's post hook cancels the deadman: the post hook runs once, by kbak,
// and nothing is left running or lying in the pod.
func TestDeadmanCancelledByPostHook(t *testing.T) {
	r, pods := newShellRun(t, `echo frozen >> "$POD/state"`, `echo thawed >> "$POD/state"`)
	r.opts.HookDeadman = time.Second
	thaw, err := r.quiesce(context.Background(), podTargets, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if thaw() {
		t.Fatal("thaw reports the deadman, which had not fired")
	}
	if left := processesWith(t, pods.dir); len(left) != 0 {
		t.Errorf("still running after the post hook: %q", left)
	}
	time.Sleep(2 * time.Second)
	for _, tg := range podTargets {
		if got := pods.read(t, tg.pod, "state"); got != "frozen\nthawed\n" {
			t.Errorf("%s: state %q, want the post hook run once", tg.pod, got)
		}
		if _, err := os.Stat(filepath.Join(pods.dir, tg.pod, "hook")); !os.IsNotExist(err) {
			t.Errorf("%s: the hook directory is still there (%v)", tg.pod, err)
		}
	}
	for _, h := range r.hooks {
		if h.Phase == "post" && h.ThawedBy != ThawedByKbak {
			t.Errorf("post hook record %+v, want thawed by kbak", h)
		}
	}
}

// A pre hook past its timeout is killed in the pod with its children before
// the post hook runs: it takes no effect afterwards.
func TestHookTimeoutStopsHookInPod(t *testing.T) {
	r, pods := newShellRun(t, `sleep 2; echo frozen >> "$POD/state"`, `echo thawed >> "$POD/state"`)
	r.opts.HookTimeout = 300 * time.Millisecond
	_, err := r.quiesce(context.Background(), podTargets[:1], time.Hour)
	if err == nil || !strings.Contains(err.Error(), "pre hook in pod db-0: no answer within 300ms, stopped") {
		t.Fatalf("err = %v, want the pre hook stopped after its timeout", err)
	}
	time.Sleep(2500 * time.Millisecond)
	if got := pods.read(t, "db-0", "state"); got != "thawed\n" {
		t.Errorf("state %q, want only the post hook's mark: the timed out pre hook took effect", got)
	}
}

// Without the wrapper (deadman off) hooks run as given, for images
// without a shell.
func TestNoDeadmanRunsHooksAsGiven(t *testing.T) {
	r, pods := newShellRun(t, `echo frozen >> "$POD/state"`, `["/bin/sh","-c","echo thawed >> \"$POD/state\""]`)
	r.opts.NoDeadman = true
	thaw, err := r.quiesce(context.Background(), podTargets[:1], time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	thaw()
	if got := pods.read(t, "db-0", "state"); got != "frozen\nthawed\n" {
		t.Errorf("state %q", got)
	}
	want := []string{`db-0 echo frozen >> "$POD/state"`, `db-0 echo thawed >> "$POD/state"`}
	if !slices.Equal(pods.ran, want) {
		t.Errorf("ran %q, want the hooks as given", pods.ran)
	}
	for _, h := range r.hooks {
		if h.DeadmanSeconds != 0 || h.ThawedBy != "" {
			t.Errorf("record %+v: no deadman was started", h)
		}
	}
}

// Arguments reach the hook as they were given, quotes and all.
func TestHookScriptQuoting(t *testing.T) {
	r, pods := newShellRun(t, `["/bin/sh","-c","printf '%s|' \"$@\" > \"$POD/args\"","x","it's","a \"b\"","$HOME"]`, "")
	if _, err := r.quiesce(context.Background(), podTargets[:1], time.Hour); err != nil {
		t.Fatal(err)
	}
	if got, want := pods.read(t, "db-0", "args"), `it's|a "b"|$HOME|`; got != want {
		t.Errorf("args %q, want %q", got, want)
	}
}

func TestNoShellIsOneLine(t *testing.T) {
	r, _ := newShellRun(t, "true", "true")
	r.deps.Exec = func(context.Context, string, string, string, []string) (string, error) {
		return "", errors.New(`command terminated: OCI runtime exec failed: exec failed: unable to start container process: exec: "/bin/sh": stat /bin/sh: no such file or directory: unknown`)
	}
	_, err := r.quiesce(context.Background(), podTargets[:1], time.Hour)
	got := hint.Render(err, hinttest.Flags)
	if !strings.Contains(got, "container app has no /bin/sh") || !strings.Contains(got, "--hook-deadman off") || strings.Contains(got, "\n") {
		t.Errorf("err %q, want one line naming the missing shell and --hook-deadman off", got)
	}
}

// processesWith lists the command lines of the processes that mention s.
func processesWith(t *testing.T, s string) []string {
	t.Helper()
	paths, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var out []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), s) {
			out = append(out, strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return out
}
