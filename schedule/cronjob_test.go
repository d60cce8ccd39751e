package schedule

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kbak/kbak/deploy"
	"github.com/kbak/kbak/internal/hint"
	"github.com/kbak/kbak/internal/hint/hinttest"
	"github.com/kbak/kbak/internal/kube"
	"github.com/kbak/kbak/internal/retention"
)

func createOptions() CreateOptions {
	return CreateOptions{
		Name: "nightly", Namespace: "shop", StatefulSet: "mariadb",
		Cron: "0 2 * * *", Policy: retention.Policy{KeepLast: 3, Daily: 7},
		Repo: "s3://backups/prod", Secret: "store",
	}
}

func statefulSet(ns, name string) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
}

func secret(ns, name string, keys ...string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string][]byte{}}
	for _, k := range keys {
		s.Data[k] = []byte("x")
	}
	return s
}

func cronJobOf(t *testing.T, objs []runtime.Object) *batchv1.CronJob {
	t.Helper()
	for _, o := range objs {
		if cj, ok := o.(*batchv1.CronJob); ok {
			return cj
		}
	}
	t.Fatal("no CronJob among the objects")
	return nil
}

func TestRender(t *testing.T) {
	tests := []struct {
		name         string
		edit         func(*CreateOptions)
		wantErr      string
		wantArgs     []string // after "backup sts/mariadb -n shop --repo s3://backups/prod"
		wantTZ       string
		wantDeadline int64 // the Job's activeDeadlineSeconds; 0 is the default 6h
	}{
		{name: "defaults", edit: func(*CreateOptions) {},
			wantArgs: []string{"--secret", "store", "--mover-pull-policy", "IfNotPresent", "--prune", "--keep-last", "3", "--keep-daily", "7"}},
		{name: "time zone from CRON_TZ", edit: func(o *CreateOptions) { o.Cron = "CRON_TZ=Europe/Berlin 0 2 * * *" }, wantTZ: "Europe/Berlin",
			wantArgs: []string{"--secret", "store", "--mover-pull-policy", "IfNotPresent", "--prune", "--keep-last", "3", "--keep-daily", "7"}},
		{name: "backup options", edit: func(o *CreateOptions) {
			o.Secret, o.Method, o.SnapshotClass, o.KeepSnapshots, o.Parallel = "", "snapshot", "csi-snap", true, 4
			o.PreHook, o.HookContainer = "sync", "db"
			o.S3Endpoint, o.S3Region, o.S3PathStyle = "http://minio:9000", "eu-1", true
		}, wantArgs: []string{"--s3-endpoint", "http://minio:9000", "--s3-region", "eu-1", "--s3-path-style", "--mover-pull-policy", "IfNotPresent",
			"--pre-hook", "sync", "--hook-container", "db", "--prune", "--keep-last", "3", "--keep-daily", "7",
			"--method", "snapshot", "--snapshot-class", "csi-snap", "--keep-snapshots", "--parallel", "4"}},
		{name: "group snapshots", edit: func(o *CreateOptions) { o.Group, o.GroupSnapshotClass = "always", "csi-group" },
			wantArgs: []string{"--secret", "store", "--mover-pull-policy", "IfNotPresent", "--prune", "--keep-last", "3", "--keep-daily", "7",
				"--group", "always", "--group-snapshot-class", "csi-group"}},
		{name: "bad group", edit: func(o *CreateOptions) { o.Group = "sometimes" }, wantErr: `--group "sometimes": use auto, always or never`},
		{name: "group always keeping snapshots", edit: func(o *CreateOptions) { o.Group, o.KeepSnapshots = "always", true }, wantErr: "--group always cannot keep snapshots"},
		{name: "every", edit: func(o *CreateOptions) { o.Cron = "@every 1h" }, wantErr: "does not run @every"},
		{name: "bad spec", edit: func(o *CreateOptions) { o.Cron = "every night" }, wantErr: `cron spec "every night"`},
		{name: "no retention", edit: func(o *CreateOptions) { o.Policy = retention.Policy{} }, wantErr: "keeps nothing"},
		{name: "bad name", edit: func(o *CreateOptions) { o.Name = "Nightly" }, wantErr: `schedule name "Nightly"`},
		{name: "long name", edit: func(o *CreateOptions) { o.Name = strings.Repeat("a", 48) }, wantErr: "use at most 47"},
		{name: "no repo", edit: func(o *CreateOptions) { o.Repo = "" }, wantErr: "--repo"},
		{name: "run deadline", edit: func(o *CreateOptions) { o.RunDeadline = 2 * time.Hour }, wantDeadline: 7200,
			wantArgs: []string{"--secret", "store", "--mover-pull-policy", "IfNotPresent", "--prune", "--keep-last", "3", "--keep-daily", "7"}},
		{name: "negative run deadline", edit: func(o *CreateOptions) { o.RunDeadline = -time.Hour }, wantErr: "run deadline -1h0m0s"},
		{name: "object lock", edit: func(o *CreateOptions) { o.LockDays, o.LockMode = 30, "GOVERNANCE" },
			wantArgs: []string{"--secret", "store", "--mover-pull-policy", "IfNotPresent", "--prune", "--keep-last", "3", "--keep-daily", "7",
				"--lock-days", "30", "--lock-mode", "governance"}},
		{name: "object lock, default mode", edit: func(o *CreateOptions) { o.LockDays = 7 },
			wantArgs: []string{"--secret", "store", "--mover-pull-policy", "IfNotPresent", "--prune", "--keep-last", "3", "--keep-daily", "7",
				"--lock-days", "7"}},
		{name: "bad lock days", edit: func(o *CreateOptions) { o.LockDays = -1 }, wantErr: "--lock-days -1"},
		{name: "bad lock mode", edit: func(o *CreateOptions) { o.LockDays, o.LockMode = 1, "forever" }, wantErr: `--lock-mode "forever"`},
		// What kbak backup would refuse at every run is refused now
		// (backup.Options.Validate).
		{name: "bad method", edit: func(o *CreateOptions) { o.Method = "copy" }, wantErr: `--method "copy": use auto, snapshot or files`},
		{name: "bad hook", edit: func(o *CreateOptions) { o.PostHook = `["sync"` }, wantErr: `--post-hook ["sync" is not a JSON array of strings`},
		{name: "negative parallel", edit: func(o *CreateOptions) { o.Parallel = -1 }, wantErr: "--parallel -1"},
		{name: "bad pull policy", edit: func(o *CreateOptions) { o.PullPolicy = "Sometimes" }, wantErr: `--mover-pull-policy "Sometimes"`},
		{name: "bad image", edit: func(o *CreateOptions) { o.Image = " kbak:1" }, wantErr: `--mover-image " kbak:1"`},
		{name: "bad namespace", edit: func(o *CreateOptions) { o.Namespace = "Shop_1" }, wantErr: `invalid namespace "Shop_1"`},
		{name: "bad StatefulSet name", edit: func(o *CreateOptions) { o.StatefulSet = "maria/db" }, wantErr: `invalid StatefulSet name "maria/db"`},
		{name: "file repository", edit: func(o *CreateOptions) { o.Repo = "file:///srv/kbak" }, wantErr: "repository file:///srv/kbak is on this machine's disk, which mover pods in the cluster cannot reach: use an S3 bucket (--repo s3://BUCKET/PREFIX)"},
		{name: "bad repository URL", edit: func(o *CreateOptions) { o.Repo = "s3://B" }, wantErr: `invalid bucket name "B"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := createOptions()
			tt.edit(&o)
			objs, err := Render(o)
			if tt.wantErr != "" {
				// As the command line shows it.
				if err == nil || !strings.Contains(hint.Render(err, hinttest.Flags), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			cj := cronJobOf(t, objs)
			args := cj.Spec.JobTemplate.Spec.Template.Spec.Containers[0].Args
			head := []string{"backup", "sts/mariadb", "-n", "shop", "--repo", "s3://backups/prod"}
			if !slices.Equal(args[:len(head)], head) || !slices.Equal(args[len(head):], tt.wantArgs) {
				t.Errorf("args %q\nwant %q + %q", args, head, tt.wantArgs)
			}
			if cj.Spec.Schedule != "0 2 * * *" {
				t.Errorf("schedule %q: the CronJob gets the spec without CRON_TZ", cj.Spec.Schedule)
			}
			gotTZ := ""
			if cj.Spec.TimeZone != nil {
				gotTZ = *cj.Spec.TimeZone
			}
			if gotTZ != tt.wantTZ {
				t.Errorf("timeZone %q, want %q", gotTZ, tt.wantTZ)
			}
			wantDeadline := tt.wantDeadline
			if wantDeadline == 0 {
				wantDeadline = 6 * 3600
			}
			if d := cj.Spec.JobTemplate.Spec.ActiveDeadlineSeconds; d == nil || *d != wantDeadline {
				t.Errorf("job activeDeadlineSeconds %v, want %d", d, wantDeadline)
			}
			var role *rbacv1.Role
			for _, o := range objs {
				if r, ok := o.(*rbacv1.Role); ok {
					role = r
				}
			}
			exec := slices.ContainsFunc(role.Rules, func(r rbacv1.PolicyRule) bool { return slices.Contains(r.Resources, "pods/exec") })
			if exec != (o.PreHook != "" || o.PostHook != "") {
				t.Errorf("pods/exec granted %v with hooks %q %q", exec, o.PreHook, o.PostHook)
			}
		})
	}
}

func TestCreate(t *testing.T) {
	tests := []struct {
		name     string
		objs     []runtime.Object
		wantErr  string
		wantCA   bool
		wantObjs int
	}{
		{name: "applied", objs: []runtime.Object{statefulSet("shop", "mariadb"), secret("shop", "store", deploy.KeyAccessKeyID, deploy.KeySecretAccessKey)}, wantObjs: 6},
		{name: "CA bundle mounted", objs: []runtime.Object{statefulSet("shop", "mariadb"), secret("shop", "store", deploy.KeyAccessKeyID, deploy.KeySecretAccessKey, deploy.KeyCABundle)}, wantCA: true, wantObjs: 6},
		{name: "no StatefulSet", objs: []runtime.Object{secret("shop", "store", deploy.KeyAccessKeyID, deploy.KeySecretAccessKey)}, wantErr: "statefulset shop/mariadb not found"},
		{name: "StatefulSet in another namespace", objs: []runtime.Object{statefulSet("other", "mariadb"), secret("shop", "store", deploy.KeyAccessKeyID, deploy.KeySecretAccessKey)}, wantErr: "statefulset shop/mariadb not found"},
		{name: "no Secret", objs: []runtime.Object{statefulSet("shop", "mariadb")}, wantErr: "secret shop/store not found: create it first"},
		{name: "Secret without the secret key", objs: []runtime.Object{statefulSet("shop", "mariadb"), secret("shop", "store", deploy.KeyAccessKeyID)}, wantErr: "has no key AWS_SECRET_ACCESS_KEY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kc := fake.NewClientset(tt.objs...)
			ctx := context.Background()
			_, err := Create(ctx, kc, createOptions())
			cjs, lerr := kc.BatchV1().CronJobs("shop").List(ctx, metav1.ListOptions{})
			if lerr != nil {
				t.Fatal(lerr)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				if len(cjs.Items) != 0 {
					t.Errorf("a CronJob was made despite the error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(cjs.Items) != 1 {
				t.Fatalf("%d CronJobs, want 1", len(cjs.Items))
			}
			pod := cjs.Items[0].Spec.JobTemplate.Spec.Template.Spec
			hasCA := slices.ContainsFunc(pod.Containers[0].Env, func(e corev1.EnvVar) bool { return e.Name == "AWS_CA_BUNDLE" })
			if hasCA != tt.wantCA || (len(pod.Volumes) == 1) != tt.wantCA {
				t.Errorf("CA bundle env %v volumes %d, want CA %v", hasCA, len(pod.Volumes), tt.wantCA)
			}
			if pod.ServiceAccountName != "kbak-nightly" {
				t.Errorf("serviceAccountName %q", pod.ServiceAccountName)
			}
			// Applying again updates in place.
			if _, err := Create(ctx, kc, createOptions()); err != nil {
				t.Fatalf("second apply: %v", err)
			}
			if n := countScheduleObjects(t, kc, "shop", "nightly"); n != tt.wantObjs {
				t.Errorf("%d objects of the schedule after two applies, want %d", n, tt.wantObjs)
			}
		})
	}
}

func countScheduleObjects(t *testing.T, kc *fake.Clientset, ns, name string) int {
	t.Helper()
	ctx := context.Background()
	sel := metav1.ListOptions{LabelSelector: kube.ScheduleSelector("", name)}
	csel := metav1.ListOptions{LabelSelector: kube.ScheduleSelector(ns, name)}
	n := 0
	add := func(k int, err error) {
		if err != nil {
			t.Fatal(err)
		}
		n += k
	}
	cj, err := kc.BatchV1().CronJobs(ns).List(ctx, sel)
	add(len(cj.Items), err)
	sa, err := kc.CoreV1().ServiceAccounts(ns).List(ctx, sel)
	add(len(sa.Items), err)
	r, err := kc.RbacV1().Roles(ns).List(ctx, sel)
	add(len(r.Items), err)
	rb, err := kc.RbacV1().RoleBindings(ns).List(ctx, sel)
	add(len(rb.Items), err)
	cr, err := kc.RbacV1().ClusterRoles().List(ctx, csel)
	add(len(cr.Items), err)
	crb, err := kc.RbacV1().ClusterRoleBindings().List(ctx, csel)
	add(len(crb.Items), err)
	return n
}

func TestDelete(t *testing.T) {
	ctx := context.Background()
	kc := fake.NewClientset(
		statefulSet("shop", "mariadb"), statefulSet("other", "mariadb"),
		secret("shop", "store", deploy.KeyAccessKeyID, deploy.KeySecretAccessKey),
		secret("other", "store", deploy.KeyAccessKeyID, deploy.KeySecretAccessKey),
		// Not kbak's, though named like it.
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "kbak-nightly-2"}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "kbak-admin", Labels: map[string]string{kube.LabelSchedule: "nightly"}}},
	)
	mine := createOptions()
	sameNameElsewhere := createOptions()
	sameNameElsewhere.Namespace = "other"
	otherSchedule := createOptions()
	otherSchedule.Name = "hourly"
	otherSchedule.Cron = "@hourly"
	for _, o := range []CreateOptions{mine, sameNameElsewhere, otherSchedule} {
		if _, err := Create(ctx, kc, o); err != nil {
			t.Fatal(err)
		}
	}

	deleted, err := Delete(ctx, kc, "shop", "nightly")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"cronjob/kbak-nightly", "rolebinding/kbak-nightly", "role/kbak-nightly",
		"clusterrolebinding/kbak:schedule:shop:nightly", "clusterrole/kbak:schedule:shop:nightly", "serviceaccount/kbak-nightly"}
	if !slices.Equal(deleted, want) {
		t.Errorf("deleted %q\nwant %q", deleted, want)
	}
	if n := countScheduleObjects(t, kc, "shop", "nightly"); n != 0 {
		t.Errorf("%d objects of the deleted schedule left", n)
	}
	for _, s := range []struct{ ns, name string }{{"other", "nightly"}, {"shop", "hourly"}} {
		if n := countScheduleObjects(t, kc, s.ns, s.name); n != 6 {
			t.Errorf("schedule %s/%s has %d objects after deleting shop/nightly, want 6", s.ns, s.name, n)
		}
	}
	if _, err := kc.CoreV1().ServiceAccounts("shop").Get(ctx, "kbak-nightly-2", metav1.GetOptions{}); err != nil {
		t.Errorf("an unlabelled ServiceAccount was touched: %v", err)
	}
	if _, err := kc.RbacV1().ClusterRoles().Get(ctx, "kbak-admin", metav1.GetOptions{}); err != nil {
		t.Errorf("a ClusterRole without managed-by=kbak was touched: %v", err)
	}

	if _, err := Delete(ctx, kc, "shop", "nightly"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v, want ErrNotFound", err)
	}
}
