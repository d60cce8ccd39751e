package repo

import (
	"context"
	"fmt"
	"strings"

	"github.com/kbak/kbak/uploader"
)

// Usage is what the repository's shared objects take in the store.
type Usage struct {
	Packs        int   `json:"packs"`
	PackBytes    int64 `json:"packBytes"`
	IndexObjects int   `json:"indexObjects"`
	IndexBytes   int64 `json:"indexBytes"`
	Locks        int   `json:"locks"`
}

// Usage lists the repository's packs, index objects and locks.
func (r *Repo) Usage(ctx context.Context) (Usage, error) { return StoreUsage(ctx, r.store) }

// StoreUsage is Usage of the repository in store, which it only lists: it
// needs no key.
func StoreUsage(ctx context.Context, store Store) (Usage, error) {
	var u Usage
	err := store.List(ctx, Root, func(oi uploader.ObjectInfo) error {
		switch {
		case strings.HasPrefix(oi.Key, Keys.PackPrefix()):
			u.Packs++
			u.PackBytes += oi.Size
		case strings.HasPrefix(oi.Key, Keys.IndexPrefix()):
			u.IndexObjects++
			u.IndexBytes += oi.Size
		case strings.HasPrefix(oi.Key, Keys.LockPrefix()):
			u.Locks++
		}
		return nil
	})
	if err != nil {
		return u, fmt.Errorf("list the repository: %w", err)
	}
	return u, nil
}
