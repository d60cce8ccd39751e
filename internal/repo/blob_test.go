package repo

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// Blobs are written without a zstd frame checksum now (the chunk's keyed id
// checks its bytes); blobs written before, with one, still decode, and a
// frame of either kind decodes to the chunk.
func TestBlobFramesWithAndWithoutChecksum(t *testing.T) {
	chunk := bytes.Repeat([]byte("row 42: some text that compresses; "), 4096)
	withCRC, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderCRC(true))
	if err != nil {
		t.Fatal(err)
	}
	now, err := newBlobEncoder(1)
	if err != nil {
		t.Fatal(err)
	}
	old := encodeBlob(withCRC, nil, chunk)
	cur := encodeBlob(now, nil, chunk)
	if len(cur) >= len(old) {
		t.Errorf("a blob now is %d bytes, one with a checksum %d: the checksum is still written", len(cur), len(old))
	}
	dec, err := newBlobDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	for name, blob := range map[string][]byte{"with checksum": old, "without": cur} {
		got, err := decodeBlob(dec, nil, blob, uint32(len(chunk)))
		if err != nil || !bytes.Equal(got, chunk) {
			t.Errorf("%s: %d bytes, %v; want the chunk back", name, len(got), err)
		}
	}
}

// blobBound is room enough for any chunk, however badly it compresses: a
// compress worker sizes its buffer by it and must not reallocate in
// EncodeAll.
func TestBlobBound(t *testing.T) {
	enc, err := newBlobEncoder(1)
	if err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 100, 128 << 10, 128<<10 + 1, 1 << 20, 3<<20 + 7, 8 << 20} {
		for _, kind := range []string{"random", "text"} {
			chunk := make([]byte, n)
			if kind == "random" {
				for i := range chunk {
					chunk[i] = byte(rnd.Uint32())
				}
			} else {
				copy(chunk, bytes.Repeat([]byte("row 42: text "), n/13+1))
			}
			dst := make([]byte, 0, blobBound(n))
			out := encodeBlob(enc, dst, chunk)
			if cap(out) != cap(dst) || &out[:1][0] != &dst[:1][0] {
				t.Errorf("%s chunk of %d bytes: the blob grew its buffer of blobBound %d (blob %d bytes)", kind, n, blobBound(n), len(out))
			}
		}
	}
}
