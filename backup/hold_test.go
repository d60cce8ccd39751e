package backup

import (
	"context"
	"io"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// session runs argv with the machine's /bin/sh as shellPods.exec does, its
// stdin and output streamed.
func (s *shellPods) session(ctx context.Context, _, pod, _ string, argv []string, stdin io.Reader, out io.Writer) error {
	s.mu.Lock()
	s.ran = append(s.ran, pod+" "+argv[len(argv)-1])
	s.mu.Unlock()
	podDir := filepath.Join(s.dir, pod)
	if err := os.MkdirAll(podDir, 0o755); err != nil {
		return err
	}
	for i := range argv {
		argv[i] = strings.ReplaceAll(argv[i], "/tmp/kbak-hook-"+id, filepath.Join(podDir, "hook"))
	}
	cmd := osexec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "POD="+podDir)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 50 * time.Millisecond
	// Like the exec stream, the session ends with the command, whatever
	// its stdin still does.
	w, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	go func() {
		_, _ = io.Copy(w, stdin)
		w.Close()
	}()
	return cmd.Run()
}

func newHoldRun(t *testing.T, hold string) (*run, *shellPods) {
	t.Helper()
	r, pods := newShellRun(t, "", "")
	if err := r.opts.SetHold(hold); err != nil {
		t.Fatal(err)
	}
	r.deps.Session = pods.session
	return r, pods
}

// The hold hook holds in every pod before quiesce returns (so before the
// first cut) and ends, its stdin closed, only when kbak thaws.
func TestHoldHookSpansTheCut(t *testing.T) {
	r, pods := newHoldRun(t, `echo held >> "$POD/state"; echo "kbak: ready"; cat > /dev/null; echo released >> "$POD/state"`)
	thaw, err := r.quiesce(context.Background(), podTargets, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // a hold that ended by itself would have
	for _, tg := range podTargets {
		if got := pods.read(t, tg.pod, "state"); got != "held\n" {
			t.Fatalf("%s during the cut: state %q, want held", tg.pod, got)
		}
	}
	thaw()
	for _, tg := range podTargets {
		if got := pods.read(t, tg.pod, "state"); got != "held\nreleased\n" {
			t.Errorf("%s after thaw: state %q, want released", tg.pod, got)
		}
	}
	if len(r.hooks) != 2 {
		t.Fatalf("records %+v, want 2 hold hooks", r.hooks)
	}
	for _, h := range r.hooks {
		if h.Phase != "hold" || h.Error != "" || h.DeadmanSeconds == 0 || !h.Finished.After(h.Started) {
			t.Errorf("record %+v, want a hold with its deadman, no error", h)
		}
	}
}

// A hold hook that never says it is ready fails the quiesce within the
// hook timeout and is stopped in the pod.
func TestHoldHookNotReady(t *testing.T) {
	r, pods := newHoldRun(t, `echo locking; sleep 30`)
	r.opts.HookTimeout = 300 * time.Millisecond
	_, err := r.quiesce(context.Background(), podTargets[:1], time.Hour)
	if err == nil || !strings.Contains(err.Error(), `hold hook in pod db-0 did not print "kbak: ready" within 300ms: locking`) {
		t.Fatalf("err = %v", err)
	}
	if left := processesWith(t, pods.dir); len(left) != 0 {
		t.Errorf("still running: %q", left)
	}
}

// A hold hook that ends before it is ready fails the quiesce with its
// output.
func TestHoldHookEndsEarly(t *testing.T) {
	r, _ := newHoldRun(t, `echo "access denied" >&2; exit 1`)
	_, err := r.quiesce(context.Background(), podTargets[:1], time.Hour)
	if err == nil || !strings.Contains(err.Error(), `hold hook in pod db-0 ended before it printed "kbak: ready"`) || !strings.Contains(err.Error(), "access denied") {
		t.Fatalf("err = %v", err)
	}
}

// When kbak never ends the session (it died, and the stream's end did not
// reach the hold hook), the deadman's timer kills the hold in the pod.
func TestHoldHookDeadman(t *testing.T) {
	r, pods := newHoldRun(t, `echo "kbak: ready"; sleep 30; echo late >> "$POD/state"`)
	r.opts.HookDeadman = time.Second
	thaw, err := r.quiesce(context.Background(), podTargets[:1], time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer thaw()
	deadline := time.Now().Add(3 * time.Second)
	for len(processesWith(t, pods.dir)) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("3s after a deadman of 1s, still running: %q", processesWith(t, pods.dir))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
