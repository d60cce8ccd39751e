//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	authv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kbak/kbak/backup"
	"github.com/kbak/kbak/deploy"
	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/kube"
	"github.com/kbak/kbak/internal/seal"
	"github.com/kbak/kbak/schedule"
)

// The CLI surface these tests drive:
//
//	kbak schedule create NAME sts/X -n NS --cron SPEC [--time-zone TZ] --secret S --keep-last N
//	                     [--image IMG] [--dry-run=client -o yaml]
//	kbak schedule list -n NS -o json
//	kbak schedule delete NAME -n NS
//	kbak agent --config FILE
//	kbak deploy agent --config FILE --namespace NS --image IMG

const storeSecret = "kbak-store"

// createStoreSecret writes the bed's S3 credentials into a Secret in ns, as
// an operator does before scheduling backups.
func createStoreSecret(t *testing.T, e *env, ns string) {
	t.Helper()
	id, key := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
	if id == "" || key == "" {
		t.Fatal("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set: source $KBAK_E2E_DIR/env.sh")
	}
	_, err := e.Kube.CoreV1().Secrets(ns).Create(ctx(t), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: storeSecret, Namespace: ns},
		StringData: map[string]string{deploy.KeyAccessKeyID: id, deploy.KeySecretAccessKey: key},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// createSchedule runs `kbak schedule create` and makes sure the schedule's
// cluster-scoped objects go when the test ends, whatever happened.
func createSchedule(t *testing.T, e *env, ns, name, sts, cron string, args ...string) {
	t.Helper()
	t.Cleanup(func() { deleteClusterObjects(t, e, ns) })
	r := runKbak(t, e, append([]string{"schedule", "create", name, "sts/" + sts, "-n", ns, "--cron", cron,
		"--secret", storeSecret, "--image", e.KbakImage}, args...)...)
	if r.code != 0 {
		t.Fatalf("kbak schedule create: %s", r)
	}
}

// deleteClusterObjects removes the ClusterRoles and ClusterRoleBindings of
// every schedule in ns, which the namespace's deletion does not take.
func deleteClusterObjects(t *testing.T, e *env, ns string) {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sel := metav1.ListOptions{LabelSelector: kube.LabelScheduleNamespace + "=" + ns}
	if err := e.Kube.RbacV1().ClusterRoleBindings().DeleteCollection(c, metav1.DeleteOptions{}, sel); err != nil {
		t.Logf("delete ClusterRoleBindings of %s: %v", ns, err)
	}
	if err := e.Kube.RbacV1().ClusterRoles().DeleteCollection(c, metav1.DeleteOptions{}, sel); err != nil {
		t.Logf("delete ClusterRoles of %s: %v", ns, err)
	}
}

// completedBackups lists the Completed backups of ns/sts, newest first.
func completedBackups(c context.Context, cat *catalog.Catalog, ns, sts string) ([]catalog.Summary, error) {
	list, err := cat.List(c, catalog.Filter{Namespace: ns, StatefulSet: sts})
	if err != nil {
		return nil, err
	}
	var out []catalog.Summary
	for _, b := range list {
		if b.Status == catalog.StatusCompleted {
			out = append(out, b)
		}
	}
	return out, nil
}

// scheduleJobs are the Jobs the CronJob controller made for schedule name.
func scheduleJobs(c context.Context, e *env, ns, name string) ([]batchv1.Job, error) {
	l, err := e.Kube.BatchV1().Jobs(ns).List(c, metav1.ListOptions{LabelSelector: kube.LabelSchedule + "=" + name})
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

func failedJobs(jobs []batchv1.Job) []string {
	var out []string
	for _, j := range jobs {
		if j.Status.Failed > 0 {
			out = append(out, j.Name)
		}
	}
	return out
}

// TestScheduleCronJobBackup: a schedule runs `kbak backup` through the real
// CronJob controller, in a pod running as the schedule's ServiceAccount.
func TestScheduleCronJobBackup(t *testing.T) {
	t.Parallel() // waits for CronJob runs: beside the other waiters
	e := newEnv(t)
	ns := createNamespace(t, e, "sch-cron")
	applyStatefulSet(t, e, ns, "db", 1, e.SnapClass)
	createStoreSecret(t, e, ns)
	cat := catalog.New(store(t, e), seal.Key{})
	createSchedule(t, e, ns, "minutely", "db", "*/1 * * * *", "--keep-last", "3")

	var got catalog.Summary
	waitFor(t, "a Completed backup made by the CronJob", 3*time.Minute, func(c context.Context) (string, bool, error) {
		jobs, err := scheduleJobs(c, e, ns, "minutely")
		if err != nil {
			return "", false, err
		}
		if f := failedJobs(jobs); len(f) > 0 {
			return "", false, fmt.Errorf("scheduled Jobs failed: %v", f)
		}
		list, err := completedBackups(c, cat, ns, "db")
		if err != nil {
			return "", false, err
		}
		if len(list) == 0 {
			return fmt.Sprintf("%d Jobs, no backup yet", len(jobs)), false, nil
		}
		got = list[0]
		return got.ID, true, nil
	})

	pods, err := e.Kube.CoreV1().Pods(ns).List(ctx(t), metav1.ListOptions{LabelSelector: kube.LabelSchedule + "=minutely"})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) == 0 {
		t.Fatal("no pod of the schedule's Jobs")
	}
	for _, p := range pods.Items {
		if p.Spec.ServiceAccountName != "kbak-minutely" {
			t.Errorf("pod %s runs as %q, want the schedule's ServiceAccount kbak-minutely", p.Name, p.Spec.ServiceAccountName)
		}
	}
	m, err := cat.Get(ctx(t), got.ID)
	if err != nil {
		t.Fatal(err)
	}
	if m.ClusterID == "" {
		t.Error("the scheduled backup has no cluster id: the ServiceAccount cannot read namespace kube-system")
	}
	// The run recorded itself on the StatefulSet, with the schedule's
	// confined ServiceAccount.
	// The run records it as it ends, after its clean-up, which may wait
	// for the snapshot to be gone: later than the manifest.
	waitFor(t, "the run's "+backup.ReasonCompleted+" Event on the StatefulSet", 4*time.Minute, func(c context.Context) (string, bool, error) {
		evs, err := e.Kube.CoreV1().Events(ns).List(c, metav1.ListOptions{
			FieldSelector: "involvedObject.kind=StatefulSet,involvedObject.name=db,reason=" + backup.ReasonCompleted})
		if err != nil {
			return "", false, err
		}
		return fmt.Sprintf("%d events", len(evs.Items)),
			slices.ContainsFunc(evs.Items, func(ev corev1.Event) bool { return strings.Contains(ev.Message, got.ID) }), nil
	})

	// schedule list shows it with its next runs and the backup.
	r := runKbak(t, e, "schedule", "list", "-n", ns, "-o", "json")
	if r.code != 0 {
		t.Fatalf("kbak schedule list: %s", r)
	}
	var list []schedule.Status
	if err := decodeList(r, "ScheduleList", &list); err != nil {
		t.Fatalf("decode schedule list: %v\n%s", err, r.stdout)
	}
	if len(list) != 1 || list[0].Name != "minutely" || list[0].StatefulSet != "db" || len(list[0].Next) == 0 ||
		list[0].LastSuccess == nil || list[0].LastBackupID == "" || list[0].Overdue {
		t.Errorf("schedule list: %+v", list)
	}
}

// TestScheduleServiceAccountIsConfined: the schedule's ServiceAccount may do
// what a backup does in its namespace and nothing in another.
func TestScheduleServiceAccountIsConfined(t *testing.T) {
	e := newEnv(t)
	ns := createNamespace(t, e, "sch-rbac")
	other := createNamespace(t, e, "sch-rbac-other")
	applyStatefulSet(t, e, ns, "db", 1, e.SnapClass, withoutWait())
	createStoreSecret(t, e, ns)
	createStoreSecret(t, e, other)
	// A schedule that never fires on its own: only its permissions matter.
	createSchedule(t, e, ns, "confined", "db", "0 0 1 1 *", "--keep-last", "1")
	user := "system:serviceaccount:" + ns + ":kbak-confined"

	tests := []struct {
		verb, group, resource, namespace, name string
		allowed                                bool
	}{
		{"get", "", "secrets", ns, storeSecret, true},
		{"create", "", "pods", ns, "", true},
		{"list", "", "persistentvolumeclaims", ns, "", true},
		{"create", "snapshot.storage.k8s.io", "volumesnapshots", ns, "", true},
		{"get", "", "namespaces", "", "kube-system", true},
		// its own namespace's Pod Security level, and no other's
		{"get", "", "namespaces", ns, ns, true},
		{"get", "", "namespaces", other, other, false},
		{"get", "", "secrets", other, storeSecret, false},
		{"list", "", "secrets", other, "", false},
		{"list", "", "persistentvolumeclaims", other, "", false},
		{"get", "", "persistentvolumeclaims", other, "data-db-0", false},
		{"create", "", "pods", other, "", false},
		{"list", "", "secrets", ns, "", false},
		{"create", "", "secrets", ns, "", false},
		{"get", "", "secrets", ns, "default-token", false},
		{"create", "", "pods/exec", ns, "db-0", false}, // no hooks configured
		{"delete", "apps", "statefulsets", ns, "db", false},
	}
	for _, tt := range tests {
		review, err := e.Kube.AuthorizationV1().SubjectAccessReviews().Create(ctx(t), &authv1.SubjectAccessReview{Spec: authv1.SubjectAccessReviewSpec{
			User:   user,
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
			ResourceAttributes: &authv1.ResourceAttributes{
				Verb: tt.verb, Group: tt.group, Resource: strings.Split(tt.resource, "/")[0], Subresource: subresource(tt.resource),
				Namespace: tt.namespace, Name: tt.name,
			},
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if review.Status.Allowed != tt.allowed {
			t.Errorf("%s %s %s in %q name %q: allowed %v, want %v (%s)", user, tt.verb, tt.resource, tt.namespace, tt.name, review.Status.Allowed, tt.allowed, review.Status.Reason)
		}
	}

	// The same through real requests made as the ServiceAccount.
	cfg := rest.CopyConfig(e.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}}
	as, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := as.CoreV1().Secrets(other).Get(ctx(t), storeSecret, metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("reading Secret %s/%s as the schedule: %v, want Forbidden", other, storeSecret, err)
	}
	if _, err := as.CoreV1().PersistentVolumeClaims(other).List(ctx(t), metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("listing PVCs of %s as the schedule: %v, want Forbidden", other, err)
	}
	if _, err := as.CoreV1().Secrets(ns).Get(ctx(t), storeSecret, metav1.GetOptions{}); err != nil {
		t.Errorf("reading its own Secret %s/%s as the schedule: %v", ns, storeSecret, err)
	}
	if _, err := as.AppsV1().StatefulSets(ns).Get(ctx(t), "db", metav1.GetOptions{}); err != nil {
		t.Errorf("reading StatefulSet %s/db as the schedule: %v", ns, err)
	}
}

func subresource(resource string) string {
	_, sub, _ := strings.Cut(resource, "/")
	return sub
}

// TestScheduleRetention: across several scheduled runs the repository holds
// exactly what the policy keeps, never losing the newest backup.
func TestScheduleRetention(t *testing.T) {
	t.Parallel() // waits for CronJob runs: beside the other waiters
	e := newEnv(t)
	ns := createNamespace(t, e, "sch-keep")
	applyStatefulSet(t, e, ns, "db", 1, e.SnapClass)
	createStoreSecret(t, e, ns)
	cat := catalog.New(store(t, e), seal.Key{})
	createSchedule(t, e, ns, "keep2", "db", "*/1 * * * *", "--keep-last", "2")

	seen := map[string]time.Time{}
	waitFor(t, "three scheduled backups", 6*time.Minute, func(c context.Context) (string, bool, error) {
		jobs, err := scheduleJobs(c, e, ns, "keep2")
		if err != nil {
			return "", false, err
		}
		if f := failedJobs(jobs); len(f) > 0 {
			return "", false, fmt.Errorf("scheduled Jobs failed: %v", f)
		}
		list, err := completedBackups(c, cat, ns, "db")
		if err != nil {
			return "", false, err
		}
		if len(list) > 2 {
			// Prune runs right after each backup; three for a moment
			// is fine, but only while a Job is still running.
			active := slices.ContainsFunc(jobs, func(j batchv1.Job) bool { return j.Status.Active > 0 })
			if !active {
				return "", false, fmt.Errorf("%d Completed backups with no run going, policy keeps 2: %v", len(list), list)
			}
		}
		for _, b := range list {
			seen[b.ID] = b.Created
		}
		return fmt.Sprintf("%d distinct backups seen", len(seen)), len(seen) >= 3, nil
	})

	// Let the last run finish its pruning, then stop the schedule.
	waitFor(t, "no scheduled run going", 3*time.Minute, func(c context.Context) (string, bool, error) {
		jobs, err := scheduleJobs(c, e, ns, "keep2")
		if err != nil {
			return "", false, err
		}
		return fmt.Sprintf("%d Jobs", len(jobs)), !slices.ContainsFunc(jobs, func(j batchv1.Job) bool { return j.Status.Active > 0 }), nil
	})
	if r := runKbak(t, e, "schedule", "delete", "keep2", "-n", ns); r.code != 0 {
		t.Fatalf("kbak schedule delete: %s", r)
	}
	list, err := completedBackups(ctx(t), cat, ns, "db")
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for id := range seen {
		all = append(all, id)
	}
	for _, b := range list {
		if _, ok := seen[b.ID]; !ok {
			all = append(all, b.ID)
			seen[b.ID] = b.Created
		}
	}
	// Backup ids sort by time.
	slices.Sort(all)
	want := all[len(all)-2:]
	var got []string
	for _, b := range list {
		got = append(got, b.ID)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("the repository keeps %v, want the newest two of %v", got, all)
	}
}

// TestScheduleAgent: `kbak agent` on the host runs an @every schedule and
// /metrics reports the backup.
func TestScheduleAgent(t *testing.T) {
	t.Parallel() // waits more than it works: beside the other waiters
	e := newEnv(t)
	ns := createNamespace(t, e, "sch-agent")
	applyStatefulSet(t, e, ns, "db", 1, e.SnapClass)
	createStoreSecret(t, e, ns)
	cat := catalog.New(store(t, e), seal.Key{})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := fmt.Sprintf(`listen: %q
repo: %q
secret: %s
schedules:
- name: agent-e2e
  statefulset: db
  namespace: %s
  cron: "@every 1m"
  keepLast: 3
`, addr, e.Repo, storeSecret, ns)
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd, _, stderr := kbakCmd(t, e, "agent", "--config", path)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		t.Logf("kbak agent stderr:\n%s", indent(stderr.String()))
	})

	metric := func(c context.Context, name string) (float64, bool, error) {
		req, _ := http.NewRequestWithContext(c, http.MethodGet, "http://"+addr+"/metrics", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, false, nil // not listening yet
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return 0, false, err
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			return 0, false, fmt.Errorf("/metrics content type %q", ct)
		}
		if !bytes.Contains(body, []byte("# TYPE "+name+" ")) {
			// A family without samples is not exposed: the last success's
			// until there is one. The counters always are.
			if strings.HasSuffix(name, "_total") {
				return 0, false, fmt.Errorf("/metrics has no TYPE line for %s:\n%s", name, body)
			}
			return 0, false, nil
		}
		re := regexp.MustCompile(`(?m)^` + name + `\{namespace="` + ns + `",schedule="agent-e2e",statefulset="db"\} (\S+)$`)
		mm := re.FindSubmatch(body)
		if mm == nil {
			return 0, false, nil
		}
		v, err := strconv.ParseFloat(string(mm[1]), 64)
		return v, err == nil, err
	}
	started := time.Now()
	waitFor(t, "a successful run in the agent's /metrics", 4*time.Minute, func(c context.Context) (string, bool, error) {
		if f, ok, err := metric(c, "kbak_schedule_failures_total"); err != nil || ok && f > 0 {
			return "", false, fmt.Errorf("the agent's run failed (failures %v, %v): see its stderr below", f, err)
		}
		ts, ok, err := metric(c, "kbak_schedule_last_success_timestamp_seconds")
		if err != nil || !ok {
			return "no success yet", false, err
		}
		return "success at " + time.Unix(int64(ts), 0).UTC().String(), ts >= float64(started.Unix()), nil
	})
	if b, ok, err := metric(ctx(t), "kbak_schedule_last_bytes"); err != nil || !ok || b <= 0 {
		t.Errorf("kbak_schedule_last_bytes %v %v %v, want the bytes stored", b, ok, err)
	}
	if runs, ok, err := metric(ctx(t), "kbak_schedule_runs_total"); err != nil || !ok || runs < 1 {
		t.Errorf("kbak_schedule_runs_total %v %v %v", runs, ok, err)
	}
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz: %v %v", resp, err)
	}
	if resp != nil {
		resp.Body.Close()
	}
	list, err := completedBackups(ctx(t), cat, ns, "db")
	if err != nil || len(list) == 0 {
		t.Fatalf("no Completed backup in the repository after the agent's run: %v", err)
	}

	r := sigint(t, cmd, func() bool { return true })
	stopped = true
	if r.code != 0 && r.code != 130 {
		t.Errorf("kbak agent exited %d after SIGINT, want 0 or 130", r.code)
	}
	noLeftovers(t, e, ns, false)
}

// TestScheduleErrors: bad input is one clear line, and nothing is created.
func TestScheduleErrors(t *testing.T) {
	e := newEnv(t)
	ns := createNamespace(t, e, "sch-errors")
	applyStatefulSet(t, e, ns, "db", 1, e.SnapClass, withoutWait())
	createStoreSecret(t, e, ns)
	t.Cleanup(func() { deleteClusterObjects(t, e, ns) })

	tests := []struct {
		name     string
		args     []string
		contains []string
	}{
		{"bad cron spec", []string{"--cron", "every night", "--secret", storeSecret, "--keep-last", "1"}, []string{"cron spec", "every night"}},
		{"six fields", []string{"--cron", "0 0 2 * * *", "--secret", storeSecret, "--keep-last", "1"}, []string{"five fields"}},
		{"@every for a CronJob", []string{"--cron", "@every 5m", "--secret", storeSecret, "--keep-last", "1"}, []string{"@every", "kbak agent"}},
		{"unknown time zone", []string{"--cron", "@daily", "--time-zone", "Mars/Olympus", "--secret", storeSecret, "--keep-last", "1"}, []string{"Mars/Olympus"}},
		{"missing Secret", []string{"--cron", "@daily", "--secret", "nope", "--keep-last", "1"}, []string{"secret " + ns + "/nope not found"}},
		{"no retention policy", []string{"--cron", "@daily", "--secret", storeSecret}, []string{"keep"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runKbak(t, e, append([]string{"schedule", "create", "bad", "sts/db", "-n", ns}, tt.args...)...)
			if r.code == 0 {
				t.Fatalf("kbak schedule create succeeded: %s", r)
			}
			lastErrorLine(t, r, tt.contains...)
		})
	}
	t.Run("unknown StatefulSet", func(t *testing.T) {
		r := runKbak(t, e, "schedule", "create", "bad", "sts/nope", "-n", ns, "--cron", "@daily", "--secret", storeSecret, "--keep-last", "1")
		if r.code == 0 {
			t.Fatalf("kbak schedule create succeeded: %s", r)
		}
		lastErrorLine(t, r, "nope", "not found")
	})
	t.Run("delete an unknown schedule", func(t *testing.T) {
		r := runKbak(t, e, "schedule", "delete", "nope", "-n", ns)
		if r.code == 0 {
			t.Fatalf("kbak schedule delete succeeded: %s", r)
		}
		lastErrorLine(t, r, "nope")
	})
	if left := scheduleObjects(t, e, ns, "bad"); len(left) > 0 {
		t.Errorf("failed creates left %v", left)
	}
}

// scheduleObjects lists every object of schedule name in ns, namespaced and
// cluster-scoped, plus Jobs and pods of its runs.
func scheduleObjects(t *testing.T, e *env, ns, name string) []string {
	t.Helper()
	c := ctx(t)
	sel := metav1.ListOptions{LabelSelector: kube.LabelSchedule + "=" + name}
	csel := metav1.ListOptions{LabelSelector: kube.ScheduleSelector(ns, name)}
	var out []string
	add := func(kind string, names []string, err error) {
		if err != nil {
			t.Fatalf("list %s: %v", kind, err)
		}
		for _, n := range names {
			out = append(out, kind+"/"+n)
		}
	}
	cj, err := e.Kube.BatchV1().CronJobs(ns).List(c, sel)
	add("cronjob", objectNames(cj, err), err)
	jobs, err := e.Kube.BatchV1().Jobs(ns).List(c, sel)
	add("job", objectNames(jobs, err), err)
	pods, err := e.Kube.CoreV1().Pods(ns).List(c, sel)
	add("pod", objectNames(pods, err), err)
	sa, err := e.Kube.CoreV1().ServiceAccounts(ns).List(c, sel)
	add("serviceaccount", objectNames(sa, err), err)
	roles, err := e.Kube.RbacV1().Roles(ns).List(c, sel)
	add("role", objectNames(roles, err), err)
	rbs, err := e.Kube.RbacV1().RoleBindings(ns).List(c, sel)
	add("rolebinding", objectNames(rbs, err), err)
	crs, err := e.Kube.RbacV1().ClusterRoles().List(c, csel)
	add("clusterrole", objectNames(crs, err), err)
	crbs, err := e.Kube.RbacV1().ClusterRoleBindings().List(c, csel)
	add("clusterrolebinding", objectNames(crbs, err), err)
	return out
}

// objectNames returns the names of a typed list's items.
func objectNames(list runtime.Object, err error) []string {
	if err != nil {
		return nil
	}
	items, err := meta.ExtractList(list)
	if err != nil {
		return []string{"(" + err.Error() + ")"}
	}
	var out []string
	for _, i := range items {
		if m, err := meta.Accessor(i); err == nil {
			out = append(out, m.GetName())
		}
	}
	return out
}

// TestScheduleDeleteLeavesNothing: delete removes exactly what create made,
// Jobs and pods of past runs included, and nothing else; --dry-run=client
// creates nothing.
func TestScheduleDeleteLeavesNothing(t *testing.T) {
	t.Parallel() // waits for CronJob runs: beside the other waiters
	e := newEnv(t)
	ns := createNamespace(t, e, "sch-delete")
	applyStatefulSet(t, e, ns, "db", 1, e.SnapClass)
	createStoreSecret(t, e, ns)

	r := runKbak(t, e, "schedule", "create", "dry", "sts/db", "-n", ns, "--cron", "@daily", "--secret", storeSecret,
		"--keep-last", "1", "--dry-run=client", "-o", "yaml")
	if r.code != 0 {
		t.Fatalf("dry run: %s", r)
	}
	for _, kind := range []string{"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "CronJob"} {
		if !strings.Contains(r.stdout, "kind: "+kind+"\n") {
			t.Errorf("dry run prints no %s:\n%s", kind, r.stdout)
		}
	}
	if left := scheduleObjects(t, e, ns, "dry"); len(left) > 0 {
		t.Errorf("--dry-run=client created %v", left)
	}

	createSchedule(t, e, ns, "gone", "db", "*/1 * * * *", "--keep-last", "2")
	// A second schedule of the same StatefulSet must survive the delete.
	createSchedule(t, e, ns, "stays", "db", "0 0 1 1 *", "--keep-last", "2")
	waitFor(t, "a finished scheduled run", 3*time.Minute, func(c context.Context) (string, bool, error) {
		jobs, err := scheduleJobs(c, e, ns, "gone")
		if err != nil {
			return "", false, err
		}
		done := slices.ContainsFunc(jobs, func(j batchv1.Job) bool { return j.Status.Succeeded > 0 || j.Status.Failed > 0 })
		return fmt.Sprintf("%d Jobs", len(jobs)), done, nil
	})
	r = runKbak(t, e, "schedule", "delete", "gone", "-n", ns)
	if r.code != 0 {
		t.Fatalf("kbak schedule delete: %s", r)
	}
	waitFor(t, "every object of schedule gone to go", 2*time.Minute, func(c context.Context) (string, bool, error) {
		left := scheduleObjects(t, e, ns, "gone")
		return strings.Join(left, ", "), len(left) == 0, nil
	})
	if left := scheduleObjects(t, e, ns, "stays"); len(left) != 6 {
		t.Errorf("the other schedule has %v after the delete, want its 6 objects", left)
	}
	if _, err := e.Kube.CoreV1().Secrets(ns).Get(ctx(t), storeSecret, metav1.GetOptions{}); err != nil {
		t.Errorf("the user's Secret: %v", err)
	}
	noLeftovers(t, e, ns, false)
}

// TestScheduleAgentDeployed: the manifests of `kbak deploy agent` run the
// agent in the cluster with its own ServiceAccount, and it backs up.
func TestScheduleAgentDeployed(t *testing.T) {
	t.Parallel() // waits more than it works: beside the other waiters
	e := newEnv(t)
	ns := createNamespace(t, e, "sch-agent-app")
	agentNS := createNamespace(t, e, "sch-agent-run")
	applyStatefulSet(t, e, ns, "db", 1, e.SnapClass)
	createStoreSecret(t, e, ns)
	createStoreSecret(t, e, agentNS)
	cat := catalog.New(store(t, e), seal.Key{})
	backupRole, readRole := "kbak:agent:"+agentNS+":kbak-agent:backup", "kbak:agent:"+agentNS+":kbak-agent:read"
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = e.Kube.RbacV1().ClusterRoleBindings().Delete(c, readRole, metav1.DeleteOptions{})
		_ = e.Kube.RbacV1().ClusterRoles().Delete(c, readRole, metav1.DeleteOptions{})
		_ = e.Kube.RbacV1().ClusterRoles().Delete(c, backupRole, metav1.DeleteOptions{})
	})

	cfg := fmt.Sprintf(`repo: %q
secret: %s
schedules:
- name: in-cluster
  statefulset: db
  namespace: %s
  cron: "@every 1m"
  keepLast: 2
`, e.Repo, storeSecret, ns)
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	// JSON, as one v1 List: what kubectl apply -f - takes.
	r := runKbak(t, e, "deploy", "agent", "--config", path, "--namespace", agentNS, "--image", e.KbakImage, "-o", "json")
	if r.code != 0 {
		t.Fatalf("kbak deploy agent: %s", r)
	}
	apply := exec.Command(filepath.Join(e.Dir, "bin", "kubectl"), "apply", "-f", "-")
	apply.Stdin = strings.NewReader(r.stdout)
	if out, err := apply.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply the agent's manifests: %v\n%s\n%s", err, out, r.stdout)
	}

	waitFor(t, "a Completed backup made by the agent in the cluster", 4*time.Minute, func(c context.Context) (string, bool, error) {
		list, err := completedBackups(c, cat, ns, "db")
		if err != nil {
			return "", false, err
		}
		return fmt.Sprintf("%d backups", len(list)), len(list) > 0, nil
	})
	pods, err := e.Kube.CoreV1().Pods(agentNS).List(ctx(t), metav1.ListOptions{LabelSelector: kube.LabelName + "=kbak-agent"})
	if err != nil || len(pods.Items) != 1 || pods.Items[0].Spec.ServiceAccountName != "kbak-agent" {
		t.Errorf("agent pods %v (%v), want one running as kbak-agent", objectNames(pods, err), err)
	}
	if err := e.Kube.AppsV1().Deployments(agentNS).Delete(ctx(t), "kbak-agent", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the agent pod to go", 4*time.Minute, func(c context.Context) (string, bool, error) {
		l, err := e.Kube.CoreV1().Pods(agentNS).List(c, metav1.ListOptions{LabelSelector: kube.LabelName + "=kbak-agent"})
		if err != nil {
			return "", false, err
		}
		return fmt.Sprintf("%d pods", len(l.Items)), len(l.Items) == 0, nil
	})
	noLeftovers(t, e, ns, false)
}
