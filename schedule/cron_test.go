package schedule

import (
	"strings"
	"testing"
	"time"
)

func TestParseSpec(t *testing.T) {
	tests := []struct {
		name, expr, tz     string
		wantExpr, wantZone string
		wantErr            string // substring; empty for success
		cronJobErr         string // substring of ParseCronJobSpec's error when it alone fails
	}{
		{name: "five fields", expr: "0 2 * * *", wantExpr: "0 2 * * *"},
		{name: "surrounding space", expr: "  */5 * * * 1-5 ", wantExpr: "*/5 * * * 1-5"},
		{name: "descriptor", expr: "@daily", wantExpr: "@daily"},
		{name: "time zone flag", expr: "0 2 * * *", tz: "Europe/Berlin", wantExpr: "0 2 * * *", wantZone: "Europe/Berlin"},
		{name: "CRON_TZ prefix", expr: "CRON_TZ=America/New_York 30 6 * * *", wantExpr: "30 6 * * *", wantZone: "America/New_York"},
		{name: "TZ prefix agreeing with the flag", expr: "TZ=Asia/Tokyo @hourly", tz: "Asia/Tokyo", wantExpr: "@hourly", wantZone: "Asia/Tokyo"},
		{name: "every, agent only", expr: "@every 1m", wantExpr: "@every 1m", cronJobErr: "does not run @every"},
		{name: "empty", expr: " ", wantErr: "cron spec is empty"},
		{name: "six fields", expr: "0 0 2 * * *", wantErr: "give five fields"},
		{name: "four fields", expr: "0 2 * *", wantErr: "give five fields"},
		{name: "minute out of range", expr: "61 * * * *", wantErr: `cron spec "61 * * * *"`},
		{name: "unknown descriptor", expr: "@fortnightly", wantErr: "give five fields"},
		{name: "bad every", expr: "@every soon", wantErr: "@every soon"},
		{name: "unknown zone", expr: "0 2 * * *", tz: "Mars/Olympus", wantErr: `time zone "Mars/Olympus" is not an IANA time zone name`},
		{name: "zones disagree", expr: "CRON_TZ=UTC 0 2 * * *", tz: "Europe/Berlin", wantErr: "give the zone once"},
		{name: "zone without a spec", expr: "CRON_TZ=UTC", wantErr: "needs a spec after the zone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSpec(tt.expr, tt.tz)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseSpec(%q, %q) error %v, want one containing %q", tt.expr, tt.tz, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error is not one line: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSpec(%q, %q): %v", tt.expr, tt.tz, err)
			}
			if s.Expr != tt.wantExpr || s.TimeZone != tt.wantZone {
				t.Errorf("got expr %q zone %q, want %q %q", s.Expr, s.TimeZone, tt.wantExpr, tt.wantZone)
			}
			_, err = ParseCronJobSpec(tt.expr, tt.tz)
			switch {
			case tt.cronJobErr == "" && err != nil:
				t.Errorf("ParseCronJobSpec: %v", err)
			case tt.cronJobErr != "" && (err == nil || !strings.Contains(err.Error(), tt.cronJobErr)):
				t.Errorf("ParseCronJobSpec error %v, want one containing %q", err, tt.cronJobErr)
			}
		})
	}
}

func mustSpec(t *testing.T, expr, tz string) Spec {
	t.Helper()
	s, err := ParseSpec(expr, tz)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestNextN(t *testing.T) {
	tests := []struct {
		name, expr, tz string
		now            string
		want           []string // RFC 3339 UTC
	}{
		{"daily at 2 UTC", "0 2 * * *", "", "2026-11-22T06:54:00Z",
			[]string{"2026-11-23T02:00:00Z", "2026-11-24T02:00:00Z", "2026-11-25T02:00:00Z"}},
		{"on the minute is not now", "*/15 * * * *", "", "2026-11-22T06:45:00Z",
			[]string{"2026-11-22T07:00:00Z", "2026-11-22T07:15:00Z", "2026-11-22T07:30:00Z"}},
		// Berlin is UTC+1 in winter and UTC+2 in summer; DST ends on
		// 2026-10-25.
		{"Berlin across the end of DST", "30 3 * * *", "Europe/Berlin", "2026-10-23T12:00:00Z",
			[]string{"2026-10-24T01:30:00Z", "2026-10-25T02:30:00Z", "2026-10-26T02:30:00Z"}},
		// 02:00 happens twice that night; robfig/cron, like the CronJob
		// controller, runs at both. A second backup is harmless.
		{"Berlin in the repeated hour", "0 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z",
			[]string{"2026-10-25T00:00:00Z", "2026-10-25T01:00:00Z", "2026-10-26T01:00:00Z"}},
		{"CRON_TZ prefix", "CRON_TZ=Asia/Tokyo 0 9 * * 1", "", "2026-11-22T00:00:00Z",
			[]string{"2026-11-23T00:00:00Z", "2026-11-30T00:00:00Z", "2026-12-07T00:00:00Z"}},
		{"every", "@every 90m", "", "2026-11-22T06:00:00Z",
			[]string{"2026-11-22T07:30:00Z", "2026-11-22T09:00:00Z", "2026-11-22T10:30:00Z"}},
		{"a date that never comes", "0 0 30 2 *", "", "2026-11-22T06:00:00Z", []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustSpec(t, tt.expr, tt.tz).NextN(utc(tt.now), 3)
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i := range got {
				if !got[i].Equal(utc(tt.want[i])) {
					t.Errorf("run %d: got %s, want %s", i, got[i].UTC().Format(time.RFC3339), tt.want[i])
				}
			}
		})
	}
}

func TestOverdue(t *testing.T) {
	hourly := "0 * * * *"
	tests := []struct {
		name             string
		expr             string
		last, since, now string // empty last: no Completed backup
		want             bool
	}{
		{"fresh success", hourly, "2026-11-22T06:00:05Z", "2026-11-01T00:00:00Z", "2026-11-22T06:30:00Z", false},
		{"one run missed", hourly, "2026-11-22T06:00:05Z", "2026-11-01T00:00:00Z", "2026-11-22T07:30:00Z", false},
		{"second run due, none newer", hourly, "2026-11-22T06:00:05Z", "2026-11-01T00:00:00Z", "2026-11-22T08:00:00Z", true},
		{"just before the second run", hourly, "2026-11-22T06:00:05Z", "2026-11-01T00:00:00Z", "2026-11-22T07:59:59Z", false},
		{"never, schedule new", hourly, "", "2026-11-22T06:10:00Z", "2026-11-22T07:05:00Z", false},
		{"never, two runs passed", hourly, "", "2026-11-22T06:10:00Z", "2026-11-22T08:00:00Z", true},
		{"old manual backup before the schedule", hourly, "2026-01-01T00:00:00Z", "2026-11-22T06:10:00Z", "2026-11-22T07:30:00Z", false},
		{"weekdays only: a weekend is not overdue", "0 2 * * 1-5", "2026-11-20T02:00:10Z", "2026-11-01T00:00:00Z", "2026-11-23T01:00:00Z", false},
		{"weekdays only: Monday and Tuesday missed", "0 2 * * 1-5", "2026-11-20T02:00:10Z", "2026-11-01T00:00:00Z", "2026-11-24T02:00:00Z", true},
		{"no creation time and no backup", hourly, "", "", "2026-11-22T08:00:00Z", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var last, since time.Time
			if tt.last != "" {
				last = utc(tt.last)
			}
			if tt.since != "" {
				since = utc(tt.since)
			}
			if got := mustSpec(t, tt.expr, "").Overdue(last, since, utc(tt.now)); got != tt.want {
				t.Errorf("Overdue = %v, want %v", got, tt.want)
			}
		})
	}
}
