package repo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kbak/kbak/uploader"
)

// Object Lock: a backup written with retention (kbak backup --lock-days)
// puts every object it writes under S3 Object Lock, so that nobody can
// remove it before the date. What kbak itself rewrites or removes in its
// normal course is written without retention, through the view unretained
// gives: lock objects, the key objects `kbak key` rewrites, and what Sweep
// writes (its index and repacked packs, which the next sweep replaces;
// the data they cover stays kept by the objects the backups wrote).
//
// Whoever deletes (prune, delete, gc, Sweep) leaves an object that Object
// Lock keeps where it is, counts it in a LockedObjects and goes on: a
// locked object is not an error, it is a backup that is not due yet.

// LockedObjects counts objects that Object Lock kept from being deleted.
type LockedObjects struct {
	Objects int `json:"objects"`
	// Until is the latest retain-until date among them: they can all go
	// after it. Zero when only a legal hold (or a server that would not
	// say) keeps them.
	Until time.Time `json:"until,omitzero"`
}

// Skip records err when it says that Object Lock keeps an object (it wraps
// uploader.ErrLocked), and reports whether it did: the caller then treats
// the object as skipped rather than failed.
func (l *LockedObjects) Skip(err error) bool {
	if !errors.Is(err, uploader.ErrLocked) {
		return false
	}
	l.Objects++
	var le *uploader.LockedError
	if errors.As(err, &le) && le.Until.After(l.Until) {
		l.Until = le.Until
	}
	return true
}

// Add counts o in l.
func (l *LockedObjects) Add(o LockedObjects) {
	l.Objects += o.Objects
	if o.Until.After(l.Until) {
		l.Until = o.Until
	}
}

// Any reports whether an object was kept.
func (l LockedObjects) Any() bool { return l.Objects > 0 }

// String says it in a few words: "3 objects under Object Lock until
// 2026-12-01T02:00:00Z".
func (l LockedObjects) String() string {
	if l.Objects == 0 {
		return "no object under Object Lock"
	}
	what := "1 object"
	if l.Objects != 1 {
		what = fmt.Sprintf("%d objects", l.Objects)
	}
	if l.Until.IsZero() {
		return what + " under Object Lock (legal hold)"
	}
	return what + " under Object Lock until " + l.Until.UTC().Format(time.RFC3339)
}

// unretained is the view of st that writes without Object Lock retention
// (st itself when it writes without any, or cannot say).
func unretained(ctx context.Context, st Store) (Store, error) {
	us, ok := st.(uploader.Store)
	if !ok {
		return st, nil
	}
	v, err := uploader.WithRetention(ctx, us, uploader.Retention{})
	if err != nil {
		return nil, fmt.Errorf("open the store without retention: %w", err)
	}
	return v, nil
}
