package catalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// liveStatefulSet is a StatefulSet as the API server returns it.
func liveStatefulSet() *appsv1.StatefulSet {
	replicas := int32(2)
	class := "csi-hostpath-sc"
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{
			Name: "mariadb", Namespace: "shop",
			UID: "6b1c2a44-0000-4000-8000-000000000001", ResourceVersion: "4711", Generation: 3,
			CreationTimestamp: metav1.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
			Labels:            map[string]string{"app": "mariadb"},
			Annotations: map[string]string{
				corev1.LastAppliedConfigAnnotation: `{"kind":"StatefulSet"}`,
				"team":                             "shop",
			},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "example.com/v1", Kind: "Database", Name: "shop", UID: "6b1c2a44-0000-4000-8000-000000000002"}},
		},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    &replicas,
			ServiceName: "mariadb",
			Selector:    &metav1.LabelSelector{MatchLabels: map[string]string{"app": "mariadb"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "mariadb"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "mariadb", Image: "mariadb:11.4",
					VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/var/lib/mysql"}},
				}}},
			},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{
				ObjectMeta: metav1.ObjectMeta{Name: "data", CreationTimestamp: metav1.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
				Spec: corev1.PersistentVolumeClaimSpec{
					AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					StorageClassName: &class,
					Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
				},
				Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending},
			}},
		},
		Status: appsv1.StatefulSetStatus{Replicas: 2, ReadyReplicas: 2, ObservedGeneration: 3},
	}
}

// liveClaimSpec is the spec of a bound PVC of that StatefulSet.
func liveClaimSpec() *corev1.PersistentVolumeClaimSpec {
	class := "csi-hostpath-sc"
	mode := corev1.PersistentVolumeFilesystem
	return &corev1.PersistentVolumeClaimSpec{
		AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		StorageClassName: &class,
		VolumeMode:       &mode,
		VolumeName:       "pvc-6b1c2a44-0000-4000-8000-000000000003",
		DataSource:       &corev1.TypedLocalObjectReference{Kind: "VolumeSnapshot", Name: "old"},
		DataSourceRef:    &corev1.TypedObjectReference{Kind: "VolumeSnapshot", Name: "old"},
		Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
	}
}

const testID = "mariadb-20261120T101500Z-0a1f"

// manifestBuilder builds manifests for tests; each With method edits a copy.
type manifestBuilder struct{ m Manifest }

func newManifest() *manifestBuilder {
	created := time.Date(2026, 11, 20, 10, 15, 0, 0, time.UTC)
	l := Layout{Namespace: "shop", StatefulSet: "mariadb", ID: testID}
	vol := func(ordinal int, pvc string) Volume {
		return Volume{
			ClaimTemplate: "data", Ordinal: ordinal, PVC: pvc,
			ClaimSpec:     StripClaimSpec(liveClaimSpec()),
			StorageClass:  "csi-hostpath-sc",
			AccessModes:   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			VolumeMode:    corev1.PersistentVolumeFilesystem,
			RequestedSize: resource.MustParse("1Gi"),
			Capacity:      resource.MustParse("2Gi"),
			CSIDriver:     "hostpath.csi.k8s.io",
			Method:        MethodSnapshot, Consistency: ConsistencyCrash,
			Snapshot: &Snapshot{
				Name: "kbak-" + pvc + "-0a1f", Namespace: "shop",
				Handle: "7bdd0de3-aaeb-11e8-9aae-0242ac110002", Class: "csi-hostpath-snapclass",
			},
			Key:      l.VolumeKey(pvc),
			RawBytes: 1 << 20, StoredBytes: 4096 + int64(ordinal), Files: 12,
			SHA256:      "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
			Compression: "zstd:1",
			Status:      VolumeCompleted,
		}
	}
	return &manifestBuilder{m: Manifest{
		APIVersion: APIVersion, Kind: ManifestKind,
		ID: testID, KbakVersion: "v0.1.0", ClusterID: "0f6e2bd4-0000-4000-8000-00000000c1d0",
		Namespace: "shop", StatefulSet: "mariadb",
		Created: created, Started: created.Add(time.Second), Finished: created.Add(time.Minute),
		Status:         StatusCompleted,
		SnapshotSpread: metav1.Duration{Duration: 250 * time.Millisecond},
		Hooks: []HookRun{{
			Name: "flush", Phase: "pre", Pod: "mariadb-0", Container: "mariadb",
			Started: created.Add(2 * time.Second), Finished: created.Add(3 * time.Second),
		}},
		Spec:    StripStatefulSet(liveStatefulSet()),
		Volumes: []Volume{vol(0, "data-mariadb-0"), vol(1, "data-mariadb-1")},
	}}
}

func (b *manifestBuilder) with(f func(*Manifest)) *manifestBuilder {
	c := b.clone()
	f(&c.m)
	return c
}

func (b *manifestBuilder) clone() *manifestBuilder {
	m := b.m
	m.Volumes = append([]Volume(nil), b.m.Volumes...)
	m.Hooks = append([]HookRun(nil), b.m.Hooks...)
	return &manifestBuilder{m: m}
}

func (b *manifestBuilder) build() *Manifest {
	m := b.clone().m
	return &m
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the encoding (run go test -update if the change is intended):\n%s", path, got)
	}
}

func TestManifestGolden(t *testing.T) {
	tests := []struct {
		file string
		m    *Manifest
	}{
		{"manifest-completed.json", newManifest().build()},
		{"manifest-partial.json", newManifest().with(func(m *Manifest) {
			m.Status = StatusPartiallyFailed
			m.Hooks = nil
			m.Volumes[0].Method, m.Volumes[0].Consistency, m.Volumes[0].Snapshot = MethodFiles, ConsistencyLive, nil
			m.Volumes[1] = Volume{
				ClaimTemplate: "data", Ordinal: 1, PVC: "data-mariadb-1",
				ClaimSpec: StripClaimSpec(liveClaimSpec()), StorageClass: "csi-hostpath-sc",
				RequestedSize: resource.MustParse("1Gi"), Capacity: resource.MustParse("1Gi"),
				Method: MethodSnapshot, Consistency: ConsistencyCrash,
				Snapshot: &Snapshot{Name: "kbak-data-mariadb-1-0a1f", Namespace: "shop", Retained: true},
				Status:   VolumeFailed, Error: "mover pod kbak-0a1f-data-mariadb-1: exit code 1: no space left on device",
			}
		}).build()},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			if err := tt.m.Validate(); err != nil {
				t.Fatalf("fixture is invalid: %v", err)
			}
			got, err := EncodeManifest(tt.m)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tt.file, got)

			// What is on disk decodes to the manifest it was made from.
			data, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			back, err := DecodeManifest(tt.m.Layout().ManifestKey(), data)
			if err != nil {
				t.Fatal(err)
			}
			again, err := EncodeManifest(back)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, data) {
				t.Errorf("decode and encode of %s changed it:\n%s", tt.file, again)
			}
			if back.Volumes[0].Key != tt.m.Volumes[0].Key || !back.Created.Equal(tt.m.Created) ||
				back.Spec.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests.Storage().String() != "1Gi" {
				t.Errorf("decoded manifest lost fields: %+v", back)
			}
		})
	}
}

func TestDecodeNewerVersion(t *testing.T) {
	data, err := os.ReadFile("testdata/manifest-future.json")
	if err != nil {
		t.Fatal(err)
	}
	const key = "kbak/v1/shop/mariadb/" + testID + "/manifest.json"
	_, err = DecodeManifest(key, data)
	if !errors.Is(err, ErrManifestTooNew) {
		t.Fatalf("DecodeManifest = %v, want an error wrapping ErrManifestTooNew", err)
	}
	for _, want := range []string{key, "manifest version kbak.io/v2 is newer than this kbak", "upgrade kbak"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestDecodeCorrupt(t *testing.T) {
	good, err := EncodeManifest(newManifest().build())
	if err != nil {
		t.Fatal(err)
	}
	const key = "kbak/v1/shop/mariadb/" + testID + "/manifest.json"
	encode := func(m *Manifest) []byte {
		// Marshal without EncodeManifest so a broken apiVersion or kind survives.
		b, err := jsonIndent(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name    string
		key     string
		data    []byte
		wantErr string
	}{
		{"empty", key, nil, "unexpected end of JSON input"},
		{"truncated", key, good[:len(good)/2], "unexpected end of JSON input"},
		{"not json", key, []byte("PK\x03\x04 zip archive\n"), "invalid character"},
		{"wrong field type", key, bytes.Replace(good, []byte(`"rawBytes": 1048576`), []byte(`"rawBytes": "lots"`), 1), "rawBytes"},
		{"another kind", key, encode(newManifest().with(func(m *Manifest) { m.Kind = "Restore" }).build()), `kind "Restore"`},
		{"another group", key, encode(newManifest().with(func(m *Manifest) { m.APIVersion = "velero.io/v1" }).build()), `apiVersion "velero.io/v1"`},
		{"bad version", key, encode(newManifest().with(func(m *Manifest) { m.APIVersion = "kbak.io/v1beta1" }).build()), `apiVersion "kbak.io/v1beta1"`},
		{"unknown status", key, encode(newManifest().with(func(m *Manifest) { m.Status = "Done" }).build()), `unknown status "Done"`},
		{"stored at another backup's key", "kbak/v1/other/mariadb/" + testID + "/manifest.json", good, "stored at the wrong key"},
		// A format 1 archive is checked by its digest only: a manifest
		// without one would let a swapped archive verify and restore.
		{"archive without sha256", key, bytes.Replace(good, []byte(`"sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",`), nil, 1),
			"volume data-mariadb-0: no sha256 of its archive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeManifest(tt.key, tt.data)
			if !errors.Is(err, ErrCorruptManifest) {
				t.Fatalf("DecodeManifest = %v, want an error wrapping ErrCorruptManifest", err)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error is not one line: %q", msg)
			}
			if !strings.HasPrefix(msg, "read manifest "+tt.key+": corrupt manifest: ") {
				t.Errorf("error %q does not name the key first", msg)
			}
			if !strings.Contains(msg, tt.wantErr) {
				t.Errorf("error %q does not contain %q", msg, tt.wantErr)
			}
		})
	}
}

func TestManifestValidate(t *testing.T) {
	base := newManifest()
	tests := []struct {
		name    string
		m       *Manifest
		wantErr string
	}{
		{"completed with a failed volume", base.with(func(m *Manifest) { m.Volumes[1].Status = VolumeFailed }).build(), "does not match its volumes (PartiallyFailed)"},
		{"partial with all volumes done", base.with(func(m *Manifest) { m.Status = StatusPartiallyFailed }).build(), "does not match its volumes (Completed)"},
		{"completed without volumes", base.with(func(m *Manifest) { m.Volumes = nil }).build(), "with no volumes"},
		{"key outside the layout", base.with(func(m *Manifest) { m.Volumes[0].Key = "elsewhere/data.tar.zst" }).build(), `object key "elsewhere/data.tar.zst"`},
		{"unknown method", base.with(func(m *Manifest) { m.Volumes[0].Method = "rsync" }).build(), `unknown method "rsync"`},
		{"unknown consistency", base.with(func(m *Manifest) { m.Volumes[0].Consistency = "strong" }).build(), `unknown consistency "strong"`},
		{"unknown volume status", base.with(func(m *Manifest) { m.Volumes[0].Status = "Done" }).build(), `unknown status "Done"`},
		{"duplicate pvc", base.with(func(m *Manifest) { m.Volumes[1].PVC, m.Volumes[1].Key = m.Volumes[0].PVC, m.Volumes[0].Key }).build(), "listed twice"},
		{"bad pvc name", base.with(func(m *Manifest) { m.Volumes[0].PVC = "Data_0" }).build(), "invalid PVC name"},
		{"id of another statefulset", base.with(func(m *Manifest) { m.StatefulSet = "web" }).build(), "belongs to StatefulSet"},
		{"no creation time", base.with(func(m *Manifest) { m.Created = time.Time{} }).build(), "no creation time"},
		{"archive without sha256", base.with(func(m *Manifest) { m.Volumes[1].SHA256 = "" }).build(), "volume data-mariadb-1: no sha256 of its archive"},
		{"sha256 not a digest", base.with(func(m *Manifest) { m.Volumes[0].SHA256 = "abc" }).build(), `sha256 "abc" is not a hex SHA-256 digest`},
		{"tree digest not a digest", base.with(func(m *Manifest) {
			m.Format = FormatRepo
			m.Volumes = m.Volumes[:1]
			m.Volumes[0].Key, m.Volumes[0].SHA256 = m.Layout().VolumeKey(m.Volumes[0].PVC), strings.Repeat("g", 64)
		}).build(), "is not a hex SHA-256 digest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.m.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
	if err := base.with(func(m *Manifest) {
		m.Status = StatusFailed
		m.Volumes = nil
	}).build().Validate(); err != nil {
		t.Errorf("a Failed backup without volumes is a valid record: %v", err)
	}
	// A failed volume has no archive, hence no digest.
	if err := base.with(func(m *Manifest) {
		m.Status = StatusPartiallyFailed
		m.Volumes[1].Status, m.Volumes[1].Key, m.Volumes[1].SHA256 = VolumeFailed, "", ""
	}).build().Validate(); err != nil {
		t.Errorf("a failed volume without a digest: %v", err)
	}
	// A tree of format 2 is checked by its key and its chunks' ids; backups
	// written before trees had a recorded digest stay valid.
	if err := base.with(func(m *Manifest) {
		m.Format = FormatRepo
		for i := range m.Volumes {
			m.Volumes[i].Key, m.Volumes[i].SHA256 = m.Layout().VolumeKey(m.Volumes[i].PVC), ""
		}
	}).build().Validate(); err != nil {
		t.Errorf("a format 2 backup without tree digests: %v", err)
	}
}

func TestStripStatefulSet(t *testing.T) {
	live := liveStatefulSet()
	before := live.DeepCopy()
	got := StripStatefulSet(live)
	if !reflect.DeepEqual(live, before) {
		t.Error("StripStatefulSet changed its argument")
	}
	want := before.DeepCopy()
	want.TypeMeta = metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"}
	want.ObjectMeta = metav1.ObjectMeta{
		Name: "mariadb", Namespace: "shop",
		Labels:      map[string]string{"app": "mariadb"},
		Annotations: map[string]string{"team": "shop"},
	}
	want.Status = appsv1.StatefulSetStatus{}
	want.Spec.VolumeClaimTemplates[0].ObjectMeta = metav1.ObjectMeta{Name: "data"}
	want.Spec.VolumeClaimTemplates[0].Status = corev1.PersistentVolumeClaimStatus{}
	if !reflect.DeepEqual(got, *want) {
		t.Errorf("StripStatefulSet =\n%+v\nwant\n%+v", got, *want)
	}
}

func TestStripClaimSpec(t *testing.T) {
	live := liveClaimSpec()
	got := StripClaimSpec(live)
	if live.VolumeName == "" || live.DataSource == nil {
		t.Error("StripClaimSpec changed its argument")
	}
	want := live.DeepCopy()
	want.VolumeName, want.DataSource, want.DataSourceRef = "", nil, nil
	if !reflect.DeepEqual(got, *want) {
		t.Errorf("StripClaimSpec =\n%+v\nwant\n%+v", got, *want)
	}
}

func TestOverallStatus(t *testing.T) {
	v := func(s ...VolumeStatus) []Volume {
		var out []Volume
		for _, st := range s {
			out = append(out, Volume{Status: st})
		}
		return out
	}
	tests := []struct {
		vols []Volume
		want Status
	}{
		{v(VolumeCompleted, VolumeCompleted), StatusCompleted},
		{v(VolumeCompleted, VolumeSkipped), StatusCompleted},
		{v(VolumeCompleted, VolumeFailed), StatusPartiallyFailed},
		{v(VolumeFailed, VolumeFailed), StatusFailed},
		{v(VolumeSkipped), StatusFailed},
		{nil, StatusFailed},
		// A volume whose mover could not read every file is kept, and the
		// backup is partial.
		{[]Volume{{Status: VolumeCompleted, Unreadable: 1}}, StatusPartiallyFailed},
		{[]Volume{{Status: VolumeCompleted}, {Status: VolumeCompleted, Unreadable: 3}}, StatusPartiallyFailed},
	}
	for _, tt := range tests {
		if got := OverallStatus(tt.vols); got != tt.want {
			t.Errorf("OverallStatus(%v) = %s, want %s", tt.vols, got, tt.want)
		}
	}
}

func jsonIndent(m *Manifest) ([]byte, error) { return json.MarshalIndent(m, "", "  ") }
