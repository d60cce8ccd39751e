package repo

import (
	"fmt"

	"github.com/klauspost/compress/zstd"
)

// smallWindow is the zstd window of everything the repository compresses.
const smallWindow = 256 << 10

// A blob is a chunk as stored in a pack: one type byte, then the payload.
const (
	blobRaw  = 0 // the chunk as it is: it did not compress
	blobZstd = 1 // one zstd frame
)

// encodeBlob appends the blob of chunk to dst with enc, storing the chunk
// raw when compression does not make it smaller.
func encodeBlob(enc *zstd.Encoder, dst, chunk []byte) []byte {
	start := len(dst)
	dst = append(dst, blobZstd)
	dst = enc.EncodeAll(chunk, dst)
	if len(dst)-start-1 >= len(chunk) {
		dst = append(append(dst[:start], blobRaw), chunk...)
	}
	return dst
}

// blobBound is the most bytes encodeBlob appends for a chunk of n bytes:
// its type byte and a zstd frame, whose size ZSTD_compressBound bounds
// (n + n/256, and up to 64 bytes more for inputs under 128 KiB).
func blobBound(n int) int { return 1 + n + n>>8 + 64 }

// decodeBlob appends the chunk held by blob to dst; rawLen is the chunk's
// length from the index, which bounds what a damaged blob may make us
// allocate.
func decodeBlob(dec blobDecoder, dst, blob []byte, rawLen uint32) ([]byte, error) {
	if len(blob) == 0 {
		return nil, fmt.Errorf("empty blob")
	}
	switch blob[0] {
	case blobRaw:
		if len(blob)-1 != int(rawLen) {
			return nil, fmt.Errorf("raw blob of %d bytes, the index says %d", len(blob)-1, rawLen)
		}
		return append(dst, blob[1:]...), nil
	case blobZstd:
		if cap(dst)-len(dst) < int(rawLen) {
			grown := make([]byte, len(dst), len(dst)+int(rawLen))
			copy(grown, dst)
			dst = grown
		}
		start := len(dst)
		out, err := dec.DecodeAll(blob[1:], dst)
		if err != nil {
			return nil, fmt.Errorf("decompress blob: %w", err)
		}
		if len(out)-start != int(rawLen) {
			return nil, fmt.Errorf("blob holds %d bytes, the index says %d", len(out)-start, rawLen)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("unknown blob type %d (written by a newer kbak?)", blob[0])
	}
}

func newBlobEncoder(level int) (*zstd.Encoder, error) {
	l := zstd.SpeedFastest
	switch level {
	case 2:
		l = zstd.SpeedDefault
	case 3:
		l = zstd.SpeedBetterCompression
	case 4:
		l = zstd.SpeedBestCompression
	}
	// A small window as for the archive's fast levels: a chunk compresses
	// about as well, and each encoder's state stays small. No frame
	// checksum: a chunk's keyed id checks its bytes on every read.
	return zstd.NewWriter(nil, zstd.WithEncoderLevel(l), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true), zstd.WithWindowSize(smallWindow), zstd.WithEncoderCRC(false))
}

// blobDecoder is the zstd decoder a reader keeps.
type blobDecoder = *zstd.Decoder

// Blobs written before carry a frame checksum; it is not checked, since
// the reader checks each chunk against its keyed id, which the checksum
// would only repeat.
func newBlobDecoder() (*zstd.Decoder, error) {
	return zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(64<<20), zstd.WithDecoderLowmem(true), zstd.IgnoreChecksum(true))
}
