// Package catalogtest holds an in-memory object store for tests of the
// catalog and of the code that writes backups through it. It keeps the
// promises of uploader.Store (lexical listing, whole-or-nothing puts,
// ErrNotFound) so tests exercise the same contract as the real stores.
package catalogtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kbak/kbak/uploader"
)

// MemStore is an in-memory uploader.Store. Its clock stamps every Put, so
// tests control object ages. The zero value is not usable: call NewMemStore.
type MemStore struct {
	mu      sync.Mutex
	now     func() time.Time
	objects map[string]memObject
	lists   int
}

type memObject struct {
	data        []byte
	modTime     time.Time
	retainUntil time.Time
}

var _ uploader.Store = (*MemStore)(nil)

// NewMemStore returns an empty store whose objects are stamped by now.
func NewMemStore(now func() time.Time) *MemStore {
	return &MemStore{now: now, objects: make(map[string]memObject)}
}

// Put stores the whole of r; on a read error nothing is stored.
func (s *MemStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.objects[key] = memObject{data: data, modTime: s.now()}
	return nil
}

// Get opens key.
func (s *MemStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objects[key]
	if !ok {
		return nil, fmt.Errorf("get %s: %w", key, uploader.ErrNotFound)
	}
	return io.NopCloser(bytes.NewReader(o.data)), nil
}

// GetRange opens length bytes of key from off.
func (s *MemStore) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	rc, err := s.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	data, _ := io.ReadAll(rc)
	off = min(off, int64(len(data)))
	return io.NopCloser(bytes.NewReader(data[off:min(off+length, int64(len(data)))])), nil
}

// Stat describes key.
func (s *MemStore) Stat(ctx context.Context, key string) (uploader.ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return uploader.ObjectInfo{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objects[key]
	if !ok {
		return uploader.ObjectInfo{}, fmt.Errorf("stat %s: %w", key, uploader.ErrNotFound)
	}
	return uploader.ObjectInfo{Key: key, Size: int64(len(o.data)), ModTime: o.modTime, RetainUntil: o.retainUntil}, nil
}

// Retain puts key under Object Lock retention until the date, as a bucket
// with Object Lock would: until then (by the store's clock) Delete leaves
// it and fails with a *uploader.LockedError, and Stat reports the date.
func (s *MemStore) Retain(key string, until time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o, ok := s.objects[key]; ok {
		o.retainUntil = until
		s.objects[key] = o
	}
}

// List calls fn in lexical key order on a snapshot of the keys taken at the
// start, so fn may call the store (as S3 pagination allows).
func (s *MemStore) List(ctx context.Context, prefix string, fn func(uploader.ObjectInfo) error) error {
	s.mu.Lock()
	s.lists++
	var infos []uploader.ObjectInfo
	for k, o := range s.objects {
		if strings.HasPrefix(k, prefix) {
			infos = append(infos, uploader.ObjectInfo{Key: k, Size: int64(len(o.data)), ModTime: o.modTime})
		}
	}
	s.mu.Unlock()
	slices.SortFunc(infos, func(a, b uploader.ObjectInfo) int { return strings.Compare(a.Key, b.Key) })
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes key; a missing key is not an error, one under retention
// (Retain) is.
func (s *MemStore) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if o, ok := s.objects[key]; ok && o.retainUntil.After(s.now()) {
		return fmt.Errorf("delete %s: %w", key, &uploader.LockedError{Key: key, Until: o.retainUntil, Mode: uploader.RetentionCompliance})
	}
	delete(s.objects, key)
	return nil
}

// Keys returns every key, sorted.
func (s *MemStore) Keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.objects))
	for k := range s.objects {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Lists returns how many List calls the store has served.
func (s *MemStore) Lists() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lists
}
