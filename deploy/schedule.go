package deploy

import (
	"fmt"
	"strconv"
	"time"

	"k8s.io/utils/ptr"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kbak/kbak/internal/kube"
)

// cleanupGrace is how long kbak may take to clean up after SIGTERM: it
// waits for its mover pods to go before deleting their claims.
var cleanupGrace int64 = 180

// MaxScheduleNameLen keeps "kbak-NAME" within the 52 characters a CronJob
// name may have (its Jobs append 11).
const MaxScheduleNameLen = 47

// Defaults of a scheduled CronJob.
const (
	// A run that could not start within this long after its time is
	// skipped rather than started late over the next one.
	DefaultStartingDeadlineSeconds = 600
	DefaultSuccessfulJobsHistory   = 3
	DefaultFailedJobsHistory       = 3
	// A run still going after this long is stopped (the Job's
	// activeDeadlineSeconds, the agent's runDeadline): with concurrency
	// Forbid, a hung run would otherwise hold back every later one.
	DefaultRunDeadline = 6 * time.Hour
)

// Schedule describes a CronJob that runs `kbak backup` with its own
// ServiceAccount and least-privilege RBAC.
type Schedule struct {
	Name        string // the schedule's name; objects are named kbak-NAME
	Namespace   string // the StatefulSet's namespace, where everything namespaced goes
	StatefulSet string
	// Cron is five fields or a descriptor (@daily); the CronJob controller
	// understands neither @every nor CRON_TZ=, see TimeZone.
	Cron     string
	TimeZone string // IANA name for spec.timeZone; empty is the controller's (UTC)
	Suspend  bool

	Image      string // default DefaultMoverImage
	PullPolicy corev1.PullPolicy

	Repo string
	// S3 settings passed on as flags when the repository URL does not hold
	// them.
	S3Endpoint  string
	S3Region    string
	S3PathStyle bool
	// Secret holds the store credentials; both the CronJob's kbak and its
	// movers read them from it.
	Secret SecretRef
	// KeySecret holds the write key of an encrypted repository under
	// KeyRepoKey (never a read key): kbak reads it, the movers mount it.
	KeySecret string

	// BackupArgs are further `kbak backup` flags: retention (--keep-*),
	// method, snapshot class. They follow --prune.
	BackupArgs []string
	// PreHook and PostHook are passed as --pre-hook/--post-hook; either one
	// grants pods/exec.
	PreHook, PostHook, HookContainer string
	// HoldHook is passed as --hold-hook; it grants pods/exec too.
	HoldHook string

	StartingDeadlineSeconds int64
	// RunDeadline bounds one run, as its Job's activeDeadlineSeconds;
	// default DefaultRunDeadline.
	RunDeadline                time.Duration
	SuccessfulJobsHistoryLimit int32
	FailedJobsHistoryLimit     int32
	// Retention is a human summary of the policy, kept as an annotation for
	// `kbak schedule list`.
	Retention string
}

// ValidateScheduleName checks that name makes valid object names.
func ValidateScheduleName(name string) error {
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		return fmt.Errorf("schedule name %q: %s", name, errs[0])
	}
	if len(name) > MaxScheduleNameLen {
		return fmt.Errorf("schedule name %q is %d characters: use at most %d (the CronJob is named kbak-NAME)", name, len(name), MaxScheduleNameLen)
	}
	return nil
}

// ScheduleObjectName is the name of a schedule's CronJob, ServiceAccount,
// Role and RoleBinding.
func ScheduleObjectName(name string) string { return "kbak-" + name }

// ScheduleClusterObjectName is the name of a schedule's ClusterRole and
// ClusterRoleBinding. Colons cannot occur in a namespace or schedule name,
// so two schedules never share one.
func ScheduleClusterObjectName(ns, name string) string { return "kbak:schedule:" + ns + ":" + name }

// Hooks reports whether the schedule runs hooks, which need pods/exec.
func (s Schedule) Hooks() bool { return s.PreHook != "" || s.PostHook != "" || s.HoldHook != "" }

// BackupCommand is the argv after the image's entrypoint (kbak).
func (s Schedule) BackupCommand() []string {
	args := []string{"backup", "sts/" + s.StatefulSet, "-n", s.Namespace, "--repo", s.Repo}
	if s.S3Endpoint != "" {
		args = append(args, "--s3-endpoint", s.S3Endpoint)
	}
	if s.S3Region != "" {
		args = append(args, "--s3-region", s.S3Region)
	}
	if s.S3PathStyle {
		args = append(args, "--s3-path-style")
	}
	if s.Secret.Name != "" {
		args = append(args, "--secret", s.Secret.Name)
	}
	if s.KeySecret != "" {
		args = append(args, "--key-secret", s.KeySecret)
	}
	args = append(args, "--mover-pull-policy", string(s.pullPolicy()))
	if s.PreHook != "" {
		args = append(args, "--pre-hook", s.PreHook)
	}
	if s.PostHook != "" {
		args = append(args, "--post-hook", s.PostHook)
	}
	if s.HoldHook != "" {
		args = append(args, "--hold-hook", s.HoldHook)
	}
	if s.HookContainer != "" {
		args = append(args, "--hook-container", s.HookContainer)
	}
	args = append(args, "--prune")
	return append(args, s.BackupArgs...)
}

func (s Schedule) image() string {
	if s.Image == "" {
		return DefaultMoverImage
	}
	return s.Image
}

func (s Schedule) pullPolicy() corev1.PullPolicy {
	if s.PullPolicy == "" {
		return corev1.PullIfNotPresent
	}
	return s.PullPolicy
}

// Objects renders the schedule, in the order they are applied: the
// ServiceAccount and its permissions before the CronJob that uses them.
func (s Schedule) Objects() []runtime.Object {
	name := ScheduleObjectName(s.Name)
	labels := kube.ScheduleLabels(s.Name, s.StatefulSet)
	clusterLabels := kube.ScheduleLabels(s.Name, s.StatefulSet)
	clusterLabels[kube.LabelScheduleNamespace] = s.Namespace
	clusterName := ScheduleClusterObjectName(s.Namespace, s.Name)
	sa := subject{s.Namespace, name}
	return []runtime.Object{
		serviceAccount(s.Namespace, name, labels),
		role(s.Namespace, name, labels, BackupRules(s.Secret.Name, s.KeySecret, s.Hooks())),
		roleBinding(s.Namespace, name, labels, "Role", name, sa),
		clusterRole(clusterName, clusterLabels, ClusterReadRules()),
		clusterRoleBinding(clusterName, clusterLabels, clusterName, sa),
		s.CronJob(),
	}
}

func serviceAccount(ns, name string, labels map[string]string) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
	}
}

// CronJob renders the schedule's CronJob.
func (s Schedule) CronJob() *batchv1.CronJob {
	name := ScheduleObjectName(s.Name)
	deadline := s.StartingDeadlineSeconds
	if deadline == 0 {
		deadline = DefaultStartingDeadlineSeconds
	}
	okHistory, failedHistory := s.SuccessfulJobsHistoryLimit, s.FailedJobsHistoryLimit
	if okHistory == 0 {
		okHistory = DefaultSuccessfulJobsHistory
	}
	if failedHistory == 0 {
		failedHistory = DefaultFailedJobsHistory
	}
	// The Jobs and pods carry only the schedule label: managed-by=kbak marks
	// what cleanup and `kbak gc` may delete, and a running backup is not
	// theirs to delete.
	podLabels := map[string]string{kube.LabelSchedule: s.Name}
	annotations := map[string]string{kube.AnnotationRepo: s.Repo}
	if s.Retention != "" {
		annotations[kube.AnnotationRetention] = s.Retention
	}
	var tz *string
	if s.TimeZone != "" {
		tz = &s.TimeZone
	}
	// A failed backup is not retried by the Job: the next scheduled run is
	// the retry, and a Job that shows Failed is what the operator watches.
	backoff := int32(0)
	run := s.RunDeadline
	if run <= 0 {
		run = DefaultRunDeadline
	}
	active := int64(run / time.Second)
	if run%time.Second != 0 {
		active++
	}
	return &batchv1.CronJob{
		TypeMeta:   metav1.TypeMeta{APIVersion: "batch/v1", Kind: "CronJob"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.Namespace, Labels: kube.ScheduleLabels(s.Name, s.StatefulSet), Annotations: annotations},
		Spec: batchv1.CronJobSpec{
			Schedule:                   s.Cron,
			TimeZone:                   tz,
			ConcurrencyPolicy:          batchv1.ForbidConcurrent,
			StartingDeadlineSeconds:    &deadline,
			SuccessfulJobsHistoryLimit: &okHistory,
			FailedJobsHistoryLimit:     &failedHistory,
			Suspend:                    &s.Suspend,
			JobTemplate: batchv1.JobTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
				Spec: batchv1.JobSpec{
					BackoffLimit:          &backoff,
					ActiveDeadlineSeconds: &active,
					Template: corev1.PodTemplateSpec{
						ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
						Spec:       s.podSpec(name),
					},
				},
			},
		},
	}
}

func (s Schedule) podSpec(sa string) corev1.PodSpec {
	c := corev1.Container{
		Name:            "backup",
		Image:           s.image(),
		ImagePullPolicy: s.pullPolicy(),
		Args:            s.BackupCommand(),
		// The movers run the same image as this pod, so one image tag
		// describes a scheduled backup.
		Env:                      []corev1.EnvVar{{Name: "KBAK_MOVER_IMAGE", Value: s.image()}},
		Resources:                controllerResources(),
		SecurityContext:          controllerSecurityContext(),
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	spec := corev1.PodSpec{
		// A run stopped by `schedule delete` or a node drain gets time to
		// delete its mover pods, temporary claims and snapshots.
		TerminationGracePeriodSeconds: &cleanupGrace,
		ServiceAccountName:            sa,
		AutomountServiceAccountToken:  ptr.To(true),
		RestartPolicy:                 corev1.RestartPolicyNever,
		Containers:                    []corev1.Container{c},
	}
	// kbak itself writes the manifest and prunes, so it needs the same
	// credentials as its movers, by reference.
	s.Secret.Apply(&spec)
	return spec
}

// RetentionArgs are the `kbak backup` flags of a retention policy given as
// counts; zero counts are left out.
func RetentionArgs(last, hourly, daily, weekly, monthly int) []string {
	var args []string
	for _, f := range []struct {
		flag string
		n    int
	}{{"--keep-last", last}, {"--keep-hourly", hourly}, {"--keep-daily", daily}, {"--keep-weekly", weekly}, {"--keep-monthly", monthly}} {
		if f.n > 0 {
			args = append(args, f.flag, strconv.Itoa(f.n))
		}
	}
	return args
}

// controllerResources are those of the pods that run kbak itself (the
// CronJob's and the agent's): they only call APIs and stream nothing.
func controllerResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
	}
}

// controllerSecurityContext locks down the pods that run kbak itself: they
// only call APIs; the movers do the privileged reading.
func controllerSecurityContext() *corev1.SecurityContext {
	yes, no := true, false
	nonRoot := int64(65532)
	return &corev1.SecurityContext{
		RunAsUser:                &nonRoot,
		RunAsNonRoot:             &yes,
		AllowPrivilegeEscalation: &no,
		ReadOnlyRootFilesystem:   &yes,
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}
