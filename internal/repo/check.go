package repo

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"

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
	err := c.rd.r.VolumeRefs(ctx, treeKey, func(id ID) error {
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

// ReadSubset reads a random fraction (0 < fraction <= 1) of the chunks the
// volume at treeKey references and checks each against its id, as a
// cheaper --read-data. It returns how many chunks it read.
func (c *Checker) ReadSubset(ctx context.Context, treeKey string, fraction float64) (int64, error) {
	var seed [8]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return 0, err
	}
	limit := uint64(fraction * float64(math.MaxUint64))
	if fraction >= 1 {
		limit = math.MaxUint64
	}
	picked := newIDSet()
	var refs []Ref
	err := c.rd.r.VolumeRefs(ctx, treeKey, func(id ID) error {
		h := sha256.Sum256(append(seed[:], id[:]...))
		if binary.BigEndian.Uint64(h[:8]) <= limit && picked.add(id) {
			refs = append(refs, Ref{ID: id})
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	ch := make(chan Ref)
	go func() {
		defer close(ch)
		for _, r := range refs {
			select {
			case ch <- r:
			case <-ctx.Done():
				return
			}
		}
	}()
	var n int64
	err = c.rd.Fetch(ctx, ch, func(Ref, []byte) error { n++; return nil })
	return n, err
}
