package schedule

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// metricsContentType is version 0.0.4 of the Prometheus text exposition
// format, which every scraper reads.
const metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// scheduleMetrics is one schedule's state as /metrics reports it.
type scheduleMetrics struct {
	Name, Namespace, StatefulSet string
	Runs, Failures               int64
	LastSuccess                  time.Time // zero: none since the agent started
	LastDuration                 time.Duration
	LastBytes                    int64
	Running                      bool
	NextRun                      time.Time
}

type metricFamily struct {
	name, help, typ string
	value           func(scheduleMetrics) (float64, bool) // false: no sample
}

var metricFamilies = []metricFamily{
	{"kbak_schedule_runs_total", "Backup runs the agent started and finished, successful or not.", "counter",
		func(m scheduleMetrics) (float64, bool) { return float64(m.Runs), true }},
	{"kbak_schedule_failures_total", "Backup runs that failed.", "counter",
		func(m scheduleMetrics) (float64, bool) { return float64(m.Failures), true }},
	// Absent until the first success, so an alert on time() minus it
	// cannot fire on a zero that means "unknown".
	{"kbak_schedule_last_success_timestamp_seconds", "Unix time the last successful backup finished.", "gauge",
		func(m scheduleMetrics) (float64, bool) {
			return float64(m.LastSuccess.UnixNano()) / 1e9, !m.LastSuccess.IsZero()
		}},
	{"kbak_schedule_last_duration_seconds", "Duration of the last backup run, successful or not.", "gauge",
		func(m scheduleMetrics) (float64, bool) { return m.LastDuration.Seconds(), m.Runs > 0 }},
	{"kbak_schedule_last_bytes", "Bytes the last successful backup stored in the repository.", "gauge",
		func(m scheduleMetrics) (float64, bool) { return float64(m.LastBytes), !m.LastSuccess.IsZero() }},
	{"kbak_schedule_running", "1 while a backup of the schedule runs.", "gauge",
		func(m scheduleMetrics) (float64, bool) {
			if m.Running {
				return 1, true
			}
			return 0, true
		}},
	{"kbak_schedule_next_run_timestamp_seconds", "Unix time of the next scheduled run.", "gauge",
		func(m scheduleMetrics) (float64, bool) { return float64(m.NextRun.Unix()), !m.NextRun.IsZero() }},
}

// writeMetrics renders the schedules in the Prometheus text format: each
// family once with its HELP and TYPE, one sample per schedule labelled
// schedule, namespace and statefulset.
func writeMetrics(w io.Writer, list []scheduleMetrics) error {
	bw := bufio.NewWriter(w)
	for _, f := range metricFamilies {
		fmt.Fprintf(bw, "# HELP %s %s\n# TYPE %s %s\n", f.name, f.help, f.name, f.typ)
		for _, m := range list {
			v, ok := f.value(m)
			if !ok {
				continue
			}
			fmt.Fprintf(bw, "%s{schedule=\"%s\",namespace=\"%s\",statefulset=\"%s\"} %s\n",
				f.name, escapeLabel(m.Name), escapeLabel(m.Namespace), escapeLabel(m.StatefulSet), strconv.FormatFloat(v, 'g', -1, 64))
		}
	}
	return bw.Flush()
}

// escapeLabel escapes a label value as the text format requires.
var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }
