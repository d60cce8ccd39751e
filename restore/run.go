package restore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kbak/kbak/deploy"
	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/hint"
	"github.com/kbak/kbak/internal/kube"
	"github.com/kbak/kbak/internal/mover"
	"github.com/kbak/kbak/internal/moverrun"
	"github.com/kbak/kbak/internal/repo"
)

// Status is the outcome of one ordinal or claim.
type Status string

// Statuses.
const (
	StatusRestored Status = "Restored"
	// StatusFailed: the claim (or one of the ordinal's claims) could not be
	// filled; the ordinal's claims this run created were deleted.
	StatusFailed Status = "Failed"
)

// Result is what a restore did.
type Result struct {
	RunID            string `json:"runID"`
	BackupID         string `json:"backupID"`
	Namespace        string `json:"namespace"`
	StatefulSet      string `json:"statefulSet"`
	CreatedNamespace bool   `json:"createdNamespace"`
	// MoverSecurity is how the movers ran (Plan.MoverSecurity).
	MoverSecurity deploy.Security `json:"moverSecurity,omitempty"`
	Ordinals      []OrdinalResult `json:"ordinals"`
	// StatefulSetCreated and StatefulSetReady report --create-statefulset.
	StatefulSetCreated bool `json:"statefulSetCreated"`
	StatefulSetReady   bool `json:"statefulSetReady"`
	// Skipped are the backup's ordinals the restore left out, and why:
	// a StatefulSet scaled over them starts them with empty claims.
	Skipped []Skipped `json:"skipped,omitempty"`
	// Notes are what the operator should know about the restored data:
	// the plan's notes (but the namespace's creation, which
	// CreatedNamespace says) and what the movers left out of each claim.
	Notes []string `json:"notes,omitempty"`
	// NextStep says what the operator does next, when anything.
	NextStep string `json:"nextStep,omitempty"`
	// Warnings are problems that did not fail the restore but need a person.
	Warnings []string `json:"warnings,omitempty"`
}

// OrdinalResult is the outcome of one ordinal: all its claims or none.
type OrdinalResult struct {
	Ordinal int           `json:"ordinal"`
	Status  Status        `json:"status"`
	Error   string        `json:"error,omitempty"`
	Claims  []ClaimResult `json:"claims"`
}

// ClaimResult is the outcome of one claim.
type ClaimResult struct {
	PVC      string        `json:"pvc"`
	Template string        `json:"claimTemplate"`
	Source   Source        `json:"source"`
	Status   Status        `json:"status"`
	Error    string        `json:"error,omitempty"`
	Files    int64         `json:"files"`
	RawBytes int64         `json:"rawBytes"`
	Duration time.Duration `json:"duration"`
	// What the mover left out, without Options.RestoreDevices and
	// RestoreSetID: device nodes not created and files restored without
	// their setuid and setgid bits or file capabilities, with the first
	// names (relative to the volume).
	SkippedDevices     int64    `json:"skippedDevices,omitempty"`
	SkippedDeviceNames []string `json:"skippedDeviceNames,omitempty"`
	ClearedSetID       int64    `json:"clearedSetID,omitempty"`
	ClearedSetIDNames  []string `json:"clearedSetIDNames,omitempty"`
	// OwnersNotSet counts the entries an unprivileged mover could not give
	// their owner or mode (an owner other than the application's user):
	// they stay the mover's, which is the application's user.
	OwnersNotSet      int64    `json:"ownersNotSet,omitempty"`
	OwnersNotSetNames []string `json:"ownersNotSetNames,omitempty"`
}

// Restored returns the ordinals that were restored.
func (r *Result) Restored() []int {
	var out []int
	for _, o := range r.Ordinals {
		if o.Status == StatusRestored {
			out = append(out, o.Ordinal)
		}
	}
	return out
}

// run is the state of one restore.
type run struct {
	deps Deps
	opts Options
	plan *Plan
	log  *slog.Logger

	secret    deploy.SecretRef // the credentials Secret the movers read
	ownSecret bool             // made by this run, deleted after it
	key       deploy.KeyRef    // the Secret with the read key, made by this run
	swept     bool             // dead runs' Secrets were swept (sweepDeadRuns)
	movers    *moverrun.Launcher

	mu      sync.Mutex
	created map[string]types.UID // claims this run created, by name
}

// job is one claim's way through a run.
type job struct {
	claim  Claim
	result *mover.Result
	err    error
	took   time.Duration
}

// Run carries out plan p. It refuses a plan with conflicts before creating
// anything. Each ordinal's claims are created and filled (a kept snapshot
// is their dataSource, or a mover pod downloads into them, several at once);
// an ordinal with a failed claim loses every claim this run created for it,
// the others stay. When no ordinal is restored, or ctx is cancelled, every
// claim the run created is deleted, and the namespace too when the run made
// it. Mover pods and the credentials Secret go on every path. A partial
// restore returns the Result with an error wrapping ErrPartiallyFailed; a
// failed one wraps ErrFailed or ctx's error.
func Run(ctx context.Context, deps Deps, p *Plan) (*Result, error) {
	if p == nil || p.manifest == nil {
		return nil, errors.New("restore: run needs a plan from NewPlan")
	}
	if err := p.Err(); err != nil {
		return nil, err
	}
	deps.setDefaults()
	r := &run{
		deps: deps, opts: p.opts, plan: p, created: map[string]types.UID{},
		log: deps.Log.With("namespace", p.Namespace, "statefulset", p.StatefulSet, "backup_id", p.BackupID, "restore_id", p.RunID),
	}
	r.movers = &moverrun.Launcher{
		Kube: deps.Kube, PodStartTimeout: p.opts.PodStartTimeout, TransferTimeout: p.opts.TransferTimeout,
		CleanupTimeout: p.opts.CleanupTimeout, PollInterval: p.opts.PollInterval, Log: r.log, Progress: p.opts.Progress,
	}
	res := &Result{RunID: p.RunID, BackupID: p.BackupID, Namespace: p.Namespace, StatefulSet: p.StatefulSet,
		MoverSecurity: p.MoverSecurity, Skipped: slices.Clone(p.Skipped), Notes: p.resultNotes()}
	defer func() { res.Notes = append(res.Notes, r.withheldNotes(res)...) }()

	if p.CreateNamespace {
		made, err := r.createNamespace(ctx)
		if err != nil {
			return nil, err
		}
		res.CreatedNamespace = made
	}
	// From here on the run creates objects; the temporary ones go on every
	// path, the claims when their ordinal fails.
	defer r.cleanup(ctx)
	if err := r.setupSecret(ctx); err != nil {
		r.undo(ctx, res)
		return res, err
	}
	if err := r.setupKey(ctx); err != nil {
		r.undo(ctx, res)
		return res, err
	}
	var secrets []string // made by this run, marked alive while movers need them
	if r.ownSecret {
		secrets = append(secrets, r.secret.Name)
	}
	if r.key.Name != "" {
		secrets = append(secrets, r.key.Name)
	}
	stopAlive := moverrun.KeepAlive(ctx, deps.Kube, p.Namespace, secrets, 0, r.log)
	defer stopAlive()

	jobs := r.fill(ctx)
	res.Ordinals = r.outcome(jobs)
	// The credentials need not wait for the StatefulSet to become ready.
	stopAlive()
	r.cleanup(ctx)

	restored := res.Restored()
	if err := ctx.Err(); err != nil {
		r.undo(ctx, res)
		return res, fmt.Errorf("restore %s interrupted, every claim it made was deleted: %w", p.RunID, context.Cause(ctx))
	}
	for _, o := range res.Ordinals {
		if o.Status != StatusRestored {
			res.Warnings = append(res.Warnings, r.deleteClaims(ctx, o.Claims)...)
		}
	}
	if len(restored) == 0 {
		r.undo(ctx, res)
		return res, fmt.Errorf("%w: %s: no ordinal was restored, every claim it made was deleted: %s", ErrFailed, p.RunID, ordinalErrors(res))
	}
	warnings, vanished := r.release(ctx, res)
	res.Warnings = append(res.Warnings, warnings...)
	if len(vanished) > 0 {
		// Never report data as restored that is not there, nor let a
		// StatefulSet make empty claims in their place.
		return res, fmt.Errorf("%w: %s: restored claims %s were deleted by someone else before the restore ended: restore again", ErrFailed, p.RunID, strings.Join(vanished, ", "))
	}

	if len(restored) < len(res.Ordinals) {
		res.NextStep = hint.Sprintf(r.opts.Spell, "retry the failed ordinals: kbak restore %s %s %s%s %s; then run the StatefulSet %s/%s with %d replicas",
			p.BackupID, hint.Set(hint.From, "sts/"+p.FromStatefulSet), hint.Set(hint.Namespace, p.FromNamespace), r.targetSettings(), hint.Set(hint.Ordinals, joinInts(failedOrdinals(res))), p.Namespace, p.StatefulSet, p.Replicas)
		return res, fmt.Errorf("%w: %s: restored ordinals %s, failed: %s", ErrPartiallyFailed, p.RunID, joinInts(restored), ordinalErrors(res))
	}
	if !p.CreateStatefulSet {
		res.NextStep = r.nextStep()
		return res, nil
	}
	if err := r.createStatefulSet(ctx, res); err != nil {
		return res, err
	}
	return res, nil
}

// resultNotes are the plan's notes a Result repeats.
func (p *Plan) resultNotes() []string {
	var out []string
	for _, n := range p.Notes {
		if n != p.nsNote {
			out = append(out, n)
		}
	}
	return out
}

// withheldNotes say, for each restored claim, what its mover left out and
// which setting restores it.
func (r *run) withheldNotes(res *Result) []string {
	var out []string
	names := func(n int64, first []string) string {
		s := strings.Join(first, ", ")
		if int64(len(first)) < n {
			s += ", …"
		}
		return s
	}
	for _, o := range res.Ordinals {
		if o.Status != StatusRestored {
			continue
		}
		for _, c := range o.Claims {
			if c.SkippedDevices > 0 {
				out = append(out, hint.Sprintf(r.opts.Spell, "%s: %d device node(s) of the backup not created (%s): %s creates them",
					c.PVC, c.SkippedDevices, names(c.SkippedDevices, c.SkippedDeviceNames), hint.Of(hint.RestoreDevices)))
			}
			if c.ClearedSetID > 0 {
				out = append(out, hint.Sprintf(r.opts.Spell, "%s: %d file(s) restored without their setuid/setgid bits or file capabilities (%s): %s keeps them",
					c.PVC, c.ClearedSetID, names(c.ClearedSetID, c.ClearedSetIDNames), hint.Of(hint.RestoreSetID)))
			}
			if c.OwnersNotSet > 0 {
				out = append(out, hint.Sprintf(r.opts.Spell, "%s: %d entries kept the %s mover's owner or mode, not the backup's (%s): restore where the namespace admits root movers (%s) to set them",
					c.PVC, c.OwnersNotSet, r.plan.MoverSecurity, names(c.OwnersNotSet, c.OwnersNotSetNames), hint.Set(hint.MoverSecurity, "baseline")))
			}
		}
	}
	return out
}

func (r *run) nextStep() string {
	p := r.plan
	if p.StatefulSetExists {
		return fmt.Sprintf("scale the StatefulSet to adopt the claims: kubectl scale statefulset %s -n %s --replicas=%d", p.StatefulSet, p.Namespace, p.Replicas)
	}
	return hint.Sprintf(r.opts.Spell, "create the StatefulSet %s/%s with %d replicas from your own manifest: it adopts the restored claims by name (next time, %s re-creates the backup's spec)", p.Namespace, p.StatefulSet, p.Replicas, hint.Of(hint.CreateStatefulSet))
}

// targetSettings are the settings that restore into the same target again.
func (r *run) targetSettings() string {
	p := r.plan
	var s string
	if p.Namespace != p.FromNamespace {
		s += " " + hint.Sprintf(r.opts.Spell, "%s", hint.Set(hint.ToNamespace, p.Namespace))
	}
	if p.StatefulSet != p.FromStatefulSet {
		s += " " + hint.Sprintf(r.opts.Spell, "%s", hint.Set(hint.ToName, p.StatefulSet))
	}
	return s
}

func failedOrdinals(res *Result) []int {
	var out []int
	for _, o := range res.Ordinals {
		if o.Status != StatusRestored {
			out = append(out, o.Ordinal)
		}
	}
	return out
}

func ordinalErrors(res *Result) string {
	var parts []string
	for _, o := range res.Ordinals {
		if o.Status != StatusRestored {
			parts = append(parts, fmt.Sprintf("ordinal %d: %s", o.Ordinal, o.Error))
		}
	}
	return strings.Join(parts, "; ")
}

// runLabels mark an object of this run as temporary: cleanup and `kbak gc`
// find it by them.
func (r *run) runLabels(role string) map[string]string {
	return kube.RestoreLabels(r.plan.RunID, r.plan.StatefulSet, role)
}

func (r *run) createNamespace(ctx context.Context) (bool, error) {
	p := r.plan
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: p.Namespace, Labels: map[string]string{
		kube.LabelRestoreID: p.RunID, kube.LabelRestoredFrom: kube.LabelValue(p.BackupID),
	}}}
	_, err := r.deps.Kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		// Made since the plan was read, by someone else or a retry of this
		// run: used, but only deleted on failure when it carries this run's
		// label.
		got, gerr := r.deps.Kube.CoreV1().Namespaces().Get(ctx, p.Namespace, metav1.GetOptions{})
		return gerr == nil && got.Labels[kube.LabelRestoreID] == p.RunID, nil
	}
	if err != nil {
		return false, fmt.Errorf("create namespace %s: %w", p.Namespace, err)
	}
	r.log.Info("created namespace")
	return true, nil
}

// setupKey gives the movers the read key of an encrypted repository in a
// Secret of the run.
func (r *run) setupKey(ctx context.Context) (err error) {
	p := r.plan
	if len(r.opts.MoverKey) == 0 || !slices.ContainsFunc(p.Claims, func(c Claim) bool { return c.Source == SourceStore }) {
		return nil
	}
	r.sweepDeadRuns(ctx)
	r.key, err = moverrun.CreateKeySecret(ctx, r.deps.Kube, p.Namespace, kube.Name("kbak", p.RunID, "key"), r.runLabels(kube.RoleCredentials), r.opts.MoverKey)
	return err
}

// sweepDeadRuns removes the credential and key Secrets that dead kbak runs
// left in the target namespace, once, before this run makes its first
// Secret there (it has the rights to).
func (r *run) sweepDeadRuns(ctx context.Context) {
	if r.swept {
		return
	}
	r.swept = true
	moverrun.SweepDeadRuns(ctx, r.deps.Kube, r.deps.Snap, r.log, r.plan.Namespace, r.deps.Now(), r.opts.DeadRunAge, r.opts.CleanupTimeout)
}

// setupSecret gives the movers their store credentials in the target
// namespace, which on a new cluster or under --to-namespace is not where
// the user's Secret lives.
func (r *run) setupSecret(ctx context.Context) error {
	p, o := r.plan, r.opts
	if !slices.ContainsFunc(p.Claims, func(c Claim) bool { return c.Source == SourceStore }) {
		return nil
	}
	var creds deploy.Credentials
	switch {
	case o.Credentials != nil:
		creds = *o.Credentials
	case o.SecretName != "":
		ref, err := moverrun.UseSecret(ctx, r.deps.Kube, p.Namespace, o.SecretName)
		var se *moverrun.SecretError
		switch {
		case err == nil:
			r.secret = ref
			return nil
		case !errors.As(err, &se) || !se.NotFound():
			return err
		case p.Namespace == p.FromNamespace:
			return hint.Errorf("%w: create it with keys %s and %s, or drop %s", err, deploy.KeyAccessKeyID, deploy.KeySecretAccessKey, hint.Of(hint.SecretName))
		}
		creds, err = moverrun.ReadCredentials(ctx, r.deps.Kube, p.FromNamespace, o.SecretName)
		if errors.As(err, &se) && se.NotFound() {
			return hint.Errorf("secret %s not found in %s nor %s: create it in %s with keys %s and %s, or pass the credentials instead of %s", o.SecretName, p.Namespace, p.FromNamespace, p.Namespace, deploy.KeyAccessKeyID, deploy.KeySecretAccessKey, hint.Of(hint.SecretName))
		}
		if err != nil {
			return err
		}
	default:
		return nil
	}
	r.sweepDeadRuns(ctx)
	ref, err := moverrun.CreateSecret(ctx, r.deps.Kube, p.Namespace, kube.Name("kbak", p.RunID, "creds"), r.runLabels(kube.RoleCredentials), creds)
	if err != nil {
		return err
	}
	r.secret, r.ownSecret = ref, true
	return nil
}

// fill creates and fills every planned claim, Parallel at a time.
func (r *run) fill(ctx context.Context) []*job {
	jobs := make([]*job, len(r.plan.Claims))
	if r.opts.Queued != nil {
		for _, c := range r.plan.Claims {
			if c.Source == SourceStore {
				r.opts.Queued(c.Name, c.RawBytes)
			}
		}
	}
	pool := moverrun.NewPool(r.opts.Parallel)
	for i, c := range r.plan.Claims {
		j := &job{claim: c}
		jobs[i] = j
		pool.Go(ctx, &j.err, func(ctx context.Context) (err error) {
			start := time.Now()
			log := r.log.With("pvc", c.Name, "ordinal", c.Ordinal)
			log.Info("restoring claim", "source", c.Source)
			j.result, err = r.fillClaim(ctx, c)
			j.took = time.Since(start)
			if err != nil {
				log.Error("claim failed", "err", hint.Render(err, r.opts.Spell))
				return err
			}
			log.Info("claim restored", "bytes", j.result.RawBytes, "files", j.result.Files)
			return nil
		})
	}
	pool.Wait()
	return jobs
}

// fillClaim creates claim c and puts its data in: a pod that only mounts
// it binds and provisions a claim from a snapshot (a WaitForFirstConsumer
// class binds nothing before a pod uses it), a mover downloads into an
// empty one.
func (r *run) fillClaim(ctx context.Context, c Claim) (*mover.Result, error) {
	p := r.plan
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: c.Name, Namespace: p.Namespace, Labels: r.runLabels(kube.RoleRestoreClaim)},
		Spec:       *c.spec.DeepCopy(),
	}
	pvc.Labels[kube.LabelRestoredFrom] = kube.LabelValue(p.BackupID)
	got, err := kube.CreateClaim(ctx, r.deps.Kube, pvc)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.created[c.Name] = got.UID
	r.mu.Unlock()

	name := kube.Name("kbak", p.RunID, fmt.Sprint(c.Ordinal), c.Template)
	res := deploy.DefaultMoverResources()
	if r.opts.Resources != nil {
		res = *r.opts.Resources
	}
	spec := deploy.MoverPod{
		Name: name, Namespace: p.Namespace, Image: r.opts.Image, PullPolicy: r.opts.PullPolicy,
		Claim: c.Name, Resources: res, ActiveDeadline: r.movers.ActiveDeadline(c.RawBytes),
	}
	if c.Source == SourceSnapshot && c.VolumeMode == corev1.PersistentVolumeBlock {
		// A pod mounts a raw block claim as a device, which the mover pod
		// does not do: the claim is provisioned when its own pod starts.
		return &mover.Result{Files: c.Files, RawBytes: c.RawBytes}, nil
	}
	if c.Source == SourceSnapshot {
		spec.Labels = r.runLabels(kube.RoleBinder)
		spec.Args = binderArgs
		spec.ReadOnly = true
		// It only mounts its claim: nobody, with no capability, passes
		// every Pod Security level.
		spec.Security, spec.RunAs = deploy.SecurityUnprivileged, deploy.BinderRunAs()
		if err := r.movers.RunSilent(ctx, c.Name, spec.Pod(), c.RawBytes); err != nil {
			return nil, fmt.Errorf("provision %s from snapshot %s: %w", c.Name, c.Snapshot, err)
		}
		return &mover.Result{Files: c.Files, RawBytes: c.RawBytes}, nil
	}
	if err := needDigest(c); err != nil {
		return nil, err
	}
	spec.Labels = r.runLabels(kube.RoleMover)
	spec.Args = deploy.Download{Repo: r.opts.Repo, Key: c.Key, SHA256: c.SHA256,
		RestoreDevices: r.opts.RestoreDevices, RestoreSetID: r.opts.RestoreSetID}.Args()
	spec.Restore = true
	spec.RestoreDevices, spec.RestoreSetID = r.opts.RestoreDevices, r.opts.RestoreSetID
	spec.Security, spec.RunAs = p.MoverSecurity, p.runAs
	spec.Secret = r.secret
	spec.Key = r.key
	out, err := r.movers.Run(ctx, c.Name, spec.Pod(), c.RawBytes)
	if err != nil {
		return nil, err
	}
	return out, checkMoved(c, out)
}

// needDigest refuses to restore an archive (format 1) whose manifest records
// no digest: nothing could tell it from another. A tree (format 2) is named
// by its key and its chunks by their ids; backups written before trees had
// a digest record none.
func needDigest(c Claim) error {
	if c.SHA256 == "" && !strings.HasSuffix(c.Key, repo.TreeSuffix) {
		return fmt.Errorf("%s: the backup records no sha256 of archive %s, so nothing could tell it from another: restore from another backup", c.Name, c.Key)
	}
	return nil
}

// checkMoved compares what a mover says it restored into claim c with the
// manifest: the digest of the object it read (the mover refused a
// mismatch already; the restore counts only on what it reports, whatever
// image it ran) and the files and bytes it extracted.
func checkMoved(c Claim, out *mover.Result) error {
	if c.SHA256 != "" && !strings.EqualFold(out.SHA256, c.SHA256) {
		return fmt.Errorf("%s: the mover read %s with sha256 %q, the backup recorded %s: the object does not match its manifest", c.Name, c.Key, out.SHA256, c.SHA256)
	}
	if out.Files != c.Files || out.RawBytes != c.RawBytes {
		return fmt.Errorf("%s: extracted %d files and %d bytes, the backup recorded %d files and %d bytes: the archive does not match its manifest", c.Name, out.Files, out.RawBytes, c.Files, c.RawBytes)
	}
	return nil
}

// binderArgs make the mover image exit at once: the pod is there only to
// make the scheduler bind and the driver provision its claim.
var binderArgs = []string{"--version"}

// outcome groups the claims' results by ordinal: an ordinal is restored
// when all its claims are.
func (r *run) outcome(jobs []*job) []OrdinalResult {
	byOrd := map[int]*OrdinalResult{}
	var ords []int
	for _, j := range jobs {
		c := j.claim
		o := byOrd[c.Ordinal]
		if o == nil {
			o = &OrdinalResult{Ordinal: c.Ordinal, Status: StatusRestored}
			byOrd[c.Ordinal] = o
			ords = append(ords, c.Ordinal)
		}
		cr := ClaimResult{PVC: c.Name, Template: c.Template, Source: c.Source, Status: StatusRestored, Duration: j.took}
		switch {
		case j.err != nil:
			cr.Status, cr.Error = StatusFailed, catalog.OneLine(hint.Render(j.err, r.opts.Spell))
		case j.result == nil:
			cr.Status, cr.Error = StatusFailed, "not restored (the run was interrupted)"
		default:
			cr.Files, cr.RawBytes = j.result.Files, j.result.RawBytes
			cr.SkippedDevices, cr.SkippedDeviceNames = j.result.SkippedDevices, j.result.SkippedDeviceNames
			cr.ClearedSetID, cr.ClearedSetIDNames = j.result.ClearedSetID, j.result.ClearedSetIDNames
			cr.OwnersNotSet, cr.OwnersNotSetNames = j.result.OwnersNotSet, j.result.OwnersNotSetNames
		}
		if cr.Status == StatusFailed {
			o.Status = StatusFailed
			if o.Error == "" {
				o.Error = c.Name + ": " + cr.Error
			} else {
				o.Error += "; " + c.Name + ": " + cr.Error
			}
		}
		o.Claims = append(o.Claims, cr)
	}
	sort.Ints(ords)
	out := make([]OrdinalResult, 0, len(ords))
	for _, o := range ords {
		out = append(out, *byOrd[o])
	}
	return out
}

// release turns the restored claims from temporary objects of the run into
// the user's: without the run's labels `kbak gc` leaves them alone. It
// returns a warning per claim it could not release, and the claims that are
// gone.
func (r *run) release(ctx context.Context, res *Result) (warnings, vanished []string) {
	drop := map[string]any{}
	for _, k := range kube.TemporaryLabels {
		drop[k] = nil
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": drop}})
	for _, o := range res.Ordinals {
		if o.Status != StatusRestored {
			continue
		}
		for _, c := range o.Claims {
			_, err := r.deps.Kube.CoreV1().PersistentVolumeClaims(r.plan.Namespace).Patch(ctx, c.PVC, types.MergePatchType, patch, metav1.PatchOptions{})
			if apierrors.IsNotFound(err) {
				vanished = append(vanished, c.PVC)
				continue
			}
			if err != nil {
				w := fmt.Sprintf("claim %s/%s still carries kbak's temporary labels (%v), so `kbak gc` would delete it: remove them with kubectl label pvc %s -n %s %s-", r.plan.Namespace, c.PVC, err, c.PVC, r.plan.Namespace, strings.Join(kube.TemporaryLabels, "- "))
				r.log.Warn("release restored claim", "pvc", c.PVC, "err", err)
				warnings = append(warnings, w)
			}
		}
	}
	return warnings, vanished
}

// undo deletes every claim this run created and the namespace when the run
// created it.
func (r *run) undo(ctx context.Context, res *Result) {
	r.mu.Lock()
	var names []string
	for n := range r.created {
		names = append(names, n)
	}
	r.mu.Unlock()
	sort.Strings(names)
	var claims []ClaimResult
	for _, n := range names {
		claims = append(claims, ClaimResult{PVC: n})
	}
	res.Warnings = append(res.Warnings, r.deleteClaims(ctx, claims)...)
	for i := range res.Ordinals {
		res.Ordinals[i].Status = StatusFailed
		if res.Ordinals[i].Error == "" {
			res.Ordinals[i].Error = "deleted: the restore as a whole failed"
		}
	}
	if res.CreatedNamespace {
		r.deleteNamespace(ctx, r.plan.Namespace)
	}
}

// deleteClaims deletes the given claims that this run created, on a
// context that survives the run's cancellation, and returns a warning for
// each it could not delete. A claim kbak did not create, or one that was
// replaced since, is never touched.
func (r *run) deleteClaims(ctx context.Context, claims []ClaimResult) []string {
	var warnings []string
	left := func(pvc string, err error) {
		r.log.Warn("delete claim of a failed ordinal", "pvc", pvc, "err", err)
		warnings = append(warnings, fmt.Sprintf("claim %s/%s of a failed ordinal could not be deleted (%v): delete it with kubectl delete pvc %s -n %s", r.plan.Namespace, pvc, err, pvc, r.plan.Namespace))
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.CleanupTimeout)
	defer cancel()
	api := r.deps.Kube.CoreV1().PersistentVolumeClaims(r.plan.Namespace)
	for _, c := range claims {
		r.mu.Lock()
		uid, ok := r.created[c.PVC]
		r.mu.Unlock()
		if !ok {
			continue
		}
		got, err := api.Get(ctx, c.PVC, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			left(c.PVC, err)
			continue
		}
		if got.Labels[kube.LabelRestoreID] != r.plan.RunID || (uid != "" && got.UID != uid) {
			r.log.Warn("not deleting a claim this run did not create", "pvc", c.PVC)
			continue
		}
		opts := metav1.DeleteOptions{}
		if got.UID != "" {
			opts.Preconditions = &metav1.Preconditions{UID: &got.UID}
		}
		if err := api.Delete(ctx, c.PVC, opts); err != nil && !apierrors.IsNotFound(err) {
			left(c.PVC, err)
			continue
		}
		r.log.Info("deleted claim of a failed ordinal", "pvc", c.PVC)
		r.mu.Lock()
		delete(r.created, c.PVC)
		r.mu.Unlock()
	}
	return warnings
}

func (r *run) deleteNamespace(ctx context.Context, name string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.CleanupTimeout)
	defer cancel()
	deleteNamespace(ctx, r.deps, name, r.plan.RunID, r.log)
}

// deleteNamespace deletes namespace name when it carries restore run id's
// label.
func deleteNamespace(ctx context.Context, deps Deps, name, runID string, log *slog.Logger) {
	ns, err := deps.Kube.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return
	}
	if err != nil {
		log.Warn("get namespace to delete", "namespace", name, "err", err)
		return
	}
	if ns.Labels[kube.LabelRestoreID] != kube.LabelValue(runID) {
		log.Warn("not deleting a namespace this run did not create", "namespace", name)
		return
	}
	if err := deps.Kube.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		log.Warn("delete namespace", "namespace", name, "err", err)
		return
	}
	log.Info("deleted namespace", "namespace", name)
}

// cleanup deletes the run's pods and the Secret it made, on a context that
// survives the run's cancellation.
func (r *run) cleanup(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.CleanupTimeout)
	defer cancel()
	ns := r.plan.Namespace
	sel := metav1.ListOptions{LabelSelector: kube.RestoreSelector(r.plan.RunID)}
	pods, err := r.deps.Kube.CoreV1().Pods(ns).List(ctx, sel)
	if err != nil {
		r.log.Warn("list pods of the restore (kbak gc removes them later)", "err", err)
	} else {
		for _, pod := range pods.Items {
			kube.DeletePod(ctx, r.deps.Kube, ns, pod.Name, r.opts.PollInterval, r.opts.CleanupTimeout, r.log)
		}
	}
	if r.ownSecret {
		if err := moverrun.DeleteSecret(ctx, r.deps.Kube, ns, r.secret.Name, r.runLabels(kube.RoleCredentials)); err != nil {
			r.log.Warn("delete credentials secret (kbak gc removes it later)", "err", err)
		}
	}
	if r.key.Name != "" {
		if err := moverrun.DeleteSecret(ctx, r.deps.Kube, ns, r.key.Name, r.runLabels(kube.RoleCredentials)); err != nil {
			r.log.Warn("delete key secret (kbak gc removes it later)", "err", err)
		}
	}
}

// createStatefulSet re-creates the StatefulSet and waits until it is Ready.
func (r *run) createStatefulSet(ctx context.Context, res *Result) error {
	p := r.plan
	sts := p.StatefulSetObject()
	_, err := r.deps.Kube.AppsV1().StatefulSets(p.Namespace).Create(ctx, sts, metav1.CreateOptions{})
	if err != nil {
		res.NextStep = fmt.Sprintf("the claims are restored; create the StatefulSet %s/%s with %d replicas to use them", p.Namespace, p.StatefulSet, p.Replicas)
		return fmt.Errorf("create statefulset %s/%s: %w", p.Namespace, p.StatefulSet, err)
	}
	res.StatefulSetCreated = true
	r.log.Info("created statefulset", "replicas", p.Replicas)
	err = wait.PollUntilContextTimeout(ctx, r.opts.PollInterval, r.opts.ReadyTimeout, true, func(ctx context.Context) (bool, error) {
		got, err := r.deps.Kube.AppsV1().StatefulSets(p.Namespace).Get(ctx, p.StatefulSet, metav1.GetOptions{})
		if err != nil {
			return false, fmt.Errorf("get statefulset %s/%s: %w", p.Namespace, p.StatefulSet, err)
		}
		return statefulSetReady(got), nil
	})
	if err != nil {
		res.NextStep = fmt.Sprintf("the claims are restored and the StatefulSet created; see why its pods are not ready: kubectl describe pods -n %s -l %s", p.Namespace, metav1.FormatLabelSelector(sts.Spec.Selector))
		if wait.Interrupted(err) && ctx.Err() == nil {
			return fmt.Errorf("%w: statefulset %s/%s not ready after %s", ErrNotReady, p.Namespace, p.StatefulSet, r.opts.ReadyTimeout)
		}
		return fmt.Errorf("%w: statefulset %s/%s: %w", ErrNotReady, p.Namespace, p.StatefulSet, err)
	}
	res.StatefulSetReady = true
	r.log.Info("statefulset ready")
	return nil
}

// statefulSetReady reports whether the controller has seen the current spec
// and every replica is ready.
func statefulSetReady(sts *appsv1.StatefulSet) bool {
	want := int32(1)
	if sts.Spec.Replicas != nil {
		want = *sts.Spec.Replicas
	}
	return sts.Status.ObservedGeneration >= sts.Generation && sts.Status.ReadyReplicas >= want && sts.Status.Replicas == want
}
