package restore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kbak/kbak/deploy"
	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/hint"
	"github.com/kbak/kbak/internal/kube"
	"github.com/kbak/kbak/internal/moverrun"
	"github.com/kbak/kbak/internal/seal"
)

// Source is where a restored claim's data comes from.
type Source string

// Sources.
const (
	// SourceSnapshot: a VolumeSnapshot kept by the backup is the claim's
	// dataSource; the storage system copies the data, nothing is downloaded.
	SourceSnapshot Source = "snapshot"
	// SourceStore: an empty claim filled by a mover pod from the repository.
	SourceStore Source = "store"
)

// DefaultStorageClassAnnotation marks the cluster's default StorageClass.
const DefaultStorageClassAnnotation = "storageclass.kubernetes.io/is-default-class"

// Plan is what a restore will do, decided before anything is created. It is
// what `--dry-run` prints. Conflicts, when any, are why Run refuses it.
type Plan struct {
	RunID           string `json:"runID"`
	BackupID        string `json:"backupID"`
	FromNamespace   string `json:"fromNamespace"`
	FromStatefulSet string `json:"fromStatefulSet"`

	Namespace string `json:"namespace"`
	// CreateNamespace is true when the target namespace does not exist and
	// the restore will create it.
	CreateNamespace bool   `json:"createNamespace"`
	StatefulSet     string `json:"statefulSet"`
	// StatefulSetExists is true when a StatefulSet of the target name
	// exists (scaled to zero, or it would be a conflict).
	StatefulSetExists bool `json:"statefulSetExists"`
	CreateStatefulSet bool `json:"createStatefulSet"`
	// Replicas is what the StatefulSet needs to adopt every restored claim:
	// the highest restored ordinal + 1 (from its start ordinal).
	Replicas int32 `json:"replicas"`
	Ordinals []int `json:"ordinals"`

	Claims    []Claim   `json:"claims"`
	Skipped   []Skipped `json:"skipped,omitempty"`
	Conflicts []string  `json:"conflicts,omitempty"`
	Notes     []string  `json:"notes,omitempty"`
	// MoverSecurity is how the mover pods that download into claims run
	// (see Options.MoverSecurity); binder pods always run unprivileged.
	MoverSecurity deploy.Security `json:"moverSecurity,omitempty"`

	// runAs is the identity of unprivileged movers: the StatefulSet's.
	runAs    deploy.RunAs
	manifest *catalog.Manifest
	opts     Options
	// nsNote is the note that the namespace will be created, which a
	// Result says with CreatedNamespace instead.
	nsNote string
}

// Claim is one PVC the restore creates.
type Claim struct {
	Ordinal            int                                 `json:"ordinal"`
	Template           string                              `json:"claimTemplate"`
	Name               string                              `json:"pvc"`
	SourcePVC          string                              `json:"sourcePVC"`
	StorageClass       string                              `json:"storageClass"`
	SourceStorageClass string                              `json:"sourceStorageClass,omitempty"`
	Size               resource.Quantity                   `json:"size"`
	AccessModes        []corev1.PersistentVolumeAccessMode `json:"accessModes"`
	VolumeMode         corev1.PersistentVolumeMode         `json:"volumeMode"`
	Source             Source                              `json:"source"`
	Snapshot           string                              `json:"snapshot,omitempty"`
	// Reason says why the data comes from the store when the backup kept
	// a snapshot.
	Reason   string `json:"reason,omitempty"`
	Key      string `json:"key,omitempty"`
	SHA256   string `json:"sha256,omitempty"`
	RawBytes int64  `json:"rawBytes"`
	Files    int64  `json:"files"`

	spec corev1.PersistentVolumeClaimSpec
}

// Skipped is an ordinal of the backup that the restore leaves out.
type Skipped struct {
	Ordinal int    `json:"ordinal"`
	Reason  string `json:"reason"`
}

// Err returns an error wrapping ErrConflict listing the conflicts, or nil.
func (p *Plan) Err() error {
	if len(p.Conflicts) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrConflict, strings.Join(p.Conflicts, "; "))
}

// NewPlan decides how to restore backup m: the target claims, their
// classes, sizes and sources, and what stands in the way. It reads the
// cluster and creates nothing. Bad options (an ordinal the backup does not
// hold, an invalid name) are errors wrapping ErrUsage with a nil plan; when
// the cluster conflicts with the restore the plan is returned with an error
// wrapping ErrConflict, so that a dry run can still print it.
func NewPlan(ctx context.Context, deps Deps, m *catalog.Manifest, opts Options) (*Plan, error) {
	opts.setDefaults()
	deps.setDefaults()
	if m == nil || deps.Kube == nil {
		return nil, errors.New("restore: a manifest and a Kubernetes client are required")
	}
	if err := moverrun.CheckSecurity(opts.MoverSecurity); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if m.SpecSealed() {
		return nil, fmt.Errorf("restore backup %s: %w: the backup is encrypted, and only the write key was given: give a read key (--key-file with an AGE-SECRET-KEY-1 file, or --passphrase-file)", m.ID, seal.ErrNoReadKey)
	}
	p := &Plan{
		BackupID: m.ID, FromNamespace: m.Namespace, FromStatefulSet: m.StatefulSet,
		Namespace: m.Namespace, StatefulSet: m.StatefulSet,
		CreateStatefulSet: opts.CreateStatefulSet,
		manifest:          m, opts: opts,
	}
	if opts.ToNamespace != "" {
		p.Namespace = opts.ToNamespace
	}
	if opts.ToName != "" {
		p.StatefulSet = opts.ToName
	}
	if err := catalog.ValidateNamespace(p.Namespace); err != nil {
		return nil, hint.Errorf("%w: %s: %w", ErrUsage, hint.Of(hint.ToNamespace), err)
	}
	if err := catalog.ValidateStatefulSetName(p.StatefulSet); err != nil {
		return nil, hint.Errorf("%w: %s: %w", ErrUsage, hint.Of(hint.ToName), err)
	}
	// The id is a label value on everything the run creates.
	p.RunID = kube.LabelValue(opts.ID)
	if p.RunID == "" {
		id, err := newRunID(p.StatefulSet, deps.Now(), deps.Rand)
		if err != nil {
			return nil, err
		}
		p.RunID = id
	}

	vols, err := p.selectVolumes(m, opts.Ordinals)
	if err != nil {
		return nil, err
	}

	pl := &planner{deps: deps, p: p}
	if err := pl.readCluster(ctx); err != nil {
		return nil, err
	}
	for _, v := range vols {
		c, err := pl.claim(ctx, v)
		if err != nil {
			return nil, err
		}
		p.Claims = append(p.Claims, c)
	}
	if err := p.checkRepo(); err != nil {
		return nil, err
	}
	if err := p.resolveSecurity(ctx, deps); err != nil {
		return nil, err
	}
	pl.statefulSet(ctx)
	if err := p.Err(); err != nil {
		return p, err
	}
	return p, nil
}

// resolveSecurity decides how the download movers run in the target
// namespace, as the StatefulSet of the backup runs: a request the
// namespace refuses is an error before anything is created.
func (p *Plan) resolveSecurity(ctx context.Context, deps Deps) error {
	p.runAs = deploy.RunAsOf(&p.manifest.Spec.Spec.Template.Spec)
	if !slices.ContainsFunc(p.Claims, func(c Claim) bool { return c.Source == SourceStore }) {
		// Binder pods only: they pass any level.
		p.MoverSecurity = deploy.SecurityUnprivileged
		return nil
	}
	ps, err := kube.NamespacePodSecurity(ctx, deps.Kube, p.Namespace)
	if err != nil {
		return err
	}
	needs := moverrun.SecurityNeeds{Devices: p.opts.RestoreDevices, SetID: p.opts.RestoreSetID}
	p.MoverSecurity, err = moverrun.ResolveSecurity(p.opts.MoverSecurity, ps, p.runAs, needs)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	return nil
}

// checkRepo refuses a repository that the movers filling claims from the
// store cannot reach (a file:// one), before anything is created. Claims
// filled from kept snapshots need no mover.
func (p *Plan) checkRepo() error {
	if p.opts.Repo == "" {
		return nil
	}
	for _, c := range p.Claims {
		if c.Source != SourceStore {
			continue
		}
		if err := moverrun.CheckRepo(p.opts.Repo); err != nil {
			return fmt.Errorf("%w: claim %s is filled from the repository by a mover pod: %w", ErrUsage, c.Name, err)
		}
		return nil
	}
	return nil
}

// newRunID makes a restore run id, <sts>-restore-<UTC time>-<4 hex>, which
// names and labels everything the run creates.
func newRunID(sts string, now time.Time, rnd io.Reader) (string, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	var b [2]byte
	if _, err := io.ReadFull(rnd, b[:]); err != nil {
		return "", fmt.Errorf("make restore id for %s: read random bytes: %w", sts, err)
	}
	return kube.LabelValue(fmt.Sprintf("%s-restore-%s-%x", sts, now.UTC().Format("20060102T150405Z"), b)), nil
}

// selectVolumes picks the volumes of the ordinals to restore. An ordinal is
// restored whole or not at all: half an ordinal would start an application
// with some of its volumes empty.
func (p *Plan) selectVolumes(m *catalog.Manifest, want []int) ([]catalog.Volume, error) {
	byOrdinal := map[int][]catalog.Volume{}
	for _, v := range m.Volumes {
		byOrdinal[v.Ordinal] = append(byOrdinal[v.Ordinal], v)
	}
	var all []int
	for o := range byOrdinal {
		all = append(all, o)
	}
	sort.Ints(all)
	notRestorable := func(o int) string {
		completed, why := 0, ""
		for _, v := range byOrdinal[o] {
			if v.Status == catalog.VolumeCompleted {
				completed++
				continue
			}
			if why == "" {
				why = strings.ToLower(string(v.Status))
				if v.Error != "" {
					why += ": " + v.Error
				}
				why = fmt.Sprintf("volume %s was not backed up (%s)", v.PVC, why)
			}
		}
		if p.opts.everyVolume && completed > 0 {
			return ""
		}
		return why
	}

	var chosen []int
	if len(want) > 0 {
		seen := map[int]bool{}
		for _, o := range want {
			if seen[o] {
				continue
			}
			seen[o] = true
			if _, ok := byOrdinal[o]; !ok {
				return nil, hint.Errorf("%w: ordinal %d is not in backup %s (it holds %s): choose among those with %s", ErrUsage, o, m.ID, joinInts(all), hint.Of(hint.Ordinals))
			}
			if why := notRestorable(o); why != "" {
				return nil, hint.Errorf("%w: ordinal %d of backup %s cannot be restored: %s: leave it out of %s or use another backup", ErrUsage, o, m.ID, why, hint.Of(hint.Ordinals))
			}
			chosen = append(chosen, o)
		}
		sort.Ints(chosen)
	} else {
		for _, o := range all {
			if why := notRestorable(o); why != "" {
				p.Skipped = append(p.Skipped, Skipped{Ordinal: o, Reason: why})
				continue
			}
			chosen = append(chosen, o)
		}
	}
	if len(chosen) == 0 {
		return nil, fmt.Errorf("%w: backup %s has no ordinal whose volumes were all backed up: use another backup (kbak list)", ErrUsage, m.ID)
	}
	p.Ordinals = chosen
	var out []catalog.Volume
	for _, o := range chosen {
		for _, v := range byOrdinal[o] {
			if v.Status == catalog.VolumeCompleted {
				out = append(out, v)
			}
		}
	}
	return out, nil
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ", ")
}

// planner holds what the plan reads from the cluster once.
type planner struct {
	deps         Deps
	p            *Plan
	nsExists     bool
	classes      map[string]*storagev1.StorageClass
	defaultClass string
}

// conflict and note record a finding; the settings named among args are
// spelled in the caller's terms.
func (pl *planner) conflict(format string, args ...any) {
	pl.p.Conflicts = append(pl.p.Conflicts, hint.Sprintf(pl.p.opts.Spell, format, args...))
}

func (pl *planner) note(format string, args ...any) {
	pl.p.Notes = append(pl.p.Notes, hint.Sprintf(pl.p.opts.Spell, format, args...))
}

func (pl *planner) readCluster(ctx context.Context) error {
	p := pl.p
	ns, err := pl.deps.Kube.CoreV1().Namespaces().Get(ctx, p.Namespace, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		if p.opts.NoCreateNamespace {
			pl.conflict("namespace %s does not exist: create it, or restore into another with %s", p.Namespace, hint.Of(hint.ToNamespace))
		} else {
			p.CreateNamespace = true
			pl.note("namespace %s does not exist and will be created", p.Namespace)
			p.nsNote = p.Notes[len(p.Notes)-1]
		}
	case err != nil:
		return fmt.Errorf("get namespace %s: %w", p.Namespace, err)
	case ns.DeletionTimestamp != nil || ns.Status.Phase == corev1.NamespaceTerminating:
		pl.conflict("namespace %s is being deleted: wait until it is gone, or restore into another with %s", p.Namespace, hint.Of(hint.ToNamespace))
	default:
		pl.nsExists = true
	}

	list, err := pl.deps.Kube.StorageV1().StorageClasses().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list storageclasses: %w", err)
	}
	pl.classes = map[string]*storagev1.StorageClass{}
	var defaults []string
	for i := range list.Items {
		c := &list.Items[i]
		pl.classes[c.Name] = c
		if c.Annotations[DefaultStorageClassAnnotation] == "true" {
			defaults = append(defaults, c.Name)
		}
	}
	// With several defaults the API server picks the newest; naming one
	// explicitly in the claim keeps the plan and the outcome the same.
	if len(defaults) > 0 {
		sort.Slice(defaults, func(i, j int) bool {
			a, b := pl.classes[defaults[i]], pl.classes[defaults[j]]
			if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
				return b.CreationTimestamp.Before(&a.CreationTimestamp)
			}
			return a.Name < b.Name
		})
		pl.defaultClass = defaults[0]
	}
	return nil
}

func (pl *planner) classNames() string {
	var names []string
	for n := range pl.classes {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// claim plans the restore of volume v.
func (pl *planner) claim(ctx context.Context, v catalog.Volume) (Claim, error) {
	p := pl.p
	c := Claim{
		Ordinal: v.Ordinal, Template: v.ClaimTemplate, SourcePVC: v.PVC,
		Name: kube.ClaimName(v.ClaimTemplate, p.StatefulSet, v.Ordinal),
		Key:  v.Key, SHA256: v.SHA256, RawBytes: v.RawBytes, Files: v.Files,
	}
	if err := catalog.ValidatePVCName(c.Name); err != nil {
		return Claim{}, hint.Errorf("%w: claim of template %s for StatefulSet %s: %w: choose a shorter %s", ErrUsage, v.ClaimTemplate, p.StatefulSet, err, hint.Of(hint.ToName))
	}

	if pl.nsExists {
		_, err := pl.deps.Kube.CoreV1().PersistentVolumeClaims(p.Namespace).Get(ctx, c.Name, metav1.GetOptions{})
		switch {
		case err == nil:
			pl.conflict("PVC %s/%s already exists: delete it, restore under %s, or into %s", p.Namespace, c.Name, hint.Of(hint.ToName), hint.Of(hint.ToNamespace))
		case !apierrors.IsNotFound(err):
			return Claim{}, fmt.Errorf("get persistentvolumeclaim %s/%s: %w", p.Namespace, c.Name, err)
		}
	}

	class := pl.targetClass(v, &c)

	c.Size = claimSize(v)
	if c.Size.IsZero() {
		pl.conflict("the backup records no size for %s: it cannot be re-created", v.PVC)
	}
	c.AccessModes = append([]corev1.PersistentVolumeAccessMode(nil), v.AccessModes...)
	if len(c.AccessModes) == 0 {
		c.AccessModes = append(c.AccessModes, v.ClaimSpec.AccessModes...)
	}
	if len(c.AccessModes) == 0 {
		c.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	}
	c.VolumeMode = v.VolumeMode
	if c.VolumeMode == "" && v.ClaimSpec.VolumeMode != nil {
		c.VolumeMode = *v.ClaimSpec.VolumeMode
	}
	if c.VolumeMode == "" {
		c.VolumeMode = corev1.PersistentVolumeFilesystem
	}

	if err := pl.chooseSource(ctx, v, class, &c); err != nil {
		return Claim{}, err
	}
	if c.Source == SourceSnapshot && c.VolumeMode == corev1.PersistentVolumeBlock {
		pl.note("%s is a raw block volume: it is provisioned from snapshot %s when its pod first starts, and a failure shows only then", c.Name, c.Snapshot)
	}
	if c.Source == SourceStore {
		if c.VolumeMode == corev1.PersistentVolumeBlock {
			pl.conflict("%s is a raw block volume and only its kept VolumeSnapshot could restore it (%s): restore into namespace %s while the snapshot exists", v.PVC, c.Reason, p.FromNamespace)
		}
		if p.opts.Repo == "" {
			pl.conflict("%s must be downloaded but no repository was given: pass %s", c.Name, hint.Of(hint.Repo))
		}
	}
	c.spec = renderSpec(v, c)
	return c, nil
}

// claimSize is the larger of the size the claim asked for and the size it
// got: the data fit in the capacity, and a class with a larger minimum
// would give at least that again.
func claimSize(v catalog.Volume) resource.Quantity {
	size := v.RequestedSize.DeepCopy()
	if size.IsZero() {
		if q, ok := v.ClaimSpec.Resources.Requests[corev1.ResourceStorage]; ok {
			size = q.DeepCopy()
		}
	}
	if v.Capacity.Cmp(size) > 0 {
		size = v.Capacity.DeepCopy()
	}
	return size
}

// targetClass maps v's storage class and records a conflict when the
// target has no such class; it returns the class or nil.
func (pl *planner) targetClass(v catalog.Volume, c *Claim) *storagev1.StorageClass {
	src := v.StorageClass
	explicitNone := src == "" && v.ClaimSpec.StorageClassName != nil && *v.ClaimSpec.StorageClassName == ""
	c.SourceStorageClass = src
	target, mapped := pl.p.opts.StorageClassMap[src]
	if !mapped {
		target = src
	}
	if target == "" {
		switch {
		case explicitNone && !mapped:
			pl.conflict("%s used no storage class (a pre-provisioned volume): name one with %s (this cluster has: %s)", v.PVC, hint.Set(hint.StorageClassMap, "=CLASS"), pl.classNames())
			return nil
		case pl.defaultClass == "":
			pl.conflict("%s named no storage class and this cluster has no default StorageClass: name one with %s (this cluster has: %s)", v.PVC, hint.Set(hint.StorageClassMap, "=CLASS"), pl.classNames())
			return nil
		}
		target = pl.defaultClass
	}
	c.StorageClass = target
	sc := pl.classes[target]
	if sc == nil {
		if mapped {
			pl.conflict("StorageClass %s (mapped from %s by %s) does not exist: this cluster has: %s", target, displayClass(src), hint.Of(hint.StorageClassMap), pl.classNames())
		} else {
			pl.conflict("StorageClass %s of %s does not exist here: map it with %s (this cluster has: %s)", target, v.PVC, hint.Set(hint.StorageClassMap, target+"=CLASS"), pl.classNames())
		}
		return nil
	}
	return sc
}

func displayClass(c string) string {
	if c == "" {
		return `""`
	}
	return c
}

// chooseSource takes the fast path, a kept VolumeSnapshot, when the
// snapshot is in the target namespace, still exists, is ready, belongs to
// this backup and can be restored by the target class's driver; otherwise
// the data comes from the store and Reason says why.
func (pl *planner) chooseSource(ctx context.Context, v catalog.Volume, class *storagev1.StorageClass, c *Claim) error {
	c.Source = SourceStore
	s := v.Snapshot
	p := pl.p
	why := func(format string, args ...any) error {
		c.Reason = fmt.Sprintf(format, args...)
		return nil
	}
	switch {
	case s == nil || !s.Retained:
		return nil
	case p.opts.FromStore:
		return why("snapshot %s/%s not used (restore from the store was asked for)", s.Namespace, s.Name)
	case pl.deps.Snap == nil:
		return why("snapshot %s/%s not used (no snapshot client)", s.Namespace, s.Name)
	case s.Namespace != p.Namespace:
		return why("snapshot %s/%s is in another namespace than %s", s.Namespace, s.Name, p.Namespace)
	case class == nil:
		return why("snapshot %s/%s not used (no target class)", s.Namespace, s.Name)
	}
	if v.CSIDriver != "" && class.Provisioner != v.CSIDriver {
		return why("snapshot %s/%s is of driver %s, StorageClass %s provisions with %s", s.Namespace, s.Name, v.CSIDriver, class.Name, class.Provisioner)
	}
	vs, err := pl.deps.Snap.SnapshotV1().VolumeSnapshots(s.Namespace).Get(ctx, s.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return why("snapshot %s/%s no longer exists", s.Namespace, s.Name)
	case err != nil:
		// A missing snapshot CRD or no permission only costs the fast path.
		pl.deps.Log.Warn("get kept snapshot", "namespace", s.Namespace, "snapshot", s.Name, "err", err)
		return why("snapshot %s/%s could not be read: %v", s.Namespace, s.Name, err)
	}
	if r := snapshotUnusable(vs, p.BackupID); r != "" {
		return why("snapshot %s/%s %s", s.Namespace, s.Name, r)
	}
	if vs.Status.RestoreSize != nil && vs.Status.RestoreSize.Cmp(c.Size) > 0 {
		c.Size = vs.Status.RestoreSize.DeepCopy()
	}
	c.Source, c.Snapshot = SourceSnapshot, s.Name
	return nil
}

// snapshotUnusable says why vs cannot seed a claim for backup id, or "".
func snapshotUnusable(vs *snapv1.VolumeSnapshot, id string) string {
	switch {
	case vs.DeletionTimestamp != nil:
		return "is being deleted"
	case vs.Labels[kube.LabelBackupID] != kube.LabelValue(id):
		return "was not made by this backup (another object took its name)"
	case !kube.SnapshotReady(vs):
		return "is not ready to use"
	}
	return ""
}

// renderSpec builds the target claim's spec from the backed-up one.
func renderSpec(v catalog.Volume, c Claim) corev1.PersistentVolumeClaimSpec {
	spec := catalog.StripClaimSpec(&v.ClaimSpec)
	// A selector binds to pre-provisioned volumes of the source cluster; a
	// restore provisions fresh ones.
	spec.Selector = nil
	class := c.StorageClass
	spec.StorageClassName = &class
	spec.AccessModes = slices.Clone(c.AccessModes)
	mode := c.VolumeMode
	spec.VolumeMode = &mode
	req := corev1.ResourceList{}
	for k, q := range spec.Resources.Requests {
		req[k] = q.DeepCopy()
	}
	req[corev1.ResourceStorage] = c.Size.DeepCopy()
	spec.Resources.Requests = req
	if c.Source == SourceSnapshot {
		group := snapv1.GroupName
		spec.DataSource = &corev1.TypedLocalObjectReference{APIGroup: &group, Kind: "VolumeSnapshot", Name: c.Snapshot}
	}
	return spec
}

// statefulSet checks the target StatefulSet and decides the replicas.
func (pl *planner) statefulSet(ctx context.Context) {
	p := pl.p
	m := p.manifest
	start := 0
	if m.Spec.Spec.Ordinals != nil {
		start = int(m.Spec.Spec.Ordinals.Start)
	}
	last := p.Ordinals[len(p.Ordinals)-1]
	if p.Ordinals[0] < start {
		start = 0 // the backup holds ordinals below the recorded start: count from 0
	}
	p.Replicas = int32(last - start + 1)
	var missing []int
	for o := start; o <= last; o++ {
		if !slices.Contains(p.Ordinals, o) {
			missing = append(missing, o)
		}
	}
	if len(missing) > 0 {
		pl.note("ordinal(s) %s not restored: with %d replicas the StatefulSet creates their claims empty", joinInts(missing), p.Replicas)
	}

	if !pl.nsExists {
		return
	}
	sts, err := pl.deps.Kube.AppsV1().StatefulSets(p.Namespace).Get(ctx, p.StatefulSet, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		pl.conflict("statefulset %s/%s could not be read (%v): check access and retry", p.Namespace, p.StatefulSet, err)
	default:
		p.StatefulSetExists = true
		replicas := int32(1)
		if sts.Spec.Replicas != nil {
			replicas = *sts.Spec.Replicas
		}
		switch {
		case replicas > 0:
			pl.conflict("statefulset %s/%s exists with %d replicas and would grab the claims mid-restore: scale it to 0 or delete it first", p.Namespace, p.StatefulSet, replicas)
		case p.CreateStatefulSet:
			pl.conflict("statefulset %s/%s exists: drop %s and scale it to %d after the restore, or delete it first", p.Namespace, p.StatefulSet, hint.Of(hint.CreateStatefulSet), p.Replicas)
		default:
			pl.note("statefulset %s/%s exists with 0 replicas: scale it to %d after the restore", p.Namespace, p.StatefulSet, p.Replicas)
		}
	}
	if p.CreateStatefulSet && p.Namespace == p.FromNamespace && p.StatefulSet != p.FromStatefulSet {
		_, err := pl.deps.Kube.AppsV1().StatefulSets(p.Namespace).Get(ctx, p.FromStatefulSet, metav1.GetOptions{})
		if err == nil {
			pl.note("the re-created statefulset keeps the backup's selector (%s), as does statefulset %s/%s: Services that select it reach the pods of both", metav1.FormatLabelSelector(m.Spec.Spec.Selector), p.Namespace, p.FromStatefulSet)
		}
	}
	if svc := m.Spec.Spec.ServiceName; p.CreateStatefulSet && svc != "" {
		_, err := pl.deps.Kube.CoreV1().Services(p.Namespace).Get(ctx, svc, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			pl.note("service %s/%s (the StatefulSet's serviceName) does not exist: the pods run, but have no stable DNS names until it is created", p.Namespace, svc)
		}
	}
}

// StatefulSetObject renders the StatefulSet the restore would re-create: the
// backup's spec under the target name and namespace, with the restored
// replicas and the claim templates' classes mapped.
func (p *Plan) StatefulSetObject() *appsv1.StatefulSet {
	sts := p.manifest.Spec.DeepCopy()
	sts.Name, sts.Namespace = p.StatefulSet, p.Namespace
	sts.ResourceVersion, sts.UID = "", ""
	if sts.Labels == nil {
		sts.Labels = map[string]string{}
	}
	sts.Labels[kube.LabelRestoreID] = p.RunID
	sts.Labels[kube.LabelRestoredFrom] = kube.LabelValue(p.BackupID)
	replicas := p.Replicas
	sts.Spec.Replicas = &replicas
	classOf := map[string]string{}
	for _, c := range p.Claims {
		classOf[c.Template] = c.StorageClass
	}
	for i := range sts.Spec.VolumeClaimTemplates {
		t := &sts.Spec.VolumeClaimTemplates[i]
		if class, ok := classOf[t.Name]; ok {
			t.Spec.StorageClassName = &class
			continue
		}
		if t.Spec.StorageClassName != nil {
			if mapped, ok := p.opts.StorageClassMap[*t.Spec.StorageClassName]; ok {
				t.Spec.StorageClassName = &mapped
			}
		}
	}
	return sts
}
