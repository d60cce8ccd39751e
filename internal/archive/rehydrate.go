package archive

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"strconv"
)

// Rehydrate turns a recipe (a plain stream made by Write with Content) back
// into the plain tar stream Write would have made without Content, and
// writes it to w; ExtractTar or VerifyTar read that. Entries without a
// content reference are copied as they are, headers and data. For a recipe
// entry Rehydrate calls data with the reference and the size of the data it
// stands for; data must write exactly size bytes to its writer, and
// Rehydrate fails naming the file when it writes fewer or more. ref is valid
// only during the call.
//
// The recipe is read to its end like an archive (end marker, nothing but
// zero padding after it). On an error the output has no tar end marker, so
// whatever reads it fails too instead of taking a shorter tree for a whole
// one. w is not closed.
func Rehydrate(ctx context.Context, recipe io.Reader, w io.Writer, data DataFunc) error {
	bw := bufio.NewWriterSize(w, plainBufSize)
	tw := tar.NewWriter(bw)
	buf := make([]byte, copyBufSize)
	err := eachEntry(ctx, recipe, func(hdr *tar.Header, r io.Reader) error {
		out, ref, ok, err := recipeEntry(hdr, r)
		if err != nil {
			return err
		}
		if !ok {
			if err := tw.WriteHeader(hdr); err != nil {
				return fmt.Errorf("rehydrate %s: write header: %w", hdr.Name, err)
			}
			return copyData(ctx, tw, r, buf, hdr.Name)
		}
		size := out.Size
		if err := tw.WriteHeader(out); err != nil {
			return fmt.Errorf("rehydrate %s: write header: %w", hdr.Name, err)
		}
		lw := &limitWriter{w: tw, left: size}
		err = data(ctx, ref, size, lw)
		switch {
		case lw.over:
			return fmt.Errorf("rehydrate %s: its data is longer than the %d bytes the recipe records: the recipe or the stored data is corrupt", hdr.Name, size)
		case lw.err != nil: // the output failed, not the data
			return fmt.Errorf("rehydrate %s: %w", hdr.Name, lw.err)
		case err != nil:
			return fmt.Errorf("rehydrate %s: %w", hdr.Name, err)
		case lw.left > 0:
			return fmt.Errorf("rehydrate %s: got %d bytes of data, the recipe records %d: the recipe or the stored data is corrupt", hdr.Name, size-lw.left, size)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("rehydrate: write tar end marker: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("rehydrate: write archive: %w", err)
	}
	return nil
}

// DataFunc writes the size bytes of data that the content reference ref
// stands for to w (see Rehydrate and ExtractRecipe).
type DataFunc func(ctx context.Context, ref []byte, size int64, w io.Writer) error

// recipeEntry returns, for a recipe entry, the header of the file it
// stands for (Size the size of its data) and its content reference; ok is
// false for an ordinary entry.
func recipeEntry(hdr *tar.Header, r io.Reader) (out *tar.Header, ref []byte, ok bool, err error) {
	size, ok, err := contentSize(hdr)
	if err != nil || !ok {
		return nil, nil, ok, err
	}
	if ref, err = readRef(hdr, r); err != nil {
		return nil, nil, false, err
	}
	o := *hdr
	o.Size = size
	o.PAXRecords = maps.Clone(hdr.PAXRecords)
	delete(o.PAXRecords, paxContentSize)
	return &o, ref, true, nil
}

// WalkRecipe calls f with the content reference of every recipe entry, in
// the order Rehydrate asks for their data, without rehydrating anything: a
// restore prefetches the data with it. It checks the recipe as Rehydrate
// does. ref is valid only during the call.
func WalkRecipe(ctx context.Context, recipe io.Reader, f func(ref []byte) error) error {
	return eachEntry(ctx, recipe, func(hdr *tar.Header, r io.Reader) error {
		_, ok, err := contentSize(hdr)
		if err != nil || !ok {
			return err
		}
		ref, err := readRef(hdr, r)
		if err != nil {
			return err
		}
		return f(ref)
	})
}

// readRef reads the content reference of a recipe entry.
func readRef(hdr *tar.Header, r io.Reader) ([]byte, error) {
	// Checked before reading: a tampered header must not size a buffer.
	if hdr.Size > MaxRefSize {
		return nil, fmt.Errorf("recipe entry %s: content reference of %d bytes, over the %d byte limit: the recipe is corrupt", hdr.Name, hdr.Size, MaxRefSize)
	}
	ref, err := io.ReadAll(r)
	if err != nil {
		return nil, streamErr(err)
	}
	return ref, nil
}

// copyData copies an ordinary entry's data, checking ctx between reads.
func copyData(ctx context.Context, tw *tar.Writer, r io.Reader, buf []byte, name string) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := r.Read(buf)
		if n > 0 {
			if _, err := tw.Write(buf[:n]); err != nil {
				return fmt.Errorf("rehydrate %s: copy data: %w", name, err)
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

// contentSize returns the size of the data a recipe entry stands for; ok is
// false for an ordinary entry. Only a regular file can be a recipe entry,
// and the size must be a canonical decimal number.
func contentSize(hdr *tar.Header) (size int64, ok bool, err error) {
	v, ok := hdr.PAXRecords[paxContentSize]
	if !ok {
		return 0, false, nil
	}
	if hdr.Typeflag != tar.TypeReg {
		return 0, true, fmt.Errorf("recipe entry %s: %s record on an entry of type %q: the recipe is corrupt", hdr.Name, paxContentSize, hdr.Typeflag)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != v {
		return 0, true, fmt.Errorf("recipe entry %s: malformed %s record %q: the recipe is corrupt", hdr.Name, paxContentSize, v)
	}
	return n, true, nil
}

// errTooLong stops a data function that writes past the recorded size.
var errTooLong = errors.New("data longer than the recipe records")

// limitWriter passes on at most left bytes and remembers whether more were
// offered (over) or the writer below failed (err).
type limitWriter struct {
	w    io.Writer
	left int64
	over bool
	err  error
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	if l.over {
		return 0, errTooLong
	}
	q := p
	if int64(len(q)) > l.left {
		q = q[:l.left]
	}
	n, err := l.w.Write(q)
	l.left -= int64(n)
	if err != nil {
		l.err = err
		return n, err
	}
	if len(q) < len(p) {
		l.over = true
		return n, errTooLong
	}
	return n, nil
}
