package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/mover"
	"github.com/kbak/kbak/internal/seal"
	"github.com/kbak/kbak/uploader"
)

// fakeRunEnv makes the test binary play a run's movers and logs through
// kbak's own stderr set-up, pausing halfway until the test says go on:
// the value is the directory of the handshake files.
const fakeRunEnv = "KBAK_TEST_FAKE_RUN"

// fakeRun queues three volumes, moves them with warnings (and information,
// which a terminal does not show) logged in between, and ends as a
// command does: the block's last state, then a line of its own.
func fakeRun(dir string) int {
	c, err := cliContext(newApp(os.Stdout, os.Stderr))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	log, pp := logger(c), progress(c)
	step := func() { time.Sleep(2 * redrawEvery) }
	pp.queue("data-db-0", 100<<20)
	pp.queue("data-db-1", 0)
	pp.queue("data-db-2", 50<<20)
	pp.event("data-db-0", progressEvent(0, 0, 0, 0))
	step()
	log.Warn("warning 1: snapshot is slow", "pvc", "data-db-0")
	log.Info("information a terminal does not show")
	pp.event("data-db-0", progressEvent(30<<20, 100<<20, 1<<30, 10))
	step()
	pp.event("data-db-1", progressEvent(5<<20, 20<<20, 0, 1))
	step()
	log.Warn("warning 2: mover restarted", "pvc", "data-db-1")
	step()
	os.WriteFile(filepath.Join(dir, "paused"), nil, 0o600)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go-on")); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	pp.event("data-db-0", mover.Event{Type: mover.EventResult, Result: &mover.Result{RawBytes: 100 << 20, Files: 12}})
	log.Warn("warning 3: a long line that goes on and on so that it wraps on the terminal: " + strings.Repeat("x", 120))
	pp.event("data-db-2", progressEvent(10<<20, 50<<20, 0, 2))
	step()
	pp.event("data-db-1", mover.Event{Type: mover.EventResult, Result: &mover.Result{RawBytes: 20 << 20, Files: 2}})
	pp.event("data-db-2", mover.Event{Type: mover.EventError, Error: "disk on fire"})
	log.Warn("warning 4: last words", "pvc", "data-db-2")
	pp.done()
	fmt.Fprintln(stderr(c), "kbak: finished")
	return 0
}

// cliContext is a command's context of app, with its logging flags and
// args.
func cliContext(app *cli.App, args ...string) (*cli.Context, error) {
	set := flag.NewFlagSet("kbak", flag.ContinueOnError)
	for _, f := range []cli.Flag{verboseFlag(), logFormatFlag()} {
		if err := f.Apply(set); err != nil {
			return nil, err
		}
	}
	return cli.NewContext(app, set, nil), set.Parse(args)
}

// tmuxTerminal runs shell in a tmux pane of 100 columns, on a tmux server
// of the test's own, and returns a function that captures the pane. tmux
// is part of the project's test tools (make test installs it); without it
// the test skips, unless CI=true, where it fails.
func tmuxTerminal(t *testing.T, shell string, env ...string) (capture func() string) {
	t.Helper()
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("tmux is missing: `make test-tools` installs it")
		}
		t.Skip("tmux is missing: `make test-tools` installs it (CI=true makes this a failure)")
	}
	sock := filepath.Join(t.TempDir(), "tmux.sock")
	cmd := exec.Command(tmux, "-S", sock, "-f", "/dev/null", "new-session", "-d", "-x", "100", "-y", "50", shell)
	cmd.Env = append(append(os.Environ(), "TERM=xterm-256color"), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tmux new-session: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command(tmux, "-S", sock, "kill-server").Run() })
	return func() string {
		// The screen as a person sees it, lines that wrapped joined.
		// (Not tmux's history: tmux
		// moves a screen erased from its top there, which a terminal
		// does not.)
		out, err := exec.Command(tmux, "-S", sock, "capture-pane", "-p", "-J").Output()
		if err != nil {
			t.Fatalf("tmux capture-pane: %v", err)
		}
		return string(out)
	}
}

// waitFile waits for path to exist.
func waitFile(t *testing.T, path string, capture func() string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear; the pane:\n%s", path, capture())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// paneLines are the pane's lines without the blank ones.
func paneLines(pane string) []string {
	var out []string
	for _, l := range strings.Split(pane, "\n") {
		if l = strings.TrimRight(l, " "); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// On a real terminal the live block and the log lines never overwrite
// each other: every warning is whole, above the block, every volume shows
// once, the overall line counts them, and information is not shown.
func TestProgressOnTerminal(t *testing.T) {
	dir := t.TempDir()
	capture := tmuxTerminal(t, fmt.Sprintf("%s; echo EXIT=$? > %s/exit; sleep 600", os.Args[0], dir), fakeRunEnv+"="+dir)
	waitFile(t, filepath.Join(dir, "paused"), capture)

	mid := paneLines(capture())
	want := []string{
		`^time=\S+ level=WARN msg="warning 1: snapshot is slow" pvc=data-db-0$`,
		`^time=\S+ level=WARN msg="warning 2: mover restarted" pvc=data-db-1$`,
		`^data-db-0 +30\.0 MiB / 100\.0 MiB  \S+ \S+/s  10 files  ETA \S+$`,
		`^data-db-1 +5\.0 MiB / 20\.0 MiB  \S+ \S+/s  1 files  ETA \S+$`,
		`^data-db-2 +queued \(about 50\.0 MiB\)$`,
		`^overall: 0/3 volumes done, 2 running, 1 queued  35\.0 MiB / 170\.0 MiB  \S+ \S+/s  ETA \S+$`,
	}
	matchLines(t, "halfway", mid, want)

	if err := os.WriteFile(filepath.Join(dir, "go-on"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFile(t, filepath.Join(dir, "exit"), capture)
	pane := capture()
	end := paneLines(pane)
	want = []string{
		`^time=\S+ level=WARN msg="warning 1: snapshot is slow" pvc=data-db-0$`,
		`^time=\S+ level=WARN msg="warning 2: mover restarted" pvc=data-db-1$`,
		`^time=\S+ level=WARN msg="warning 3: a long line that goes on and on so that it wraps on the terminal: x{120}"$`,
		`^time=\S+ level=WARN msg="warning 4: last words" pvc=data-db-2$`,
		`^data-db-0 +done   100\.0 MiB, 12 files in \S+ \(\S+ \S+/s\)$`,
		`^data-db-1 +done   20\.0 MiB, 2 files in \S+ \(\S+ \S+/s\)$`,
		`^data-db-2 +failed: disk on fire$`,
		`^overall: 2/3 volumes done, 1 failed  130\.0 MiB  \S+ \S+/s$`,
		`^kbak: finished$`,
		`^EXIT=0$`,
	}
	end = slices.DeleteFunc(end, func(l string) bool { return strings.HasPrefix(l, "EXIT=") })
	matchLines(t, "at the end", end, want[:len(want)-1])
	if strings.Contains(pane, "information") {
		t.Errorf("an INFO line shows on the terminal without -v:\n%s", pane)
	}
}

// matchLines checks that lines are exactly want, one pattern each, in order.
func matchLines(t *testing.T, when string, lines, want []string) {
	t.Helper()
	ok := len(lines) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = regexp.MustCompile(want[i]).MatchString(lines[i])
	}
	if !ok {
		t.Errorf("%s the terminal shows:\n%s\nwant lines matching:\n%s", when, strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

// kbak verify reads each volume of a backup through with the live block
// on a terminal: every volume done, and the overall line, above the
// verify's table.
func TestVerifyProgressOnTerminal(t *testing.T) {
	dir := t.TempDir()
	repo := "file://" + filepath.Join(dir, "repo")
	if err := os.Mkdir(filepath.Join(dir, "repo"), 0o700); err != nil {
		t.Fatal(err)
	}
	store, err := uploader.Open(context.Background(), repo, uploader.Options{})
	if err != nil {
		t.Fatal(err)
	}
	id := "db-20261122T020000Z-3f2a"
	created := time.Date(2026, 11, 22, 2, 0, 0, 0, time.UTC)
	l := catalog.Layout{Namespace: "shop", StatefulSet: "db", ID: id, Format: catalog.FormatArchive}
	m := &catalog.Manifest{ID: id, Namespace: "shop", StatefulSet: "db", Created: created, Started: created, Finished: created, Status: catalog.StatusCompleted}
	for ord := range 3 {
		src := t.TempDir()
		if err := os.WriteFile(filepath.Join(src, "table.db"), []byte(strings.Repeat("row ", 50000*(ord+1))), 0o600); err != nil {
			t.Fatal(err)
		}
		pvc := fmt.Sprintf("data-db-%d", ord)
		res, err := mover.Upload(context.Background(), store, mover.UploadOptions{Source: src, Key: l.VolumeKey(pvc)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		m.Volumes = append(m.Volumes, catalog.Volume{ClaimTemplate: "data", Ordinal: ord, PVC: pvc, Method: catalog.MethodFiles, Consistency: catalog.ConsistencyLive,
			Key: res.Key, RawBytes: res.RawBytes, StoredBytes: res.StoredBytes, Files: res.Files, SHA256: res.SHA256, Status: catalog.VolumeCompleted})
	}
	if err := catalog.New(store, seal.Key{}).WriteManifest(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	capture := tmuxTerminal(t, fmt.Sprintf("%s; echo EXIT=$? > %s/exit; sleep 600", os.Args[0], dir),
		mainArgsEnv+"=verify\n"+id+"\n--repo\n"+repo)
	waitFile(t, filepath.Join(dir, "exit"), capture)
	lines := paneLines(capture())
	want := []string{
		`^data-db-0 +done   195\.3 KiB, 1 files in \S+ \(\S+ \S+/s\)$`,
		`^data-db-1 +done   390\.6 KiB, 1 files in \S+ \(\S+ \S+/s\)$`,
		`^data-db-2 +done   585\.9 KiB, 1 files in \S+ \(\S+ \S+/s\)$`,
		`^overall: 3/3 volumes done  1\.1 MiB  \S+ \S+/s$`,
		`^PVC +FILES +DATA +RESULT$`,
		`^data-db-0 +1 +195\.3 KiB +ok$`,
		`^data-db-1 +1 +390\.6 KiB +ok$`,
		`^data-db-2 +1 +585\.9 KiB +ok$`,
	}
	matchLines(t, "after kbak verify", lines, want)
	if b, _ := os.ReadFile(filepath.Join(dir, "exit")); strings.TrimSpace(string(b)) != "EXIT=0" {
		t.Errorf("kbak verify: %s", b)
	}
}
