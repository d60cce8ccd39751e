package repo

import (
	"context"
	"fmt"

	"github.com/kbak/kbak/uploader"
)

// CheckResult says whether a volume's data is all in the repository.
type CheckResult struct {
	Chunks  int64 `json:"chunks"`  // references checked
	Missing int64 `json:"missing"` // chunks no index lists, or whose pack is gone
	// First names the first missing chunk and where it should be.
	First string `json:"first,omitempty"`
}

// Checker checks volumes against one reading of the index and the packs.
type Checker struct {
	rd    *Reader
	packs map[PackID]bool
}

// NewChecker reads the index and lists the packs.
func (r *Repo) NewChecker(ctx context.Context) (*Checker, error) {
	rd, err := r.NewReader(ctx)
	if err != nil {
		return nil, err
	}
	c := &Checker{rd: rd, packs: map[PackID]bool{}}
	err = r.store.List(ctx, Keys.PackPrefix(), func(oi uploader.ObjectInfo) error {
		if id, ok := Keys.ParsePack(oi.Key); ok {
			c.packs[id] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list packs: %w", err)
	}
	return c, nil
}

// Check verifies that every chunk the volume at treeKey references is listed
// by the index in a pack that exists. It reads no data: Download (with no
// target) reads and checks every byte.
func (c *Checker) Check(ctx context.Context, treeKey string) (CheckResult, error) {
	var res CheckResult
	err := VolumeRefs(ctx, c.rd.r.store, treeKey, func(id ID) error {
		res.Chunks++
		loc, ok := c.rd.lookup(id)
		switch {
		case !ok:
			res.Missing++
			if res.First == "" {
				res.First = fmt.Sprintf("chunk %s is in no index", id.Short())
			}
		case !c.packs[c.rd.packs[loc.pack]]:
			res.Missing++
			if res.First == "" {
				res.First = fmt.Sprintf("chunk %s: pack %s is missing", id.Short(), c.rd.packs[loc.pack])
			}
		}
		return nil
	})
	return res, err
}
