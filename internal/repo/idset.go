package repo

import (
	"cmp"
	"encoding/binary"
	"slices"
)

// idSet is the writer's compact set of chunk ids: the first 128 bits of
// each (as kopia's default ids are 128 bits long, a collision is not a
// practical concern), 16 bytes a chunk in a sorted slice plus a small map of
// recent additions merged in batches. A repository of 1 TiB in 1 MiB chunks
// costs 16 MiB.
type idSet struct {
	sorted []prefix
	recent map[prefix]struct{}
}

type prefix struct{ hi, lo uint64 }

func prefixOf(id ID) prefix {
	return prefix{binary.BigEndian.Uint64(id[:8]), binary.BigEndian.Uint64(id[8:16])}
}

func cmpPrefix(a, b prefix) int {
	if c := cmp.Compare(a.hi, b.hi); c != 0 {
		return c
	}
	return cmp.Compare(a.lo, b.lo)
}

// mergeAt is the size of recent at which it is merged into sorted.
const mergeAt = 1 << 16

func newIDSet() *idSet { return &idSet{recent: make(map[prefix]struct{})} }

func (s *idSet) has(id ID) bool {
	p := prefixOf(id)
	if _, ok := s.recent[p]; ok {
		return true
	}
	_, ok := slices.BinarySearchFunc(s.sorted, p, cmpPrefix)
	return ok
}

// add inserts id and reports whether it was new.
func (s *idSet) add(id ID) bool {
	if s.has(id) {
		return false
	}
	s.recent[prefixOf(id)] = struct{}{}
	if len(s.recent) >= mergeAt {
		s.merge()
	}
	return true
}

func (s *idSet) merge() {
	if len(s.recent) == 0 {
		return
	}
	add := make([]prefix, 0, len(s.recent))
	for p := range s.recent {
		add = append(add, p)
	}
	slices.SortFunc(add, cmpPrefix)
	clear(s.recent)
	if len(s.sorted) == 0 {
		s.sorted = add
		return
	}
	merged := make([]prefix, 0, len(s.sorted)+len(add))
	i, j := 0, 0
	for i < len(s.sorted) && j < len(add) {
		switch c := cmpPrefix(s.sorted[i], add[j]); {
		case c < 0:
			merged = append(merged, s.sorted[i])
			i++
		case c > 0:
			merged = append(merged, add[j])
			j++
		default:
			merged = append(merged, add[j])
			i++
			j++
		}
	}
	merged = append(append(merged, s.sorted[i:]...), add[j:]...)
	s.sorted = merged
}

func (s *idSet) len() int {
	s.merge()
	return len(s.sorted)
}

// grow makes room for n more ids loaded in bulk.
func (s *idSet) grow(n int) { s.sorted = slices.Grow(s.sorted, n) }

// sortLoaded sorts ids appended to sorted in bulk, dropping duplicates.
func (s *idSet) sortLoaded() {
	slices.SortFunc(s.sorted, cmpPrefix)
	s.sorted = slices.CompactFunc(s.sorted, func(a, b prefix) bool { return a == b })
}
