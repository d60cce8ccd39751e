package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Tree is a volume's root object: the chunks of its recipe. Its file cache,
// beside it, lists the chunks of its files.
type Tree struct {
	Format int    `json:"format"`
	Recipe []byte `json:"recipe"` // AppendRefs of the recipe's chunks
}

// PutTree stores a volume's tree at key and returns its size and the hex
// sha256 of the stored object, which the backup's manifest records and
// OpenTree checks.
func (r *Repo) PutTree(ctx context.Context, key string, recipe []Ref) (int64, string, error) {
	b, err := json.Marshal(Tree{Format: FormatVersion, Recipe: AppendRefs(nil, recipe)})
	if err != nil {
		return 0, "", err
	}
	if b, err = r.SealMeta(b); err != nil {
		return 0, "", err
	}
	if err := r.store.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
		return 0, "", fmt.Errorf("store volume tree: %w", err)
	}
	sum := sha256.Sum256(b)
	return int64(len(b)), hex.EncodeToString(sum[:]), nil
}

// GetTree reads a volume's tree and returns its recipe's chunks.
func (r *Repo) GetTree(ctx context.Context, key string) ([]Ref, error) {
	refs, _, err := r.OpenTree(ctx, key, "")
	return refs, err
}

// OpenTree is GetTree for a tree whose digest the backup recorded: a stored
// object of another sha256 (a tree swapped for another volume's or
// backup's, or damaged) is ErrCorrupt and is not decoded. An empty sum
// checks nothing, for backups written before trees had one. It also
// returns the stored object's sha256.
func (r *Repo) OpenTree(ctx context.Context, key, sum string) ([]Ref, string, error) {
	rc, err := r.store.Get(ctx, key)
	if err != nil {
		return nil, "", fmt.Errorf("read volume tree: %w", err)
	}
	defer rc.Close()
	stored, err := io.ReadAll(io.LimitReader(rc, maxTree+1))
	if err != nil {
		return nil, "", fmt.Errorf("read volume tree %s: %w", key, err)
	}
	if len(stored) > maxTree {
		return nil, "", fmt.Errorf("%w: volume tree %s is larger than %d bytes", ErrCorrupt, key, maxTree)
	}
	got := sha256.Sum256(stored)
	h := hex.EncodeToString(got[:])
	if sum != "" && !strings.EqualFold(h, sum) {
		return nil, "", fmt.Errorf("%w: volume tree %s has sha256 %s, the backup recorded %s: it was replaced or damaged", ErrCorrupt, key, h, sum)
	}
	plain, err := r.openMeta(bytes.NewReader(stored))
	if err != nil {
		return nil, "", fmt.Errorf("volume tree %s: %w", key, err)
	}
	var t Tree
	if err := json.NewDecoder(plain).Decode(&t); err != nil {
		return nil, "", fmt.Errorf("%w: volume tree %s: %v", ErrCorrupt, key, err)
	}
	if t.Format > FormatVersion {
		return nil, "", fmt.Errorf("%w: volume tree %s is format %d: use a newer kbak", ErrNewerFormat, key, t.Format)
	}
	if t.Format != FormatVersion {
		return nil, "", fmt.Errorf("%w: volume tree %s has format %d", ErrCorrupt, key, t.Format)
	}
	refs, err := DecodeRefs(t.Recipe)
	if err != nil {
		return nil, "", fmt.Errorf("volume tree %s: %w", key, err)
	}
	return refs, h, nil
}

// maxTree bounds what a tree object may hold: its recipe's chunk list.
const maxTree = 64 << 20

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
