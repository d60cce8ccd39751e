package catalog_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/catalog/catalogtest"
	datarepo "github.com/kbak/kbak/internal/repo"
	"github.com/kbak/kbak/internal/seal"
	"github.com/kbak/kbak/uploader"
)

// clock is a settable time source for the memory store.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

var t0 = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

func newStore() (*catalogtest.MemStore, *clock) {
	c := &clock{t: t0}
	return catalogtest.NewMemStore(c.now), c
}

// backup describes a backup to create in a test store.
type backup struct {
	ns, sts string
	format  int // catalog.FormatRepo, or 0 for the archive format
	created time.Time
	rnd     string // the id's random part
	status  catalog.Status
	methods []catalog.Method // one volume per entry
}

func (b backup) layout() catalog.Layout {
	return catalog.Layout{Namespace: b.ns, StatefulSet: b.sts, ID: b.sts + "-" + b.created.Format("20060102T150405Z") + "-" + b.rnd, Format: b.format}
}

// manifest builds the backup's manifest: every volume completes except the
// last one of a PartiallyFailed backup and all of a Failed one.
func (b backup) manifest() *catalog.Manifest {
	l := b.layout()
	m := &catalog.Manifest{
		Format: b.format, ID: l.ID, Namespace: b.ns, StatefulSet: b.sts,
		Created: b.created, Started: b.created, Finished: b.created.Add(time.Minute),
		Status: b.status,
	}
	for i, method := range b.methods {
		pvc := fmt.Sprintf("data-%s-%d", b.sts, i)
		v := catalog.Volume{
			ClaimTemplate: "data", Ordinal: i, PVC: pvc,
			Method: method, Consistency: catalog.ConsistencyCrash,
			Key: l.VolumeKey(pvc), RawBytes: 1000, StoredBytes: int64(100 + i), Files: 3,
			Status: catalog.VolumeCompleted,
		}
		// The digest of what write puts there: StoredBytes zero bytes.
		v.SHA256 = fmt.Sprintf("%x", sha256.Sum256(make([]byte, v.StoredBytes)))
		if b.status == catalog.StatusFailed || b.status == catalog.StatusPartiallyFailed && i == len(b.methods)-1 {
			v.Status, v.Key, v.StoredBytes, v.SHA256, v.Error = catalog.VolumeFailed, "", 0, "", "mover failed"
		}
		m.Volumes = append(m.Volumes, v)
	}
	return m
}

// write puts the volume objects and then the manifest, as a backup run does.
func (b backup) write(t testing.TB, ctx context.Context, s catalog.Store, withManifest bool) *catalog.Manifest {
	t.Helper()
	m := b.manifest()
	for _, v := range m.Volumes {
		if v.Status != catalog.VolumeCompleted {
			continue
		}
		put(t, ctx, s, v.Key, int(v.StoredBytes))
		put(t, ctx, s, m.Layout().ResultKey(v.PVC), 10)
	}
	if withManifest {
		if err := catalog.New(s, seal.Key{}).WriteManifest(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

func put(t testing.TB, ctx context.Context, s catalog.Store, key string, size int) {
	t.Helper()
	if err := s.Put(ctx, key, bytes.NewReader(make([]byte, size)), int64(size)); err != nil {
		t.Fatal(err)
	}
}

func TestWriteManifestChecksObjects(t *testing.T) {
	ctx := context.Background()
	b := backup{ns: "shop", sts: "db", created: t0, rnd: "0001", status: catalog.StatusPartiallyFailed,
		methods: []catalog.Method{catalog.MethodSnapshot, catalog.MethodFiles, catalog.MethodSnapshot}}
	tests := []struct {
		name    string
		prepare func(t *testing.T, s catalog.Store, m *catalog.Manifest)
		wantErr string
	}{
		{"all objects present", func(t *testing.T, s catalog.Store, m *catalog.Manifest) {
			put(t, ctx, s, m.Volumes[0].Key, 100)
			put(t, ctx, s, m.Volumes[1].Key, 101)
		}, ""},
		{"an object is missing", func(t *testing.T, s catalog.Store, m *catalog.Manifest) {
			put(t, ctx, s, m.Volumes[0].Key, 100)
		}, "check volume data-db-1"},
		{"an object is short", func(t *testing.T, s catalog.Store, m *catalog.Manifest) {
			put(t, ctx, s, m.Volumes[0].Key, 100)
			put(t, ctx, s, m.Volumes[1].Key, 50)
		}, "holds 50 bytes, the mover reported 101"},
		{"the manifest is inconsistent", func(t *testing.T, s catalog.Store, m *catalog.Manifest) {
			m.Status = catalog.StatusCompleted
		}, "does not match its volumes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newStore()
			m := b.manifest()
			tt.prepare(t, s, m)
			err := catalog.New(s, seal.Key{}).WriteManifest(ctx, m)
			_, statErr := s.Stat(ctx, b.layout().ManifestKey())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("WriteManifest = %v, want an error containing %q", err, tt.wantErr)
				}
				if !errors.Is(statErr, uploader.ErrNotFound) {
					t.Fatalf("manifest written despite the error (stat: %v)", statErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := catalog.New(s, seal.Key{}).Get(ctx, m.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != catalog.StatusPartiallyFailed || len(got.Volumes) != 3 || got.APIVersion != catalog.APIVersion {
				t.Errorf("read back %+v", got)
			}
		})
	}
}

// repo fills a store with a mix of backups and leftovers.
func repo(t *testing.T) (*catalogtest.MemStore, *clock, map[string]backup) {
	ctx := context.Background()
	s, c := newStore()
	snap, files := catalog.MethodSnapshot, catalog.MethodFiles
	bs := map[string]backup{
		"db-old":  {ns: "shop", sts: "db", created: t0.Add(-48 * time.Hour), rnd: "aaaa", status: catalog.StatusCompleted, methods: []catalog.Method{snap, snap}},
		"db-mid":  {ns: "shop", sts: "db", created: t0.Add(-24 * time.Hour), rnd: "0000", status: catalog.StatusCompleted, methods: []catalog.Method{files, snap}},
		"db-new":  {ns: "shop", sts: "db", created: t0.Add(-1 * time.Hour), rnd: "ffff", status: catalog.StatusPartiallyFailed, methods: []catalog.Method{snap, snap}},
		"web":     {ns: "shop", sts: "web", created: t0.Add(-2 * time.Hour), rnd: "1234", status: catalog.StatusCompleted, methods: []catalog.Method{files}},
		"db-dev":  {ns: "dev", sts: "db", created: t0.Add(-3 * time.Hour), rnd: "beef", status: catalog.StatusFailed, methods: []catalog.Method{snap}},
		"dbx":     {ns: "dev", sts: "dbx", created: t0.Add(-4 * time.Hour), rnd: "cafe", status: catalog.StatusCompleted, methods: []catalog.Method{snap}},
		"running": {ns: "shop", sts: "db", created: t0.Add(-10 * time.Minute), rnd: "0bad", status: catalog.StatusCompleted, methods: []catalog.Method{snap}},
	}
	for name, b := range bs {
		c.set(b.created.Add(time.Minute))
		b.write(t, ctx, s, name != "running")
	}
	c.set(t0)
	// Objects that are not kbak's: listings must pass over them.
	put(t, ctx, s, "kbak/v1/README", 5)
	put(t, ctx, s, "kbak/v1/shop/db/not-an-id/manifest.json", 5)
	put(t, ctx, s, "other/app/manifest.json", 5)
	return s, c, bs
}

func ids(list []catalog.Summary) []string {
	var out []string
	for _, s := range list {
		out = append(out, s.ID)
	}
	return out
}

func TestList(t *testing.T) {
	ctx := context.Background()
	s, _, bs := repo(t)
	id := func(name string) string { return bs[name].layout().ID }
	tests := []struct {
		name   string
		filter catalog.Filter
		want   []string
	}{
		{"everything", catalog.Filter{}, []string{id("db-new"), id("web"), id("db-dev"), id("dbx"), id("db-mid"), id("db-old")}},
		{"namespace", catalog.Filter{Namespace: "dev"}, []string{id("db-dev"), id("dbx")}},
		{"statefulset in every namespace", catalog.Filter{StatefulSet: "db"}, []string{id("db-new"), id("db-dev"), id("db-mid"), id("db-old")}},
		{"statefulset in a namespace", catalog.Filter{Namespace: "shop", StatefulSet: "db"}, []string{id("db-new"), id("db-mid"), id("db-old")}},
		{"nothing there", catalog.Filter{Namespace: "empty"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := s.Lists()
			list, err := catalog.New(s, seal.Key{}).List(ctx, tt.filter)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(list); !slices.Equal(got, tt.want) {
				t.Errorf("List(%+v) =\n%q\nwant\n%q", tt.filter, got, tt.want)
			}
			if n := s.Lists() - before; n != 2 {
				t.Errorf("List made %d store listings, want 2 (one a format)", n)
			}
		})
	}

	list, err := catalog.New(s, seal.Key{}).List(ctx, catalog.Filter{Namespace: "shop", StatefulSet: "db"})
	if err != nil {
		t.Fatal(err)
	}
	want := catalog.Summary{
		ID: id("db-new"), Namespace: "shop", StatefulSet: "db", Created: bs["db-new"].created, Finished: bs["db-new"].created.Add(time.Minute),
		Status: catalog.StatusPartiallyFailed, Volumes: 2, RawBytes: 2000, StoredBytes: 100,
		Methods: []catalog.Method{catalog.MethodSnapshot},
	}
	if got := list[0]; !summaryEqual(got, want) {
		t.Errorf("summary\n%+v\nwant\n%+v", got, want)
	}
	if got := list[1].Methods; !slices.Equal(got, []catalog.Method{catalog.MethodFiles, catalog.MethodSnapshot}) {
		t.Errorf("methods of a mixed backup = %v", got)
	}
}

func summaryEqual(a, b catalog.Summary) bool {
	return reflect.DeepEqual(a, b)
}

func TestListShowsUnreadableManifests(t *testing.T) {
	ctx := context.Background()
	s, _, bs := repo(t)
	bad := bs["web"].layout()
	put(t, ctx, s, bad.ManifestKey(), 7) // seven zero bytes
	list, err := catalog.New(s, seal.Key{}).List(ctx, catalog.Filter{Namespace: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(list, func(s catalog.Summary) bool { return s.ID == bad.ID })
	if i < 0 {
		t.Fatalf("corrupt backup missing from the listing %q", ids(list))
	}
	got := list[i]
	if got.Status != "" || !got.Created.Equal(bs["web"].created) || !strings.Contains(got.Error, "corrupt manifest") || !strings.Contains(got.Error, bad.ManifestKey()) {
		t.Errorf("corrupt backup listed as %+v", got)
	}
	if len(list) != 4 {
		t.Errorf("listing has %d backups, want 4: %q", len(list), ids(list))
	}
}

// failingStore fails Get on one key and records deletions.
type failingStore struct {
	catalog.Store
	mu        sync.Mutex
	failGet   string
	failAfter int // deletions allowed before Delete fails; <0 never fails
	deleted   []string
}

func (f *failingStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if key == f.failGet {
		return nil, errors.New("connection reset by peer")
	}
	return f.Store.Get(ctx, key)
}

func (f *failingStore) Delete(ctx context.Context, key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failAfter >= 0 && len(f.deleted) >= f.failAfter {
		return errors.New("access denied")
	}
	f.deleted = append(f.deleted, key)
	return f.Store.Delete(ctx, key)
}

func TestListFailsOnStoreErrors(t *testing.T) {
	s, _, bs := repo(t)
	fs := &failingStore{Store: s, failGet: bs["db-mid"].layout().ManifestKey(), failAfter: -1}
	_, err := catalog.New(fs, seal.Key{}).List(context.Background(), catalog.Filter{})
	if err == nil || !strings.Contains(err.Error(), "connection reset by peer") {
		t.Fatalf("List = %v, want the store's error", err)
	}
}

// vanishingStore deletes one key just before it is read: what a prune
// running beside a listing does.
type vanishingStore struct {
	catalog.Store
	key string
}

func (v *vanishingStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if key == v.key {
		if err := v.Store.Delete(ctx, key); err != nil {
			return nil, err
		}
	}
	return v.Store.Get(ctx, key)
}

// A backup deleted between the listing of the manifests and the read of
// its own is no longer there: it is left out, and the listing goes on.
func TestListSkipsBackupsDeletedMeanwhile(t *testing.T) {
	s, _, bs := repo(t)
	all, err := catalog.New(s, seal.Key{}).List(context.Background(), catalog.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	gone := bs["db-mid"].layout()
	list, err := catalog.New(&vanishingStore{Store: s, key: gone.ManifestKey()}, seal.Key{}).List(context.Background(), catalog.Filter{})
	if err != nil {
		t.Fatalf("List while a backup is deleted: %v", err)
	}
	want := slices.DeleteFunc(ids(all), func(id string) bool { return id == gone.ID })
	if got := ids(list); !slices.Equal(got, want) || len(want) != len(all)-1 {
		t.Errorf("listed %q, want %q (all but %s)", got, want, gone.ID)
	}
}

func TestGet(t *testing.T) {
	ctx := context.Background()
	s, _, bs := repo(t)
	cat := catalog.New(s, seal.Key{})

	m, err := cat.Get(ctx, bs["db-dev"].layout().ID)
	if err != nil {
		t.Fatal(err)
	}
	if m.Namespace != "dev" || m.Status != catalog.StatusFailed {
		t.Errorf("Get returned %s/%s %s", m.Namespace, m.StatefulSet, m.Status)
	}

	_, err = cat.Get(ctx, "db-20261120T101500Z-abcd")
	if !errors.Is(err, catalog.ErrBackupNotFound) || !strings.Contains(err.Error(), "run `kbak list` to see backup ids") {
		t.Errorf("Get of an unknown id = %v", err)
	}
	_, err = cat.Get(ctx, bs["running"].layout().ID)
	if !errors.Is(err, catalog.ErrIncomplete) {
		t.Errorf("Get of a backup without manifest = %v, want ErrIncomplete", err)
	}
	_, err = cat.Get(ctx, "latest")
	if err == nil || !strings.Contains(err.Error(), "invalid backup id") {
		t.Errorf("Get(latest) = %v, want an invalid id error", err)
	}
}

func TestLatest(t *testing.T) {
	ctx := context.Background()
	s, _, bs := repo(t)
	cat := catalog.New(s, seal.Key{})
	tests := []struct {
		filter catalog.Filter
		want   string // backup name, "" for none
	}{
		{catalog.Filter{Namespace: "shop", StatefulSet: "db"}, "db-mid"}, // db-new is partial, running has no manifest
		{catalog.Filter{Namespace: "shop"}, "web"},
		{catalog.Filter{}, "web"},
		{catalog.Filter{Namespace: "dev", StatefulSet: "db"}, ""}, // only a Failed one
		{catalog.Filter{Namespace: "nowhere", StatefulSet: "db"}, ""},
	}
	for _, tt := range tests {
		m, err := cat.Latest(ctx, tt.filter)
		if tt.want == "" {
			if !errors.Is(err, catalog.ErrBackupNotFound) {
				t.Errorf("Latest(%+v) = %v, want ErrBackupNotFound", tt.filter, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Latest(%+v): %v", tt.filter, err)
			continue
		}
		if want := bs[tt.want].layout().ID; m.ID != want {
			t.Errorf("Latest(%+v) = %s, want %s", tt.filter, m.ID, want)
		}
	}
}

func TestDelete(t *testing.T) {
	ctx := context.Background()
	s, _, bs := repo(t)
	before := s.Keys()
	fs := &failingStore{Store: s, failAfter: -1}
	l := bs["db-mid"].layout()

	m, err := catalog.New(fs, seal.Key{}).Delete(ctx, l.ID)
	if err != nil {
		t.Fatal(err)
	}
	if m == nil || m.ID != l.ID || len(m.Volumes) != 2 {
		t.Fatalf("Delete returned manifest %+v", m)
	}
	if len(fs.deleted) == 0 || fs.deleted[0] != l.ManifestKey() {
		t.Errorf("deleted %q, want the manifest first", fs.deleted)
	}
	var want []string
	for _, k := range before {
		if !strings.HasPrefix(k, l.Dir()) {
			want = append(want, k)
		}
	}
	if got := s.Keys(); !slices.Equal(got, want) {
		t.Errorf("after delete the store holds\n%q\nwant\n%q", got, want)
	}
	if _, err := catalog.New(s, seal.Key{}).Delete(ctx, l.ID); !errors.Is(err, catalog.ErrBackupNotFound) {
		t.Errorf("second Delete = %v, want ErrBackupNotFound", err)
	}
}

func TestInterruptedDeleteLeavesAnOrphan(t *testing.T) {
	ctx := context.Background()
	s, c, bs := repo(t)
	l := bs["db-old"].layout()
	fs := &failingStore{Store: s, failAfter: 2}
	if _, err := catalog.New(fs, seal.Key{}).Delete(ctx, l.ID); err == nil || !strings.Contains(err.Error(), "kbak gc") {
		t.Fatalf("Delete through a failing store = %v, want an error pointing to gc", err)
	}
	cat := catalog.New(s, seal.Key{})
	list, err := cat.List(ctx, catalog.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(ids(list), l.ID) {
		t.Errorf("half-deleted backup still listed")
	}
	c.set(t0.Add(48 * time.Hour))
	orphans, err := cat.GC(ctx, 24*time.Hour, c.now(), false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(orphans, func(o catalog.Orphan) bool { return o.ID == l.ID && o.Removed }) {
		t.Errorf("gc did not remove the half-deleted backup: %+v", orphans)
	}
	for _, k := range s.Keys() {
		if strings.HasPrefix(k, l.Dir()) {
			t.Errorf("%s left after gc", k)
		}
	}
}

// retain puts every object under dir except those of skip under retention
// until the date, and returns how many it put.
func retain(s *catalogtest.MemStore, dir, skip string, until time.Time) int {
	n := 0
	for _, k := range s.Keys() {
		if strings.HasPrefix(k, dir) && (skip == "" || !strings.HasSuffix(k, skip)) {
			s.Retain(k, until)
			n++
		}
	}
	return n
}

// A backup whose manifest Object Lock keeps is left whole and listed, and
// Delete says so with a LockedBackup (no failure); one whose other objects
// only are kept is deleted from the listing, and gc reports the rest as
// locked, not leaked, until the date, then removes it.
func TestDeleteLocked(t *testing.T) {
	ctx := context.Background()
	s, c, bs := repo(t)
	cat := catalog.New(s, seal.Key{})
	until := t0.Add(48 * time.Hour)

	whole := bs["db-mid"].layout()
	n := retain(s, whole.Dir(), "", until)
	before := s.Keys()
	m, err := cat.Delete(ctx, whole.ID)
	var lb *catalog.LockedBackup
	if !errors.Is(err, uploader.ErrLocked) || !errors.As(err, &lb) {
		t.Fatalf("Delete of a locked backup = %v, want a LockedBackup", err)
	}
	if !lb.Listed || lb.ID != whole.ID || lb.Objects != n || !lb.Until.Equal(until) || m != nil {
		t.Errorf("Delete = %+v, manifest %v; want the whole backup (%d objects) kept until %v and no manifest for cleanup", lb, m, n, until)
	}
	if got := s.Keys(); !slices.Equal(got, before) {
		t.Errorf("a locked backup lost objects: %q", got)
	}
	if list, _ := cat.List(ctx, catalog.Filter{}); !slices.Contains(ids(list), whole.ID) {
		t.Errorf("a locked backup is no longer listed")
	}
	t.Log(err)

	part := bs["db-old"].layout()
	n = retain(s, part.Dir(), "manifest.json", until)
	m, err = cat.Delete(ctx, part.ID)
	if !errors.As(err, &lb) || lb.Listed || lb.Objects != n || m == nil || m.ID != part.ID {
		t.Fatalf("Delete with locked volumes = %v (%+v), manifest %v; want it unlisted, its manifest back, and %d objects kept", err, lb, m, n)
	}
	if list, _ := cat.List(ctx, catalog.Filter{}); slices.Contains(ids(list), part.ID) {
		t.Errorf("a backup without its manifest is still listed")
	}

	for _, dry := range []bool{true, false} {
		orphans, err := cat.GC(ctx, time.Hour, t0, dry)
		if err != nil {
			t.Fatalf("gc (dry run %v): %v, want no error for locked objects", dry, err)
		}
		i := slices.IndexFunc(orphans, func(o catalog.Orphan) bool { return o.ID == part.ID })
		if i < 0 || orphans[i].Removed || orphans[i].Locked.Objects != n || !orphans[i].Locked.Until.Equal(until) {
			t.Errorf("gc (dry run %v): orphans %+v, want %s reported as %d objects locked until %v", dry, orphans, part.ID, n, until)
		}
	}
	if !slices.ContainsFunc(s.Keys(), func(k string) bool { return strings.HasPrefix(k, part.Dir()) }) {
		t.Fatal("gc removed locked objects")
	}
	c.set(until.Add(time.Second))
	orphans, err := cat.GC(ctx, time.Hour, c.now(), false)
	i := slices.IndexFunc(orphans, func(o catalog.Orphan) bool { return o.ID == part.ID })
	if err != nil || i < 0 || !orphans[i].Removed || orphans[i].Locked.Any() {
		t.Errorf("gc once the lock ended: %+v, %v; want %s removed", orphans, err, part.ID)
	}
	if _, err := cat.Delete(ctx, whole.ID); err != nil {
		t.Errorf("Delete once the lock ended: %v", err)
	}
}

func TestGC(t *testing.T) {
	ctx := context.Background()
	// The backup "running" (no manifest) last wrote at t0-9m; an older
	// crashed one last wrote at t0-5h.
	crashed := backup{ns: "shop", sts: "web", created: t0.Add(-5*time.Hour - time.Minute), rnd: "dead", status: catalog.StatusCompleted,
		methods: []catalog.Method{catalog.MethodFiles, catalog.MethodFiles}}
	tests := []struct {
		name        string
		grace       time.Duration
		dryRun      bool
		wantOrphans []string
		wantRemoved bool
	}{
		{"grace protects both", 6 * time.Hour, false, nil, false},
		{"the crashed one is old enough", time.Hour, false, []string{"crashed"}, true},
		{"dry run removes nothing", time.Hour, true, []string{"crashed"}, false},
		{"zero grace takes the running one too", 0, false, []string{"crashed", "running"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, c, bs := repo(t)
			bs["crashed"] = crashed
			c.set(crashed.created.Add(time.Minute))
			crashed.write(t, ctx, s, false)
			before := s.Keys()

			orphans, err := catalog.New(s, seal.Key{}).GC(ctx, tt.grace, t0, tt.dryRun)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			var gone []string
			for _, o := range orphans {
				if o.Removed != tt.wantRemoved {
					t.Errorf("orphan %s removed=%v, want %v", o.ID, o.Removed, tt.wantRemoved)
				}
				var name string
				for n, b := range bs {
					if b.layout().ID == o.ID {
						name = n
					}
				}
				got = append(got, name)
				if o.Objects == 0 || o.Bytes == 0 || !o.Newest.Equal(bs[name].created.Add(time.Minute)) {
					t.Errorf("orphan %+v: wrong counts or time", o)
				}
				if o.Removed {
					gone = append(gone, bs[name].layout().Dir())
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.wantOrphans) {
				t.Errorf("orphans %q, want %q", got, tt.wantOrphans)
			}
			var want []string
			for _, k := range before {
				if !slices.ContainsFunc(gone, func(dir string) bool { return strings.HasPrefix(k, dir) }) {
					want = append(want, k)
				}
			}
			if keys := s.Keys(); !slices.Equal(keys, want) {
				t.Errorf("after gc the store holds\n%q\nwant\n%q", keys, want)
			}
		})
	}
}

func TestGCJoinsDeleteErrors(t *testing.T) {
	s, _, _ := repo(t)
	fs := &failingStore{Store: s, failAfter: 0}
	orphans, err := catalog.New(fs, seal.Key{}).GC(context.Background(), 0, t0, false)
	if err == nil || !strings.Contains(err.Error(), "access denied") {
		t.Fatalf("GC = %v, want the delete error", err)
	}
	if len(orphans) != 1 || orphans[0].Removed {
		t.Errorf("orphans %+v, want one not removed", orphans)
	}
	if _, err := catalog.New(s, seal.Key{}).GC(context.Background(), -time.Second, t0, true); err == nil {
		t.Error("GC with a negative grace succeeded")
	}
}

func TestListRejectsBadFilter(t *testing.T) {
	s, _ := newStore()
	for _, f := range []catalog.Filter{{Namespace: "Shop"}, {StatefulSet: "a/b"}} {
		if _, err := catalog.New(s, seal.Key{}).List(context.Background(), f); err == nil {
			t.Errorf("List(%+v) succeeded", f)
		}
	}
}

// BenchmarkList lists a repository of 1000 backups of 3 volumes each.
func BenchmarkList(b *testing.B) {
	ctx := context.Background()
	s, _ := newStore()
	for i := range 1000 {
		bk := backup{ns: "shop", sts: fmt.Sprintf("db%d", i%10), created: t0.Add(-time.Duration(i) * time.Hour), rnd: "abcd",
			status: catalog.StatusCompleted, methods: []catalog.Method{catalog.MethodSnapshot, catalog.MethodSnapshot, catalog.MethodFiles}}
		bk.write(b, ctx, s, true)
	}
	cat := catalog.New(s, seal.Key{})
	b.ResetTimer()
	for b.Loop() {
		list, err := cat.List(ctx, catalog.Filter{})
		if err != nil || len(list) != 1000 {
			b.Fatalf("List = %d backups, %v", len(list), err)
		}
	}
}

// Backups of both formats live side by side: listed together with their
// format, the newest of either is the latest, and each is found, deleted
// and collected under its own root.
func TestFormatsSideBySide(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore()
	snap := []catalog.Method{catalog.MethodSnapshot}
	v1 := backup{ns: "shop", sts: "db", created: t0.Add(-2 * time.Hour), rnd: "0001", status: catalog.StatusCompleted, methods: snap}
	v2 := backup{ns: "shop", sts: "db", format: catalog.FormatRepo, created: t0.Add(-time.Hour), rnd: "0002", status: catalog.StatusCompleted, methods: snap}
	orphan := backup{ns: "shop", sts: "db", format: catalog.FormatRepo, created: t0.Add(-30 * time.Hour), rnd: "0003", status: catalog.StatusCompleted, methods: snap}
	v1.write(t, ctx, s, true)
	m2 := v2.write(t, ctx, s, true)
	put(t, ctx, s, v2.layout().Dir()+"volumes/data-db-0.files", 10)
	orphan.write(t, ctx, s, false)
	cat := catalog.New(s, seal.Key{})

	list, err := cat.List(ctx, catalog.Filter{Namespace: "shop"})
	if err != nil || len(list) != 2 || list[0].ID != m2.ID || list[0].Format != catalog.FormatRepo || list[1].Format != 0 {
		t.Fatalf("List = %+v, %v; want the format 2 backup first, then the format 1 one", list, err)
	}
	latest, err := cat.Latest(ctx, catalog.Filter{Namespace: "shop", StatefulSet: "db"})
	if err != nil || latest.ID != m2.ID || latest.Format != catalog.FormatRepo {
		t.Fatalf("Latest = %+v, %v; want the format 2 backup", latest, err)
	}
	if m, err := cat.Get(ctx, v1.layout().ID); err != nil || m.Format != 0 {
		t.Fatalf("Get of the format 1 backup: %v", err)
	}
	if _, err := cat.Delete(ctx, m2.ID); err != nil {
		t.Fatal(err)
	}
	for _, k := range s.Keys() {
		if strings.Contains(k, m2.ID) {
			t.Errorf("Delete left %s", k)
		}
	}
	orphans, err := cat.GC(ctx, time.Hour, t0.Add(48*time.Hour), false)
	if err != nil || len(orphans) != 1 || orphans[0].ID != orphan.layout().ID || !orphans[0].Removed {
		t.Fatalf("GC = %+v, %v; want the format 2 orphan removed", orphans, err)
	}
}

// In an encrypted repository a manifest is sealed whole, its StatefulSet
// spec a second time to the read keys: the write key lists and reads the
// rest, only the read key the spec; no key lists nothing, in one error.
func TestEncryptedManifests(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore()
	id, _ := age.GenerateX25519Identity()
	r, err := datarepo.Init(ctx, s, datarepo.InitOptions{Encryption: datarepo.EncryptionAge, ReadKeys: []string{id.Recipient().String()}})
	if err != nil {
		t.Fatal(err)
	}
	rid, secret, _ := r.WriteKey()
	writeKey, readKey := seal.Key{RepoID: rid, Write: &secret}, seal.Key{Read: id}
	b := backup{ns: "shop", sts: "db", format: catalog.FormatRepo, created: t0, rnd: "0001", status: catalog.StatusCompleted, methods: []catalog.Method{catalog.MethodSnapshot}}
	m := b.manifest()
	m.Spec.Spec.ServiceName = "SPEC-PLAINTEXT"
	for _, v := range m.Volumes {
		put(t, ctx, s, v.Key, 10)
	}
	if err := catalog.New(s, writeKey).WriteManifest(ctx, m); err != nil {
		t.Fatal(err)
	}
	for _, k := range s.Keys() {
		rc, _ := s.Get(ctx, k)
		data, _ := io.ReadAll(rc)
		rc.Close()
		if bytes.Contains(data, []byte("SPEC-PLAINTEXT")) || (strings.HasSuffix(k, "manifest.json") && bytes.Contains(data, []byte("data-db-0"))) {
			t.Errorf("%s holds plaintext of the manifest", k)
		}
	}
	got, err := catalog.New(s, writeKey).Get(ctx, m.ID)
	if err != nil || !got.SpecSealed() || got.Spec.Spec.ServiceName != "" || len(got.Volumes) != len(m.Volumes) {
		t.Fatalf("with the write key: %+v, %v; want the manifest with its spec sealed", got, err)
	}
	got, err = catalog.New(s, readKey).Get(ctx, m.ID)
	if err != nil || got.SpecSealed() || got.Spec.Spec.ServiceName != "SPEC-PLAINTEXT" {
		t.Fatalf("with the read key: %v; want the spec", err)
	}
	if _, err := catalog.New(s, seal.Key{}).List(ctx, catalog.Filter{}); !errors.Is(err, datarepo.ErrNeedKey) {
		t.Fatalf("List with no key: %v", err)
	}
}
