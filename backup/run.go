package backup

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kbak/kbak/deploy"
	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/hint"
	"github.com/kbak/kbak/internal/kube"
	"github.com/kbak/kbak/internal/mover"
	"github.com/kbak/kbak/internal/moverrun"
	"github.com/kbak/kbak/internal/repo"
)

// run is the state of one backup run.
type run struct {
	deps   Deps
	opts   Options
	id     string
	layout catalog.Layout
	log    *slog.Logger

	secret   deploy.SecretRef // the credentials Secret the movers read
	key      deploy.KeyRef    // the Secret with the repository's write key
	moverKey []byte           // the write key file of an encrypted repository
	movers   *moverrun.Launcher
	// security is how the movers run, and runAs the application's
	// identity an unprivileged mover takes.
	security deploy.Security
	runAs    deploy.RunAs

	// parents are, per PVC, the volume of the latest backup of the
	// deduplicating repository whose unchanged files a mover may reuse.
	parents map[string]parent

	mu    sync.Mutex // guards hooks
	hooks []catalog.HookRun
}

// volume is one claim's way through a run.
type volume struct {
	claim  kube.Claim
	method catalog.Method
	class  string // VolumeSnapshotClass, snapshot method only
	name   string // deterministic name of its snapshot, temp claim and pod
	// groupClass is the VolumeGroupSnapshotClass the volume is cut with,
	// in the group of its driver; empty: cut on its own.
	groupClass string
	// snap is the name of its VolumeSnapshot: name, or of a group's member
	// the name the snapshot controller gave it.
	snap string
	cut  time.Time // the storage's cut time (creationTime)
	// requested is when the create call for its snapshot returned.
	requested time.Time
	// quiesced is true when the hooks held the application still while the
	// volume was cut or copied.
	quiesced bool
	skipped  string // why the volume is not backed up at all
	err      error
	snapshot *catalog.Snapshot
	result   *mover.Result
}

// Run backs up StatefulSet opts.Namespace/opts.StatefulSet and returns its
// manifest.
//
// The manifest is written, last, when at least one volume was backed up.
// Its status is Completed, or PartiallyFailed with the returned error
// wrapping ErrPartiallyFailed. When no volume was backed up Run writes no
// manifest, deletes whatever objects the run put in the store, and returns
// the unwritten manifest (status Failed, per-volume errors) with an error
// wrapping ErrFailed. When ctx is cancelled it does the same and returns an
// error wrapping ctx's error. Errors before anything was created (unknown
// StatefulSet, no snapshot class for a forced snapshot) come with a nil
// manifest. Every cluster object the run made is deleted before Run
// returns, except VolumeSnapshots kept by KeepSnapshots.
func Run(ctx context.Context, deps Deps, opts Options) (_ *catalog.Manifest, err error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	deps.setDefaults()
	if deps.Kube == nil || deps.Catalog == nil {
		return nil, errors.New("backup: a Kubernetes client and a catalog are required")
	}
	if (len(opts.PreHook) > 0 || len(opts.PostHook) > 0) && deps.Exec == nil || len(opts.HoldHook) > 0 && deps.Session == nil {
		return nil, fmt.Errorf("%w: hooks need a REST config to exec in pods", ErrUsage)
	}
	started := deps.Now().UTC()

	d, err := kube.Discover(ctx, deps.Kube, opts.Namespace, opts.StatefulSet)
	if err != nil {
		return nil, err
	}
	id := opts.ID
	if id == "" {
		rnd := deps.Rand
		if rnd == nil {
			rnd = rand.Reader
		}
		if id, err = catalog.NewID(opts.StatefulSet, started, rnd); err != nil {
			return nil, err
		}
	}
	layout, err := catalog.NewLayout(opts.Namespace, opts.StatefulSet, id, opts.Format)
	if err != nil {
		return nil, err
	}
	_, created, _ := catalog.ParseID(id)
	r := &run{
		deps: deps, opts: opts, id: id, layout: layout,
		log: deps.Log.With("namespace", opts.Namespace, "statefulset", opts.StatefulSet, "backup_id", id),
	}
	defer func() { r.recordEvent(ctx, d.StatefulSet, err) }()
	r.movers = &moverrun.Launcher{
		Kube: deps.Kube, PodStartTimeout: opts.PodStartTimeout, TransferTimeout: opts.TransferTimeout,
		CleanupTimeout: opts.CleanupTimeout, PollInterval: opts.PollInterval, Log: r.log, Progress: opts.Progress,
	}

	if err := r.resolveSecurity(ctx, d); err != nil {
		return nil, err
	}
	vols, err := r.plan(ctx, d)
	if err != nil {
		return nil, err
	}
	r.parents = r.findParents(ctx)
	if opts.Format == catalog.FormatRepo {
		created, err := deps.Catalog.InitData(ctx, opts.KbakVersion)
		if err != nil {
			return nil, fmt.Errorf("open the repository: %w", err)
		}
		if r.moverKey, err = deps.Catalog.WriteKeyFile(ctx); err != nil {
			return nil, fmt.Errorf("open the repository: %w", err)
		}
		if created && r.moverKey == nil {
			r.log.Warn("created a new repository (format 2) WITHOUT encryption in the store: for an encrypted one, create it with `kbak repo init` before the first backup")
		} else if created {
			r.log.Info("created a new encrypted repository (format 2) in the store")
		}
	} else if k, err := deps.Catalog.WriteKeyFile(ctx); err != nil && !errors.Is(err, repo.ErrNeedKey) {
		return nil, fmt.Errorf("open the repository: %w", err)
	} else if err != nil || k != nil {
		// Format 1 archives are not encrypted: they must not land beside
		// an encrypted repository as if they were.
		return nil, fmt.Errorf("%w: --format 1 writes unencrypted archives, and this store holds an encrypted repository: drop --format 1", ErrUsage)
	}
	if err := r.useSecret(ctx); err != nil {
		return nil, err
	}
	ownKey := r.moverKey != nil && opts.KeySecretName == ""
	if opts.Credentials != nil || ownKey {
		// Copies of credentials and keys that killed runs left here go
		// before this run makes its own (it has the rights to).
		moverrun.SweepDeadRuns(ctx, deps.Kube, deps.Snap, r.log, opts.Namespace, deps.Now(), opts.DeadRunAge, opts.CleanupTimeout)
	}
	// From here on the run creates objects; they all go, on every path.
	defer r.cleanup(ctx)
	var secrets []string // made by this run, marked alive while it runs
	if opts.Credentials != nil {
		if err := r.createSecret(ctx); err != nil {
			return nil, err
		}
		secrets = append(secrets, r.secret.Name)
	}
	if r.moverKey != nil && !ownKey {
		r.key = deploy.KeyRef{Name: opts.KeySecretName}
	} else if ownKey {
		name := kube.Name("kbak", r.id, "key")
		if r.key, err = moverrun.CreateKeySecret(ctx, r.deps.Kube, r.opts.Namespace, name, kube.Labels(r.id, r.opts.StatefulSet, kube.RoleCredentials), r.moverKey); err != nil {
			return nil, err
		}
		secrets = append(secrets, r.key.Name)
	}
	defer moverrun.KeepAlive(ctx, deps.Kube, opts.Namespace, secrets, 0, r.log)()

	m := &catalog.Manifest{
		Format:        formatOf(opts.Format),
		ID:            id,
		KbakVersion:   opts.KbakVersion,
		ClusterID:     r.clusterID(ctx),
		Namespace:     opts.Namespace,
		StatefulSet:   opts.StatefulSet,
		Created:       created,
		Started:       started,
		Spec:          catalog.StripStatefulSet(d.StatefulSet),
		MoverSecurity: string(r.security),
	}
	spread := r.execute(ctx, vols)
	m.SnapshotSpread = metav1.Duration{Duration: spread}
	m.Hooks = r.hooks
	for _, v := range vols {
		m.Volumes = append(m.Volumes, r.entry(v))
	}
	m.Finished = deps.Now().UTC()
	m.Status = catalog.OverallStatus(m.Volumes)

	if err := ctx.Err(); err != nil {
		m.Status = catalog.StatusFailed
		r.release(ctx, vols)
		r.dropObjects(ctx)
		return m, fmt.Errorf("backup %s interrupted, nothing kept: %w", id, context.Cause(ctx))
	}
	if m.Status == catalog.StatusFailed {
		r.dropObjects(ctx)
		return m, fmt.Errorf("%w: %s: no volume was backed up: %s", ErrFailed, id, volumeErrors(m.Volumes))
	}
	if err := deps.Catalog.WriteManifest(ctx, m); err != nil {
		// Without a manifest nothing refers to kept snapshots any more.
		r.release(ctx, vols)
		return m, fmt.Errorf("backup %s: %w", id, err)
	}
	r.log.Info("wrote manifest", "status", m.Status)
	if m.Status == catalog.StatusPartiallyFailed {
		return m, fmt.Errorf("%w: %s: %s", ErrPartiallyFailed, id, volumeErrors(m.Volumes))
	}
	return m, nil
}

// volumeErrors says what failed, once per error: the volumes of a group
// snapshot the storage refused share one message.
func volumeErrors(vols []catalog.Volume) string {
	var msgs []string
	pvcs := map[string][]string{}
	for _, v := range vols {
		if v.Status == catalog.VolumeFailed || v.Unreadable > 0 {
			if pvcs[v.Error] == nil {
				msgs = append(msgs, v.Error)
			}
			pvcs[v.Error] = append(pvcs[v.Error], v.PVC)
		}
	}
	parts := make([]string, len(msgs))
	for i, m := range msgs {
		parts[i] = strings.Join(pvcs[m], ", ") + ": " + m
	}
	return strings.Join(parts, "; ")
}

// plan decides, for every claim, whether and how it is backed up. Errors are
// for requests that cannot be met at all (a forced method that is
// impossible), before anything is created.
func (r *run) plan(ctx context.Context, d *kube.Discovery) ([]*volume, error) {
	claims := append([]kube.Claim(nil), d.Claims...)
	claims = append(claims, d.Retained...)
	classes := map[string]classChoice{}
	groups := map[string]classChoice{}
	var vols []*volume
	for _, c := range claims {
		v := &volume{claim: c, name: kube.VolumeObjectName(r.id, c.Ordinal, c.Template)}
		vols = append(vols, v)
		log := r.log.With("pvc", c.Name)
		switch {
		case c.Retained && !r.opts.IncludeRetained:
			v.skipped = hint.Sprintf(r.opts.Spell, "claim of ordinal %d, beyond the current replicas (left by a scale-down): pass %s to back it up", c.Ordinal, hint.Of(hint.IncludeRetained))
			log.Warn("skipping retained claim", "reason", v.skipped)
			continue
		case !c.OK():
			v.err = errors.New(c.Problem)
			log.Warn("cannot back up claim", "reason", c.Problem)
			continue
		}
		choice, ok := classes[c.Driver]
		if !ok {
			choice = r.chooseClass(ctx, c.Driver)
			classes[c.Driver] = choice
		}
		method, class, err := chooseMethod(r.opts.Method, c, choice)
		if err != nil {
			return nil, err
		}
		v.method, v.class = method, class
		if v.groupClass, err = r.chooseGroup(ctx, v, groups); err != nil {
			return nil, err
		}
		log.Info("planned volume", "method", method, "snapshot_class", class, "group_snapshot_class", v.groupClass, "driver", c.Driver)
	}
	return vols, nil
}

// chooseGroup returns the VolumeGroupSnapshotClass v is cut with, or ""
// to cut it on its own. An error (--group always for a claim that cannot
// be grouped) comes before anything is created.
func (r *run) chooseGroup(ctx context.Context, v *volume, cache map[string]classChoice) (string, error) {
	if r.opts.Group == GroupNever {
		return "", nil
	}
	always := r.opts.Group == GroupAlways
	if v.method != catalog.MethodSnapshot {
		if always {
			return "", hint.Errorf("%w: %s: claim %s is not snapshotted (its driver %q has no VolumeSnapshotClass), so it cannot be cut in a group snapshot: use %s", ErrUsage, hint.Set(hint.Group, "always"), v.claim.Name, v.claim.Driver, hint.Set(hint.Group, "auto"))
		}
		return "", nil
	}
	if r.opts.KeepSnapshots {
		// The members of a group snapshot go when it goes: kept
		// snapshots are cut one by one (always was refused earlier).
		return "", nil
	}
	choice, ok := cache[v.claim.Driver]
	if !ok {
		c, err := kube.FindGroupSnapshotClass(ctx, r.deps.Snap, v.claim.Driver, r.opts.GroupSnapshotClass)
		if err == nil {
			choice.class = c.Name
		} else {
			choice.err = err
			if !errors.Is(err, kube.ErrNoGroupSnapshotClass) {
				r.log.Warn("look up VolumeGroupSnapshotClass", "driver", v.claim.Driver, "err", err)
			}
		}
		cache[v.claim.Driver] = choice
	}
	if choice.err != nil {
		if always || r.opts.GroupSnapshotClass != "" {
			return "", fmt.Errorf("%w: claim %s: %w", ErrUsage, v.claim.Name, choice.err)
		}
		return "", nil
	}
	return choice.class, nil
}

// resolveSecurity decides how the movers run in the StatefulSet's
// namespace, before anything is created.
func (r *run) resolveSecurity(ctx context.Context, d *kube.Discovery) error {
	ps, err := kube.NamespacePodSecurity(ctx, r.deps.Kube, r.opts.Namespace)
	if err != nil {
		return err
	}
	r.runAs = deploy.RunAsOf(&d.StatefulSet.Spec.Template.Spec)
	r.security, err = moverrun.ResolveSecurity(r.opts.MoverSecurity, ps, r.runAs, moverrun.SecurityNeeds{})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if ps.Unknown {
		r.log.Warn("cannot read the namespace's Pod Security level: movers run as root with baseline's capabilities unless told otherwise", "mover_security", r.security)
	}
	r.log.Info("mover security", "mover_security", r.security, "pod_security", ps.Enforce)
	return nil
}

// classChoice is the outcome of looking up a driver's VolumeSnapshotClass.
type classChoice struct {
	class string
	err   error // why there is none
}

func (r *run) chooseClass(ctx context.Context, driver string) classChoice {
	if r.opts.Method == MethodFiles || r.deps.Snap == nil {
		return classChoice{err: fmt.Errorf("%w: snapshots not used", kube.ErrNoSnapshotClass)}
	}
	c, err := kube.FindSnapshotClass(ctx, r.deps.Snap, driver, r.opts.SnapshotClass)
	if err != nil {
		if !errors.Is(err, kube.ErrNoSnapshotClass) {
			r.log.Warn("look up VolumeSnapshotClass", "driver", driver, "err", err)
		}
		return classChoice{err: err}
	}
	return classChoice{class: c.Name}
}

// chooseMethod picks how claim c is read. An error means the options ask
// for something impossible; a claim that auto mode cannot read at all comes
// back as a files method whose run will fail with advice.
func chooseMethod(m Method, c kube.Claim, choice classChoice) (catalog.Method, string, error) {
	liveRWOP := c.HasAccessMode(corev1.ReadWriteOncePod) && c.Pod != nil
	rwopErr := hint.Errorf("claim %s is ReadWriteOncePod and mounted by pod %s, so its files cannot be read live: use %s (needs a VolumeSnapshotClass for driver %q) or scale the StatefulSet down", c.Name, podName(c.Pod), hint.Set(hint.Method, "snapshot"), c.Driver)
	switch m {
	case MethodSnapshot:
		if choice.err != nil {
			return "", "", fmt.Errorf("claim %s: %w", c.Name, choice.err)
		}
		return catalog.MethodSnapshot, choice.class, nil
	case MethodFiles:
		if liveRWOP {
			return "", "", rwopErr
		}
		return catalog.MethodFiles, "", nil
	default:
		if choice.err == nil {
			return catalog.MethodSnapshot, choice.class, nil
		}
		if liveRWOP {
			return "", "", fmt.Errorf("%w (%w)", rwopErr, choice.err)
		}
		return catalog.MethodFiles, "", nil
	}
}

func podName(p *corev1.Pod) string {
	if p == nil {
		return ""
	}
	return p.Name
}

// useSecret checks the Secret named by SecretName, so that a typo fails
// before anything is created.
func (r *run) useSecret(ctx context.Context) error {
	if r.opts.SecretName == "" {
		return nil
	}
	ref, err := moverrun.UseSecret(ctx, r.deps.Kube, r.opts.Namespace, r.opts.SecretName)
	var se *moverrun.SecretError
	if errors.As(err, &se) && se.NotFound() {
		return hint.Errorf("%w: create it with keys %s and %s, or drop %s", err, deploy.KeyAccessKeyID, deploy.KeySecretAccessKey, hint.Of(hint.SecretName))
	}
	r.secret = ref
	return err
}

// createSecret puts the caller's credentials into a Secret of this run; its
// name is derived from the run id, so a retry replaces the last try's.
func (r *run) createSecret(ctx context.Context) (err error) {
	name := kube.Name("kbak", r.id, "creds")
	r.secret, err = moverrun.CreateSecret(ctx, r.deps.Kube, r.opts.Namespace, name, kube.Labels(r.id, r.opts.StatefulSet, kube.RoleCredentials), *r.opts.Credentials)
	return err
}

// clusterID is the UID of kube-system, which survives everything but a new
// cluster. An error only costs the manifest that field.
func (r *run) clusterID(ctx context.Context) string {
	ns, err := r.deps.Kube.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
	if err != nil {
		r.log.Debug("read cluster id", "err", err)
		return ""
	}
	return string(ns.UID)
}

// execute backs up the planned volumes and returns the spread of the
// snapshot cuts.
func (r *run) execute(ctx context.Context, vols []*volume) time.Duration {
	var snaps, files []*volume
	for _, v := range vols {
		if v.skipped != "" || v.err != nil {
			continue
		}
		if v.method == catalog.MethodSnapshot {
			snaps = append(snaps, v)
		} else {
			files = append(files, v)
		}
	}
	if r.opts.Queued != nil {
		for _, v := range vols {
			if v.skipped == "" && v.err == nil {
				r.opts.Queued(v.claim.Name, r.parents[v.claim.Name].bytes)
			}
		}
	}
	pool := moverrun.NewPool(r.opts.Parallel)
	spread := r.cut(ctx, snaps)
	// The live files are copied first, so that no copy of a quiesced
	// application waits for a slot behind a snapshot's upload; with hooks
	// they all run at once, whatever the limit, so that none waits for
	// another either. The application stays quiesced until its live files
	// are copied, and not longer.
	copied := make(chan struct{})
	if len(files) == 0 {
		close(copied)
	} else {
		var hold time.Duration
		for _, v := range files {
			hold = max(hold, r.movers.ActiveDeadline(v.claim.Size.Value()))
		}
		thaw, err := r.quiesce(ctx, r.hookTargets(files), hold)
		if err != nil {
			for _, v := range files {
				v.err = err
			}
			close(copied)
		} else {
			copying := pool.Share()
			if r.hooksEnabled() {
				copying = moverrun.NewPool(len(files))
			}
			for _, v := range files {
				v.quiesced = r.hooksEnabled() && v.claim.Pod != nil
				r.start(ctx, copying, v, r.fromFiles)
			}
			go func() {
				defer close(copied)
				copying.Wait()
				if thaw() {
					for _, v := range files {
						v.quiesced = false
					}
				}
			}()
		}
	}
	for _, v := range snaps {
		if v.err == nil {
			r.start(ctx, pool, v, r.fromSnapshot)
		}
	}
	<-copied
	pool.Wait()
	return spread
}

// start backs up v with fn once the pool has room.
func (r *run) start(ctx context.Context, pool *moverrun.Pool, v *volume, fn func(context.Context, *volume) error) {
	pool.Go(ctx, &v.err, func(ctx context.Context) error {
		log := r.log.With("pvc", v.claim.Name)
		log.Info("backing up volume", "method", v.method)
		if err := fn(ctx, v); err != nil {
			log.Error("volume failed", "err", hint.Render(err, r.opts.Spell))
			return err
		}
		log.Info("volume done", "bytes", v.result.RawBytes, "stored_bytes", v.result.StoredBytes, "files", v.result.Files)
		return nil
	})
}

// heldPollInterval is how often a cut is polled while hooks hold the
// application: the quiesce ends at the first poll that sees the last cut,
// so it lasts at most this long past the storage's cut.
const heldPollInterval = 200 * time.Millisecond

// cutPollInterval is the poll interval of waiting for cuts: shorter while
// hooks hold the application.
func (r *run) cutPollInterval() time.Duration {
	if r.hooksEnabled() {
		return min(r.opts.PollInterval, heldPollInterval)
	}
	return r.opts.PollInterval
}

// cut quiesces, creates the VolumeSnapshots of vols one right after the
// other, waits until the storage has cut them all, and thaws at once; it
// returns the time between the first and the last cut.
func (r *run) cut(ctx context.Context, vols []*volume) time.Duration {
	if len(vols) == 0 {
		return 0
	}
	// Creating the snapshots, then their cuts, each take up to the
	// snapshot timeout.
	thaw, err := r.quiesce(ctx, r.hookTargets(vols), 2*r.opts.SnapshotTimeout)
	if err != nil {
		for _, v := range vols {
			v.err = err
		}
		return 0
	}
	defer thaw()
	// One group snapshot a driver, in the order the claims come.
	var drivers []string
	grouped := map[string][]*volume{}
	for _, v := range vols {
		if v.groupClass == "" {
			continue
		}
		if grouped[v.claim.Driver] == nil {
			drivers = append(drivers, v.claim.Driver)
		}
		grouped[v.claim.Driver] = append(grouped[v.claim.Driver], v)
	}
	var groups []*groupCut
	for i, d := range drivers {
		g := &groupCut{name: kube.GroupSnapshotName(r.id, i), vols: grouped[d]}
		groups = append(groups, g)
		if i >= kube.MaxGroups {
			// Cleanup finds a run's claim labels by these names.
			g.fail(hint.Errorf("claims on more than %d CSI drivers: use %s", kube.MaxGroups, hint.Set(hint.Group, "never")))
			continue
		}
		defer r.unlabelClaims(ctx, g)
		r.createGroup(ctx, g)
	}
	for _, v := range vols {
		if v.groupClass != "" {
			continue
		}
		v.snap = v.name
		vs := kube.NewVolumeSnapshot(r.opts.Namespace, v.name, v.claim.Name, v.class, kube.Labels(r.id, r.opts.StatefulSet, kube.RoleSnapshot))
		if _, err := kube.CreateVolumeSnapshot(ctx, r.deps.Snap, vs); err != nil {
			v.err = err
			continue
		}
		v.requested = r.deps.Now()
		v.quiesced = r.hooksEnabled() && v.claim.Pod != nil
		v.snapshot = &catalog.Snapshot{Name: v.name, Namespace: r.opts.Namespace, Class: v.class}
		r.log.Info("created snapshot", "pvc", v.claim.Name, "snapshot", v.name)
	}
	var wg sync.WaitGroup
	for _, g := range groups {
		if g.err == nil {
			wg.Go(func() { r.waitGroup(ctx, g) })
		}
	}
	for _, v := range vols {
		if v.err != nil || v.groupClass != "" {
			continue
		}
		wg.Go(func() {
			vs, err := kube.WaitSnapshot(ctx, r.deps.Snap, r.opts.Namespace, v.name, kube.SnapshotCut, r.cutPollInterval(), r.opts.SnapshotTimeout)
			if err != nil {
				v.err = err
				return
			}
			v.cut = cutTime(vs, r.deps.Now())
		})
	}
	wg.Wait()
	if thaw() {
		for _, v := range vols {
			v.quiesced = false
		}
	}
	// The members of the groups cut, found after the thaw.
	for _, g := range groups {
		if g.err == nil {
			wg.Go(func() { r.groupMembers(ctx, g) })
		}
	}
	wg.Wait()
	var cuts, requests []time.Time
	for _, v := range vols {
		if v.err == nil {
			cuts = append(cuts, v.cut)
			requests = append(requests, v.requested)
		}
	}
	// creationTime has whole seconds only; the spread of our own create
	// calls bounds it from below with our clock's resolution.
	return max(spreadOf(cuts), spreadOf(requests))
}

func cutTime(vs *snapv1.VolumeSnapshot, now time.Time) time.Time {
	if vs.Status != nil && vs.Status.CreationTime != nil {
		return vs.Status.CreationTime.Time
	}
	return now
}

func spreadOf(times []time.Time) time.Duration {
	if len(times) < 2 {
		return 0
	}
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	return times[len(times)-1].Sub(times[0])
}

// fromSnapshot waits for v's snapshot to be ready, restores it into a
// temporary claim and uploads that claim's files.
func (r *run) fromSnapshot(ctx context.Context, v *volume) error {
	ns := r.opts.Namespace
	vs, err := kube.WaitSnapshot(ctx, r.deps.Snap, ns, v.snap, kube.SnapshotReady, r.opts.PollInterval, r.opts.SnapshotTimeout)
	if err != nil {
		return err
	}
	if h, err := kube.SnapshotHandle(ctx, r.deps.Snap, vs); err != nil {
		r.log.Warn("read snapshot handle", "snapshot", v.snap, "err", err)
	} else {
		v.snapshot.Handle = h
	}
	src := v.claim
	if vs.Status != nil && vs.Status.RestoreSize != nil && vs.Status.RestoreSize.Cmp(src.Size) > 0 {
		// A claim smaller than its snapshot's content is refused by the
		// provisioner.
		src.Size = vs.Status.RestoreSize.DeepCopy()
	}
	tmp := kube.NewClaimFromSnapshot(ns, v.name, v.snap, src, kube.Labels(r.id, r.opts.StatefulSet, kube.RoleTempClaim))
	if _, err := kube.CreateClaim(ctx, r.deps.Kube, tmp); err != nil {
		return err
	}
	// Deferred after the mover ran, which deletes its pod first: pvc-protection
	// would hold a claim still mounted.
	defer r.deleteClaim(ctx, ns, tmp.Name)
	res, err := r.movers.Run(ctx, v.claim.Name, r.moverPod(v, tmp.Name, ""), v.claim.Size.Value())
	if err != nil {
		return err
	}
	if err := r.accept(v, res); err != nil {
		return err
	}
	if r.opts.KeepSnapshots {
		r.retain(ctx, v)
	}
	return nil
}

// fromFiles uploads the live claim's files from a pod on the node of the
// application pod, where a ReadWriteOnce volume is already attached.
func (r *run) fromFiles(ctx context.Context, v *volume) error {
	node := ""
	if v.claim.Pod != nil {
		node = v.claim.Pod.Spec.NodeName
	}
	res, err := r.movers.Run(ctx, v.claim.Name, r.moverPod(v, v.claim.Name, node), v.claim.Size.Value())
	if err != nil {
		return err
	}
	return r.accept(v, res)
}

// deleteClaim deletes a temporary claim on a context that survives
// cancellation of the run.
func (r *run) deleteClaim(ctx context.Context, ns, name string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.CleanupTimeout)
	defer cancel()
	err := r.deps.Kube.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		r.log.Warn("delete temporary claim", "pvc", name, "err", err)
	}
}

func (r *run) accept(v *volume, res *mover.Result) error {
	if want := r.layout.VolumeKey(v.claim.Name); res.Key != want {
		return fmt.Errorf("mover for %s wrote %s, not %s", v.claim.Name, res.Key, want)
	}
	v.result = res
	return nil
}

// retain marks v's snapshot as kept, so cleanup leaves it; when that fails
// the snapshot goes with the rest and the manifest says so.
func (r *run) retain(ctx context.Context, v *volume) {
	patch := []byte(`{"metadata":{"labels":{"` + kube.LabelRetained + `":"true"}}}`)
	_, err := r.deps.Snap.SnapshotV1().VolumeSnapshots(r.opts.Namespace).Patch(ctx, v.name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		r.log.Warn("keep snapshot", "snapshot", v.name, "err", err)
		return
	}
	v.snapshot.Retained = true
}

// release undoes retain for a run that ends without a manifest, so cleanup
// deletes the snapshots instead of leaving them unreferenced.
func (r *run) release(ctx context.Context, vols []*volume) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.CleanupTimeout)
	defer cancel()
	patch := []byte(`{"metadata":{"labels":{"` + kube.LabelRetained + `":null}}}`)
	for _, v := range vols {
		if v.snapshot == nil || !v.snapshot.Retained {
			continue
		}
		_, err := r.deps.Snap.SnapshotV1().VolumeSnapshots(r.opts.Namespace).Patch(ctx, v.name, types.MergePatchType, patch, metav1.PatchOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			r.log.Warn("release kept snapshot: delete it by hand", "snapshot", v.name, "err", err)
			continue
		}
		v.snapshot.Retained = false
	}
}

func (r *run) moverPod(v *volume, claim, node string) *corev1.Pod {
	res := deploy.DefaultMoverResources()
	if r.opts.Resources != nil {
		res = *r.opts.Resources
	}
	return deploy.MoverPod{
		Name:           v.name,
		Namespace:      r.opts.Namespace,
		Labels:         kube.Labels(r.id, r.opts.StatefulSet, kube.RoleMover),
		Image:          r.opts.Image,
		PullPolicy:     r.opts.PullPolicy,
		Args:           r.upload(v).Args(),
		Claim:          claim,
		ReadOnly:       true,
		NodeName:       node,
		Secret:         r.secret,
		Key:            r.key,
		Resources:      res,
		ActiveDeadline: r.movers.ActiveDeadline(v.claim.Size.Value()),
		Security:       r.security,
		RunAs:          r.runAs,
	}.Pod()
}

// entry renders v for the manifest.
func (r *run) entry(v *volume) catalog.Volume {
	c := v.claim
	e := catalog.Volume{
		ClaimTemplate: c.Template,
		Ordinal:       c.Ordinal,
		PVC:           c.Name,
		StorageClass:  c.StorageClass,
		AccessModes:   c.AccessModes,
		VolumeMode:    c.VolumeMode,
		CSIDriver:     c.Driver,
		Method:        v.method,
		Snapshot:      v.snapshot,
	}
	if c.PVC != nil {
		e.ClaimSpec = catalog.StripClaimSpec(&c.PVC.Spec)
		if q, ok := c.PVC.Spec.Resources.Requests[corev1.ResourceStorage]; ok {
			e.RequestedSize = q
		}
	}
	if c.PV != nil {
		if q, ok := c.PV.Spec.Capacity[corev1.ResourceStorage]; ok {
			e.Capacity = q
		}
	}
	switch {
	case v.method == catalog.MethodFiles && v.quiesced:
		e.Consistency = catalog.ConsistencyQuiesced
	case v.method == catalog.MethodFiles:
		e.Consistency = catalog.ConsistencyLive
	case v.method == catalog.MethodSnapshot && v.quiesced:
		// A group cut while hooks held the application is recorded
		// quiesced; its snapshot still names the group.
		e.Consistency = catalog.ConsistencyQuiesced
	case v.method == catalog.MethodSnapshot && v.snapshot != nil && v.snapshot.Group != "":
		e.Consistency = catalog.ConsistencyGroup
	case v.method == catalog.MethodSnapshot:
		e.Consistency = catalog.ConsistencyCrash
	}
	switch {
	case v.skipped != "":
		e.Status, e.Error = catalog.VolumeSkipped, v.skipped
	case v.err != nil:
		e.Status, e.Error = catalog.VolumeFailed, catalog.OneLine(hint.Render(v.err, r.opts.Spell))
	case v.result == nil:
		e.Status, e.Error = catalog.VolumeFailed, "not backed up (the run was interrupted)"
	default:
		e.Status = catalog.VolumeCompleted
		e.Key = v.result.Key
		e.RawBytes = v.result.RawBytes
		e.StoredBytes = v.result.StoredBytes
		e.Files = v.result.Files
		e.SHA256 = v.result.SHA256
		e.Compression = v.result.Compression
		e.ReadBytes, e.SkippedFiles = v.result.ReadBytes, v.result.SkippedFiles
		e.Chunks, e.NewChunks = v.result.Chunks, v.result.NewChunks
		if p := r.parents[c.Name]; p.key != "" && p.key == v.result.Parent {
			e.Parent = p.id
		}
		if n := v.result.Unreadable; n > 0 {
			e.Unreadable, e.UnreadableNames = n, v.result.UnreadableNames
			e.Error = unreadableError(n, v.result.UnreadableNames, r.security)
		}
	}
	if e.Status != catalog.VolumeCompleted && e.Snapshot != nil {
		// Cleanup deletes the snapshot of a volume that was not backed up.
		e.Snapshot.Retained = false
	}
	return e
}

// unreadableError says what a volume's backup left out for want of the
// right to read it.
func unreadableError(n int64, names []string, sec deploy.Security) string {
	s := fmt.Sprintf("%d file(s) or directories could not be read by the %s mover and were left out (%s", n, sec, strings.Join(names, ", "))
	if int64(len(names)) < n {
		s += ", …"
	}
	s += "): make them readable by the application's user or group"
	if sec == deploy.SecurityUnprivileged {
		s += ", or back up where the namespace admits root movers"
	}
	return s
}

// dropObjects deletes whatever this run put in the store, for a run that
// ends without a manifest.
func (r *run) dropObjects(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.CleanupTimeout)
	defer cancel()
	_, err := r.deps.Catalog.Delete(ctx, r.id)
	var locked *catalog.LockedBackup
	switch {
	case errors.As(err, &locked):
		// Written with retention: they cannot go before the date.
		r.log.Info("objects of the failed backup stay under Object Lock; kbak gc removes them after", "objects", locked.Objects, "until", locked.Until)
	case err != nil && !errors.Is(err, catalog.ErrBackupNotFound):
		r.log.Warn("delete objects of the failed backup (kbak gc removes them later)", "err", err)
	}
}

// cleanup deletes every cluster object of the run, on a context that
// survives the run's cancellation; `kbak gc` retries what it could not.
func (r *run) cleanup(ctx context.Context) {
	if err := r.deleteObjects(ctx); err != nil {
		r.log.Warn("clean up after backup (kbak gc retries)", "err", err)
	}
}

// deleteObjects deletes what the run made in the cluster, by label: mover
// pods first, then temporary claims, VolumeSnapshots not kept on purpose,
// and the credentials Secret when it made one.
func (r *run) deleteObjects(ctx context.Context) error {
	interrupted := ctx.Err() != nil
	parent := context.WithoutCancel(ctx)
	ctx, cancel := context.WithTimeout(parent, r.opts.CleanupTimeout)
	defer cancel()
	o := kube.CleanupOptions{
		Namespace: r.opts.Namespace, BackupID: r.id, PodGoneTimeout: r.opts.CleanupTimeout,
		// A schedule's ServiceAccount may not even list Secrets.
		NoSecrets: r.opts.Credentials == nil,
	}
	// Recorded first: a deleted snapshot's content is found by name only.
	snaps, listErr := kube.RunSnapshotRefs(ctx, r.deps.Snap, o)
	err := kube.DeleteRun(ctx, r.deps.Kube, r.deps.Snap, r.log, o)
	if listErr != nil || len(snaps) == 0 {
		return err
	}
	wait := r.opts.SnapshotGoneTimeout
	if interrupted {
		wait = 0 // Ctrl-C: say where they are, do not keep the user waiting
	}
	wctx, wcancel := context.WithTimeout(parent, wait+r.opts.CleanupTimeout)
	defer wcancel()
	left, waitErr := kube.WaitSnapshotsGone(wctx, r.deps.Snap, snaps, r.opts.PollInterval, wait)
	r.reportSnapshots(left, wait)
	if waitErr != nil {
		r.log.Warn("check that the run's VolumeSnapshots are gone", "err", waitErr)
	}
	return err
}

// reportSnapshots says which of the run's VolumeSnapshots are not gone
// when it ends. One being deleted is no failure: the snapshot controller
// holds it until the CSI driver has deleted its data, and it goes on its
// own. One not even marked for deletion is left behind for kbak gc.
func (r *run) reportSnapshots(left []kube.SnapshotStatus, waited time.Duration) {
	var deleting, behind []string
	for _, s := range left {
		if s.State == kube.SnapshotDeleting {
			deleting = append(deleting, s.String())
		} else {
			behind = append(behind, s.String())
		}
	}
	if len(deleting) > 0 {
		r.log.Warn("VolumeSnapshots still deleting: the snapshot controller holds them until the storage has deleted their data; they go on their own, and kbak gc lists them apart from leftovers",
			"waited", waited.String(), "snapshots", strings.Join(deleting, ", "))
	}
	if len(behind) > 0 {
		r.log.Warn("VolumeSnapshots not deleted (kbak gc removes them)", "snapshots", strings.Join(behind, ", "))
	}
}
