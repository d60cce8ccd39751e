package schedule

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/kube"
)

// NextRunsShown is how many upcoming runs `schedule list` computes.
const NextRunsShown = 3

// Status is one schedule as `kbak schedule list` shows it.
type Status struct {
	Name         string      `json:"name"`
	Namespace    string      `json:"namespace"`
	StatefulSet  string      `json:"statefulSet"`
	Cron         string      `json:"cron"`
	TimeZone     string      `json:"timeZone,omitempty"`
	Suspended    bool        `json:"suspended,omitempty"`
	Retention    string      `json:"retention,omitempty"`
	Repo         string      `json:"repo,omitempty"` // where the schedule's backups go
	Created      time.Time   `json:"created"`
	Next         []time.Time `json:"next,omitempty"`
	LastSchedule *time.Time  `json:"lastSchedule,omitempty"` // the CronJob controller's last start
	LastSuccess  *time.Time  `json:"lastSuccess,omitempty"`  // the newest Completed backup in the catalog
	LastBackupID string      `json:"lastBackupId,omitempty"`
	Overdue      bool        `json:"overdue"`
	// Error says why a field could not be computed (a spec edited by hand,
	// an unreadable catalog); the rest is still shown.
	Error string `json:"error,omitempty"`
}

// List returns the schedules in ns ("" for all namespaces), found as
// CronJobs labelled kbak.io/schedule, each with its next runs and its last
// Completed backup in cat at now. cat may be nil when no repository is
// configured; the last success is then unknown and nothing is overdue.
func List(ctx context.Context, kc kubernetes.Interface, cat LatestFinder, ns string, now time.Time) ([]Status, error) {
	l, err := kc.BatchV1().CronJobs(ns).List(ctx, metav1.ListOptions{LabelSelector: kube.SchedulesSelector()})
	if err != nil {
		where := "namespace " + ns
		if ns == "" {
			where = "all namespaces"
		}
		return nil, fmt.Errorf("list CronJobs of kbak schedules in %s: %w", where, err)
	}
	out := make([]Status, 0, len(l.Items))
	for i := range l.Items {
		cj := &l.Items[i]
		var last *catalog.Manifest
		var lastErr error
		if cat != nil && cj.Labels[kube.LabelStatefulSet] != "" {
			last, lastErr = cat.Latest(ctx, catalog.Filter{Namespace: cj.Namespace, StatefulSet: cj.Labels[kube.LabelStatefulSet]})
			if errors.Is(lastErr, catalog.ErrBackupNotFound) {
				last, lastErr = nil, nil
			}
		}
		out = append(out, statusOf(cj, last, lastErr, cat != nil, now))
	}
	return out, nil
}

// statusOf is a pure function of the CronJob, the newest Completed backup
// (nil for none) and now.
func statusOf(cj *batchv1.CronJob, last *catalog.Manifest, lastErr error, haveCatalog bool, now time.Time) Status {
	s := Status{
		Name:        cj.Labels[kube.LabelSchedule],
		Namespace:   cj.Namespace,
		StatefulSet: cj.Labels[kube.LabelStatefulSet],
		Cron:        cj.Spec.Schedule,
		Retention:   cj.Annotations[kube.AnnotationRetention],
		Repo:        cj.Annotations[kube.AnnotationRepo],
		Created:     cj.CreationTimestamp.Time,
		Suspended:   cj.Spec.Suspend != nil && *cj.Spec.Suspend,
	}
	if cj.Spec.TimeZone != nil {
		s.TimeZone = *cj.Spec.TimeZone
	}
	if t := cj.Status.LastScheduleTime; t != nil {
		v := t.Time
		s.LastSchedule = &v
	}
	var problems []string
	if last != nil {
		v := last.Created
		s.LastSuccess, s.LastBackupID = &v, last.ID
	}
	if lastErr != nil {
		problems = append(problems, "last backup unknown: "+lastErr.Error())
	}
	spec, err := ParseSpec(s.Cron, s.TimeZone)
	if err != nil {
		problems = append(problems, err.Error())
	} else {
		if !s.Suspended {
			s.Next = spec.NextN(now, NextRunsShown)
		}
		if haveCatalog && lastErr == nil && !s.Suspended {
			var lastSuccess time.Time
			if s.LastSuccess != nil {
				lastSuccess = *s.LastSuccess
			}
			s.Overdue = spec.Overdue(lastSuccess, s.Created, now)
		}
	}
	s.Error = strings.Join(problems, "; ")
	return s
}

// WriteTable prints schedules as a table; times are UTC, relative ones
// counted from now.
func WriteTable(w io.Writer, list []Status, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tNAME\tSTATEFULSET\tCRON\tRETENTION\tNEXT RUNS (UTC)\tLAST SUCCESS\tOVERDUE")
	for _, s := range list {
		cron := s.Cron
		if s.TimeZone != "" {
			cron += " (" + s.TimeZone + ")"
		}
		next := "suspended"
		if !s.Suspended {
			parts := make([]string, len(s.Next))
			for i, t := range s.Next {
				parts[i] = t.UTC().Format("2006-01-02 15:04")
			}
			next = strings.Join(parts, ", ")
		}
		last := "never"
		if s.LastSuccess != nil {
			last = fmt.Sprintf("%s (%s ago)", s.LastBackupID, now.Sub(*s.LastSuccess).Truncate(time.Second))
		}
		overdue := "no"
		if s.Overdue {
			overdue = "YES"
		}
		if s.Error != "" {
			overdue += " (" + s.Error + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Namespace, s.Name, s.StatefulSet, cron, s.Retention, next, last, overdue)
	}
	return tw.Flush()
}
