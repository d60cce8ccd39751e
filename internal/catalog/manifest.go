package catalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Manifest format identity. The version is bumped only for changes an older
// kbak cannot read safely; new optional fields keep kbak.io/v1.
const (
	APIGroup        = "kbak.io"
	ManifestVersion = 1
	APIVersion      = "kbak.io/v1"
	ManifestKind    = "Backup"
)

// Status is the outcome of a whole backup.
type Status string

// Backup statuses.
const (
	StatusCompleted       Status = "Completed"
	StatusPartiallyFailed Status = "PartiallyFailed"
	StatusFailed          Status = "Failed"
)

// VolumeStatus is the outcome of one volume.
type VolumeStatus string

// Volume statuses.
const (
	VolumeCompleted VolumeStatus = "Completed"
	VolumeFailed    VolumeStatus = "Failed"
	VolumeSkipped   VolumeStatus = "Skipped"
)

// Method is how a volume's data was read.
type Method string

// Methods.
const (
	MethodSnapshot Method = "snapshot" // from a CSI VolumeSnapshot through a temporary PVC
	MethodFiles    Method = "files"    // the live PVC mounted read-only
)

// Consistency is what the data of a volume is consistent with.
type Consistency string

// Consistency levels, strongest first.
const (
	ConsistencyGroup    Consistency = "group"    // one VolumeGroupSnapshot across the claims (quiesced when hooks held the application; Snapshot.Group names the group)
	ConsistencyQuiesced Consistency = "quiesced" // snapshots cut while hooks held the application still
	ConsistencyCrash    Consistency = "crash"    // a point-in-time snapshot, as after a power cut
	ConsistencyLive     Consistency = "live"     // files copied while the application wrote
)

// Manifest describes one backup. It is written last, so a backup directory
// with a manifest has all the objects its Completed volumes name, and it
// carries enough of the cluster's objects to restore into a new cluster from
// the bucket alone.
type Manifest struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// Format is FormatRepo for a backup in the deduplicating repository;
	// absent (0) for the archive format.
	Format      int    `json:"format,omitempty"`
	ID          string `json:"id"`
	KbakVersion string `json:"kbakVersion"`
	// ClusterID is the UID of the source cluster's kube-system namespace.
	ClusterID   string `json:"clusterID"`
	Namespace   string `json:"namespace"`
	StatefulSet string `json:"statefulSet"`
	// Created is the backup's creation time, the one in its id.
	Created  time.Time `json:"created"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Status   Status    `json:"status"`
	// SnapshotSpread is the time between the first and the last snapshot cut:
	// how far apart in time the volumes of a crash-consistent backup are.
	SnapshotSpread metav1.Duration `json:"snapshotSpread"`
	Hooks          []HookRun       `json:"hooks,omitempty"`
	// MoverSecurity is how the movers ran (unprivileged, baseline or
	// privileged); empty in backups made before kbak chose it, whose
	// movers ran privileged.
	MoverSecurity string `json:"moverSecurity,omitempty"`
	// Spec is the StatefulSet as it was, stripped by StripStatefulSet.
	Spec appsv1.StatefulSet `json:"statefulSetObject"`
	// SealedSpec is Spec sealed to the read keys of an encrypted
	// repository (Spec is then empty in the object); it is opened when the
	// manifest is read with a read key.
	SealedSpec []byte   `json:"sealedStatefulSetObject,omitempty"`
	Volumes    []Volume `json:"volumes"`
}

// HookRun records one hook kbak ran. The command is not recorded: hook
// commands may carry credentials, and manifests never hold any.
type HookRun struct {
	Name      string    `json:"name"`
	Phase     string    `json:"phase"` // "pre" or "post"
	Pod       string    `json:"pod"`
	Container string    `json:"container,omitempty"`
	Started   time.Time `json:"started"`
	Finished  time.Time `json:"finished"`
	Error     string    `json:"error,omitempty"`
	// DeadmanSeconds, on a pre hook, is how long after it started the
	// deadman kbak left in the container would run the post hook; 0 for
	// none (and in manifests older than the deadman).
	DeadmanSeconds int64 `json:"deadmanSeconds,omitempty"`
	// ThawedBy, on a post hook run through kbak's wrapper, is who ran the
	// post hook in the pod: "kbak", or "deadman" when the deadman had
	// already run it (the volumes are then not recorded as quiesced).
	ThawedBy string `json:"thawedBy,omitempty"`
}

// Volume records one PVC of the backup.
type Volume struct {
	ClaimTemplate string `json:"claimTemplate"`
	Ordinal       int    `json:"ordinal"`
	PVC           string `json:"pvc"`
	// ClaimSpec is the PVC's spec, stripped by StripClaimSpec.
	ClaimSpec     corev1.PersistentVolumeClaimSpec    `json:"claimSpec"`
	StorageClass  string                              `json:"storageClass,omitempty"`
	AccessModes   []corev1.PersistentVolumeAccessMode `json:"accessModes,omitempty"`
	VolumeMode    corev1.PersistentVolumeMode         `json:"volumeMode,omitempty"`
	RequestedSize resource.Quantity                   `json:"requestedSize"`
	Capacity      resource.Quantity                   `json:"capacity"` // as the bound PV reports it
	CSIDriver     string                              `json:"csiDriver,omitempty"`
	Method        Method                              `json:"method"`
	Consistency   Consistency                         `json:"consistency"`
	Snapshot      *Snapshot                           `json:"snapshot,omitempty"`
	Key           string                              `json:"key,omitempty"` // the archive's object key
	RawBytes      int64                               `json:"rawBytes"`
	StoredBytes   int64                               `json:"storedBytes"`
	Files         int64                               `json:"files"`
	// SHA256 is the hex digest of the stored object: the archive (format
	// 1, always) or the volume's tree (format 2, recorded since kbak
	// checks trees by it). See Validate.
	SHA256 string `json:"sha256,omitempty"`
	// The deduplicating repository's figures (StoredBytes is then what the
	// volume added to the repository): file data read (unchanged files are
	// not), files reused from the parent backup, chunks and new chunks.
	ReadBytes    int64  `json:"readBytes,omitempty"`
	SkippedFiles int64  `json:"skippedFiles,omitempty"`
	Chunks       int64  `json:"chunks,omitempty"`
	NewChunks    int64  `json:"newChunks,omitempty"`
	Parent       string `json:"parent,omitempty"` // the backup whose unchanged files were trusted
	Compression  string `json:"compression,omitempty"`
	// Unreadable counts the files and directories an unprivileged mover
	// could not read and left out, with the first names: the volume is
	// Completed (what was read restores) but incomplete, Error says so,
	// and the backup is PartiallyFailed.
	Unreadable      int64        `json:"unreadable,omitempty"`
	UnreadableNames []string     `json:"unreadableNames,omitempty"`
	Status          VolumeStatus `json:"status"`
	Error           string       `json:"error,omitempty"`
}

// Snapshot names the VolumeSnapshot a volume was read from.
type Snapshot struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	Handle    string `json:"handle,omitempty"` // the CSI snapshot handle
	Class     string `json:"class,omitempty"`
	// Group is the VolumeGroupSnapshot the snapshot was cut in with the
	// other claims of its CSI driver, GroupClass its class; empty for a
	// snapshot cut on its own. Claims on several drivers make one group a
	// driver. The group snapshot is deleted with the run.
	Group      string `json:"group,omitempty"`
	GroupClass string `json:"groupClass,omitempty"`
	// Retained is true when the snapshot was kept in the cluster after the
	// backup (--keep-snapshots): whoever deletes the backup cleans it.
	Retained bool `json:"retained"`
}

// StripStatefulSet returns a copy of sts without what belongs to one cluster
// and one moment (status, uid, resourceVersion, managed fields, timestamps,
// owner references), ready to be stored and re-created elsewhere. Owner
// references go because their UIDs name objects of the source cluster: the
// garbage collector would delete a re-created StatefulSet whose owner is
// missing.
func StripStatefulSet(sts *appsv1.StatefulSet) appsv1.StatefulSet {
	out := *sts.DeepCopy()
	out.TypeMeta = metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"}
	stripMeta(&out.ObjectMeta)
	out.Status = appsv1.StatefulSetStatus{}
	for i := range out.Spec.VolumeClaimTemplates {
		t := &out.Spec.VolumeClaimTemplates[i]
		stripMeta(&t.ObjectMeta)
		t.Status = corev1.PersistentVolumeClaimStatus{}
	}
	return out
}

func stripMeta(m *metav1.ObjectMeta) {
	m.UID = ""
	m.ResourceVersion = ""
	m.Generation = 0
	m.CreationTimestamp = metav1.Time{}
	m.DeletionTimestamp = nil
	m.DeletionGracePeriodSeconds = nil
	m.ManagedFields = nil
	m.OwnerReferences = nil
	if _, ok := m.Annotations[corev1.LastAppliedConfigAnnotation]; ok {
		// A second, stale copy of the object: it would only mislead a restore.
		delete(m.Annotations, corev1.LastAppliedConfigAnnotation)
		if len(m.Annotations) == 0 {
			m.Annotations = nil
		}
	}
}

// StripClaimSpec returns a copy of a PVC spec without the fields that bind it
// to one volume (volumeName) or one source (dataSource, dataSourceRef): a
// restore sets its own.
func StripClaimSpec(spec *corev1.PersistentVolumeClaimSpec) corev1.PersistentVolumeClaimSpec {
	out := *spec.DeepCopy()
	out.VolumeName = ""
	out.DataSource = nil
	out.DataSourceRef = nil
	return out
}

// Layout returns the key layout of the manifest's backup.
func (m *Manifest) Layout() Layout {
	return Layout{Namespace: m.Namespace, StatefulSet: m.StatefulSet, ID: m.ID, Format: m.Format}
}

// OverallStatus derives a backup's status from its volumes: Completed when no
// volume failed, Failed when none completed, PartiallyFailed otherwise.
func OverallStatus(volumes []Volume) Status {
	var completed, failed int
	for _, v := range volumes {
		switch v.Status {
		case VolumeCompleted:
			completed++
			if v.Unreadable > 0 {
				failed++ // in part
			}
		case VolumeFailed:
			failed++
		}
	}
	switch {
	case failed == 0 && completed > 0:
		return StatusCompleted
	case completed == 0:
		return StatusFailed
	default:
		return StatusPartiallyFailed
	}
}

// Validate checks that a manifest is complete and self-consistent: valid
// names, known enumerations, and archive keys that the layout derives.
func (m *Manifest) Validate() error {
	l := m.Layout()
	if err := l.Validate(); err != nil {
		return fmt.Errorf("manifest %s: %w", m.ID, err)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("manifest %s: "+format, append([]any{m.ID}, args...)...)
	}
	switch m.Status {
	case StatusCompleted, StatusPartiallyFailed, StatusFailed:
	default:
		return bad("unknown status %q", m.Status)
	}
	if m.Format != 0 && m.Format != FormatArchive && m.Format != FormatRepo {
		return bad("unknown format %d", m.Format)
	}
	if m.Created.IsZero() {
		return bad("no creation time")
	}
	if len(m.Volumes) == 0 && m.Status != StatusFailed {
		return bad("status %s with no volumes", m.Status)
	}
	if want := OverallStatus(m.Volumes); len(m.Volumes) > 0 && want != m.Status {
		return bad("status %s does not match its volumes (%s)", m.Status, want)
	}
	seen := make(map[string]bool, len(m.Volumes))
	for i := range m.Volumes {
		v := &m.Volumes[i]
		if err := ValidatePVCName(v.PVC); err != nil {
			return bad("volume %d: %w", i, err)
		}
		if seen[v.PVC] {
			return bad("volume %s listed twice", v.PVC)
		}
		seen[v.PVC] = true
		switch v.Status {
		case VolumeCompleted, VolumeFailed, VolumeSkipped:
		default:
			return bad("volume %s: unknown status %q", v.PVC, v.Status)
		}
		if v.Status != VolumeCompleted {
			continue
		}
		switch v.Method {
		case MethodSnapshot, MethodFiles:
		default:
			return bad("volume %s: unknown method %q", v.PVC, v.Method)
		}
		switch v.Consistency {
		case ConsistencyGroup, ConsistencyQuiesced, ConsistencyCrash, ConsistencyLive:
		default:
			return bad("volume %s: unknown consistency %q", v.PVC, v.Consistency)
		}
		if want := l.VolumeKey(v.PVC); v.Key != want {
			return bad("volume %s: object key %q, want %q", v.PVC, v.Key, want)
		}
		if err := validDigest(m.Format, v.SHA256); err != nil {
			return bad("volume %s: %w", v.PVC, err)
		}
	}
	return nil
}

// validDigest checks the digest a Completed volume records. Every archive
// (format 1) has its sha256, which verify and restore check before
// anything counts as good: without it a swapped archive would pass. A
// tree (format 2) is named by its key, which Validate requires to be the
// one the layout derives, and every chunk it references is checked against
// its id (a keyed hash of its content) as it is read; its sha256, the
// digest of the stored tree object, is recorded by backups since it was
// introduced and checked whenever recorded.
func validDigest(format int, sum string) error {
	switch {
	case sum == "" && format != FormatRepo:
		return errors.New("no sha256 of its archive, which verify and restore check the archive against")
	case sum == "":
		return nil
	case len(sum) != 64 || strings.Trim(strings.ToLower(sum), "0123456789abcdef") != "":
		return fmt.Errorf("sha256 %q is not a hex SHA-256 digest", sum)
	}
	return nil
}

// ErrManifestTooNew is wrapped by DecodeManifest errors for manifests written
// by a newer kbak with an incompatible format.
var ErrManifestTooNew = errors.New("manifest format is newer than this kbak")

// ErrCorruptManifest is wrapped by DecodeManifest errors for objects that are
// not a readable manifest.
var ErrCorruptManifest = errors.New("corrupt manifest")

// EncodeManifest renders m as indented JSON, filling in its apiVersion and
// kind.
func EncodeManifest(m *Manifest) ([]byte, error) {
	m.APIVersion, m.Kind = APIVersion, ManifestKind
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode manifest %s: %w", m.ID, err)
	}
	return append(b, '\n'), nil
}

// DecodeManifest parses the manifest stored at key. Every error is one line
// naming the key; a manifest from a newer kbak wraps ErrManifestTooNew and
// says to upgrade, anything unreadable wraps ErrCorruptManifest.
func DecodeManifest(key string, data []byte) (*Manifest, error) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, corrupt(key, OneLine(err.Error()))
	}
	if head.Kind != ManifestKind {
		return nil, corrupt(key, fmt.Sprintf("kind %q, want %q", head.Kind, ManifestKind))
	}
	group, version, _ := strings.Cut(head.APIVersion, "/")
	n, err := strconv.Atoi(strings.TrimPrefix(version, "v"))
	if group != APIGroup || !strings.HasPrefix(version, "v") || err != nil || n < 1 {
		return nil, corrupt(key, fmt.Sprintf("apiVersion %q, want %q", head.APIVersion, APIVersion))
	}
	if n > ManifestVersion {
		return nil, fmt.Errorf("read manifest %s: %w: manifest version %s is newer than this kbak (reads %s): upgrade kbak",
			key, ErrManifestTooNew, head.APIVersion, APIVersion)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&m); err != nil {
		return nil, corrupt(key, OneLine(err.Error()))
	}
	if err := m.Validate(); err != nil {
		return nil, corrupt(key, err.Error())
	}
	if want := m.Layout().ManifestKey(); key != want {
		return nil, corrupt(key, fmt.Sprintf("describes backup %s/%s/%s, stored at the wrong key (want %s)", m.Namespace, m.StatefulSet, m.ID, want))
	}
	return &m, nil
}

func corrupt(key, why string) error {
	return fmt.Errorf("read manifest %s: %w: %s", key, ErrCorruptManifest, why)
}

// OneLine folds s, an error's text, into one line, as a manifest records
// errors and as a person reads them: the libraries below may format theirs
// over several.
func OneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// SpecSealed reports whether the StatefulSet spec is sealed and was not
// opened: the manifest was read without the repository's read key.
func (m *Manifest) SpecSealed() bool { return m.SealedSpec != nil }
