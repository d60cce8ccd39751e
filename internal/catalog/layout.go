package catalog

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Root is the key prefix of the backups of format 1 (a tar+zstd archive a
// volume). The version segment lets another layout live beside it: RootV2
// holds the backups of the deduplicating repository (internal/repo), whose
// shared objects live beside them under kbak/v2/.
const (
	Root   = "kbak/v1/"
	RootV2 = "kbak/v2/backups/"
)

// Formats of a backup.
const (
	FormatArchive = 1 // a tar+zstd object a volume
	FormatRepo    = 2 // a tree and a file cache a volume, data in shared chunks
)

// roots are the key prefixes of backups, oldest format first.
var roots = []string{Root, RootV2}

func rootOf(format int) string {
	if format == FormatRepo {
		return RootV2
	}
	return Root
}

// File names inside a backup directory.
const (
	manifestName = "manifest.json"
	volumesDir   = "volumes/"
	volumeSuffix = ".tar.zst"
	treeSuffix   = ".tree" // repo.TreeSuffix: the repository derives the file cache's key from it
	resultSuffix = ".json"
	manifestEnd  = "/" + manifestName
	idTimeLayout = "20060102T150405Z"
	idTimeLen    = len(idTimeLayout)
	idRandLen    = 4
	idSuffixLen  = 1 + idTimeLen + 1 + idRandLen // "-<time>-<hex>"
	maxIDLen     = validation.DNS1123SubdomainMaxLength
)

// Layout derives every object key of one backup. It is the only place in kbak
// that builds keys, so the layout can change in one place.
type Layout struct {
	Namespace   string
	StatefulSet string
	ID          string
	// Format is FormatRepo for a backup in the deduplicating repository;
	// 0 and FormatArchive mean the archive layout.
	Format int
}

// NewLayout validates the names of one backup and returns its layout in the
// given format.
func NewLayout(namespace, statefulSet, id string, format int) (Layout, error) {
	l := Layout{Namespace: namespace, StatefulSet: statefulSet, ID: id, Format: format}
	return l, l.Validate()
}

// Validate checks that the names are valid Kubernetes names and that the id
// belongs to the StatefulSet, so that every key maps back to one backup.
func (l Layout) Validate() error {
	if err := ValidateNamespace(l.Namespace); err != nil {
		return err
	}
	if err := ValidateStatefulSetName(l.StatefulSet); err != nil {
		return err
	}
	sts, _, err := ParseID(l.ID)
	if err != nil {
		return err
	}
	if sts != l.StatefulSet {
		return fmt.Errorf("backup id %q belongs to StatefulSet %q, not %q", l.ID, sts, l.StatefulSet)
	}
	return nil
}

// Dir is the key prefix of all objects of the backup, ending in a slash.
func (l Layout) Dir() string {
	return rootOf(l.Format) + l.Namespace + "/" + l.StatefulSet + "/" + l.ID + "/"
}

// ManifestKey is the key of the backup's manifest.
func (l Layout) ManifestKey() string { return l.Dir() + manifestName }

// VolumeKey is the key of one PVC's data: its tar+zstd archive, or in the
// deduplicating repository its tree (the file cache lies beside it, see
// repo.FileCacheKey).
func (l Layout) VolumeKey(pvc string) string {
	if l.Format == FormatRepo {
		return l.Dir() + volumesDir + pvc + treeSuffix
	}
	return l.Dir() + volumesDir + pvc + volumeSuffix
}

// ResultKey is the key of the mover's result (a JSON mover.Result) for one PVC.
func (l Layout) ResultKey(pvc string) string { return l.Dir() + volumesDir + pvc + resultSuffix }

// ListPrefixes are the narrowest key prefixes holding every backup that
// matches f, one a format. Without a namespace the StatefulSet name cannot
// narrow them (it is the second segment), so callers still filter parsed keys
// with f.Match.
func ListPrefixes(f Filter) []string {
	out := make([]string, 0, len(roots))
	for _, root := range roots {
		switch {
		case f.Namespace == "":
			out = append(out, root)
		case f.StatefulSet == "":
			out = append(out, root+f.Namespace+"/")
		default:
			out = append(out, root+f.Namespace+"/"+f.StatefulSet+"/")
		}
	}
	return out
}

// Kind says what an object inside a backup directory is.
type Kind int

// Object kinds. KindOther is an object inside a valid backup directory whose
// name kbak does not know (a newer kbak's file, a stray upload): it belongs to
// the backup and goes with it on delete or gc.
const (
	KindOther Kind = iota
	KindManifest
	KindVolume
	KindResult
)

func (k Kind) String() string {
	switch k {
	case KindManifest:
		return "manifest"
	case KindVolume:
		return "volume"
	case KindResult:
		return "result"
	default:
		return "other"
	}
}

// Key is an object key parsed back into its parts.
type Key struct {
	Layout
	Kind Kind
	PVC  string // for KindVolume and KindResult
}

// ErrNotKbakKey is wrapped by ParseKey errors for keys outside the layout.
var ErrNotKbakKey = errors.New("not a kbak backup key")

// ParseKey splits a key relative to the repository root into its parts. Keys
// whose backup directory is valid but whose file name is unknown parse as
// KindOther; keys outside any valid backup directory give an error wrapping
// ErrNotKbakKey.
func ParseKey(key string) (Key, error) {
	format, volume := 0, volumeSuffix
	rest, ok := strings.CutPrefix(key, Root)
	if !ok {
		format, volume = FormatRepo, treeSuffix
		rest, ok = strings.CutPrefix(key, RootV2)
	}
	if !ok {
		return Key{}, fmt.Errorf("parse key %q: %w", key, ErrNotKbakKey)
	}
	parts := strings.SplitN(rest, "/", 4)
	if len(parts) < 4 {
		return Key{}, fmt.Errorf("parse key %q: %w", key, ErrNotKbakKey)
	}
	l := Layout{Namespace: parts[0], StatefulSet: parts[1], ID: parts[2], Format: format}
	if err := l.Validate(); err != nil {
		return Key{}, fmt.Errorf("parse key %q: %w: %w", key, ErrNotKbakKey, err)
	}
	k := Key{Layout: l, Kind: KindOther}
	file := parts[3]
	if file == manifestName {
		k.Kind = KindManifest
		return k, nil
	}
	name, ok := strings.CutPrefix(file, volumesDir)
	if !ok {
		return k, nil
	}
	for _, c := range []struct {
		suffix string
		kind   Kind
	}{{volume, KindVolume}, {resultSuffix, KindResult}} {
		pvc, ok := strings.CutSuffix(name, c.suffix)
		if ok && ValidatePVCName(pvc) == nil {
			k.Kind, k.PVC = c.kind, pvc
			return k, nil
		}
	}
	return k, nil
}

// ValidateNamespace checks a namespace name (a DNS-1123 label).
func ValidateNamespace(ns string) error {
	if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
		return fmt.Errorf("invalid namespace %q: %s", ns, strings.Join(msgs, "; "))
	}
	return nil
}

// ValidateStatefulSetName checks a StatefulSet name (a DNS-1123 subdomain,
// as the API server requires).
func ValidateStatefulSetName(name string) error {
	if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
		return fmt.Errorf("invalid StatefulSet name %q: %s", name, strings.Join(msgs, "; "))
	}
	return nil
}

// ValidatePVCName checks a PersistentVolumeClaim name (a DNS-1123 subdomain).
func ValidatePVCName(name string) error {
	if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
		return fmt.Errorf("invalid PVC name %q: %s", name, strings.Join(msgs, "; "))
	}
	return nil
}

// NewID makes a backup id, <sts>-<UTC yyyymmddThhmmssZ>-<4 hex>. The time
// makes ids of one StatefulSet sort by creation; the random part keeps two
// runs in the same second apart.
func NewID(sts string, now time.Time, rand io.Reader) (string, error) {
	if err := ValidateStatefulSetName(sts); err != nil {
		return "", err
	}
	var b [idRandLen / 2]byte
	if _, err := io.ReadFull(rand, b[:]); err != nil {
		return "", fmt.Errorf("make backup id for %s: read random bytes: %w", sts, err)
	}
	id := fmt.Sprintf("%s-%s-%x", sts, now.UTC().Format(idTimeLayout), b)
	if len(id) > maxIDLen {
		return "", fmt.Errorf("make backup id for %s: StatefulSet name too long for an id (at most %d characters)", sts, maxIDLen-idSuffixLen)
	}
	return id, nil
}

// ParseID splits a backup id into the StatefulSet name and the creation time
// (UTC, whole seconds).
func ParseID(id string) (sts string, created time.Time, err error) {
	bad := func(why string) (string, time.Time, error) {
		return "", time.Time{}, fmt.Errorf("invalid backup id %q: %s (want <statefulset>-<yyyymmddThhmmssZ>-<4 hex>; run `kbak list` to see backup ids)", id, why)
	}
	if len(id) > maxIDLen {
		return bad("too long")
	}
	if len(id) <= idSuffixLen {
		return bad("too short")
	}
	sts = id[:len(id)-idSuffixLen]
	suffix := id[len(id)-idSuffixLen:]
	ts, hex := suffix[1:1+idTimeLen], suffix[2+idTimeLen:]
	if suffix[0] != '-' || suffix[1+idTimeLen] != '-' {
		return bad("misplaced separators")
	}
	for _, c := range hex {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return bad("random part is not lower-case hex")
		}
	}
	created, err = time.Parse(idTimeLayout, ts)
	if err != nil {
		return bad("bad time")
	}
	if err := ValidateStatefulSetName(sts); err != nil {
		return bad(err.Error())
	}
	return sts, created, nil
}
