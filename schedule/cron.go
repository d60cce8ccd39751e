package schedule

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/kbak/kbak/internal/hint"
)

// parser accepts what the Kubernetes CronJob controller accepts (five
// fields, @hourly-style descriptors) plus @every, which only the agent runs.
var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Spec is a parsed cron spec with its time zone.
type Spec struct {
	// Expr is the spec without any CRON_TZ= prefix.
	Expr string
	// TimeZone is the IANA name from --time-zone or CRON_TZ=; empty is UTC.
	TimeZone string
	Location *time.Location
	sched    cron.Schedule
}

// ParseSpec parses a cron spec: five fields (minute hour day-of-month month
// day-of-week), a descriptor (@yearly, @monthly, @weekly, @daily, @hourly)
// or @every DURATION, optionally prefixed with CRON_TZ=ZONE. tz is a time
// zone given apart from the spec (--time-zone); given both, they must agree.
func ParseSpec(expr, tz string) (Spec, error) {
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return Spec{}, errors.New("cron spec is empty: give five fields such as '0 2 * * *', or @daily")
	}
	s := Spec{Expr: expr, TimeZone: tz}
	for _, prefix := range []string{"CRON_TZ=", "TZ="} {
		if !strings.HasPrefix(expr, prefix) {
			continue
		}
		zone, rest, ok := strings.Cut(strings.TrimPrefix(expr, prefix), " ")
		if !ok {
			return Spec{}, fmt.Errorf("cron spec %q: %s needs a spec after the zone, e.g. '%sEurope/Berlin 0 2 * * *'", expr, prefix, prefix)
		}
		if tz != "" && tz != zone {
			return Spec{}, hint.Errorf("cron spec %q names time zone %s but %s is %s: give the zone once", expr, zone, hint.Of(hint.TimeZone), tz)
		}
		s.Expr, s.TimeZone = strings.TrimSpace(rest), zone
	}
	s.Location = time.UTC
	if s.TimeZone != "" {
		loc, err := time.LoadLocation(s.TimeZone)
		if err != nil {
			return Spec{}, fmt.Errorf("time zone %q is not an IANA time zone name such as Europe/Berlin or America/New_York", s.TimeZone)
		}
		s.Location = loc
	}
	sched, err := parser.Parse(s.Expr)
	if err != nil {
		return Spec{}, fmt.Errorf("cron spec %q: %v: give five fields (minute hour day-of-month month day-of-week) such as '0 2 * * *', or @hourly, @daily, @weekly, @monthly", s.Expr, err)
	}
	if ss, ok := sched.(*cron.SpecSchedule); ok {
		ss.Location = s.Location
	}
	s.sched = sched
	return s, nil
}

// ParseCronJobSpec parses a spec for a Kubernetes CronJob, which runs the
// five-field syntax and descriptors but not @every.
func ParseCronJobSpec(expr, tz string) (Spec, error) {
	s, err := ParseSpec(expr, tz)
	if err != nil {
		return s, err
	}
	if strings.HasPrefix(s.Expr, "@every") {
		return Spec{}, fmt.Errorf("cron spec %q: a Kubernetes CronJob does not run @every: write five fields, e.g. '*/30 * * * *' for every 30 minutes, or run it with `kbak agent`", s.Expr)
	}
	return s, nil
}

// Next returns the first activation after now.
func (s Spec) Next(now time.Time) time.Time { return s.sched.Next(now) }

// NextN returns the next n activations after now, in order.
func (s Spec) NextN(now time.Time, n int) []time.Time {
	out := make([]time.Time, 0, n)
	t := now
	for range n {
		t = s.sched.Next(t)
		if t.IsZero() {
			break // a spec that never fires again, such as Feb 30
		}
		out = append(out, t)
	}
	return out
}

// Overdue reports whether a schedule has missed its promise at now: at
// least two activations have passed since the last Completed backup, or
// since since (when the schedule was made) when that is later.
// One missed run is not overdue yet: the run may still be going, or the
// next one retries it.
func (s Spec) Overdue(lastSuccess, since, now time.Time) bool {
	// Activations before the schedule existed were never promised.
	from := lastSuccess
	if since.After(from) {
		from = since
	}
	if from.IsZero() {
		return false
	}
	t := from
	for range 2 {
		t = s.sched.Next(t)
		if t.IsZero() || t.After(now) {
			return false
		}
	}
	return true
}
