package repo

import (
	"bytes"
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
