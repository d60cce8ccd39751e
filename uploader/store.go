package uploader

import (
	"context"
	"errors"
	"io"
	"time"
)

// Store is a flat object store addressed by slash-separated keys relative to
// the repository root. Implementations are safe for concurrent use.
type Store interface {
	// Put streams r into key. size is the expected number of bytes, or -1 when
	// unknown; it only chooses the multipart part size. The object appears
	// whole or not at all: on error or cancellation nothing is left behind
	// (an S3 multipart upload is aborted).
	Put(ctx context.Context, key string, r io.Reader, size int64) error
	// Get opens key for reading. A missing key gives an error wrapping
	// ErrNotFound.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// GetRange opens length bytes of key from offset off. A range past the
	// object's end gives fewer bytes (the caller checks the count).
	GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error)
	// Stat describes key. A missing key gives an error wrapping ErrNotFound.
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	// List calls fn for every object whose key starts with prefix, in
	// lexical key order. An error from fn stops the listing and is returned.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
	// Delete removes key. Deleting a missing key is not an error. An
	// object under Object Lock retention or legal hold stays, and the
	// error wraps ErrLocked (see S3Store.Delete).
	Delete(ctx context.Context, key string) error
}

// ObjectInfo describes one stored object.
type ObjectInfo struct {
	Key     string    // relative to the repository root
	Size    int64     // bytes
	ModTime time.Time // last modification, as the store reports it
	// RetainUntil is the object's Object Lock retain-until date, which
	// may be past, and LegalHold its legal hold. Only Stat of an S3 store
	// fills them (List cannot); zero without Object Lock. On AWS they need
	// s3:GetObjectRetention and s3:GetObjectLegalHold.
	RetainUntil time.Time
	LegalHold   bool
}

// Locked reports whether Object Lock keeps the object at time now.
func (oi ObjectInfo) Locked(now time.Time) bool {
	return oi.LegalHold || oi.RetainUntil.After(now)
}

// ErrNotFound is wrapped by errors for keys that do not exist.
var ErrNotFound = errors.New("object not found")

// ErrExists is wrapped by Create errors for keys that exist already.
var ErrExists = errors.New("object exists already")
