package backup

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kbak/kbak/deploy"
	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/hint"
	"github.com/kbak/kbak/internal/kube"
	"github.com/kbak/kbak/internal/mover"
	"github.com/kbak/kbak/internal/moverrun"
)

// Method chooses how volumes are read.
type Method string

// Methods. MethodAuto snapshots a volume when its CSI driver has a
// VolumeSnapshotClass and copies its live files otherwise.
const (
	MethodAuto     Method = "auto"
	MethodSnapshot Method = "snapshot"
	MethodFiles    Method = "files"
)

// Group chooses whether the claims are cut in one VolumeGroupSnapshot.
type Group string

// Group modes. GroupAuto cuts every claim of a driver that has a
// VolumeGroupSnapshotClass in one group snapshot and the others one by
// one; GroupAlways refuses, before anything is created, a backup where a
// claim cannot be grouped; GroupNever cuts every claim on its own.
const (
	GroupAuto   Group = "auto"
	GroupAlways Group = "always"
	GroupNever  Group = "never"
)

// DefaultHookTimeout bounds one hook in one pod unless told otherwise.
const DefaultHookTimeout = time.Minute

// Options describe one backup run. Zero durations and counts take the
// defaults documented on each field.
type Options struct {
	Namespace   string
	StatefulSet string
	// Repo is the repository URL handed to the movers. It holds no secret;
	// credentials travel in a Secret.
	Repo string

	Method        Method // default MethodAuto
	SnapshotClass string // overrides the driver's default class
	// Group is how the claims are cut (default GroupAuto), and
	// GroupSnapshotClass overrides the driver's default
	// VolumeGroupSnapshotClass. The claims of one driver go in one group
	// snapshot; claims on several drivers make one group a driver.
	Group              Group
	GroupSnapshotClass string
	// KeepSnapshots leaves the VolumeSnapshots in the cluster, recorded as
	// retained in the manifest, for fast in-cluster restores.
	KeepSnapshots bool
	// IncludeRetained also backs up claims left by an earlier scale-down;
	// without it they are listed as skipped.
	IncludeRetained bool

	// PreHook and PostHook run in every running application pod around the
	// snapshot cut (snapshot method) or the copy (files method). The post
	// hook always runs once a pre hook was attempted, even on failure or
	// cancellation.
	PreHook       []string
	PostHook      []string
	HookContainer string        // default: the pod's first container
	HookTimeout   time.Duration // per hook and pod; default 1m
	// HookDeadman is how long after the pre hook starts the deadman kbak
	// starts beside it, in the application container, runs the post hook
	// unless kbak's post hook ran first: a killed kbak does not leave the
	// application quiesced. Default: the hook timeout twice plus the
	// longest the snapshot cut (twice the snapshot timeout) or the copy of
	// the live files (their movers' active deadline) may take. Hooks then
	// run through a POSIX sh wrapper in the container, which also stops a
	// hook that passes the hook timeout, with its children, before the
	// post hook runs. NoDeadman runs the hooks as they are, for images
	// without /bin/sh: nothing then thaws after a killed kbak, and a hook
	// past its timeout is abandoned, not stopped.
	HookDeadman time.Duration
	NoDeadman   bool
	// HoldHook runs in every application pod from after the pre hook until
	// the cut (or copy) of every volume is done, with its stdin open: a
	// lock that lasts as long as its session (MariaDB FLUSH TABLES WITH
	// READ LOCK held by a client reading its stdin) covers every pod's
	// snapshot. kbak cuts only once each printed the line HoldReady,
	// within the hook timeout, and ends it by closing its stdin (and kills
	// it in the pod when it has not ended within the hook timeout then).
	// When kbak dies the stream ends, and the deadman's timer kills it at
	// the latest.
	HoldHook []string

	Parallel    int    // mover pods at once; default 2
	Compression string // default mover.DefaultCompression
	// Format is the repository format the backup is written in:
	// catalog.FormatRepo (the default: deduplicated, incremental) or
	// catalog.FormatArchive (one tar+zstd object a volume).
	Format int

	Image      string // mover image; default deploy.DefaultMoverImage
	PullPolicy corev1.PullPolicy
	Resources  *corev1.ResourceRequirements // default deploy.DefaultMoverResources
	// MoverSecurity is how the mover pods run; default auto, the most
	// capable mode the namespace's Pod Security level admits
	// (moverrun.ResolveSecurity).
	MoverSecurity deploy.Security

	// Credentials, when set, are put into a Secret kbak creates for this run
	// and deletes after it. SecretName instead names an existing Secret with
	// the same keys (see deploy.KeyAccessKeyID...), which kbak never
	// deletes. With neither, movers get no credentials (IAM roles for pods).
	Credentials *deploy.Credentials
	SecretName  string
	// KeySecretName names a Secret of the namespace that holds the
	// repository's write key (deploy.KeyRepoKey): the movers mount it, and
	// the run makes no key Secret of its own.
	KeySecretName string

	// LockDays, when positive, has the movers put every object they write
	// under S3 Object Lock retention for that many days, in LockMode
	// (compliance or governance; empty is compliance). The catalog's
	// store should keep the manifest as long (uploader.Options.Retention).
	LockDays int
	LockMode string

	// Progress receives every event of every mover, tagged with the source
	// PVC name. Calls are serialized.
	Progress func(pvc string, ev mover.Event)
	// Queued is told of every volume the run will move, before the first
	// mover starts, with the raw bytes it expects the volume to hold: the
	// volume's in the latest backup it builds on, 0 when unknown. Calls
	// come before any of Progress's.
	Queued func(pvc string, bytes int64)
	// Spell names settings in the advice the run writes into the manifest
	// and its log, in the caller's terms (a flag, a configuration key);
	// default hint.Plain. Returned errors are rendered by the caller
	// (hint.Render).
	Spell hint.Spelling

	KbakVersion string
	// ID fixes the backup id (a retry of a run, tests); default a new one.
	ID string

	SnapshotTimeout time.Duration // cut and readyToUse, each; default 10m
	PodStartTimeout time.Duration // scheduling, binding, image pull; default 5m
	// TransferTimeout bounds one mover's whole run; default
	// moverrun.TransferDeadline of the claim's capacity. Its pod gets it, plus
	// PodStartTimeout, as activeDeadlineSeconds.
	TransferTimeout time.Duration
	CleanupTimeout  time.Duration // deleting what the run made; default 2m
	// SnapshotGoneTimeout bounds the wait, at the end of the run, for its
	// VolumeSnapshots to be gone with their contents (the snapshot
	// controller and the CSI driver delete them after kbak did); those
	// still there after it are reported as still deleting, which is no
	// error. Default kube.DefaultSnapshotGoneTimeout.
	SnapshotGoneTimeout time.Duration
	PollInterval        time.Duration // default 1s
	// DeadRunAge is how long another kbak run in the namespace may have
	// shown no sign of life, with no pod still going, before this run
	// deletes the credential and key Secrets it left; default
	// kube.DeadRunAge. Only a run that makes Secrets itself sweeps.
	DeadRunAge time.Duration
}

func (o *Options) setDefaults() {
	if o.Method == "" {
		o.Method = MethodAuto
	}
	if o.Group == "" {
		o.Group = GroupAuto
	}
	if o.HookTimeout <= 0 {
		o.HookTimeout = DefaultHookTimeout
	}
	if o.Parallel <= 0 {
		o.Parallel = moverrun.DefaultParallel
	}
	if o.Format == 0 {
		o.Format = catalog.FormatRepo
	}
	if o.Compression == "" {
		o.Compression = mover.DefaultCompression
	}
	if o.Image == "" {
		o.Image = deploy.DefaultMoverImage
	}
	if o.SnapshotTimeout <= 0 {
		o.SnapshotTimeout = 10 * time.Minute
	}
	if o.PodStartTimeout <= 0 {
		o.PodStartTimeout = moverrun.DefaultPodStartTimeout
	}
	if o.CleanupTimeout <= 0 {
		o.CleanupTimeout = kube.DefaultCleanupTimeout
	}
	if o.SnapshotGoneTimeout <= 0 {
		o.SnapshotGoneTimeout = kube.DefaultSnapshotGoneTimeout
	}
	if o.PollInterval <= 0 {
		o.PollInterval = moverrun.DefaultPollInterval
	}
}

// Errors Run wraps, for the command line's exit codes.
var (
	// ErrUsage: the options are inconsistent.
	ErrUsage = errors.New("invalid backup options")
	// ErrPartiallyFailed: some volumes were backed up and the manifest was
	// written with status PartiallyFailed.
	ErrPartiallyFailed = errors.New("backup partially failed")
	// ErrFailed: no volume was backed up; no manifest was written.
	ErrFailed = errors.New("backup failed")
)

// Catalog is what a backup run needs from the catalog.
type Catalog interface {
	// WriteManifest stores the manifest, the last object of a backup.
	WriteManifest(ctx context.Context, m *catalog.Manifest) error
	// Delete removes every object of backup id; used when a run fails or is
	// interrupted so it leaves nothing in the store.
	Delete(ctx context.Context, id string) (*catalog.Manifest, error)
	// Latest returns the newest Completed backup matching f, whose volumes
	// are the parents of the next backup's.
	Latest(ctx context.Context, f catalog.Filter) (*catalog.Manifest, error)
	// InitData creates the deduplicating repository when the store has
	// none, before any mover starts: movers must agree on its config.
	InitData(ctx context.Context, kbakVersion string) (created bool, err error)
	// WriteKeyFile is what the movers open an encrypted repository with;
	// nil when it is not encrypted.
	WriteKeyFile(ctx context.Context) ([]byte, error)
}

var _ Catalog = (*catalog.Catalog)(nil)

// ExecFunc runs cmd in a container and returns its output.
type ExecFunc func(ctx context.Context, ns, pod, container string, cmd []string) (string, error)

// Deps are the clients and services a run uses.
type Deps struct {
	Kube kubernetes.Interface
	Snap snapclient.Interface
	// RestConfig is needed for hooks (pod exec) unless Exec is set.
	RestConfig *rest.Config
	Catalog    Catalog
	Log        *slog.Logger
	Now        func() time.Time // default time.Now
	Rand       io.Reader        // for the backup id; default crypto/rand
	Exec       ExecFunc         // default kube.Exec over RestConfig
	Session    SessionFunc      // default kube.ExecSession over RestConfig
}

// SessionFunc runs cmd in a container with stdin, writing its output to out
// as it comes, until cmd or ctx ends.
type SessionFunc func(ctx context.Context, ns, pod, container string, cmd []string, stdin io.Reader, out io.Writer) error

func (d *Deps) setDefaults() {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Exec == nil && d.RestConfig != nil {
		cfg, kc := d.RestConfig, d.Kube
		d.Exec = func(ctx context.Context, ns, pod, container string, cmd []string) (string, error) {
			return kube.Exec(ctx, cfg, kc, ns, pod, container, cmd)
		}
	}
	if d.Session == nil && d.RestConfig != nil {
		cfg, kc := d.RestConfig, d.Kube
		d.Session = func(ctx context.Context, ns, pod, container string, cmd []string, stdin io.Reader, out io.Writer) error {
			return kube.ExecSession(ctx, cfg, kc, ns, pod, container, cmd, stdin, out)
		}
	}
}
