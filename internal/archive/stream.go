package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// maxDecoderWindow bounds the memory a hostile stream can make the decoder
// allocate; Write never uses windows above 8 MiB.
const maxDecoderWindow = 64 << 20

// eachEntry reads the plain tar stream r to its end and calls f with every
// entry and the reader of its data. The stream must hold the tar end marker
// and nothing but zero padding after it: a stream cut short is an
// ErrTruncated error, never a shorter success. Extract, Verify and Rehydrate
// share it so they agree on what a whole stream is.
func eachEntry(ctx context.Context, r io.Reader, f func(hdr *tar.Header, data io.Reader) error) error {
	tail := &tailReader{r: r}
	tr := tar.NewReader(tail)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return streamErr(err)
		}
		if err := notGNUSparse(hdr); err != nil {
			return err
		}
		if err := f(hdr, tr); err != nil {
			return err
		}
	}
	if !tail.endMarker() {
		return fmt.Errorf("%w: stream ends without the tar end marker", ErrTruncated)
	}
	return drain(r)
}

// notGNUSparse refuses GNU sparse entries. kbak stores sparse files with
// KBAK.sparse records and never writes these; archive/tar makes up the zeros
// of their holes, so a few bytes of tampered stream could declare a file of
// terabytes that Extract would write out and Rehydrate copy.
func notGNUSparse(hdr *tar.Header) error {
	gnu := hdr.Typeflag == tar.TypeGNUSparse
	for k := range hdr.PAXRecords {
		gnu = gnu || strings.HasPrefix(k, "GNU.sparse.")
	}
	if gnu {
		return fmt.Errorf("read archive: entry %q is a GNU sparse file, which kbak never writes: the stream is corrupt or not made by kbak", hdr.Name)
	}
	return nil
}

// notRecipe refuses a recipe entry where file data is expected: extracting
// its content reference as the file's data would restore garbage.
func notRecipe(hdr *tar.Header) error {
	if _, ok := hdr.PAXRecords[paxContentSize]; ok {
		return fmt.Errorf("entry %s holds a content reference, not data: the stream is a recipe; pass it through Rehydrate first", hdr.Name)
	}
	return nil
}

// streamErr names a short or corrupt stream for what it is.
func streamErr(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %w", ErrTruncated, err)
	}
	return fmt.Errorf("read archive: %w", err)
}

// drain reads what follows the tar end marker: zero padding is fine, data is
// not, and the stream (a zstd one included) must end cleanly.
func drain(dec io.Reader) error {
	buf := make([]byte, 64<<10)
	for {
		n, err := dec.Read(buf)
		for _, b := range buf[:n] {
			if b != 0 {
				return errors.New("read archive: data after the tar end marker")
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return streamErr(err)
		}
	}
}

// tailReader remembers the last two tar blocks read, so the end of the tar
// stream can be told apart from a stream cut at a header boundary (which
// archive/tar also reports as io.EOF).
type tailReader struct {
	r    io.Reader
	n    int64
	tail [1024]byte
}

func (t *tailReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n >= len(t.tail) {
		copy(t.tail[:], p[n-len(t.tail):n])
	} else if n > 0 {
		copy(t.tail[:], t.tail[n:])
		copy(t.tail[len(t.tail)-n:], p[:n])
	}
	t.n += int64(n)
	return n, err
}

func (t *tailReader) endMarker() bool {
	return t.n >= int64(len(t.tail)) && t.tail == [1024]byte{}
}
