package schedule

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kbak/kbak/backup"
	"github.com/kbak/kbak/deploy"
	"github.com/kbak/kbak/internal/hint"
	"github.com/kbak/kbak/uploader"
	"github.com/prometheus/client_golang/prometheus"
)

func TestParseConfig(t *testing.T) {
	base := `
repo: s3://backups/prod
secret: store
schedules:
- name: shop
  statefulset: mariadb
  namespace: shop
  cron: "@every 1m"
  keepLast: 2
`
	tests := []struct {
		name         string
		yaml         string
		wantErr      string
		wantDeadline time.Duration
	}{
		{name: "minimal", yaml: base, wantDeadline: 6 * time.Hour},
		{name: "run deadline", yaml: base + "runDeadline: 90m\n", wantDeadline: 90 * time.Minute},
		{name: "zero run deadline", yaml: base + "runDeadline: 0s\n", wantErr: "runDeadline 0s: give a positive duration"},
		{name: "negative run deadline", yaml: base + "runDeadline: -1h\n", wantErr: "runDeadline -1h0m0s"},
		{name: "unknown field", yaml: base + "  keepDayly: 7\n", wantErr: `unknown field "keepDayly"`},
		{name: "bad cron", yaml: strings.Replace(base, "@every 1m", "@often", 1), wantErr: `cron spec "@often"`},
		{name: "no retention", yaml: strings.Replace(base, "keepLast: 2", "keepLast: 0", 1), wantErr: "keeps nothing"},
		{name: "no repo", yaml: strings.Replace(base, "repo: s3://backups/prod", "", 1), wantErr: "no repository"},
		{name: "object lock", yaml: base + "  lockDays: 30\n  lockMode: governance\n", wantDeadline: 6 * time.Hour},
		{name: "bad lock mode", yaml: base + "  lockDays: 30\n  lockMode: forever\n", wantErr: `lockMode "forever": use compliance or governance`},
		{name: "lock mode without days", yaml: base + "  lockMode: governance\n", wantErr: "lockMode governance without lockDays"},
		// Checked as kbak backup checks its flags, in the file's own words.
		{name: "bad method", yaml: base + "  method: copy\n", wantErr: `method "copy": use auto, snapshot or files`},
		{name: "bad hook", yaml: base + "  preHook: '[\"sync\"'\n", wantErr: `preHook ["sync" is not a JSON array of strings`},
		{name: "empty JSON hook", yaml: base + "  postHook: '[]'\n", wantErr: `postHook [] is not a JSON array of strings`},
		{name: "file repository", yaml: strings.Replace(base, "s3://backups/prod", "file:///srv/kbak", 1), wantErr: "mover pods in the cluster cannot reach: use an S3 bucket (repo: s3://BUCKET/PREFIX)"},
		{name: "bad namespace", yaml: strings.Replace(base, "namespace: shop", "namespace: Shop", 1), wantErr: `invalid namespace "Shop"`},
		{name: "bad StatefulSet name", yaml: strings.Replace(base, "statefulset: mariadb", "statefulset: maria_db", 1), wantErr: `invalid StatefulSet name "maria_db"`},
		{name: "twice", yaml: base + `- name: shop
  statefulset: redis
  namespace: shop
  cron: "@daily"
  keepLast: 1
`, wantErr: "named twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(tt.yaml))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			s := cfg.Schedules[0]
			if cfg.Listen != DefaultListen || s.Repo != "s3://backups/prod" || s.Secret != "store" || s.Policy().KeepLast != 2 {
				t.Errorf("defaults not filled in: %+v", cfg)
			}
			if got := cfg.runDeadline(); got != tt.wantDeadline {
				t.Errorf("run deadline %s, want %s", got, tt.wantDeadline)
			}
			if want := (uploader.Retention{Days: 30, Mode: uploader.RetentionGovernance}); tt.name == "object lock" && s.Retention() != want {
				t.Errorf("retention %+v, want %+v", s.Retention(), want)
			}
		})
	}
}

// stepClock advances by step on every reading, so each run lasts step.
type stepClock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func (c *stepClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(c.step)
	return c.t
}

func testConfig() Config {
	return Config{Listen: "127.0.0.1:0", Schedules: []ScheduleSpec{
		{Name: "shop", StatefulSet: "mariadb", Namespace: "shop", Cron: "0 2 * * *", KeepLast: 1, Repo: "s3://bkt"},
		{Name: "blog", StatefulSet: "postgres", Namespace: "blog", Cron: "0 3 * * *", KeepLast: 1, Repo: "s3://bkt"},
	}}
}

func TestRunOnceMetrics(t *testing.T) {
	clock := &stepClock{t: utc("2026-11-22T01:59:50Z"), step: 5 * time.Second}
	outcomes := map[string][]func() (RunResult, error){
		"shop": {
			func() (RunResult, error) { return RunResult{BackupID: "a", Bytes: 1 << 20}, nil },
			func() (RunResult, error) { return RunResult{}, errors.New("store unreachable") },
		},
		"blog": {func() (RunResult, error) { panic("nil map") }},
	}
	a, err := NewAgent(testConfig(), func(_ context.Context, s ScheduleSpec) (RunResult, error) {
		f := outcomes[s.Name][0]
		outcomes[s.Name] = outcomes[s.Name][1:]
		return f()
	}, nil, clock.now)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cfg := testConfig()
	// now: 01:59:55 start, 02:00:00 end
	if err := a.RunOnce(ctx, cfg.Schedules[0]); err != nil {
		t.Fatal(err)
	}
	// 02:00:05 start, 02:00:10 end
	if err := a.RunOnce(ctx, cfg.Schedules[0]); err == nil || !strings.Contains(err.Error(), "store unreachable") {
		t.Fatalf("failed run: %v", err)
	}
	// 02:00:15 start, 02:00:20 end
	if err := a.RunOnce(ctx, cfg.Schedules[1]); err == nil || !strings.Contains(err.Error(), "panicked: nil map") {
		t.Fatalf("panicking run: %v", err)
	}
	if err := a.RunOnce(ctx, ScheduleSpec{Name: "unknown"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown schedule: %v", err)
	}

	// Success at 2026-11-22T02:00:00Z = 1795312800; read at 02:00:25, so
	// the next runs are 2026-11-23T02:00Z and 2026-11-22T03:00Z.
	want := `# HELP kbak_schedule_failures_total Backup runs that failed.
# TYPE kbak_schedule_failures_total counter
kbak_schedule_failures_total{namespace="blog",schedule="blog",statefulset="postgres"} 1
kbak_schedule_failures_total{namespace="shop",schedule="shop",statefulset="mariadb"} 1
# HELP kbak_schedule_last_bytes Bytes the last successful backup stored in the repository.
# TYPE kbak_schedule_last_bytes gauge
kbak_schedule_last_bytes{namespace="shop",schedule="shop",statefulset="mariadb"} 1.048576e+06
# HELP kbak_schedule_last_duration_seconds Duration of the last backup run, successful or not.
# TYPE kbak_schedule_last_duration_seconds gauge
kbak_schedule_last_duration_seconds{namespace="blog",schedule="blog",statefulset="postgres"} 5
kbak_schedule_last_duration_seconds{namespace="shop",schedule="shop",statefulset="mariadb"} 5
# HELP kbak_schedule_last_success_timestamp_seconds Unix time the last successful backup finished.
# TYPE kbak_schedule_last_success_timestamp_seconds gauge
kbak_schedule_last_success_timestamp_seconds{namespace="shop",schedule="shop",statefulset="mariadb"} 1.7953128e+09
# HELP kbak_schedule_next_run_timestamp_seconds Unix time of the next scheduled run.
# TYPE kbak_schedule_next_run_timestamp_seconds gauge
kbak_schedule_next_run_timestamp_seconds{namespace="blog",schedule="blog",statefulset="postgres"} 1.7953164e+09
kbak_schedule_next_run_timestamp_seconds{namespace="shop",schedule="shop",statefulset="mariadb"} 1.7953992e+09
# HELP kbak_schedule_running 1 while a backup of the schedule runs.
# TYPE kbak_schedule_running gauge
kbak_schedule_running{namespace="blog",schedule="blog",statefulset="postgres"} 0
kbak_schedule_running{namespace="shop",schedule="shop",statefulset="mariadb"} 0
# HELP kbak_schedule_runs_total Backup runs the agent started and finished, successful or not.
# TYPE kbak_schedule_runs_total counter
kbak_schedule_runs_total{namespace="blog",schedule="blog",statefulset="postgres"} 1
kbak_schedule_runs_total{namespace="shop",schedule="shop",statefulset="mariadb"} 2
`
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(scheduleCollector{a})
	if got := scrape(t, metricsHandler(reg)); got != want {
		t.Errorf("metrics:\n%s\nwant:\n%s", got, want)
	}
}

// scrape GETs /metrics from h in the text format.
func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}
	return rec.Body.String()
}

// The agent's /metrics also has kbak_build_info and the Go runtime's and
// the process's metrics; after a restart the last success comes from the
// repository, and a run of the agent's own wins over it.
func TestAgentMetricsSurviveRestart(t *testing.T) {
	finished := utc("2026-11-21T02:00:07Z")
	cfg := testConfig()
	a, err := NewAgent(cfg, func(context.Context, ScheduleSpec) (RunResult, error) { return RunResult{Bytes: 7}, nil }, nil,
		func() time.Time { return utc("2026-11-22T01:00:00Z") })
	if err != nil {
		t.Fatal(err)
	}
	a.Version = "v9.8.7"
	asked := map[string]int{}
	a.LastSuccess = func(_ context.Context, s ScheduleSpec) (time.Time, int64, error) {
		asked[s.Name]++
		if s.Name == "blog" {
			return time.Time{}, 0, errors.New("store unreachable")
		}
		return finished, 1234, nil
	}
	a.recallSuccesses(context.Background())
	got := scrape(t, a.Handler())
	for _, line := range []string{
		`kbak_build_info{goversion="` + runtime.Version() + `",version="v9.8.7"} 1`,
		`kbak_schedule_last_success_timestamp_seconds{namespace="shop",schedule="shop",statefulset="mariadb"} 1.795226407e+09`,
		`kbak_schedule_last_bytes{namespace="shop",schedule="shop",statefulset="mariadb"} 1234`,
		"# TYPE go_goroutines gauge",
		"# TYPE process_resident_memory_bytes gauge",
	} {
		if !strings.Contains(got, line+"\n") {
			t.Errorf("/metrics lacks %q:\n%s", line, got)
		}
	}
	if strings.Contains(got, `kbak_schedule_last_success_timestamp_seconds{namespace="blog"`) {
		t.Error("a schedule whose repository could not be read has a last success")
	}
	if asked["shop"] != 1 || asked["blog"] != 1 {
		t.Errorf("LastSuccess asked %v, want once per schedule", asked)
	}

	if err := a.RunOnce(context.Background(), cfg.Schedules[0]); err != nil {
		t.Fatal(err)
	}
	a.recallSuccesses(context.Background())
	if got := scrape(t, a.Handler()); !strings.Contains(got, `kbak_schedule_last_bytes{namespace="shop",schedule="shop",statefulset="mariadb"} 7`+"\n") {
		t.Errorf("a recalled success overwrote the agent's own run:\n%s", got)
	}
}

// /healthz answers 503 with the reason while the agent cannot reach the
// API server.
func TestAgentHealthz(t *testing.T) {
	a, err := NewAgent(testConfig(), func(context.Context, ScheduleSpec) (RunResult, error) { return RunResult{}, nil }, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var down atomic.Bool
	a.Healthy = func(ctx context.Context) error {
		if down.Load() {
			return errors.New("cannot reach the Kubernetes API server: connection refused")
		}
		return nil
	}
	get := func() (int, string) {
		rec := httptest.NewRecorder()
		a.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := get(); code != http.StatusOK || body != "ok\n" {
		t.Errorf("healthy: %d %q", code, body)
	}
	down.Store(true)
	if code, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(body, "connection refused") {
		t.Errorf("API server unreachable: %d %q, want 503 naming the reason", code, body)
	}
	rec := httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/livez", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("/livez %d while the API server is unreachable: the kubelet would restart the agent for nothing", rec.Code)
	}
}

// TestRunOnceDeadline: every run has a deadline, 6h unless configured; a
// run still going then is cancelled and fails saying so.
func TestRunOnceDeadline(t *testing.T) {
	tests := []struct {
		name     string
		deadline *metav1.Duration
		want     time.Duration // the deadline the run function sees
		hang     bool          // the run waits for its context
	}{
		{name: "default", want: 6 * time.Hour},
		{name: "configured", deadline: &metav1.Duration{Duration: 90 * time.Minute}, want: 90 * time.Minute},
		{name: "a hung run is stopped", deadline: &metav1.Duration{Duration: 50 * time.Millisecond}, want: 50 * time.Millisecond, hang: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.RunDeadline = tt.deadline
			var left time.Duration
			a, err := NewAgent(cfg, func(ctx context.Context, _ ScheduleSpec) (RunResult, error) {
				d, ok := ctx.Deadline()
				if !ok {
					return RunResult{}, errors.New("run without a deadline")
				}
				left = time.Until(d)
				if tt.hang {
					<-ctx.Done()
					return RunResult{}, ctx.Err()
				}
				return RunResult{BackupID: "a"}, nil
			}, nil, time.Now)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- a.RunOnce(context.Background(), cfg.Schedules[0]) }()
			select {
			case err = <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("RunOnce still going after 20s")
			}
			if left > tt.want || left < tt.want-time.Minute {
				t.Errorf("run had %s left, want about %s", left, tt.want)
			}
			if !tt.hang {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrRunDeadline) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "run deadline of 50ms passed") {
				t.Errorf("hung run: %v, want an error saying the run deadline of 50ms passed", err)
			}
		})
	}
	cfg := testConfig()
	cfg.RunDeadline = &metav1.Duration{}
	if _, err := NewAgent(cfg, func(context.Context, ScheduleSpec) (RunResult, error) { return RunResult{}, nil }, nil, nil); err == nil {
		t.Error("NewAgent accepted a zero runDeadline")
	}
}

// TestAgentServe runs the agent on the real cron for a few seconds: a run
// that outlasts its interval is not started twice, and /metrics and
// /healthz answer over HTTP.
func TestAgentServe(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real cron for about three seconds")
	}
	cfg := Config{Schedules: []ScheduleSpec{{Name: "fast", StatefulSet: "db", Namespace: "ns", Cron: "@every 1s", KeepLast: 1, Repo: "s3://bkt"}}}
	release := make(chan struct{})
	var calls, concurrent, maxConcurrent atomic.Int32
	a, err := NewAgent(cfg, func(ctx context.Context, _ ScheduleSpec) (RunResult, error) {
		n := concurrent.Add(1)
		defer concurrent.Add(-1)
		if n > maxConcurrent.Load() {
			maxConcurrent.Store(n)
		}
		if calls.Add(1) == 1 {
			select {
			case <-release: // the first run outlasts several intervals
			case <-ctx.Done():
				return RunResult{}, ctx.Err()
			}
		}
		return RunResult{Bytes: 42}, nil
	}, nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()

	time.Sleep(2500 * time.Millisecond)
	if c := calls.Load(); c != 1 {
		t.Errorf("%d runs while the first was still going, want 1", c)
	}
	close(release)
	deadline := time.Now().Add(5 * time.Second)
	for calls.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if maxConcurrent.Load() != 1 {
		t.Errorf("%d runs at once, want 1", maxConcurrent.Load())
	}

	base := "http://" + ln.Addr().String()
	for path, want := range map[string]string{
		"/healthz": "ok",
		"/metrics": `kbak_schedule_last_bytes{namespace="ns",schedule="fast",statefulset="db"} 42`,
	} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d\n%s\nwant it to contain %q", path, resp.StatusCode, body, want)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the agent did not stop after its context was cancelled")
	}
}

func TestBaseAgentConfigParses(t *testing.T) {
	cfg, err := ParseConfig([]byte(deploy.BaseAgentConfig))
	if err != nil {
		t.Fatalf("the kustomize base ships a configuration the agent rejects: %v", err)
	}
	if cfg.Listen != fmt.Sprintf(":%d", deploy.DefaultAgentPort) {
		t.Errorf("base listens on %s, its pod exposes %d", cfg.Listen, deploy.DefaultAgentPort)
	}
}

func TestAgentObjectsFromConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte(`
listen: ":9191"
repo: s3://bkt
secret: store
schedules:
- {name: a, statefulset: db, namespace: shop, cron: "@every 1m", keepLast: 1}
- {name: b, statefulset: db, namespace: blog, cron: "@daily", keepLast: 1, preHook: sync}
`))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := AgentObjects(cfg, deploy.Agent{Namespace: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	var nss []string
	var shipped []byte
	for _, o := range objs {
		switch o := o.(type) {
		case *rbacv1.RoleBinding:
			nss = append(nss, o.Namespace)
		case *rbacv1.ClusterRole:
			if strings.HasSuffix(o.Name, ":backup") && !slices.ContainsFunc(o.Rules, func(r rbacv1.PolicyRule) bool { return slices.Contains(r.Resources, "pods/exec") }) {
				t.Error("a schedule has hooks, but the agent may not exec")
			}
		case *corev1.ConfigMap:
			shipped = []byte(o.Data[deploy.AgentConfigKey])
		case *corev1.Service:
			if o.Spec.Ports[0].Port != 9191 {
				t.Errorf("service port %d, want the configured 9191", o.Spec.Ports[0].Port)
			}
		}
	}
	if !slices.Equal(nss, []string{"blog", "shop"}) {
		t.Errorf("backup permissions in %v", nss)
	}
	back, err := ParseConfig(shipped)
	if err != nil || len(back.Schedules) != 2 || back.Schedules[1].PreHook != "sync" {
		t.Errorf("the shipped configuration does not round-trip: %v %+v", err, back)
	}

	cfg.Schedules[1].Secret = "other"
	if _, err := AgentObjects(cfg, deploy.Agent{}); err == nil || !strings.Contains(err.Error(), "one Secret name") {
		t.Errorf("two Secret names: %v", err)
	}
}

// What the agent reports names the keys of its configuration, never the
// flags of kbak backup, which its operator cannot pass.
func TestAgentAdviceInItsOwnTerms(t *testing.T) {
	_, err := ParseConfig([]byte(`
repo: s3://bkt
schedules:
- name: shop
  statefulset: db
  namespace: shop
  cron: "CRON_TZ=Europe/Paris 0 2 * * *"
  timeZone: UTC
  keepLast: 1
`))
	if err == nil || !strings.Contains(err.Error(), "but timeZone is UTC") || strings.Contains(err.Error(), "--") {
		t.Errorf("time zone twice: %v, want the timeZone key named", err)
	}
	// An agent's schedule says group as kbak backup --group does, and is
	// refused in its own terms.
	cfg, err := ParseConfig([]byte("repo: s3://bkt\nschedules:\n- {name: shop, statefulset: db, namespace: shop, cron: \"@daily\", keepLast: 1, group: never}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if o, err := cfg.Schedules[0].BackupOptions(backup.Options{}); err != nil || o.Group != backup.GroupNever {
		t.Errorf("group: never gives %q, %v", o.Group, err)
	}
	_, err = ParseConfig([]byte("repo: s3://bkt\nschedules:\n- {name: shop, statefulset: db, namespace: shop, cron: \"@daily\", keepLast: 1, group: always, keepSnapshots: true}\n"))
	if err == nil || !strings.Contains(err.Error(), "group: always cannot keep snapshots") {
		t.Errorf("group always with keepSnapshots: %v, want the keys named", err)
	}
	_, err = ParseConfig([]byte("repo: s3://bkt\nschedules:\n- {name: shop, statefulset: db, namespace: shop, cron: \"@daily\"}\n"))
	if err == nil || !strings.Contains(err.Error(), "set at least one of keepLast, keepHourly, keepDaily, keepWeekly, keepMonthly") {
		t.Errorf("no retention: %v, want the keep keys named", err)
	}
	for r, want := range map[hint.Ref]string{
		hint.Set(hint.Method, "files"):   "method: files",
		hint.Of(hint.SnapshotClass):      "snapshotClass",
		hint.Set(hint.Group, "auto"):     "group: auto",
		hint.Of(hint.GroupSnapshotClass): "groupSnapshotClass",
		hint.Of(hint.IncludeRetained):    "kbak backup --include-retained, run by hand (the agent backs up the current replicas only)",
		hint.Of(hint.SecretName):         "secret",
		hint.Set(hint.Namespace, "ns"):   "namespace: ns",
		hint.Set(hint.Ordinals, "0, 2"):  "ordinals 0, 2",
	} {
		if got := ConfigSpelling(r); got != want {
			t.Errorf("ConfigSpelling(%+v) = %q, want %q", r, got, want)
		}
	}
}
