package schedule

import (
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// scheduleMetrics is one schedule's state as /metrics reports it.
type scheduleMetrics struct {
	Name, Namespace, StatefulSet string
	Runs, Failures               int64
	LastSuccess                  time.Time // zero: none known
	LastDuration                 time.Duration
	LastBytes                    int64
	Running                      bool
	NextRun                      time.Time
}

// scheduleLabels label every sample of a schedule's families.
var scheduleLabels = []string{"schedule", "namespace", "statefulset"}

type metricFamily struct {
	desc  *prometheus.Desc
	typ   prometheus.ValueType
	value func(scheduleMetrics) (float64, bool) // false: no sample
}

func family(name, help string, typ prometheus.ValueType, value func(scheduleMetrics) (float64, bool)) metricFamily {
	return metricFamily{prometheus.NewDesc(name, help, scheduleLabels, nil), typ, value}
}

var metricFamilies = []metricFamily{
	family("kbak_schedule_runs_total", "Backup runs the agent started and finished, successful or not.", prometheus.CounterValue,
		func(m scheduleMetrics) (float64, bool) { return float64(m.Runs), true }),
	family("kbak_schedule_failures_total", "Backup runs that failed.", prometheus.CounterValue,
		func(m scheduleMetrics) (float64, bool) { return float64(m.Failures), true }),
	// Absent until a success is known, so an alert on time() minus it
	// cannot fire on a zero that means "unknown". At start the agent
	// fills it from the repository's newest Completed backup.
	family("kbak_schedule_last_success_timestamp_seconds", "Unix time the last successful backup finished.", prometheus.GaugeValue,
		func(m scheduleMetrics) (float64, bool) {
			return float64(m.LastSuccess.UnixNano()) / 1e9, !m.LastSuccess.IsZero()
		}),
	family("kbak_schedule_last_duration_seconds", "Duration of the last backup run, successful or not.", prometheus.GaugeValue,
		func(m scheduleMetrics) (float64, bool) { return m.LastDuration.Seconds(), m.Runs > 0 }),
	family("kbak_schedule_last_bytes", "Bytes the last successful backup stored in the repository.", prometheus.GaugeValue,
		func(m scheduleMetrics) (float64, bool) { return float64(m.LastBytes), !m.LastSuccess.IsZero() }),
	family("kbak_schedule_running", "1 while a backup of the schedule runs.", prometheus.GaugeValue,
		func(m scheduleMetrics) (float64, bool) {
			if m.Running {
				return 1, true
			}
			return 0, true
		}),
	family("kbak_schedule_next_run_timestamp_seconds", "Unix time of the next scheduled run.", prometheus.GaugeValue,
		func(m scheduleMetrics) (float64, bool) { return float64(m.NextRun.Unix()), !m.NextRun.IsZero() }),
}

// scheduleCollector renders the agent's schedules at every scrape.
type scheduleCollector struct{ a *Agent }

func (c scheduleCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, f := range metricFamilies {
		ch <- f.desc
	}
}

func (c scheduleCollector) Collect(ch chan<- prometheus.Metric) {
	list := c.a.snapshot()
	for _, f := range metricFamilies {
		for _, m := range list {
			if v, ok := f.value(m); ok {
				ch <- prometheus.MustNewConstMetric(f.desc, f.typ, v, m.Name, m.Namespace, m.StatefulSet)
			}
		}
	}
}

// registry holds the agent's metrics: its schedules, kbak_build_info, and
// the Go runtime's and the process's.
func (a *Agent) registry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "kbak_build_info",
		Help:        "Always 1; its labels name the kbak version and the Go version it was built with.",
		ConstLabels: prometheus.Labels{"version": a.Version, "goversion": runtime.Version()},
	})
	build.Set(1)
	reg.MustRegister(scheduleCollector{a}, build,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// metricsHandler serves the registry in the format the scraper asks for
// (the text format by default).
func metricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
