package repo

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"

	"github.com/kbak/kbak/uploader"
)

// An index object lists where the blobs of some packs are: a zstd stream of
//
//	"KBAKIDX2"
//	per pack: pack id (16 bytes), count (uvarint),
//	  per blob: chunk id (32 bytes), offset, length, raw length (uvarints)
//
// It is written after all of its packs, so an index never names a pack that
// is not there (until prune removes both, the index first).
const indexMagic = "KBAKIDX2"

// Entry says where one blob lies.
type Entry struct {
	ID        ID
	Pack      PackID
	Offset    uint32
	Length    uint32 // stored bytes
	RawLength uint32 // the chunk's bytes
}

type packEntries struct {
	pack    PackID
	entries []Entry
}

// encodeIndex writes one index object's content.
func encodeIndex(packs []packEntries) ([]byte, error) {
	var buf bytes.Buffer
	enc, err := zstd.NewWriter(&buf, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true), zstd.WithWindowSize(smallWindow))
	if err != nil {
		return nil, err
	}
	w := bufio.NewWriter(enc)
	w.WriteString(indexMagic)
	var tmp []byte
	for _, p := range packs {
		w.Write(p.pack[:])
		w.Write(binary.AppendUvarint(tmp[:0], uint64(len(p.entries))))
		for _, e := range p.entries {
			w.Write(e.ID[:])
			tmp = binary.AppendUvarint(tmp[:0], uint64(e.Offset))
			tmp = binary.AppendUvarint(tmp, uint64(e.Length))
			tmp = binary.AppendUvarint(tmp, uint64(e.RawLength))
			w.Write(tmp)
		}
	}
	if err := w.Flush(); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// decodeIndex calls fn for every entry of one index object.
func decodeIndex(r io.Reader, fn func(Entry) error) error {
	dec, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(8<<20), zstd.WithDecoderLowmem(true))
	if err != nil {
		return err
	}
	defer dec.Close()
	br := bufio.NewReaderSize(dec, 64<<10)
	magic := make([]byte, len(indexMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != indexMagic {
		return errors.New("not an index object")
	}
	for {
		var e Entry
		if _, err := io.ReadFull(br, e.Pack[:]); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return err
		}
		for range n {
			if _, err := io.ReadFull(br, e.ID[:]); err != nil {
				return err
			}
			var v [3]uint64
			for i := range v {
				if v[i], err = binary.ReadUvarint(br); err != nil {
					return err
				}
				if v[i] > 1<<32-1 {
					return errors.New("offset or length out of range")
				}
			}
			e.Offset, e.Length, e.RawLength = uint32(v[0]), uint32(v[1]), uint32(v[2])
			if err := fn(e); err != nil {
				return err
			}
		}
	}
}

// IndexObject is one index object of the repository.
type IndexObject struct {
	ID  PackID
	Key string
	uploader.ObjectInfo
}

// indexObjects lists the index objects.
func (r *Repo) indexObjects(ctx context.Context) ([]IndexObject, error) {
	var out []IndexObject
	err := r.store.List(ctx, Keys.IndexPrefix(), func(oi uploader.ObjectInfo) error {
		if id, ok := Keys.ParseIndex(oi.Key); ok {
			out = append(out, IndexObject{ID: id, Key: oi.Key, ObjectInfo: oi})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list index objects: %w", err)
	}
	return out, nil
}

// ForEachEntry calls fn for every entry of every index object. The same
// chunk may be listed more than once (two movers stored it at the same
// time, or a repack copied it); any entry of it will do. sizeHint, when
// not nil, is first told about how many entries to expect, so that a
// caller can allocate once.
func (r *Repo) ForEachEntry(ctx context.Context, sizeHint func(n int), fn func(Entry) error) error {
	objs, err := r.indexObjects(ctx)
	if err != nil {
		return err
	}
	if sizeHint != nil {
		var total int64
		for _, o := range objs {
			total += o.Size
		}
		sizeHint(int(total/indexEntryBytes) + 1024)
	}
	for _, o := range objs {
		if err := r.readIndex(ctx, o, fn); err != nil {
			return err
		}
	}
	return nil
}

// indexEntryBytes is about what an entry takes in a stored index: its id
// (random, so incompressible) and three short varints. It only sizes
// allocations.
const indexEntryBytes = 36

func (r *Repo) readIndex(ctx context.Context, o IndexObject, fn func(Entry) error) error {
	rc, err := r.store.Get(ctx, o.Key)
	if errors.Is(err, uploader.ErrNotFound) {
		return nil // removed by a prune since the listing
	}
	if err != nil {
		return fmt.Errorf("read index %s: %w", o.ID, err)
	}
	defer rc.Close()
	plain, err := r.openMeta(rc)
	if err != nil {
		return fmt.Errorf("index %s: %w", o.Key, err)
	}
	var cbErr error
	err = decodeIndex(plain, func(e Entry) error {
		if cbErr = fn(e); cbErr != nil {
			return cbErr
		}
		return nil
	})
	if cbErr != nil {
		return cbErr
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: index %s: %v: run `kbak verify` and `kbak gc`", ErrCorrupt, o.Key, err)
	}
	return nil
}

// putIndex stores packs' entries as one new index object through st.
func (r *Repo) putIndex(ctx context.Context, st Store, packs []packEntries) error {
	if len(packs) == 0 {
		return nil
	}
	b, err := encodeIndex(packs)
	if err != nil {
		return fmt.Errorf("encode index: %w", err)
	}
	id, err := newPackID()
	if err != nil {
		return err
	}
	if err := r.putMeta(ctx, st, Keys.Index(id), b); err != nil {
		return fmt.Errorf("write index: %w", err)
	}
	return nil
}
