package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Tree is a volume's root object: the chunks of its recipe. Its file cache,
// beside it, lists the chunks of its files.
type Tree struct {
	Format int    `json:"format"`
	Recipe []byte `json:"recipe"` // AppendRefs of the recipe's chunks
}

// PutTree stores a volume's tree at key and returns its size.
func (r *Repo) PutTree(ctx context.Context, key string, recipe []Ref) (int64, error) {
	b, err := json.Marshal(Tree{Format: FormatVersion, Recipe: AppendRefs(nil, recipe)})
	if err != nil {
		return 0, err
	}
	if err := r.putMeta(ctx, r.store, key, b); err != nil {
		return 0, fmt.Errorf("store volume tree: %w", err)
	}
	return int64(len(b)), nil
}

// GetTree reads a volume's tree and returns its recipe's chunks.
func (r *Repo) GetTree(ctx context.Context, key string) ([]Ref, error) {
	rc, err := r.store.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read volume tree: %w", err)
	}
	defer rc.Close()
	plain, err := r.openMeta(rc)
	if err != nil {
		return nil, fmt.Errorf("volume tree %s: %w", key, err)
	}
	var t Tree
	if err := json.NewDecoder(io.LimitReader(plain, 64<<20)).Decode(&t); err != nil {
		return nil, fmt.Errorf("%w: volume tree %s: %v", ErrCorrupt, key, err)
	}
	if t.Format > FormatVersion {
		return nil, fmt.Errorf("%w: volume tree %s is format %d: use a newer kbak", ErrNewerFormat, key, t.Format)
	}
	if t.Format != FormatVersion {
		return nil, fmt.Errorf("%w: volume tree %s has format %d", ErrCorrupt, key, t.Format)
	}
	refs, err := DecodeRefs(t.Recipe)
	if err != nil {
		return nil, fmt.Errorf("volume tree %s: %w", key, err)
	}
	return refs, nil
}

// VolumeRefs calls fn for every chunk a volume references: its recipe's and
// its files' (a chunk may come more than once).
func (r *Repo) VolumeRefs(ctx context.Context, treeKey string, fn func(ID) error) error {
	recipe, err := r.GetTree(ctx, treeKey)
	if err != nil {
		return err
	}
	for _, r := range recipe {
		if err := fn(r.ID); err != nil {
			return err
		}
	}
	err = r.ForEachFile(ctx, FileCacheKey(treeKey), func(e FileEntry) error {
		for _, r := range e.Refs {
			if err := fn(r.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, ErrCorrupt) {
		return fmt.Errorf("volume %s: %w", treeKey, err)
	}
	return err
}
