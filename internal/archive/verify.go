package archive

import (
	"archive/tar"
	"context"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// Verify reads a stream made by Write through to its end without writing
// anything: every header and every content byte is decoded, the tar end
// marker must be there and nothing may follow it. It returns the same Stats
// an Extract of the stream would.
func Verify(ctx context.Context, r io.Reader, progress *Counters) (Stats, error) {
	dec, err := zstd.NewReader(r, zstd.WithDecoderMaxWindow(maxDecoderWindow))
	if err != nil {
		return Stats{}, fmt.Errorf("create zstd decoder: %w", err)
	}
	defer dec.Close()
	return VerifyTar(ctx, dec, progress)
}

// VerifyTar is Verify for a plain tar stream: one made by Write with Plain,
// or by Rehydrate. A recipe is refused; rehydrate it first.
func VerifyTar(ctx context.Context, r io.Reader, progress *Counters) (Stats, error) {
	var st Stats
	buf := make([]byte, copyBufSize)
	err := eachEntry(ctx, r, func(hdr *tar.Header, data io.Reader) error {
		if _, err := cleanName(hdr.Name); err != nil {
			return err
		}
		if err := notRecipe(hdr); err != nil {
			return err
		}
		switch hdr.Typeflag {
		case tar.TypeReg:
			st.Files++
			n, err := io.CopyBuffer(counterWriter{progress}, data, buf)
			st.RawBytes += n
			st.ReadBytes += n
			if err != nil {
				return streamErr(err)
			}
		case tar.TypeDir:
			st.Dirs++
		case tar.TypeSymlink:
			st.Symlinks++
		case tar.TypeLink:
			st.HardLinks++
		case tar.TypeFifo, tar.TypeChar, tar.TypeBlock:
			st.Other++
		default:
			return fmt.Errorf("read archive: entry %q has unsupported type %q", hdr.Name, hdr.Typeflag)
		}
		if progress != nil {
			progress.Files.Add(1)
		}
		return nil
	})
	return st, err
}

// counterWriter discards what it is given and counts it as raw bytes.
type counterWriter struct{ c *Counters }

func (w counterWriter) Write(p []byte) (int, error) {
	if w.c != nil {
		w.c.RawBytes.Add(int64(len(p)))
	}
	return len(p), nil
}
