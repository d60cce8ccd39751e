package schedule

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"

	"github.com/kbak/kbak/backup"
	"github.com/kbak/kbak/deploy"
	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/kube"
	"github.com/kbak/kbak/internal/moverrun"
	"github.com/kbak/kbak/internal/retention"
	"github.com/kbak/kbak/internal/seal"
)

// ErrNotFound is wrapped by errors about a schedule that does not exist.
var ErrNotFound = errors.New("schedule not found")

// CreateOptions describe a scheduled backup run by a Kubernetes CronJob.
type CreateOptions struct {
	Name        string
	Namespace   string
	StatefulSet string
	Cron        string // five fields or a descriptor; CRON_TZ= moves to TimeZone
	TimeZone    string
	Policy      retention.Policy // required: every run prunes by it
	Suspend     bool

	Repo        string
	S3Endpoint  string
	S3Region    string
	S3PathStyle bool
	// Secret in Namespace holding the store credentials, for kbak in the
	// CronJob and for its movers.
	Secret string
	// KeySecret in Namespace holds the write key of an encrypted
	// repository (deploy.KeyRepoKey).
	KeySecret string

	Image      string // default deploy.DefaultMoverImage
	PullPolicy corev1.PullPolicy

	Method string // auto, snapshot or files; empty is backup's default
	// MoverSecurity is kbak backup --mover-security; empty is auto.
	MoverSecurity string
	SnapshotClass string
	KeepSnapshots bool
	// Group and GroupSnapshotClass are kbak backup --group and
	// --group-snapshot-class; empty is backup's default.
	Group              string
	GroupSnapshotClass string
	Parallel           int
	PreHook            string // as given to --pre-hook
	PostHook           string
	HookContainer      string
	HookDeadman        string // as given to --hook-deadman
	HoldHook           string // as given to --hold-hook
	// LockDays, when positive, has every run keep what it writes under
	// S3 Object Lock for that many days (kbak backup --lock-days), in
	// LockMode: compliance (empty) or governance.
	LockDays int
	LockMode string

	// RunDeadline stops a run still going after this long; default
	// deploy.DefaultRunDeadline.
	RunDeadline time.Duration

	// secretKeys are the optional keys Create found in Secret.
	secretKeys deploy.SecretRef
}

// Render validates o and renders the objects of the schedule in the order
// they are applied. It needs no cluster, so `--dry-run=client` prints what
// Create would apply.
func Render(o CreateOptions) ([]runtime.Object, error) {
	s, err := o.schedule()
	if err != nil {
		return nil, err
	}
	return s.Objects(), nil
}

func (o CreateOptions) schedule() (deploy.Schedule, error) {
	if err := deploy.ValidateScheduleName(o.Name); err != nil {
		return deploy.Schedule{}, err
	}
	// Every run is a kbak backup with these settings: what it would refuse
	// is refused now, not at every run.
	if _, err := o.backupOptions(); err != nil {
		return deploy.Schedule{}, err
	}
	spec, err := ParseCronJobSpec(o.Cron, o.TimeZone)
	if err != nil {
		return deploy.Schedule{}, err
	}
	if err := o.Policy.Validate(); err != nil {
		return deploy.Schedule{}, fmt.Errorf("%w (every scheduled run prunes by it)", err)
	}
	if o.RunDeadline < 0 {
		return deploy.Schedule{}, fmt.Errorf("run deadline %s: give a positive duration", o.RunDeadline)
	}
	args := deploy.RetentionArgs(o.Policy.KeepLast, o.Policy.Hourly, o.Policy.Daily, o.Policy.Weekly, o.Policy.Monthly)
	if o.Method != "" {
		args = append(args, "--method", o.Method)
	}
	if o.SnapshotClass != "" {
		args = append(args, "--snapshot-class", o.SnapshotClass)
	}
	if o.MoverSecurity != "" {
		args = append(args, "--mover-security", o.MoverSecurity)
	}
	if o.Group != "" {
		args = append(args, "--group", o.Group)
	}
	if o.GroupSnapshotClass != "" {
		args = append(args, "--group-snapshot-class", o.GroupSnapshotClass)
	}
	if o.KeepSnapshots {
		args = append(args, "--keep-snapshots")
	}
	if o.Parallel > 0 {
		args = append(args, "--parallel", strconv.Itoa(o.Parallel))
	}
	args = append(args, lockArgs(o.LockDays, o.LockMode)...)
	if o.HookDeadman != "" {
		args = append(args, "--hook-deadman", o.HookDeadman)
	}
	return deploy.Schedule{
		Name: o.Name, Namespace: o.Namespace, StatefulSet: o.StatefulSet,
		Cron: spec.Expr, TimeZone: spec.TimeZone, Suspend: o.Suspend,
		Image: o.Image, PullPolicy: o.PullPolicy,
		Repo: o.Repo, S3Endpoint: o.S3Endpoint, S3Region: o.S3Region, S3PathStyle: o.S3PathStyle,
		Secret:     deploy.SecretRef{Name: o.Secret, SessionToken: o.secretKeys.SessionToken, CABundle: o.secretKeys.CABundle},
		KeySecret:  o.KeySecret,
		BackupArgs: args,
		PreHook:    o.PreHook, PostHook: o.PostHook, HookContainer: o.HookContainer, HoldHook: o.HoldHook,
		RunDeadline: o.RunDeadline,
		Retention:   o.Policy.String(),
	}, nil
}

// Create validates o against the cluster (the StatefulSet and the Secret
// must exist, the Secret with the credential keys) and applies the
// schedule's objects; applying again updates them. It returns what it
// applied.
func Create(ctx context.Context, kc kubernetes.Interface, o CreateOptions) ([]runtime.Object, error) {
	if _, err := Render(o); err != nil {
		return nil, err // bad input is reported before any API call
	}
	_, err := kc.AppsV1().StatefulSets(o.Namespace).Get(ctx, o.StatefulSet, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("statefulset %s/%s not found: check the name with `kubectl get statefulsets -n %s`", o.Namespace, o.StatefulSet, o.Namespace)
	}
	if err != nil {
		return nil, fmt.Errorf("get statefulset %s/%s: %w", o.Namespace, o.StatefulSet, err)
	}
	if o.Secret != "" {
		// The scheduled runs must find their credentials.
		o.secretKeys, err = moverrun.UseSecret(ctx, kc, o.Namespace, o.Secret)
		var se *moverrun.SecretError
		if errors.As(err, &se) && se.NotFound() {
			return nil, fmt.Errorf("%w: create it first, e.g. `kubectl create secret generic %s -n %s --from-literal=%s=... --from-literal=%s=...`",
				err, o.Secret, o.Namespace, deploy.KeyAccessKeyID, deploy.KeySecretAccessKey)
		}
		if err != nil {
			return nil, err
		}
	}
	if o.KeySecret != "" {
		if err := checkKeySecret(ctx, kc, o.Namespace, o.KeySecret); err != nil {
			return nil, err
		}
	}
	objs, err := Render(o)
	if err != nil {
		return nil, err
	}
	if err := deploy.Apply(ctx, kc, objs...); err != nil {
		return nil, err
	}
	return objs, nil
}

// Delete removes what Create made for schedule name in ns, found by its
// labels, and returns "kind/name" of each object deleted. The CronJob goes
// first, with its Jobs and their pods, so no run starts without its
// permissions. Objects without the schedule's labels are never touched.
func Delete(ctx context.Context, kc kubernetes.Interface, ns, name string) ([]string, error) {
	sel := metav1.ListOptions{LabelSelector: kube.ScheduleSelector("", name)}
	clusterSel := metav1.ListOptions{LabelSelector: kube.ScheduleSelector(ns, name)}
	background := metav1.DeletePropagationBackground
	del := metav1.DeleteOptions{PropagationPolicy: &background}
	var deleted []string
	var errs []error
	// step lists the objects of one kind and deletes each by name.
	step := func(kind string, list func() ([]string, error), remove func(string) error) {
		names, err := list()
		if err != nil {
			errs = append(errs, fmt.Errorf("list %s of schedule %s/%s: %w", kind, ns, name, err))
			return
		}
		for _, n := range names {
			if err := remove(n); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("delete %s %s: %w", kind, n, err))
				continue
			}
			deleted = append(deleted, kind+"/"+n)
		}
	}
	step("cronjob", func() ([]string, error) {
		l, err := kc.BatchV1().CronJobs(ns).List(ctx, sel)
		if err != nil {
			return nil, err
		}
		return names(l.Items), nil
	}, func(n string) error { return kc.BatchV1().CronJobs(ns).Delete(ctx, n, del) })
	step("rolebinding", func() ([]string, error) {
		l, err := kc.RbacV1().RoleBindings(ns).List(ctx, sel)
		if err != nil {
			return nil, err
		}
		return names(l.Items), nil
	}, func(n string) error { return kc.RbacV1().RoleBindings(ns).Delete(ctx, n, del) })
	step("role", func() ([]string, error) {
		l, err := kc.RbacV1().Roles(ns).List(ctx, sel)
		if err != nil {
			return nil, err
		}
		return names(l.Items), nil
	}, func(n string) error { return kc.RbacV1().Roles(ns).Delete(ctx, n, del) })
	step("clusterrolebinding", func() ([]string, error) {
		l, err := kc.RbacV1().ClusterRoleBindings().List(ctx, clusterSel)
		if err != nil {
			return nil, err
		}
		return names(l.Items), nil
	}, func(n string) error { return kc.RbacV1().ClusterRoleBindings().Delete(ctx, n, del) })
	step("clusterrole", func() ([]string, error) {
		l, err := kc.RbacV1().ClusterRoles().List(ctx, clusterSel)
		if err != nil {
			return nil, err
		}
		return names(l.Items), nil
	}, func(n string) error { return kc.RbacV1().ClusterRoles().Delete(ctx, n, del) })
	step("serviceaccount", func() ([]string, error) {
		l, err := kc.CoreV1().ServiceAccounts(ns).List(ctx, sel)
		if err != nil {
			return nil, err
		}
		return names(l.Items), nil
	}, func(n string) error { return kc.CoreV1().ServiceAccounts(ns).Delete(ctx, n, del) })
	if err := errors.Join(errs...); err != nil {
		return deleted, err
	}
	if len(deleted) == 0 {
		return nil, fmt.Errorf("%w: no schedule %s in namespace %s: see `kbak schedule list -n %s`", ErrNotFound, name, ns, ns)
	}
	return deleted, nil
}

// names returns the names of items, sorted.
func names[T any, P interface {
	*T
	metav1.Object
}](items []T) []string {
	out := make([]string, 0, len(items))
	for i := range items {
		out = append(out, P(&items[i]).GetName())
	}
	slices.Sort(out)
	return out
}

// LatestFinder is what `schedule list` needs of the catalog: a
// *catalog.Catalog.
type LatestFinder interface {
	Latest(ctx context.Context, f catalog.Filter) (*catalog.Manifest, error)
}

// checkKeySecret checks that the key Secret holds a write key: a schedule
// runs in the cluster, which must not hold a key that reads backups.
func checkKeySecret(ctx context.Context, kc kubernetes.Interface, ns, name string) error {
	b, err := moverrun.ReadKeySecret(ctx, kc, ns, name)
	if err != nil {
		return err
	}
	k, err := seal.ParseKey(b)
	if err != nil {
		return fmt.Errorf("key secret %s/%s: %w", ns, name, err)
	}
	if k.Write == nil {
		return fmt.Errorf("key secret %s/%s holds a read key: a schedule needs only the write key, and the cluster should not hold one that reads the backups; put the write key there (kbak key write-key --out FILE)", ns, name)
	}
	return nil
}

// backupOptions are the options of the kbak backup every run makes,
// checked as kbak backup checks them (backup.Options.Validate).
func (o CreateOptions) backupOptions() (backup.Options, error) {
	b := backup.Options{
		Namespace: o.Namespace, StatefulSet: o.StatefulSet, Repo: o.Repo,
		Method: backup.Method(o.Method), SnapshotClass: o.SnapshotClass, KeepSnapshots: o.KeepSnapshots,
		Group: backup.Group(o.Group), GroupSnapshotClass: o.GroupSnapshotClass,
		Parallel: o.Parallel, Image: o.Image, PullPolicy: o.PullPolicy, SecretName: o.Secret,
		MoverSecurity: deploy.Security(o.MoverSecurity),
		HookContainer: o.HookContainer, LockDays: o.LockDays, LockMode: o.LockMode,
	}
	if err := b.SetHooks(o.PreHook, o.PostHook); err != nil {
		return b, err
	}
	if err := b.SetDeadman(o.HookDeadman); err != nil {
		return b, err
	}
	if err := b.SetHold(o.HoldHook); err != nil {
		return b, err
	}
	return b, b.Validate()
}

// lockArgs are the `kbak backup` flags of S3 Object Lock retention, which
// backup.Options.Validate has checked.
func lockArgs(days int, mode string) []string {
	if days == 0 {
		return nil
	}
	args := []string{"--lock-days", strconv.Itoa(days)}
	if mode != "" {
		args = append(args, "--lock-mode", strings.ToLower(mode))
	}
	return args
}
