package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kbak/kbak/internal/nettest"
	"github.com/kbak/kbak/uploader/uploadertest"
)

// scheduleRepo is a repository URL that schedule create --dry-run=client
// accepts without reaching any store.
const scheduleRepo = "s3://kbak-test?endpoint=http%3A%2F%2F127.0.0.1%3A1&region=us-east-1"

// kubeconfigFor writes a kubeconfig whose one context talks to server,
// in namespace x.
func kubeconfigFor(t *testing.T, server string) string {
	t.Helper()
	return kubeconfigNamespace(t, server, "x")
}

// inNamespace points KUBECONFIG at a context of namespace ns whose server
// nobody answers: the verbs that work from the repository alone read the
// namespace from it and must ask the server nothing.
func inNamespace(t *testing.T, ns string) {
	t.Helper()
	t.Setenv("KUBECONFIG", kubeconfigNamespace(t, "http://127.0.0.1:1", ns))
}

// kubeconfigNamespace writes a kubeconfig whose one context talks to
// server in namespace ns.
func kubeconfigNamespace(t *testing.T, server, ns string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: silent
  cluster:
    server: %s
    insecure-skip-tls-verify: true
users:
- name: someone
  user:
    token: not-a-secret
contexts:
- name: silent
  context:
    cluster: silent
    user: someone
    namespace: %s
current-context: silent
`, server, ns)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// kbakWithin runs the CLI like kbak does and fails the test when it has not
// returned within limit: a hang is the bug under test.
func kbakWithin(t *testing.T, limit time.Duration, args ...string) (code int, stderr string) {
	t.Helper()
	type result struct {
		code   int
		stderr string
	}
	done := make(chan result, 1)
	go func() {
		code, _, stderr := kbak(t, args...)
		done <- result{code, stderr}
	}()
	select {
	case r := <-done:
		return r.code, r.stderr
	case <-time.After(limit):
		t.Fatalf("kbak %v still running after %s", args, limit)
		return 0, ""
	}
}

// An API server that accepts connections and never answers fails a command
// within --request-timeout, with one line naming the server and the flag.
func TestAPIServerNeverAnswers(t *testing.T) {
	t.Setenv("KBAK_REPO", "")
	t.Setenv("KUBECONFIG", "")
	// backup resolves the movers' store credentials first: from here, not
	// from an instance metadata service the test machine may not have.
	t.Setenv("AWS_ACCESS_KEY_ID", "AK")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "SK")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	addr := nettest.SilentServer(t)
	tests := []struct {
		name   string
		server string
		args   []string
	}{
		{"doctor, TLS handshake unanswered", "https://" + addr, []string{"doctor", "-n", "x"}},
		{"doctor, request unanswered", "http://" + addr, []string{"doctor", "-n", "x"}},
		// backup opens the store first: a real one, since mover pods
		// cannot reach a file:// repository.
		{"backup", "https://" + addr, []string{"backup", "sts/db", "-n", "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "backup" {
				srv := uploadertest.StartVersityGW(t)
				s3Env(t, srv)
				tt.args = append(tt.args, "--repo", srv.URL("p"))
			}
			args := append(tt.args, "--kubeconfig", kubeconfigFor(t, tt.server), "--request-timeout", "1s")
			code, stderr := kbakWithin(t, 30*time.Second, args...)
			if code != exitFailed {
				t.Errorf("exit %d, want %d (stderr %q)", code, exitFailed, stderr)
			}
			oneErrorLine(t, stderr, "the Kubernetes API server at "+tt.server+" did not answer within 1s", "--request-timeout")
		})
	}
}

func TestDeadlineFlagsMustBePositive(t *testing.T) {
	t.Setenv("KBAK_REPO", "")
	kubeconfig := kubeconfigFor(t, "https://"+nettest.SilentServer(t))
	tests := []struct {
		name string
		args []string
		flag string
	}{
		{"zero request timeout", []string{"doctor", "--request-timeout", "0s"}, "--request-timeout"},
		{"negative request timeout", []string{"schedule", "delete", "nightly", "--request-timeout=-1s"}, "--request-timeout"},
		{"zero run deadline", []string{"schedule", "create", "nightly", "sts/db", "-n", "x", "--repo", scheduleRepo, "--cron", "@daily",
			"--keep-last", "1", "--dry-run=client", "--run-deadline", "0"}, "--run-deadline"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stderr := kbakWithin(t, 30*time.Second, append(tt.args, "--kubeconfig", kubeconfig)...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d (stderr %q)", code, exitUsage, stderr)
			}
			oneErrorLine(t, stderr, tt.flag, "positive")
		})
	}
}

// The CronJob's Jobs get --run-deadline as activeDeadlineSeconds.
func TestScheduleRunDeadline(t *testing.T) {
	t.Setenv("KBAK_REPO", "")
	for _, tt := range []struct {
		flag []string
		want string
	}{
		{nil, "activeDeadlineSeconds: 21600"},
		{[]string{"--run-deadline", "2h30m"}, "activeDeadlineSeconds: 9000"},
	} {
		args := append([]string{"schedule", "create", "nightly", "sts/db", "-n", "x", "--repo", scheduleRepo, "--cron", "@daily",
			"--keep-last", "1", "--dry-run=client"}, tt.flag...)
		code, out, stderr := kbak(t, args...)
		if code != exitOK {
			t.Fatalf("kbak %v: exit %d: %s", args, code, stderr)
		}
		if !strings.Contains(out, tt.want) {
			t.Errorf("kbak %v printed no %q:\n%s", args, tt.want, out)
		}
	}
}
