package repo

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"sync"
)

// ID names a chunk: HMAC-SHA256 of its content under the repository's id
// key, so that an id says nothing of the content to someone without the key.
type ID [32]byte

func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Short is the first 8 bytes in hex, for messages.
func (id ID) Short() string { return hex.EncodeToString(id[:8]) }

// PackID names a pack or an index object: random, not derived from content.
type PackID [16]byte

func (id PackID) String() string { return hex.EncodeToString(id[:]) }

func newPackID() (PackID, error) {
	var id PackID
	if _, err := rand.Read(id[:]); err != nil {
		return id, fmt.Errorf("make pack id: %w", err)
	}
	return id, nil
}

// hasher computes chunk ids; safe for concurrent use.
type hasher struct {
	key  []byte
	pool sync.Pool
}

func newHasher(key []byte) *hasher {
	h := &hasher{key: key}
	h.pool.New = func() any { return hmac.New(sha256.New, key) }
	return h
}

func (h *hasher) id(data []byte) ID {
	m := h.pool.Get().(hash.Hash)
	m.Reset()
	m.Write(data)
	var id ID
	m.Sum(id[:0])
	h.pool.Put(m)
	return id
}

// Ref is one chunk of a stream: its id and its length.
type Ref struct {
	ID   ID
	Size uint32
}

// maxRefs bounds a decoded list: a tampered recipe must not make a reader
// allocate without bound (64 MiB of refs is a 2 TiB file at 1 MiB chunks).
const maxRefs = 64 << 20 / (len(ID{}) + 1)

// AppendRefs encodes refs: a count, then each id and size.
func AppendRefs(b []byte, refs []Ref) []byte {
	b = binary.AppendUvarint(b, uint64(len(refs)))
	for _, r := range refs {
		b = append(b, r.ID[:]...)
		b = binary.AppendUvarint(b, uint64(r.Size))
	}
	return b
}

// DecodeRefs decodes what AppendRefs wrote.
func DecodeRefs(b []byte) ([]Ref, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(maxRefs) || n > uint64(len(b)) {
		return nil, fmt.Errorf("%w: bad chunk list", ErrCorrupt)
	}
	b = b[k:]
	refs := make([]Ref, n)
	for i := range refs {
		if len(b) < len(ID{}) {
			return nil, fmt.Errorf("%w: chunk list cut short", ErrCorrupt)
		}
		copy(refs[i].ID[:], b)
		b = b[len(ID{}):]
		s, k := binary.Uvarint(b)
		if k <= 0 || s > 1<<30 {
			return nil, fmt.Errorf("%w: bad chunk size in a chunk list", ErrCorrupt)
		}
		refs[i].Size = uint32(s)
		b = b[k:]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d stray bytes after a chunk list", ErrCorrupt, len(b))
	}
	return refs, nil
}
