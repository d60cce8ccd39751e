package catalog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	appsv1 "k8s.io/api/apps/v1"

	"github.com/kbak/kbak/internal/repo"
	"github.com/kbak/kbak/internal/seal"
	"github.com/kbak/kbak/uploader"
)

// Store is the part of uploader.Store the catalog uses: the repository's
// (for the shared data of format 2 backups) and Stat.
type Store interface {
	repo.Store
	Stat(ctx context.Context, key string) (uploader.ObjectInfo, error)
}

var _ Store = uploader.Store(nil)

// ErrBackupNotFound is wrapped by errors for backup ids with no manifest.
var ErrBackupNotFound = errors.New("backup not found")

// ErrIncomplete is wrapped by errors for backups whose objects exist but whose
// manifest does not: still running, crashed, or half deleted.
var ErrIncomplete = errors.New("backup is incomplete (no manifest)")

// maxManifestBytes bounds a manifest read: a StatefulSet with thousands of
// ordinals stays far below it, and a stray huge object cannot exhaust memory.
const maxManifestBytes = 64 << 20

// readConcurrency bounds the manifests read at once by List.
const readConcurrency = 8

// Catalog reads and edits the set of backups in a store.
type Catalog struct {
	store Store
	key   seal.Key // opens an encrypted repository

	mu      sync.Mutex
	data    *repo.Repo // opened once, when needed
	dataErr error
}

// New returns a catalog over store; key opens the deduplicating repository
// when it is encrypted (the zero Key when there is none).
func New(store Store, key seal.Key) *Catalog {
	return &Catalog{store: store, key: key}
}

// repo opens the deduplicating repository once; ErrNoRepository when the
// store has none.
func (c *Catalog) repo(ctx context.Context) (*repo.Repo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.data != nil || c.dataErr != nil {
		return c.data, c.dataErr
	}
	r, err := repo.Open(ctx, c.store, c.key)
	if err != nil {
		if !errors.Is(err, repo.ErrNoRepository) {
			c.dataErr = err // asked once, not for every manifest
		}
		return nil, err
	}
	c.data = r
	return r, nil
}

// Filter narrows a listing. Empty fields match everything.
type Filter struct {
	Namespace   string
	StatefulSet string
}

// Match reports whether a backup of namespace/sts passes the filter.
func (f Filter) Match(namespace, sts string) bool {
	return (f.Namespace == "" || f.Namespace == namespace) &&
		(f.StatefulSet == "" || f.StatefulSet == sts)
}

func (f Filter) validate() error {
	if f.Namespace != "" {
		if err := ValidateNamespace(f.Namespace); err != nil {
			return err
		}
	}
	if f.StatefulSet != "" {
		return ValidateStatefulSetName(f.StatefulSet)
	}
	return nil
}

// Summary is one line of a listing.
type Summary struct {
	ID          string    `json:"id"`
	Namespace   string    `json:"namespace"`
	StatefulSet string    `json:"statefulSet"`
	Created     time.Time `json:"created"`
	Finished    time.Time `json:"finished,omitzero"` // when the backup wrote its manifest
	Format      int       `json:"format,omitempty"`  // FormatRepo, or absent for the archive format
	Status      Status    `json:"status,omitempty"`
	Volumes     int       `json:"volumes"`
	RawBytes    int64     `json:"rawBytes"`
	StoredBytes int64     `json:"storedBytes"`
	Methods     []Method  `json:"methods,omitempty"` // distinct methods of Completed volumes, sorted
	// RepositoryBytes is what the shared data of the deduplicating
	// repository takes, which a format 2 backup draws on with every other
	// one (the same for every such backup of a listing); StoredBytes is
	// what this backup added to it.
	RepositoryBytes int64 `json:"repositoryBytes,omitempty"`
	// Error is set when the manifest exists but cannot be read (corrupt, or
	// from a newer kbak); the other fields then come from the key.
	Error string `json:"error,omitempty"`
}

func summarize(m *Manifest) Summary {
	s := Summary{
		ID: m.ID, Namespace: m.Namespace, StatefulSet: m.StatefulSet,
		Created: m.Created, Finished: m.Finished, Format: m.Format, Status: m.Status, Volumes: len(m.Volumes),
	}
	for _, v := range m.Volumes {
		s.RawBytes += v.RawBytes
		s.StoredBytes += v.StoredBytes
		if v.Status == VolumeCompleted && !slices.Contains(s.Methods, v.Method) {
			s.Methods = append(s.Methods, v.Method)
		}
	}
	slices.Sort(s.Methods)
	return s
}

// WriteManifest stores m as the last object of its backup. It first checks
// that the archive of every Completed volume exists with the recorded size, so
// a manifest never names data that is not there.
func (c *Catalog) WriteManifest(ctx context.Context, m *Manifest) error {
	m.APIVersion, m.Kind = APIVersion, ManifestKind
	if err := m.Validate(); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	for _, v := range m.Volumes {
		if v.Status != VolumeCompleted {
			continue
		}
		info, err := c.store.Stat(ctx, v.Key)
		if err != nil {
			return fmt.Errorf("write manifest %s: check volume %s: %w", m.ID, v.PVC, err)
		}
		// A tree is not the volume's data: its size says nothing.
		if m.Format != FormatRepo && info.Size != v.StoredBytes {
			return fmt.Errorf("write manifest %s: volume %s: object %s holds %d bytes, the mover reported %d",
				m.ID, v.PVC, v.Key, info.Size, v.StoredBytes)
		}
	}
	var r *repo.Repo
	if m.Format == FormatRepo {
		sealed, err := c.sealSpec(ctx, m)
		if err != nil {
			return fmt.Errorf("write manifest %s: %w", m.ID, err)
		}
		m = sealed
		if r, err = c.repo(ctx); err != nil && !errors.Is(err, repo.ErrNoRepository) {
			return fmt.Errorf("write manifest %s: %w", m.ID, err)
		}
	}
	data, err := EncodeManifest(m)
	if err != nil {
		return err
	}
	if r != nil {
		// In an encrypted repository the whole manifest is sealed under the
		// meta key: its volumes' errors may name files, its claims' specs
		// say more than the bucket needs to.
		if data, err = r.SealMeta(data); err != nil {
			return fmt.Errorf("write manifest %s: %w", m.ID, err)
		}
	}
	key := m.Layout().ManifestKey()
	if err := c.store.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
		return fmt.Errorf("write manifest %s: %w", key, err)
	}
	return nil
}

// ReadManifest reads the manifest of a backup whose layout is known.
func (c *Catalog) ReadManifest(ctx context.Context, l Layout) (*Manifest, error) {
	return c.readManifest(ctx, l.ManifestKey())
}

func (c *Catalog) readManifest(ctx context.Context, key string) (*Manifest, error) {
	rc, err := c.store.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", key, err)
	}
	if len(data) > maxManifestBytes {
		return nil, corrupt(key, fmt.Sprintf("larger than %d bytes", maxManifestBytes))
	}
	if repo.IsSealed(data) {
		r, err := c.repo(ctx)
		if err != nil {
			return nil, fmt.Errorf("read manifest %s: %w", key, err)
		}
		if data, err = r.OpenMeta(data, maxManifestBytes); err != nil {
			return nil, corrupt(key, err.Error())
		}
	}
	m, err := DecodeManifest(key, data)
	if err != nil || m.SealedSpec == nil {
		return m, err
	}
	return m, c.openSpec(ctx, m)
}

// sealSpec returns a copy of m whose StatefulSet spec is sealed to the read
// keys, when the repository is encrypted: the spec carries env values and
// the like, which the writers of backups must not read back.
func (c *Catalog) sealSpec(ctx context.Context, m *Manifest) (*Manifest, error) {
	r, err := c.repo(ctx)
	if errors.Is(err, repo.ErrNoRepository) {
		return m, nil // nothing to seal to
	}
	if err != nil {
		return nil, err
	}
	if !r.Encrypted() {
		return m, nil
	}
	b, err := json.Marshal(m.Spec)
	if err != nil {
		return nil, err
	}
	sealed, err := r.SealForReaders(b)
	if err != nil {
		return nil, fmt.Errorf("seal the statefulset spec: %w", err)
	}
	out := *m
	out.Spec, out.SealedSpec = appsv1.StatefulSet{}, sealed
	return &out, nil
}

// openSpec fills in m.Spec from its sealed form when a read key is at
// hand; without one, Spec stays empty and SealedSpec set (see SpecSealed).
func (c *Catalog) openSpec(ctx context.Context, m *Manifest) error {
	r, err := c.repo(ctx)
	if err != nil {
		if errors.Is(err, repo.ErrNeedKey) {
			return nil
		}
		return fmt.Errorf("manifest %s: %w", m.ID, err)
	}
	if !r.CanRead() {
		return nil
	}
	b, err := r.OpenForReaders(m.SealedSpec, "the statefulset spec")
	if err != nil {
		return fmt.Errorf("manifest %s: statefulset spec: %w", m.ID, err)
	}
	var spec appsv1.StatefulSet
	if err := json.Unmarshal(b, &spec); err != nil {
		return corrupt(m.Layout().ManifestKey(), "sealed statefulset spec: "+OneLine(err.Error()))
	}
	m.Spec, m.SealedSpec = spec, nil
	return nil
}

// List returns the backups that have a manifest, newest first. It lists the
// store once and reads the manifests concurrently. A manifest that cannot be
// read gives a Summary with Error set rather than failing the listing, so one
// bad object does not hide the rest of a repository.
func (c *Catalog) List(ctx context.Context, f Filter) ([]Summary, error) {
	if err := f.validate(); err != nil {
		return nil, fmt.Errorf("list backups: %w", err)
	}
	// An encrypted repository's manifests are sealed: without its key, or
	// with a wrong one, say so once rather than on every line.
	if _, err := c.repo(ctx); err != nil && !errors.Is(err, repo.ErrNoRepository) {
		return nil, fmt.Errorf("list backups: %w", err)
	}
	var keys []Key
	for _, prefix := range ListPrefixes(f) {
		err := c.store.List(ctx, prefix, func(o uploader.ObjectInfo) error {
			if !strings.HasSuffix(o.Key, manifestEnd) {
				return nil
			}
			k, err := ParseKey(o.Key)
			if err != nil || k.Kind != KindManifest || !f.Match(k.Namespace, k.StatefulSet) {
				return nil // not kbak's, or another backup's: not part of this listing
			}
			keys = append(keys, k)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("list backups under %s: %w", prefix, err)
		}
	}

	out := make([]Summary, len(keys))
	gone := make([]bool, len(keys))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(readConcurrency)
	for i, k := range keys {
		g.Go(func() error {
			m, err := c.readManifest(gctx, k.ManifestKey())
			if err == nil {
				out[i] = summarize(m)
				return nil
			}
			if errors.Is(err, uploader.ErrNotFound) {
				// Deleted since it was listed (a prune running beside).
				gone[i] = true
				return nil
			}
			if !errors.Is(err, ErrCorruptManifest) && !errors.Is(err, ErrManifestTooNew) {
				return err // the store failed: the listing would be wrong
			}
			_, created, _ := ParseID(k.ID) // valid: ParseKey checked it
			out[i] = Summary{ID: k.ID, Namespace: k.Namespace, StatefulSet: k.StatefulSet, Created: created, Format: formatOfLayout(k.Layout), Error: err.Error()}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("list backups: %w", err)
	}
	kept := out[:0]
	for i, s := range out {
		if !gone[i] {
			kept = append(kept, s)
		}
	}
	out = kept
	sortNewestFirst(out)
	return out, nil
}

func sortNewestFirst(s []Summary) {
	slices.SortStableFunc(s, func(a, b Summary) int {
		if c := b.Created.Compare(a.Created); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
}

// find lists the whole repository for the objects of backup id. The id names
// its StatefulSet but not its namespace, so no narrower prefix exists.
func (c *Catalog) find(ctx context.Context, id string) (dirs map[Layout][]uploader.ObjectInfo, err error) {
	if _, _, err := ParseID(id); err != nil {
		return nil, err
	}
	dirs = make(map[Layout][]uploader.ObjectInfo)
	marker := "/" + id + "/"
	err = c.listBackupObjects(ctx, func(k Key, o uploader.ObjectInfo) {
		if k.ID == id {
			dirs[k.Layout] = append(dirs[k.Layout], o)
		}
	}, marker)
	if err != nil {
		return nil, fmt.Errorf("find backup %s: %w", id, err)
	}
	if len(dirs) > 1 {
		var where []string
		for l := range dirs {
			where = append(where, l.Dir())
		}
		slices.Sort(where)
		return nil, fmt.Errorf("find backup %s: the id is in several namespaces (%s): delete the extra copy with `kbak gc` or by hand",
			id, strings.Join(where, ", "))
	}
	return dirs, nil
}

func notFound(id string) error {
	return fmt.Errorf("backup %s: %w: run `kbak list` to see backup ids", id, ErrBackupNotFound)
}

func hasManifest(l Layout, objs []uploader.ObjectInfo) bool {
	key := l.ManifestKey()
	return slices.ContainsFunc(objs, func(o uploader.ObjectInfo) bool { return o.Key == key })
}

// Get returns the manifest of backup id. An unknown id gives an error
// wrapping ErrBackupNotFound; a backup without a manifest one wrapping
// ErrIncomplete.
func (c *Catalog) Get(ctx context.Context, id string) (*Manifest, error) {
	dirs, err := c.find(ctx, id)
	if err != nil {
		return nil, err
	}
	for l, objs := range dirs {
		if !hasManifest(l, objs) {
			return nil, fmt.Errorf("backup %s: %w: it is still running, crashed or was half deleted; `kbak gc` removes it once it is old enough", id, ErrIncomplete)
		}
		return c.ReadManifest(ctx, l)
	}
	return nil, notFound(id)
}

// Latest returns the manifest of the newest Completed backup matching f.
func (c *Catalog) Latest(ctx context.Context, f Filter) (*Manifest, error) {
	list, err := c.List(ctx, f)
	if err != nil {
		return nil, err
	}
	for _, s := range list {
		if s.Status == StatusCompleted {
			return c.ReadManifest(ctx, Layout{Namespace: s.Namespace, StatefulSet: s.StatefulSet, ID: s.ID, Format: s.Format})
		}
	}
	what := "any StatefulSet"
	if f.StatefulSet != "" {
		what = "StatefulSet " + f.StatefulSet
	}
	if f.Namespace != "" {
		what += " in namespace " + f.Namespace
	}
	return nil, fmt.Errorf("latest backup of %s: %w: no Completed backup; run `kbak list` to see backup ids", what, ErrBackupNotFound)
}

// Delete removes backup id: the manifest first, so that an interrupted delete
// leaves an incomplete backup that gc finds, then every other object of the
// backup. It returns the manifest so the caller can clean what the backup
// kept in the cluster (retained snapshots); the manifest is nil when the
// backup had none or it could not be read. A backup without a manifest is
// deleted too: naming its id is explicit enough.
//
// Objects that S3 Object Lock keeps stay, and the error is then a
// *LockedBackup (it wraps uploader.ErrLocked), which callers report as
// skipped rather than failed. When the manifest is kept, nothing else is
// touched: the backup stays whole and listed, and the manifest returned is
// nil, since nothing the backup kept may go either.
func (c *Catalog) Delete(ctx context.Context, id string) (*Manifest, error) {
	dirs, err := c.find(ctx, id)
	if err != nil {
		return nil, err
	}
	for l, objs := range dirs {
		var m *Manifest
		if hasManifest(l, objs) {
			m, err = c.ReadManifest(ctx, l)
			if err != nil && !errors.Is(err, ErrCorruptManifest) && !errors.Is(err, ErrManifestTooNew) {
				return nil, fmt.Errorf("delete backup %s: %w", id, err)
			}
			if err := c.store.Delete(ctx, l.ManifestKey()); err != nil {
				lb := &LockedBackup{ID: id, Listed: true}
				if !lb.Skip(err) {
					return nil, fmt.Errorf("delete backup %s: %w", id, err)
				}
				lb.Objects = len(objs) // none was touched
				return nil, lb
			}
		}
		lb := &LockedBackup{ID: id}
		if err := c.deleteObjects(ctx, l, objs, &lb.LockedObjects); err != nil {
			return m, fmt.Errorf("delete backup %s: %w (`kbak gc` removes what is left)", id, err)
		}
		if lb.Any() {
			return m, lb
		}
		return m, nil
	}
	return nil, notFound(id)
}

// LockedBackup says what S3 Object Lock kept of a backup that was to be
// deleted. As an error it wraps uploader.ErrLocked: the backup is not due
// yet, which is no failure.
type LockedBackup struct {
	ID string `json:"id"`
	// Listed: its manifest is kept, so the whole backup stays and is still
	// listed; Objects counts all of its objects. Otherwise the backup is
	// gone from the listing and Objects of its objects stay until Until,
	// after which `kbak gc` removes them.
	Listed bool `json:"listed"`
	repo.LockedObjects
}

func (e *LockedBackup) Error() string {
	if e.Listed {
		until := "a legal hold ends"
		if !e.Until.IsZero() {
			until = e.Until.UTC().Format(time.RFC3339)
		}
		return fmt.Sprintf("backup %s is kept: its manifest is under Object Lock until %s, so none of its %d objects was deleted", e.ID, until, e.Objects)
	}
	return fmt.Sprintf("backup %s deleted, but %s stay (`kbak gc` removes them after)", e.ID, e.LockedObjects)
}

func (e *LockedBackup) Is(target error) bool { return target == uploader.ErrLocked }

// deleteObjects removes the objects of the backup at l, except its
// manifest, and counts in locked those that Object Lock keeps.
func (c *Catalog) deleteObjects(ctx context.Context, l Layout, objs []uploader.ObjectInfo, locked *repo.LockedObjects) error {
	for _, o := range objs {
		if o.Key == l.ManifestKey() {
			continue // removed first by the caller
		}
		if err := c.store.Delete(ctx, o.Key); err != nil && !locked.Skip(err) {
			return fmt.Errorf("delete %s: %w", o.Key, err)
		}
	}
	return nil
}

// Orphan is a backup directory without a manifest.
type Orphan struct {
	Namespace   string    `json:"namespace"`
	StatefulSet string    `json:"statefulSet"`
	ID          string    `json:"id"`
	Objects     int       `json:"objects"`
	Bytes       int64     `json:"bytes"`
	Newest      time.Time `json:"newest"` // modification time of its newest object
	Removed     bool      `json:"removed"`
	// Locked counts its objects that S3 Object Lock keeps: they are not
	// leaked but not due yet, and a gc after Locked.Until removes them.
	// Removed is then false.
	Locked repo.LockedObjects `json:"locked,omitzero"`
}

// GC finds backup directories without a manifest whose newest object is
// older than grace at now, and removes their objects unless dryRun. The grace
// period keeps a running backup (which writes its manifest last) safe.
// Objects under Root that are outside any valid backup directory are not
// kbak's to judge and are left alone. Deletion errors do not stop the sweep;
// they are joined into the returned error. Objects that S3 Object Lock
// keeps stay and are counted in Orphan.Locked, which is no error.
func (c *Catalog) GC(ctx context.Context, grace time.Duration, now time.Time, dryRun bool) ([]Orphan, error) {
	return c.GCNamespace(ctx, "", grace, now, dryRun)
}

// GCNamespace is GC of the backups of namespace ns only ("" is every
// namespace).
func (c *Catalog) GCNamespace(ctx context.Context, ns string, grace time.Duration, now time.Time, dryRun bool) ([]Orphan, error) {
	if grace < 0 {
		return nil, fmt.Errorf("gc: negative grace period %s", grace)
	}
	type dir struct {
		objs     []uploader.ObjectInfo
		manifest bool
	}
	dirs := make(map[Layout]*dir)
	var order []Layout
	err := c.listBackupObjects(ctx, func(k Key, o uploader.ObjectInfo) {
		if ns != "" && k.Layout.Namespace != ns {
			return
		}
		d := dirs[k.Layout]
		if d == nil {
			d = &dir{}
			dirs[k.Layout] = d
			order = append(order, k.Layout)
		}
		d.objs = append(d.objs, o)
		d.manifest = d.manifest || k.Kind == KindManifest
	}, "")
	if err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	var orphans []Orphan
	var errs []error
	for _, l := range order {
		d := dirs[l]
		if d.manifest {
			continue
		}
		o := Orphan{Namespace: l.Namespace, StatefulSet: l.StatefulSet, ID: l.ID, Objects: len(d.objs)}
		for _, obj := range d.objs {
			o.Bytes += obj.Size
			if obj.ModTime.After(o.Newest) {
				o.Newest = obj.ModTime
			}
		}
		if now.Sub(o.Newest) < grace {
			continue
		}
		if dryRun {
			o.Locked = c.lockedObjects(ctx, d.objs, now)
		} else if err := c.deleteObjects(ctx, l, d.objs, &o.Locked); err != nil {
			errs = append(errs, fmt.Errorf("gc: backup %s: %w", l.ID, err))
		} else {
			o.Removed = !o.Locked.Any()
		}
		orphans = append(orphans, o)
	}
	return orphans, errors.Join(errs...)
}

// lockedObjects counts those of objs that Object Lock keeps at now, as a
// dry run sees them: it asks the store about each (on S3 a HEAD request).
func (c *Catalog) lockedObjects(ctx context.Context, objs []uploader.ObjectInfo, now time.Time) repo.LockedObjects {
	var locked repo.LockedObjects
	for _, o := range objs {
		oi, err := c.store.Stat(ctx, o.Key)
		if err != nil || !oi.Locked(now) {
			continue
		}
		until := oi.RetainUntil
		if !until.After(now) {
			until = time.Time{} // a legal hold
		}
		locked.Add(repo.LockedObjects{Objects: 1, Until: until})
	}
	return locked
}

// listBackupObjects calls fn for every object of every backup of every
// format whose key contains marker (all when empty).
func (c *Catalog) listBackupObjects(ctx context.Context, fn func(Key, uploader.ObjectInfo), marker string) error {
	for _, root := range roots {
		err := c.store.List(ctx, root, func(o uploader.ObjectInfo) error {
			if marker != "" && !strings.Contains(o.Key, marker) {
				return nil
			}
			if k, err := ParseKey(o.Key); err == nil {
				fn(k, o)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("list %s: %w", root, err)
		}
	}
	return nil
}

// DataGrace is how old a pack must be before SweepData removes it when no
// backup references it: a backup whose lock went stale may still write.
const DataGrace = time.Hour

// SweepData frees the shared data of the deduplicating repository that no
// backup references any more (see repo.Sweep): run it after deleting
// backups. A store without a repository has nothing to sweep (nil result).
func (c *Catalog) SweepData(ctx context.Context, opts repo.SweepOptions) (*repo.SweepResult, error) {
	r, err := c.repo(ctx)
	if errors.Is(err, repo.ErrNoRepository) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	res, err := r.Sweep(ctx, opts)
	return &res, err
}

// formatOfLayout is a summary's format field for a backup at l.
func formatOfLayout(l Layout) int {
	if l.Format == FormatRepo {
		return FormatRepo
	}
	return 0
}

// InitData creates the deduplicating repository with the defaults when the
// store has none, and says whether it did.
func (c *Catalog) InitData(ctx context.Context, kbakVersion string) (bool, error) {
	r, created, err := repo.OpenOrInit(ctx, c.store, c.key, repo.InitOptions{KbakVersion: kbakVersion})
	if err == nil {
		c.mu.Lock()
		c.data = r
		c.mu.Unlock()
	}
	return created, err
}

// WriteKeyFile is the write key file of an encrypted repository, for the
// movers of a backup, which get nothing more; nil when the repository is
// not encrypted (or there is none).
func (c *Catalog) WriteKeyFile(ctx context.Context) ([]byte, error) {
	r, err := c.repo(ctx)
	if errors.Is(err, repo.ErrNoRepository) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	id, secret, ok := r.WriteKey()
	if !ok {
		return nil, nil
	}
	return seal.FormatWriteKey(id, secret), nil
}

// DataUsage is what the deduplicating repository's shared data takes; nil
// when the store has no such repository.
func (c *Catalog) DataUsage(ctx context.Context) (*repo.Usage, error) {
	r, err := c.repo(ctx)
	if errors.Is(err, repo.ErrNoRepository) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	u, err := r.Usage(ctx)
	return &u, err
}
