package main

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// untouchable is a server that must not be asked anything: it counts the
// requests it gets and answers each with an error.
type untouchable struct {
	url  string
	hits atomic.Int64
}

func newUntouchable(t *testing.T) *untouchable {
	t.Helper()
	u := &untouchable{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		http.Error(w, "this test expects no request", http.StatusInternalServerError)
	}))
	t.Cleanup(srv.Close)
	u.url = srv.URL
	return u
}

// A bad setting of a backup, a schedule or the agent is one line and exit 2
// before kbak asks the API server or the store anything, let alone creates
// something: not a failure in every mover after the snapshots and hooks,
// nor a quiet fallback to a default. Schedules and the agent check what
// kbak backup checks (backup.Options.Validate).
func TestBackupSettingsRefusedEarly(t *testing.T) {
	api, store := newUntouchable(t), newUntouchable(t)
	t.Setenv("KBAK_REPO", "")
	t.Setenv("KBAK_MOVER_IMAGE", "")
	os.Unsetenv("KBAK_MOVER_IMAGE")
	t.Setenv("AWS_ACCESS_KEY_ID", "AK")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "SK")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("KUBECONFIG", kubeconfigFor(t, api.url))
	repo := "s3://kbak-test?endpoint=" + url.QueryEscape(store.url) + "&region=us-east-1"
	fileRepo := "file://" + t.TempDir()

	backup := func(args ...string) []string {
		return append([]string{"backup", "sts/db", "-n", "shop", "--repo", repo}, args...)
	}
	schedule := func(args ...string) []string {
		return append([]string{"schedule", "create", "nightly", "sts/db", "-n", "shop", "--repo", repo, "--cron", "@daily", "--keep-daily", "7"}, args...)
	}
	agent := func(t *testing.T, schedule string, args ...string) []string {
		cfg := filepath.Join(t.TempDir(), "agent.yaml")
		yaml := "listen: 127.0.0.1:0\nrepo: " + repo + "\nschedules:\n- name: shop\n  namespace: shop\n  statefulset: db\n  cron: \"@daily\"\n  keepDaily: 7\n" + schedule
		if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return append([]string{"agent", "--config", cfg}, args...)
	}
	tests := []struct {
		name     string
		args     func(t *testing.T) []string
		contains []string
	}{
		{"backup: compression level out of range", func(*testing.T) []string { return backup("--compression", "zstd:99") },
			[]string{`--compression "zstd:99"`, "zstd:1", "zstd:4"}},
		{"backup: zero movers", func(*testing.T) []string { return backup("--parallel", "0") }, []string{"--parallel 0", "1 or more"}},
		{"backup: negative movers", func(*testing.T) []string { return backup("--parallel=-2") }, []string{"--parallel -2"}},
		{"backup: negative hook timeout", func(*testing.T) []string { return backup("--hook-timeout=-1s") }, []string{"--hook-timeout -1s", "positive"}},
		{"backup: zero hook timeout", func(*testing.T) []string { return backup("--hook-timeout", "0s") }, []string{"--hook-timeout 0s", "positive"}},
		{"backup: negative pod start timeout", func(*testing.T) []string { return backup("--pod-start-timeout=-5m") }, []string{"--pod-start-timeout -5m0s"}},
		{"backup: invalid namespace", func(*testing.T) []string {
			return []string{"backup", "sts/db", "-n", "Shop_1", "--repo", repo}
		}, []string{`invalid namespace "Shop_1"`}},
		{"backup: invalid StatefulSet name", func(*testing.T) []string {
			return []string{"backup", "sts/DB", "-n", "shop", "--repo", repo}
		}, []string{`invalid StatefulSet name "DB"`}},
		{"backup: StatefulSet name with a slash", func(*testing.T) []string {
			return []string{"backup", "sts/db/../x", "-n", "shop", "--repo", repo}
		}, []string{`invalid StatefulSet name "db/../x"`}},
		{"backup: empty mover image", func(*testing.T) []string { return backup("--mover-image", "") }, []string{"--mover-image is empty", "kbak.local/kbak:dev"}},
		{"backup: file repository", func(*testing.T) []string {
			return []string{"backup", "sts/db", "-n", "shop", "--repo", fileRepo}
		}, []string{fileRepo, "mover pods in the cluster cannot reach", "--repo s3://BUCKET/PREFIX"}},
		{"backup: bad method", func(*testing.T) []string { return backup("--method", "copy") }, []string{`--method "copy"`, "auto, snapshot or files"}},
		{"backup: bad hook", func(*testing.T) []string { return backup("--pre-hook", `["sync"`) }, []string{`--pre-hook ["sync"`, "JSON array"}},
		{"backup: bad format", func(*testing.T) []string { return backup("--format", "3") }, []string{"--format 3"}},
		{"backup: bad pull policy", func(*testing.T) []string { return backup("--mover-pull-policy", "Sometimes") }, []string{`--mover-pull-policy "Sometimes"`}},

		{"schedule: bad method", func(*testing.T) []string { return schedule("--method", "copy") }, []string{`--method "copy"`}},
		{"schedule: bad hook", func(*testing.T) []string { return schedule("--post-hook", `[]`) }, []string{"--post-hook []", "JSON array"}},
		{"schedule: zero movers", func(*testing.T) []string { return schedule("--parallel", "0") }, []string{"--parallel 0"}},
		{"schedule: empty image", func(*testing.T) []string { return schedule("--image", "") }, []string{"--image is empty"}},
		{"schedule: bad pull policy", func(*testing.T) []string { return schedule("--pull-policy", "Sometimes") }, []string{`--mover-pull-policy "Sometimes"`}},
		{"schedule: invalid namespace", func(*testing.T) []string {
			return []string{"schedule", "create", "nightly", "sts/db", "-n", "Shop", "--repo", repo, "--cron", "@daily", "--keep-daily", "7"}
		}, []string{`invalid namespace "Shop"`}},
		{"schedule: file repository", func(*testing.T) []string {
			return []string{"schedule", "create", "nightly", "sts/db", "-n", "shop", "--repo", fileRepo, "--cron", "@daily", "--keep-daily", "7"}
		}, []string{fileRepo, "mover pods in the cluster cannot reach"}},
		{"schedule: bad cron spec", func(*testing.T) []string {
			return []string{"schedule", "create", "nightly", "sts/db", "-n", "shop", "--repo", repo, "--cron", "nightly", "--keep-daily", "7"}
		}, []string{`cron spec "nightly"`}},

		{"agent: bad method", func(t *testing.T) []string { return agent(t, "  method: copy\n") }, []string{`method "copy"`, "auto, snapshot or files"}},
		{"agent: bad hook", func(t *testing.T) []string { return agent(t, "  preHook: '[\"sync\"'\n") }, []string{`preHook ["sync"`, "JSON array"}},
		{"agent: file repository", func(t *testing.T) []string { return agent(t, "  repo: "+fileRepo+"\n") }, []string{fileRepo, "repo: s3://BUCKET/PREFIX"}},
		{"agent: bad cron spec", func(t *testing.T) []string {
			return agent(t, "- {name: other, namespace: shop, statefulset: db, cron: nightly, keepLast: 1}\n")
		}, []string{`cron spec "nightly"`}},
		{"agent: zero movers", func(t *testing.T) []string { return agent(t, "", "--parallel", "0") }, []string{"--parallel 0"}},
		{"agent: empty mover image", func(t *testing.T) []string { return agent(t, "", "--mover-image", "") }, []string{"--mover-image is empty"}},
		{"agent: negative pod start timeout", func(t *testing.T) []string { return agent(t, "", "--pod-start-timeout=-1s") }, []string{"--pod-start-timeout -1s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := api.hits.Load() + store.hits.Load()
			code, stderr := kbakWithin(t, 30*time.Second, tt.args(t)...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d (stderr %q)", code, exitUsage, stderr)
			}
			oneErrorLine(t, stderr, tt.contains...)
			if n := api.hits.Load() + store.hits.Load() - before; n != 0 {
				t.Errorf("%d requests to the API server or the store before the error", n)
			}
		})
	}
}

// The agent's configuration names the invalid namespace of a schedule in
// its own words.
func TestAgentConfigInvalidNamespace(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "agent.yaml")
	yaml := "listen: 127.0.0.1:0\nrepo: s3://kbak-test\nschedules:\n- {name: shop, namespace: Shop, statefulset: db, cron: '@daily', keepDaily: 7}\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", kubeconfigFor(t, newUntouchable(t).url))
	code, stderr := kbakWithin(t, 30*time.Second, "agent", "--config", cfg)
	if code != exitUsage {
		t.Errorf("exit %d, want %d (stderr %q)", code, exitUsage, stderr)
	}
	oneErrorLine(t, stderr, "schedule 1 (shop)", `invalid namespace "Shop"`)
}

// gc --grace takes 0 (remove every leftover now) or more; a negative grace
// is one line before anything is listed.
func TestGCNegativeGrace(t *testing.T) {
	t.Setenv("KBAK_REPO", "")
	code, stdout, stderr := kbak(t, "gc", "--grace", "-1h", "--no-cluster", "--repo", "file://"+t.TempDir())
	if code != exitUsage || stdout != "" {
		t.Errorf("exit %d, stdout %q: want %d and nothing listed", code, stdout, exitUsage)
	}
	oneErrorLine(t, stderr, "--grace -1h0m0s", "0 or more")
	if !strings.HasPrefix(stderr, "kbak: --grace") {
		t.Errorf("stderr %q", stderr)
	}
}

// --s3-use-imds (KBAK_S3_USE_IMDS=true) travels in the repository URL to
// what runs in the cluster: the CronJob's kbak and its movers.
func TestUseIMDSReachesTheCronJob(t *testing.T) {
	t.Setenv("KBAK_REPO", "")
	for _, tc := range []struct {
		name string
		env  string
		flag []string
		want bool
	}{
		{"off by default", "", nil, false},
		{"flag", "", []string{"--s3-use-imds"}, true},
		{"environment", "true", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("KBAK_S3_USE_IMDS", tc.env)
			if tc.env == "" {
				os.Unsetenv("KBAK_S3_USE_IMDS")
			}
			args := append([]string{"schedule", "create", "nightly", "sts/db", "-n", "x", "--repo", scheduleRepo, "--cron", "@daily",
				"--keep-last", "1", "--dry-run=client"}, tc.flag...)
			code, out, stderr := kbak(t, args...)
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if got := strings.Contains(out, "imds=true"); got != tc.want {
				t.Errorf("imds=true in the CronJob: %v, want %v", got, tc.want)
			}
		})
	}
}
