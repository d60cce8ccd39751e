package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// volumeMeta is what the driver remembers about a volume across restarts.
type volumeMeta struct {
	ID             string    `json:"id"`
	Name           string    `json:"name"`
	CapacityBytes  int64     `json:"capacityBytes"`
	SourceSnapshot string    `json:"sourceSnapshot,omitempty"`
	Created        time.Time `json:"created"`
	// PVC is namespace/name of the claim, when csi-provisioner passes it
	// (--extra-create-metadata); for people reading the state directory.
	PVC string `json:"pvc,omitempty"`
}

// snapshotMeta is what the driver remembers about a snapshot across restarts.
type snapshotMeta struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	SourceVolume string    `json:"sourceVolume"`
	SizeBytes    int64     `json:"sizeBytes"`
	Created      time.Time `json:"created"`
	// ReadyAt is when the snapshot starts reporting ready_to_use; later than
	// Created only when a slow-snapshot fault was set at creation.
	ReadyAt   time.Time `json:"readyAt"`
	Namespace string    `json:"namespace,omitempty"`
}

// state lays out the state directory:
//
//	volumes/<id>/             the volume's files (bind-mounted into pods)
//	snapshots/<id>/           a full copy of a volume at snapshot time
//	meta/volumes/<id>.json    volumeMeta
//	meta/snapshots/<id>.json  snapshotMeta
//	meta/groups/<id>.json     groupMeta (a group's members are ordinary snapshots)
//	tmp/                      copies in progress, renamed into place when complete
//
// Data is renamed into place before its metadata is written, so metadata
// always names complete data; data without metadata is a leftover of a crash
// and is replaced by the next create of that name.
type state struct {
	dir   string
	locks keyedMutex
}

func newState(dir string) (*state, error) {
	for _, d := range []string{"volumes", "snapshots", "meta/volumes", "meta/snapshots", "meta/groups", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("create state directory %s: %w", d, err)
		}
	}
	// Copies interrupted by a crash are never resumed.
	entries, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil {
		return nil, fmt.Errorf("read state tmp directory: %w", err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, "tmp", e.Name())); err != nil {
			return nil, fmt.Errorf("remove interrupted copy %s: %w", e.Name(), err)
		}
	}
	return &state{dir: dir}, nil
}

var plainName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// idFor derives an object's id from its CSI name, so a retried create finds
// what the first attempt made. Names the sidecars generate (pvc-<uid>,
// snapshot-<uid>) are used as they are, which keeps the state directory
// readable; anything else is hashed.
func idFor(prefix, name string) string {
	if plainName.MatchString(name) {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return prefix + hex.EncodeToString(sum[:12])
}

// validID rejects ids that could escape the state directory.
func validID(id string) bool {
	return plainName.MatchString(id)
}

func (s *state) volumeDir(id string) string   { return filepath.Join(s.dir, "volumes", id) }
func (s *state) snapshotDir(id string) string { return filepath.Join(s.dir, "snapshots", id) }
func (s *state) volumeMetaPath(id string) string {
	return filepath.Join(s.dir, "meta", "volumes", id+".json")
}
func (s *state) snapshotMetaPath(id string) string {
	return filepath.Join(s.dir, "meta", "snapshots", id+".json")
}

// tempDir returns a fresh directory path under tmp/ for a copy in progress.
func (s *state) tempDir(id string) string {
	return filepath.Join(s.dir, "tmp", fmt.Sprintf("%s.%d", id, time.Now().UnixNano()))
}

func (s *state) volume(id string) (*volumeMeta, error) {
	var m volumeMeta
	if err := readJSON(s.volumeMetaPath(id), &m); err != nil {
		return nil, err
	}
	return &m, nil
}

func (s *state) snapshot(id string) (*snapshotMeta, error) {
	var m snapshotMeta
	if err := readJSON(s.snapshotMetaPath(id), &m); err != nil {
		return nil, err
	}
	return &m, nil
}

func (s *state) putVolume(m *volumeMeta) error     { return writeJSON(s.volumeMetaPath(m.ID), m) }
func (s *state) putSnapshot(m *snapshotMeta) error { return writeJSON(s.snapshotMetaPath(m.ID), m) }

// snapshots lists every snapshot the driver knows.
func (s *state) snapshots() ([]*snapshotMeta, error) {
	entries, err := os.ReadDir(filepath.Join(s.dir, "meta", "snapshots"))
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	var out []*snapshotMeta
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		m, err := s.snapshot(id)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

// writeJSON replaces path atomically, so a crash leaves the old or the new
// content, never a torn file.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	return nil
}

// keyedMutex serialises operations on one object while letting operations
// on different objects (a long snapshot copy, a new volume) run in parallel.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedLock
}

type keyedLock struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyedLock{}
	}
	l := k.locks[key]
	if l == nil {
		l = &keyedLock{}
		k.locks[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}
