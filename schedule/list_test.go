package schedule

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/kube"
)

// fakeLatest answers Latest from a map keyed namespace/statefulset.
type fakeLatest struct {
	latest map[string]*catalog.Manifest
	err    error
}

var _ LatestFinder = fakeLatest{}

func (f fakeLatest) Latest(_ context.Context, flt catalog.Filter) (*catalog.Manifest, error) {
	if f.err != nil {
		return nil, f.err
	}
	if m := f.latest[flt.Namespace+"/"+flt.StatefulSet]; m != nil {
		return m, nil
	}
	return nil, catalog.ErrBackupNotFound
}

// scheduledCronJob renders a schedule's CronJob as the API server would
// return it, created at created.
func scheduledCronJob(t *testing.T, ns, name, sts, cron string, created time.Time) *batchv1.CronJob {
	t.Helper()
	o := createOptions()
	o.Namespace, o.Name, o.StatefulSet, o.Cron = ns, name, sts, cron
	objs, err := Render(o)
	if err != nil {
		t.Fatal(err)
	}
	cj := cronJobOf(t, objs)
	cj.CreationTimestamp = metav1.NewTime(created)
	return cj
}

func TestList(t *testing.T) {
	now := utc("2026-11-22T08:30:00Z")
	created := utc("2026-11-01T00:00:00Z")
	unmanaged := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cleanup", Labels: map[string]string{"app": "shop"}}}
	objs := []runtime.Object{
		scheduledCronJob(t, "shop", "fresh", "mariadb", "0 * * * *", created),
		scheduledCronJob(t, "shop", "stale", "redis", "0 * * * *", created),
		scheduledCronJob(t, "blog", "never", "postgres", "@daily", created),
		unmanaged,
	}
	kc := fake.NewClientset(objs...)
	cat := fakeLatest{latest: map[string]*catalog.Manifest{
		"shop/mariadb": {ID: "mariadb-20261122T080005Z-aaaa", Created: utc("2026-11-22T08:00:05Z")},
		"shop/redis":   {ID: "redis-20261122T050005Z-bbbb", Created: utc("2026-11-22T05:00:05Z")},
	}}

	tests := []struct {
		name string
		ns   string
		cat  LatestFinder
		want map[string]bool // schedule name: overdue
	}{
		{"all namespaces", "", cat, map[string]bool{"fresh": false, "stale": true, "never": true}},
		{"one namespace", "shop", cat, map[string]bool{"fresh": false, "stale": true}},
		{"no catalog: nothing is overdue", "", nil, map[string]bool{"fresh": false, "stale": false, "never": false}},
		{"catalog unreadable: nothing is overdue", "", fakeLatest{err: errors.New("access denied")}, map[string]bool{"fresh": false, "stale": false, "never": false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := List(context.Background(), kc, tt.cat, tt.ns, now)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d schedules, want %d: %+v", len(got), len(tt.want), got)
			}
			for _, s := range got {
				overdue, ok := tt.want[s.Name]
				if !ok {
					t.Errorf("unexpected schedule %s/%s", s.Namespace, s.Name)
					continue
				}
				if s.Overdue != overdue {
					t.Errorf("%s: overdue %v, want %v", s.Name, s.Overdue, overdue)
				}
				if len(s.Next) != NextRunsShown || !s.Next[0].After(now) {
					t.Errorf("%s: next runs %v", s.Name, s.Next)
				}
				if s.Retention != "last 3, daily 7" || s.Repo != "s3://backups/prod" {
					t.Errorf("%s: retention %q", s.Name, s.Retention)
				}
			}
		})
	}

	got, err := List(context.Background(), kc, cat, "shop", now)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range got {
		if s.Name == "fresh" && (s.LastBackupID != "mariadb-20261122T080005Z-aaaa" || !s.Next[0].Equal(utc("2026-11-22T09:00:00Z"))) {
			t.Errorf("fresh: last %q next %v", s.LastBackupID, s.Next)
		}
	}
	var buf bytes.Buffer
	if err := WriteTable(&buf, got, now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"NEXT RUNS (UTC)", "2026-11-22 09:00, 2026-11-22 10:00, 2026-11-22 11:00", "mariadb-20261122T080005Z-aaaa (29m55s ago)", "YES"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
}

func TestStatusOfEditedSpec(t *testing.T) {
	now := utc("2026-11-22T08:30:00Z")
	cj := scheduledCronJob(t, "shop", "s", "mariadb", "@hourly", utc("2026-11-01T00:00:00Z"))
	cj.Spec.Schedule = "whenever"
	suspended := true
	s := statusOf(cj, nil, nil, true, now)
	if s.Error == "" || s.Overdue || len(s.Next) != 0 {
		t.Errorf("a spec edited into nonsense: %+v", s)
	}
	cj.Spec.Schedule = "@hourly"
	cj.Spec.Suspend = &suspended
	s = statusOf(cj, nil, nil, true, now)
	if s.Overdue || len(s.Next) != 0 || !s.Suspended {
		t.Errorf("a suspended schedule has no next runs and is never overdue: %+v", s)
	}
	if s.Name != "s" || s.StatefulSet != "mariadb" || cj.Labels[kube.LabelManagedBy] != kube.ManagedByValue {
		t.Errorf("labels: %+v", s)
	}
}
