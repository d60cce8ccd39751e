package schedule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/kbak/kbak/internal/hint"
)

// RunFunc runs one backup of a schedule. The agent calls it on the
// schedule's timetable, never twice at once for the same schedule; ctx is
// cancelled when the agent stops or the run's deadline passes.
type RunFunc func(ctx context.Context, s ScheduleSpec) (RunResult, error)

// ErrRunDeadline is wrapped by the error of a run stopped by its deadline.
var ErrRunDeadline = errors.New("run deadline")

// RunResult is what a successful run reports for the metrics.
type RunResult struct {
	BackupID string
	// Bytes is what the backup stored in the repository.
	Bytes int64
}

// Agent runs several schedules in one process and serves their metrics.
// Set its exported fields before Run.
type Agent struct {
	// Version is kbak's, for kbak_build_info.
	Version string
	// Healthy, when set, is what /healthz asks (within 5 seconds): an
	// error makes it answer 503 with the error, e.g. when the API server
	// cannot be reached.
	Healthy func(context.Context) error
	// LastSuccess, when set, is asked once per schedule as the agent
	// starts: the finish time and stored bytes of the schedule's newest
	// Completed backup (a zero time: none), so that the metrics survive a
	// restart of the agent.
	LastSuccess func(context.Context, ScheduleSpec) (time.Time, int64, error)

	cfg   Config
	run   RunFunc
	log   *slog.Logger
	now   func() time.Time
	specs map[string]Spec

	mu    sync.Mutex
	stats map[string]*runStats
	// cron and entries are set while Serve runs; the cron's own next
	// activation is the truth for @every, whose Next counts from "now".
	cron    *cron.Cron
	entries map[string]cron.EntryID
}

// runStats is the agent's memory of one schedule, for /metrics.
type runStats struct {
	runs, failures int64
	lastSuccess    time.Time
	lastDuration   time.Duration
	lastBytes      int64
	running        bool
}

// NewAgent checks cfg and prepares an agent; now is the clock it reports
// times with (time.Now outside tests).
func NewAgent(cfg Config, run RunFunc, log *slog.Logger, now func() time.Time) (*Agent, error) {
	if run == nil {
		return nil, errors.New("agent: a run function is required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	if d := cfg.runDeadline(); d <= 0 {
		return nil, fmt.Errorf("agent: runDeadline %s: give a positive duration, e.g. 6h", d)
	}
	a := &Agent{cfg: cfg, run: run, log: log, now: now, specs: map[string]Spec{}, stats: map[string]*runStats{}}
	for _, s := range cfg.Schedules {
		spec, err := ParseSpec(s.Cron, s.TimeZone)
		if err != nil {
			return nil, fmt.Errorf("schedule %s: %s", s.Name, hint.Render(err, ConfigSpelling))
		}
		a.specs[s.Name] = spec
		a.stats[s.Name] = &runStats{}
	}
	return a, nil
}

// Run starts every schedule and serves /metrics and /healthz on the
// configured address until ctx is cancelled. Then it stops starting runs,
// cancels the running ones (their cleanup runs on its own context) and
// returns once they have ended.
func (a *Agent) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", a.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s for /metrics: %w (set listen: in the agent configuration)", a.cfg.Listen, err)
	}
	return a.Serve(ctx, ln)
}

// Serve is Run on a listener the caller opened.
func (a *Agent) Serve(ctx context.Context, ln net.Listener) error {
	// Runs get a context of their own, so that a failing HTTP server also
	// stops them.
	runCtx, cancelRuns := context.WithCancel(ctx)
	defer cancelRuns()
	logger := cronLogger{a.log}
	c := cron.New(cron.WithChain(cron.Recover(logger), cron.SkipIfStillRunning(logger)), cron.WithLogger(logger))
	entries := map[string]cron.EntryID{}
	for _, s := range a.cfg.Schedules {
		entries[s.Name] = c.Schedule(a.specs[s.Name].sched, cron.FuncJob(func() { _ = a.RunOnce(runCtx, s) }))
		a.log.Info("schedule added", "schedule", s.Name, "namespace", s.Namespace, "statefulset", s.StatefulSet,
			"cron", s.Cron, "next", a.specs[s.Name].Next(a.now()))
	}
	a.mu.Lock()
	a.cron, a.entries = c, entries
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.cron, a.entries = nil, nil
		a.mu.Unlock()
	}()
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	recalled := make(chan struct{})
	go func() {
		defer close(recalled)
		a.recallSuccesses(runCtx)
	}()
	defer func() { <-recalled }()
	c.Start()
	if len(a.cfg.Schedules) == 0 {
		a.log.Warn("no schedules in the agent configuration: add them under schedules: and restart the agent")
	}
	a.log.Info("agent started", "listen", ln.Addr().String(), "schedules", len(a.cfg.Schedules))

	var err error
	select {
	case <-ctx.Done():
	case err = <-serveErr:
		err = fmt.Errorf("serve /metrics on %s: %w", ln.Addr(), err)
	}
	stopped := c.Stop()
	cancelRuns()
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdown)
	<-stopped.Done()
	a.log.Info("agent stopped")
	return err
}

// recallSuccesses fills each schedule's last success from LastSuccess,
// unless a run of the agent's own has already set it.
func (a *Agent) recallSuccesses(ctx context.Context) {
	if a.LastSuccess == nil {
		return
	}
	for _, s := range a.cfg.Schedules {
		if ctx.Err() != nil {
			return
		}
		at, bytes, err := a.LastSuccess(ctx, s)
		if err != nil {
			a.log.Warn("cannot read the last Completed backup from the repository: its metrics start empty",
				"schedule", s.Name, "err", hint.Render(err, ConfigSpelling))
			continue
		}
		if at.IsZero() {
			continue
		}
		a.mu.Lock()
		if st := a.stats[s.Name]; st.lastSuccess.IsZero() {
			st.lastSuccess, st.lastBytes = at, bytes
		}
		a.mu.Unlock()
	}
}

// RunOnce runs schedule s now, within the configuration's runDeadline, and
// records the outcome. A panic in the run function counts as a failure and
// does not take the agent down. Unlike the cron's runs, a RunOnce is not
// skipped while another run of s is going.
func (a *Agent) RunOnce(ctx context.Context, s ScheduleSpec) (err error) {
	st := a.stats[s.Name]
	if st == nil {
		return fmt.Errorf("%w: %s is not in the agent configuration", ErrNotFound, s.Name)
	}
	// A hung run would otherwise make the cron skip every later one.
	deadline := a.cfg.runDeadline()
	ctx, cancel := context.WithTimeoutCause(ctx, deadline, fmt.Errorf("%w of %s passed (raise runDeadline in the agent configuration)", ErrRunDeadline, deadline))
	defer cancel()
	a.mu.Lock()
	st.running = true
	a.mu.Unlock()
	log := a.log.With("schedule", s.Name, "namespace", s.Namespace, "statefulset", s.StatefulSet)
	log.Info("backup started")
	start := a.now()
	var res RunResult
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("backup of schedule %s panicked: %v", s.Name, p)
		}
		end := a.now()
		a.mu.Lock()
		st.running = false
		st.runs++
		st.lastDuration = end.Sub(start)
		if err != nil {
			st.failures++
		} else {
			st.lastSuccess = end
			st.lastBytes = res.Bytes
		}
		a.mu.Unlock()
		if err != nil {
			log.Error("backup failed", "err", hint.Render(err, ConfigSpelling), "duration", end.Sub(start))
		} else {
			log.Info("backup completed", "backup_id", res.BackupID, "bytes", res.Bytes, "duration", end.Sub(start))
		}
	}()
	res, err = a.run(ctx, s)
	if cause := context.Cause(ctx); err != nil && errors.Is(cause, ErrRunDeadline) && !errors.Is(err, ErrRunDeadline) {
		err = fmt.Errorf("%w: %w", cause, err)
	}
	return err
}

// Handler serves /metrics (Prometheus), /livez and /healthz.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metricsHandler(a.registry()))
	// /livez: the process serves; /healthz: it can also do its work.
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if a.Healthy != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
			defer cancel()
			if err := a.Healthy(ctx); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = w.Write([]byte("unhealthy: " + err.Error() + "\n"))
				return
			}
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

// snapshot copies the stats in configuration order, for rendering without
// the lock.
func (a *Agent) snapshot() []scheduleMetrics {
	now := a.now()
	a.mu.Lock()
	c, entries := a.cron, a.entries
	a.mu.Unlock()
	next := map[string]time.Time{}
	for _, s := range a.cfg.Schedules {
		if c != nil {
			// Entry takes the cron's own lock; a.mu is not held here.
			if t := c.Entry(entries[s.Name]).Next; !t.IsZero() {
				next[s.Name] = t
				continue
			}
		}
		next[s.Name] = a.specs[s.Name].Next(now)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]scheduleMetrics, 0, len(a.cfg.Schedules))
	for _, s := range a.cfg.Schedules {
		st := a.stats[s.Name]
		out = append(out, scheduleMetrics{
			Name: s.Name, Namespace: s.Namespace, StatefulSet: s.StatefulSet,
			Runs: st.runs, Failures: st.failures,
			LastSuccess: st.lastSuccess, LastDuration: st.lastDuration, LastBytes: st.lastBytes,
			Running: st.running, NextRun: next[s.Name],
		})
	}
	return out
}

// cronLogger routes robfig/cron's messages (skipped runs, recovered
// panics) to slog.
type cronLogger struct{ log *slog.Logger }

func (l cronLogger) Info(msg string, kv ...any) {
	if msg == "skip" {
		l.log.Warn("run skipped: the previous run of the schedule is still going")
		return
	}
	l.log.Debug("cron: "+msg, kv...)
}
func (l cronLogger) Error(err error, msg string, kv ...any) {
	l.log.Error("cron: "+msg, append([]any{"err", err}, kv...)...)
}
