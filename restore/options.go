package restore

import (
	"errors"
	"io"
	"log/slog"
	"time"

	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kbak/kbak/deploy"
	"github.com/kbak/kbak/internal/hint"
	"github.com/kbak/kbak/internal/kube"
	"github.com/kbak/kbak/internal/mover"
	"github.com/kbak/kbak/internal/moverrun"
)

// Options describe one restore. Zero durations and counts take the defaults
// documented on each field.
type Options struct {
	// ToNamespace and ToName map the backup's namespace and StatefulSet
	// name; empty keeps the backup's.
	ToNamespace string
	ToName      string
	// Ordinals restores only these ordinals; empty restores every ordinal
	// whose volumes were all backed up.
	Ordinals []int
	// StorageClassMap maps the backup's storage class to the target's. The
	// key "" stands for claims that named no class.
	StorageClassMap map[string]string
	// CreateStatefulSet re-creates the StatefulSet from the manifest once the
	// claims are filled and waits until it is Ready.
	CreateStatefulSet bool
	// FromStore ignores kept VolumeSnapshots and always downloads.
	FromStore bool
	// A missing target namespace is created (on a new cluster it is always
	// missing) and the plan says so; NoCreateNamespace makes it a conflict.
	NoCreateNamespace bool
	// RestoreDevices makes the movers create the device nodes a backup
	// holds, and RestoreSetID keep setuid and setgid bits and file
	// capabilities; their pods get the capabilities for it (MKNOD;
	// FSETID and SETFCAP). Without them a mover skips device nodes and
	// clears those bits, and the result says so per claim. A claim filled
	// from a kept snapshot is the storage system's copy of the volume and
	// is restored as it was.
	RestoreDevices bool
	RestoreSetID   bool

	// Repo is the repository URL handed to the movers; it holds no secret.
	Repo string

	Parallel   int    // claims filled at once; default 2
	Image      string // mover image; default deploy.DefaultMoverImage
	PullPolicy corev1.PullPolicy
	Resources  *corev1.ResourceRequirements // default deploy.DefaultMoverResources
	// MoverSecurity is how the download movers run; default auto, the
	// most capable mode the target namespace's Pod Security level admits
	// (moverrun.ResolveSecurity). Unprivileged movers run as the backed-up
	// StatefulSet's user with its fsGroup: owners they cannot set are
	// counted in the result.
	MoverSecurity deploy.Security

	// Credentials, when set, go into a Secret this run creates in the
	// target namespace and deletes after it. SecretName instead names an
	// existing Secret with the same keys: in the target namespace, or in the
	// backup's namespace, from which it is copied into a temporary Secret.
	// With neither, movers get no credentials (IAM roles for pods).
	Credentials *deploy.Credentials
	SecretName  string
	// MoverKey is the read key file the movers open an encrypted
	// repository with. It goes into a Secret of the run, mounted as a
	// file, and is deleted with the run.
	MoverKey []byte

	// Progress receives every event of every mover, tagged with the target
	// PVC name. Calls are serialized.
	Progress func(pvc string, ev mover.Event)
	// Queued is told of every claim a mover will fill, before the first
	// starts, with the raw bytes the manifest records for it. Calls come
	// before any of Progress's.
	Queued func(pvc string, bytes int64)
	// Spell names settings in the plan's conflicts and notes and in the
	// result's next step, in the caller's terms; default hint.Plain.
	// Returned errors are rendered by the caller (hint.Render).
	Spell hint.Spelling

	// everyVolume restores every backed-up volume, even of ordinals that
	// are not whole: a test restore checks data, not an application.
	everyVolume bool

	// ID fixes the restore run id (a retry, tests); default a new one.
	ID string

	PodStartTimeout time.Duration // scheduling, binding, provisioning, image pull; default 5m
	// TransferTimeout bounds one mover's whole run; default
	// moverrun.TransferDeadline of the volume's raw bytes. Its pod gets it, plus
	// PodStartTimeout, as activeDeadlineSeconds.
	TransferTimeout time.Duration
	ReadyTimeout    time.Duration // the re-created StatefulSet becoming Ready; default 10m
	CleanupTimeout  time.Duration // deleting what the run made; default 2m
	PollInterval    time.Duration // default 1s
	// DeadRunAge is how long another kbak run in the namespace may have
	// shown no sign of life, with no pod still going, before this run
	// deletes the credential and key Secrets it left; default
	// kube.DeadRunAge. Only a run that makes Secrets itself sweeps.
	DeadRunAge time.Duration
}

func (o *Options) setDefaults() {
	if o.Parallel <= 0 {
		o.Parallel = moverrun.DefaultParallel
	}
	if o.Image == "" {
		o.Image = deploy.DefaultMoverImage
	}
	if o.PodStartTimeout <= 0 {
		o.PodStartTimeout = moverrun.DefaultPodStartTimeout
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 10 * time.Minute
	}
	if o.CleanupTimeout <= 0 {
		o.CleanupTimeout = kube.DefaultCleanupTimeout
	}
	if o.PollInterval <= 0 {
		o.PollInterval = moverrun.DefaultPollInterval
	}
}

// Errors restore wraps, for the command line's exit codes.
var (
	// ErrUsage: the options are inconsistent or ask for what the backup
	// does not hold.
	ErrUsage = errors.New("invalid restore options")
	// ErrConflict: the target is not free; the plan lists why and nothing
	// was created.
	ErrConflict = errors.New("restore conflicts with the cluster")
	// ErrPartiallyFailed: some ordinals were restored and kept, others
	// failed and their claims were deleted.
	ErrPartiallyFailed = errors.New("restore partially failed")
	// ErrFailed: no ordinal was restored; every claim the run made was
	// deleted.
	ErrFailed = errors.New("restore failed")
	// ErrNotReady: the claims were restored and the StatefulSet re-created,
	// but it did not become Ready in time.
	ErrNotReady = errors.New("restored StatefulSet not ready")
	// ErrVerifyMismatch: a test restore gave other file counts or byte
	// totals than the manifest records.
	ErrVerifyMismatch = errors.New("test restore does not match the backup")
)

// Deps are the clients a restore uses.
type Deps struct {
	Kube kubernetes.Interface
	// Snap may be nil: kept VolumeSnapshots are then not used.
	Snap snapclient.Interface
	Log  *slog.Logger
	Now  func() time.Time // default time.Now
	Rand io.Reader        // for the run id; default crypto/rand
}

func (d *Deps) setDefaults() {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
}
