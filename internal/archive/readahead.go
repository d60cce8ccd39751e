package archive

import (
	"io"

	"github.com/klauspost/compress/zstd"
)

// Read-ahead between the decoder and the file writes: creating a file or
// writing to the page cache blocks the extracting goroutine for a while, and
// without a buffer the download and the decoder stop with it. readAheadBufs
// buffers of readAheadBufSize let them run that far ahead. Small buffers are
// still in the CPU cache when the extracting goroutine copies them: 16 of
// 256 KiB took less CPU time than 4 of 1 MiB.
const (
	readAheadBufs    = 16
	readAheadBufSize = 256 << 10
)

// readAhead reads a zstd stream in a goroutine of its own. The goroutine
// owns the decoder (and closes it when done), so a reader that stops early
// need not wait for a network read to return: it calls stop, and the
// goroutine exits at its next hand-off.
type readAhead struct {
	full chan []byte // filled buffers in stream order
	free chan []byte // consumed buffers to fill again
	done chan struct{}
	err  error // the decoder's error, read once full is closed
	cur  []byte
	buf  []byte // the buffer cur is a part of
}

func newReadAhead(dec *zstd.Decoder) *readAhead {
	ra := &readAhead{
		full: make(chan []byte, readAheadBufs),
		free: make(chan []byte, readAheadBufs),
		done: make(chan struct{}),
	}
	for range readAheadBufs {
		ra.free <- make([]byte, readAheadBufSize)
	}
	go ra.run(dec)
	return ra
}

func (ra *readAhead) run(dec *zstd.Decoder) {
	defer dec.Close()
	defer close(ra.full)
	for {
		var b []byte
		select {
		case b = <-ra.free:
		case <-ra.done:
			return
		}
		n, err := fill(dec, b)
		if n > 0 {
			select {
			case ra.full <- b[:n]:
			case <-ra.done:
				return
			}
		}
		if err != nil {
			ra.err = err // published by close(ra.full)
			return
		}
	}
}

func (ra *readAhead) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for len(ra.cur) == 0 {
		if ra.buf != nil {
			ra.free <- ra.buf[:cap(ra.buf)] // never blocks: one slot per buffer
			ra.buf = nil
		}
		b, ok := <-ra.full
		if !ok {
			return 0, ra.err
		}
		ra.cur, ra.buf = b, b
	}
	n := copy(p, ra.cur)
	ra.cur = ra.cur[n:]
	return n, nil
}

// stop releases the goroutine; Read must not be called after it.
func (ra *readAhead) stop() { close(ra.done) }

// fill reads into b until it is full or r fails, and returns r's error as it
// is: io.EOF at a clean end, anything else (io.ErrUnexpectedEOF from a
// truncated zstd frame) for a broken stream. io.ReadFull would turn a
// short final buffer into io.ErrUnexpectedEOF and hide that difference.
func fill(r io.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := r.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
