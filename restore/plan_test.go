package restore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	snapfake "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/hint/hinttest"
	"github.com/kbak/kbak/internal/kube"
	"github.com/kbak/kbak/internal/kube/kubetest"
)

// summary renders a planned claim as "name class size source".
func summary(c Claim) string {
	return fmt.Sprintf("%s %s %s %s", c.Name, c.StorageClass, c.Size.String(), c.Source)
}

func TestNewPlan(t *testing.T) {
	fast := storageClass("fast", driver, false)
	slow := storageClass("slow", "other.example.com", false)
	std := storageClass("standard", driver, true)
	shop := namespace("shop")
	twoOrdinals := manifest(vol("data", 0), vol("data", 1))
	running := kubetest.StatefulSet("shop", "db").Replicas(2).Result()
	stopped := kubetest.StatefulSet("shop", "db").Replicas(0).Result()
	existing := kubetest.Claim("shop", "data-db-0", "fast").Result()

	tests := []struct {
		name      string
		m         *catalog.Manifest
		opts      Options
		objects   []runtime.Object
		snapshots []runtime.Object
		noSnap    bool

		wantErr       error  // errors.Is
		wantConflict  string // substring of one conflict
		wantClaims    []string
		wantNS        string
		wantCreateNS  bool
		wantReplicas  int32
		wantNote      string // substring of one note
		wantSkipped   []int
		wantReason    string // substring of the first claim's Reason
		wantStsExists bool
	}{
		{
			name: "same names", m: twoOrdinals, objects: []runtime.Object{shop, fast},
			wantClaims: []string{"data-db-0 fast 1Gi store", "data-db-1 fast 1Gi store"}, wantNS: "shop", wantReplicas: 2,
		},
		{
			name: "new name and missing namespace", m: twoOrdinals, opts: Options{ToName: "db2", ToNamespace: "dr"}, objects: []runtime.Object{fast},
			wantClaims: []string{"data-db2-0 fast 1Gi store", "data-db2-1 fast 1Gi store"}, wantNS: "dr", wantCreateNS: true, wantReplicas: 2,
			wantNote: "namespace dr does not exist and will be created",
		},
		{
			name: "missing namespace refused", m: twoOrdinals, opts: Options{ToNamespace: "dr", NoCreateNamespace: true}, objects: []runtime.Object{fast},
			wantErr: ErrConflict, wantConflict: "namespace dr does not exist: create it",
		},
		{
			name: "class mapped", m: twoOrdinals, opts: Options{StorageClassMap: map[string]string{"fast": "slow"}}, objects: []runtime.Object{shop, slow},
			wantClaims: []string{"data-db-0 slow 1Gi store", "data-db-1 slow 1Gi store"}, wantNS: "shop", wantReplicas: 2,
		},
		{
			name: "class missing", m: twoOrdinals, objects: []runtime.Object{shop, slow},
			wantErr: ErrConflict, wantConflict: "StorageClass fast of data-db-0 does not exist here: map it with --storage-class-map fast=CLASS (this cluster has: slow)",
		},
		{
			name: "mapped class missing", m: twoOrdinals, opts: Options{StorageClassMap: map[string]string{"fast": "gold"}}, objects: []runtime.Object{shop, fast},
			wantErr: ErrConflict, wantConflict: "StorageClass gold (mapped from fast by --storage-class-map) does not exist",
		},
		{
			name: "no class takes the default", m: manifest(vol("data", 0).class("")), objects: []runtime.Object{shop, fast, std},
			wantClaims: []string{"data-db-0 standard 1Gi store"}, wantNS: "shop", wantReplicas: 1,
		},
		{
			name: "no class and no default", m: manifest(vol("data", 0).class("")), objects: []runtime.Object{shop, fast},
			wantErr: ErrConflict, wantConflict: "no default StorageClass: name one with --storage-class-map =CLASS",
		},
		{
			name: "existing claim", m: twoOrdinals, objects: []runtime.Object{shop, fast, existing},
			wantErr: ErrConflict, wantConflict: "PVC shop/data-db-0 already exists: delete it, restore under --to-name, or into --to-namespace",
		},
		{
			name: "existing claim of another name is no conflict", m: twoOrdinals, opts: Options{ToName: "db2"}, objects: []runtime.Object{shop, fast, existing},
			wantClaims: []string{"data-db2-0 fast 1Gi store", "data-db2-1 fast 1Gi store"}, wantNS: "shop", wantReplicas: 2,
		},
		{
			name: "running statefulset", m: twoOrdinals, objects: []runtime.Object{shop, fast, running},
			wantErr: ErrConflict, wantConflict: "statefulset shop/db exists with 2 replicas and would grab the claims mid-restore: scale it to 0 or delete it first",
		},
		{
			name: "stopped statefulset", m: twoOrdinals, objects: []runtime.Object{shop, fast, stopped},
			wantClaims: []string{"data-db-0 fast 1Gi store", "data-db-1 fast 1Gi store"}, wantNS: "shop", wantReplicas: 2,
			wantNote: "scale it to 2 after the restore", wantStsExists: true,
		},
		{
			name: "stopped statefulset with --create-statefulset", m: twoOrdinals, opts: Options{CreateStatefulSet: true}, objects: []runtime.Object{shop, fast, stopped},
			wantErr: ErrConflict, wantConflict: "drop --create-statefulset",
		},
		{
			name: "ordinals selected", m: manifest(vol("data", 0), vol("data", 1), vol("data", 2)), opts: Options{Ordinals: []int{2, 0, 2}}, objects: []runtime.Object{shop, fast},
			wantClaims: []string{"data-db-0 fast 1Gi store", "data-db-2 fast 1Gi store"}, wantNS: "shop", wantReplicas: 3,
			wantNote: "ordinal(s) 1 not restored: with 3 replicas",
		},
		{
			name: "ordinal not in the backup", m: twoOrdinals, opts: Options{Ordinals: []int{5}}, objects: []runtime.Object{shop, fast},
			wantErr: ErrUsage,
		},
		{
			name: "failed ordinal skipped", m: manifest(vol("data", 0), vol("log", 0), vol("data", 1), vol("log", 1).failed("mover died")), objects: []runtime.Object{shop, fast},
			wantClaims: []string{"data-db-0 fast 1Gi store", "log-db-0 fast 1Gi store"}, wantNS: "shop", wantReplicas: 1, wantSkipped: []int{1},
		},
		{
			name: "failed ordinal asked for", m: manifest(vol("data", 0), vol("data", 1).failed("mover died")), opts: Options{Ordinals: []int{1}}, objects: []runtime.Object{shop, fast},
			wantErr: ErrUsage,
		},
		{
			name: "nothing restorable", m: manifest(vol("data", 0).failed("x")), objects: []runtime.Object{shop, fast},
			wantErr: ErrUsage,
		},
		{
			name: "capacity above request", m: manifest(vol("data", 0).sizes("1Gi", "2Gi")), objects: []runtime.Object{shop, fast},
			wantClaims: []string{"data-db-0 fast 2Gi store"}, wantNS: "shop", wantReplicas: 1,
		},
		{
			name: "request above capacity", m: manifest(vol("data", 0).sizes("3Gi", "2Gi")), objects: []runtime.Object{shop, fast},
			wantClaims: []string{"data-db-0 fast 3Gi store"}, wantNS: "shop", wantReplicas: 1,
		},
		{
			name: "kept snapshot is the fast path", m: manifest(vol("data", 0).kept("shop")), objects: []runtime.Object{shop, fast},
			snapshots:  []runtime.Object{keptSnapshot("shop", 0, true)},
			wantClaims: []string{"data-db-0 fast 1Gi snapshot"}, wantNS: "shop", wantReplicas: 1,
		},
		{
			name: "snapshot not ready", m: manifest(vol("data", 0).kept("shop")), objects: []runtime.Object{shop, fast},
			snapshots:  []runtime.Object{keptSnapshot("shop", 0, false)},
			wantClaims: []string{"data-db-0 fast 1Gi store"}, wantNS: "shop", wantReplicas: 1, wantReason: "is not ready to use",
		},
		{
			name: "snapshot gone", m: manifest(vol("data", 0).kept("shop")), objects: []runtime.Object{shop, fast},
			wantClaims: []string{"data-db-0 fast 1Gi store"}, wantNS: "shop", wantReplicas: 1, wantReason: "no longer exists",
		},
		{
			name: "snapshot in another namespace", m: manifest(vol("data", 0).kept("shop")), opts: Options{ToNamespace: "dr"}, objects: []runtime.Object{namespace("dr"), fast},
			snapshots:  []runtime.Object{keptSnapshot("shop", 0, true)},
			wantClaims: []string{"data-db-0 fast 1Gi store"}, wantNS: "dr", wantReplicas: 1, wantReason: "in another namespace",
		},
		{
			name: "class of another driver", m: manifest(vol("data", 0).kept("shop")), opts: Options{StorageClassMap: map[string]string{"fast": "slow"}}, objects: []runtime.Object{shop, slow},
			snapshots:  []runtime.Object{keptSnapshot("shop", 0, true)},
			wantClaims: []string{"data-db-0 slow 1Gi store"}, wantNS: "shop", wantReplicas: 1, wantReason: "is of driver csi.example.com",
		},
		{
			name: "store asked for", m: manifest(vol("data", 0).kept("shop")), opts: Options{FromStore: true}, objects: []runtime.Object{shop, fast},
			snapshots:  []runtime.Object{keptSnapshot("shop", 0, true)},
			wantClaims: []string{"data-db-0 fast 1Gi store"}, wantNS: "shop", wantReplicas: 1, wantReason: "restore from the store was asked for",
		},
		{
			name: "no snapshot client", m: manifest(vol("data", 0).kept("shop")), objects: []runtime.Object{shop, fast}, noSnap: true,
			wantClaims: []string{"data-db-0 fast 1Gi store"}, wantNS: "shop", wantReplicas: 1, wantReason: "no snapshot client",
		},
		{
			name: "snapshot of another backup", m: manifest(vol("data", 0).kept("shop")), objects: []runtime.Object{shop, fast},
			snapshots:  []runtime.Object{func() runtime.Object { vs := keptSnapshot("shop", 0, true); vs.Labels = nil; return vs }()},
			wantClaims: []string{"data-db-0 fast 1Gi store"}, wantNS: "shop", wantReplicas: 1, wantReason: "was not made by this backup",
		},
		{
			name: "block volume from its snapshot", m: manifest(vol("data", 0).block().kept("shop")), objects: []runtime.Object{shop, fast},
			snapshots:  []runtime.Object{keptSnapshot("shop", 0, true)},
			wantClaims: []string{"data-db-0 fast 1Gi snapshot"}, wantNS: "shop", wantReplicas: 1, wantNote: "raw block volume",
		},
		{
			name: "block volume needs its snapshot", m: manifest(vol("data", 0).block()), objects: []runtime.Object{shop, fast},
			wantErr: ErrConflict, wantConflict: "raw block volume",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.opts.Repo == "" {
				tt.opts.Repo = "s3://bucket/prefix"
			}
			tt.opts.ID = "db-restore-1"
			tt.opts.Spell = hinttest.Flags // conflicts and notes as the command line shows them
			deps := Deps{Kube: fake.NewClientset(tt.objects...)}
			if !tt.noSnap {
				deps.Snap = snapfake.NewSimpleClientset(tt.snapshots...)
			}
			p, err := NewPlan(context.Background(), deps, tt.m, tt.opts)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if errors.Is(err, ErrConflict) {
					if p == nil {
						t.Fatal("a conflict must come with the plan, for --dry-run")
					}
					if !slices.ContainsFunc(p.Conflicts, func(c string) bool { return strings.Contains(c, tt.wantConflict) }) {
						t.Errorf("conflicts %q, want one containing %q", p.Conflicts, tt.wantConflict)
					}
				} else if p != nil {
					t.Errorf("plan = %+v, want nil for bad options", p)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range p.Claims {
				got = append(got, summary(c))
			}
			if !slices.Equal(got, tt.wantClaims) {
				t.Errorf("claims = %q, want %q", got, tt.wantClaims)
			}
			if p.Namespace != tt.wantNS || p.CreateNamespace != tt.wantCreateNS {
				t.Errorf("namespace %s (create %v), want %s (create %v)", p.Namespace, p.CreateNamespace, tt.wantNS, tt.wantCreateNS)
			}
			if p.Replicas != tt.wantReplicas {
				t.Errorf("replicas = %d, want %d", p.Replicas, tt.wantReplicas)
			}
			if p.StatefulSetExists != tt.wantStsExists {
				t.Errorf("statefulSetExists = %v, want %v", p.StatefulSetExists, tt.wantStsExists)
			}
			if tt.wantNote != "" && !slices.ContainsFunc(p.Notes, func(n string) bool { return strings.Contains(n, tt.wantNote) }) {
				t.Errorf("notes %q, want one containing %q", p.Notes, tt.wantNote)
			}
			var skipped []int
			for _, s := range p.Skipped {
				skipped = append(skipped, s.Ordinal)
			}
			if !slices.Equal(skipped, tt.wantSkipped) {
				t.Errorf("skipped = %v, want %v", skipped, tt.wantSkipped)
			}
			if r := p.Claims[0].Reason; !strings.Contains(r, tt.wantReason) || (tt.wantReason == "" && r != "") {
				t.Errorf("reason = %q, want %q", r, tt.wantReason)
			}
		})
	}
}

func TestNewPlanClaimSpec(t *testing.T) {
	m := manifest(vol("data", 0).kept("shop"), vol("data", 1))
	m.Volumes[0].ClaimSpec.VolumeName = "pv-old"
	deps := Deps{
		Kube: fake.NewClientset(namespace("shop"), storageClass("fast", driver, false)),
		Snap: snapfake.NewSimpleClientset(keptSnapshot("shop", 0, true)),
	}
	p, err := NewPlan(context.Background(), deps, m, Options{ID: "r", Repo: "s3://bkt/x"})
	if err != nil {
		t.Fatal(err)
	}
	fromSnap, fromStore := p.Claims[0].spec, p.Claims[1].spec
	if ds := fromSnap.DataSource; ds == nil || ds.Kind != "VolumeSnapshot" || ds.Name != "snap-0" || *ds.APIGroup != "snapshot.storage.k8s.io" {
		t.Errorf("snapshot claim dataSource = %+v", ds)
	}
	if fromSnap.VolumeName != "" {
		t.Errorf("volumeName %q kept from the source cluster", fromSnap.VolumeName)
	}
	if fromStore.DataSource != nil {
		t.Errorf("store claim has dataSource %+v", fromStore.DataSource)
	}
	if *fromStore.StorageClassName != "fast" || *fromStore.VolumeMode != corev1.PersistentVolumeFilesystem || fromStore.AccessModes[0] != corev1.ReadWriteOnce {
		t.Errorf("store claim spec = %+v", fromStore)
	}
}

func TestStatefulSetObject(t *testing.T) {
	m := manifest(vol("data", 0), vol("data", 1), vol("data", 2))
	deps := Deps{Kube: fake.NewClientset(storageClass("slow", driver, false))}
	p, err := NewPlan(context.Background(), deps, m, Options{
		ID: "r", Repo: "s3://bkt/x", ToName: "db2", ToNamespace: "dr", Ordinals: []int{1},
		StorageClassMap: map[string]string{"fast": "slow"}, CreateStatefulSet: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	sts := p.StatefulSetObject()
	if sts.Name != "db2" || sts.Namespace != "dr" {
		t.Errorf("statefulset %s/%s, want dr/db2", sts.Namespace, sts.Name)
	}
	if *sts.Spec.Replicas != 2 {
		t.Errorf("replicas = %d, want 2 (highest restored ordinal + 1)", *sts.Spec.Replicas)
	}
	if c := sts.Spec.VolumeClaimTemplates[0].Spec.StorageClassName; c == nil || *c != "slow" {
		t.Errorf("claim template class = %v, want slow", c)
	}
	if sts.Labels[kube.LabelRestoreID] != "r" {
		t.Errorf("labels = %v", sts.Labels)
	}
	if m.Spec.Name != "db" || *m.Spec.Spec.VolumeClaimTemplates[0].Spec.StorageClassName != "fast" {
		t.Error("rendering the StatefulSet changed the manifest")
	}
}

func TestNewRunID(t *testing.T) {
	now := time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC)
	id, err := newRunID("db", now, strings.NewReader("\x3f\x2a"))
	if err != nil {
		t.Fatal(err)
	}
	if id != "db-restore-20261122T060000Z-3f2a" {
		t.Errorf("id = %s", id)
	}
}

// Mover pods cannot reach a file:// repository on the disk of the machine
// that runs kbak: a restore that needs them is refused before anything is
// created; one that only uses kept snapshots needs none.
func TestNewPlanFileRepository(t *testing.T) {
	deps := func() Deps {
		return Deps{
			Kube: fake.NewClientset(namespace("shop"), storageClass("fast", driver, false)),
			Snap: snapfake.NewSimpleClientset(keptSnapshot("shop", 0, true)),
		}
	}
	m := manifest(vol("data", 0).kept("shop"), vol("data", 1))
	p, err := NewPlan(context.Background(), deps(), m, Options{ID: "r", Repo: "file:///srv/kbak"})
	if !errors.Is(err, ErrUsage) || p != nil || !strings.Contains(err.Error(), "claim data-db-1 is filled from the repository by a mover pod: repository file:///srv/kbak is on this machine's disk") {
		t.Errorf("plan %v, err %v: want ErrUsage naming the claim and the file repository", p, err)
	}
	if _, err := NewPlan(context.Background(), deps(), m, Options{ID: "r", Repo: "file:///srv/kbak", Ordinals: []int{0}}); err != nil {
		t.Errorf("a restore from a kept snapshot only: %v", err)
	}
}
