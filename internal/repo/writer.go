package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
	"github.com/restic/chunker"

	"github.com/kbak/kbak/internal/seal"
)

// WriterOptions tune a Writer.
type WriterOptions struct {
	// Workers compress chunks in parallel; 0 means GOMAXPROCS.
	Workers int
	// Level is the zstd level 1 (fastest) to 4; 0 means 1.
	Level int
	// TempDir holds the packs being filled and sent; "" is TMPDIR.
	TempDir string
}

// WriterStats count what a Writer did; read them with Stats.
type WriterStats struct {
	Chunks      int64 // chunks of the written streams
	Bytes       int64 // their bytes
	NewChunks   int64 // chunks the repository did not hold yet
	NewBytes    int64 // their bytes
	StoredBytes int64 // bytes of new blobs: what this writer added
	Packs       int64 // packs written
}

// Writer stores streams as chunks in the repository. It is safe for
// concurrent use: a mover writes file data and the recipe at once. Packs are
// uploaded as they fill; Close writes the last one and the index.
type Writer struct {
	r       *Repo
	h       *hasher
	dk      *seal.DataKey // seals blobs in an encrypted repository
	level   int
	tempDir string

	mu    sync.Mutex
	known *idSet

	jobs    chan job
	workers sync.WaitGroup

	packMu  sync.Mutex
	cur     *pack
	done    []packEntries // uploaded, not yet in an index
	free    chan *pack
	uploads sync.WaitGroup
	sem     chan struct{}
	files   []*os.File // of the packs, closed by Close and Abort

	ctx    context.Context // of the uploads
	cancel context.CancelCauseFunc

	chunkers sync.Pool
	small    bufList // buffers of files of one chunk
	large    bufList // of other streams

	chunks, bytes, newChunks, newBytes, stored, packs atomic.Int64
}

type job struct {
	id   ID
	data []byte
	buf  *[]byte
	bufs *bufList  // buf's
	fl   *inFlight // of the stream, when its writer waits for it
}

// pack is one pack being assembled: in memory (repack), or for a writer in
// an unlinked temporary file, so that a mover's memory holds no pack.
type pack struct {
	id      PackID
	data    []byte
	file    *os.File
	size    int64
	entries []Entry
}

// packsInFlight packs upload while the next fills: one leaves a slow
// server's latency in the way of compression. Packs are files, not memory.
const packsInFlight = 2

// indexEvery is how many uploaded packs' entries go into one index object
// while a long stream is written: ~1 GiB of packs, so a crash loses little
// and no index grows large.
const indexEvery = 64

// NewWriter loads the set of chunks the repository holds and starts the
// compression workers. Call Close, or Abort, to end it.
func (r *Repo) NewWriter(ctx context.Context, opts WriterOptions) (*Writer, error) {
	known := newIDSet()
	err := r.ForEachEntry(ctx, known.grow, func(e Entry) error {
		known.sorted = append(known.sorted, prefixOf(e.ID))
		return nil
	})
	if err != nil {
		return nil, err
	}
	known.sortLoaded()
	var dk *seal.DataKey
	if r.keys != nil {
		if dk, err = r.newDataKey(ctx); err != nil {
			return nil, err
		}
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	wctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	w := &Writer{
		r: r, h: newHasher(r.idKey()), dk: dk, level: opts.Level, tempDir: opts.TempDir, known: known,
		jobs: make(chan job, 1),
		free: make(chan *pack, packsInFlight),
		sem:  make(chan struct{}, packsInFlight),
		ctx:  wctx, cancel: cancel,
	}
	// A file of one chunk is cut into a buffer of the minimum chunk size.
	// Other streams' buffers hold four average chunks, which fits all but
	// ~3 % of their chunks (sizes above the minimum are exponential); the
	// chunker grows one for a larger chunk, and that one is not kept.
	// Buffers of the maximum size would count 8 MiB each against the
	// memory limit whatever the chunks. Each list holds what is in flight:
	// one per reader, the job queued and one per worker.
	w.small = newBufList(workers+6, int(r.cfg.Chunker.MinSize))
	w.large = newBufList(workers+3, 4<<r.cfg.Chunker.AverageBits)
	w.chunkers.New = func() any {
		return chunker.NewWithBoundaries(nil, r.cfg.Chunker.Polynomial, r.cfg.Chunker.MinSize, r.cfg.Chunker.MaxSize)
	}
	for range workers {
		enc, err := newBlobEncoder(opts.Level)
		if err != nil {
			cancel(err)
			return nil, err
		}
		w.workers.Add(1)
		go w.compress(enc)
	}
	return w, nil
}

// Known reports whether the repository (or this writer) holds chunk id.
func (w *Writer) Known(id ID) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.known.has(id)
}

// WriteStream cuts rd into chunks, stores those the repository lacks and
// returns the stream's chunk list.
func (w *Writer) WriteStream(ctx context.Context, rd io.Reader) ([]Ref, error) {
	return w.WriteSized(ctx, rd, -1)
}

// WriteSized is WriteStream for a stream of size bytes (-1: unknown),
// which picks the buffers it is cut into. A stream of more than one chunk
// returns only once its new chunks are in a pack: a caller that writes
// such streams one at a time gets each one's chunks together, in order.
func (w *Writer) WriteSized(ctx context.Context, rd io.Reader, size int64) ([]Ref, error) {
	bufs := &w.large
	if size >= 0 && size <= int64(w.small.size) {
		bufs = &w.small
	}
	var fl *inFlight
	if size > int64(w.small.size) {
		fl = &inFlight{done: make(chan struct{})}
		fl.n.Store(1) // this call's own, dropped when every chunk is queued
	}
	refs, err := w.writeChunks(ctx, rd, bufs, fl)
	if err != nil || fl == nil || fl.n.Add(-1) == 0 {
		return refs, err
	}
	select {
	case <-fl.done:
		return refs, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	case <-w.ctx.Done():
		return nil, context.Cause(w.ctx)
	}
}

// inFlight counts a stream's chunks not yet in a pack; the one who takes
// it to zero closes done.
type inFlight struct {
	n    atomic.Int64
	done chan struct{}
}

func (w *Writer) writeChunks(ctx context.Context, rd io.Reader, bufs *bufList, fl *inFlight) ([]Ref, error) {
	c := w.chunkers.Get().(*chunker.Chunker)
	defer w.chunkers.Put(c)
	p := w.r.cfg.Chunker
	c.ResetWithBoundaries(rd, p.Polynomial, p.MinSize, p.MaxSize)
	c.SetAverageBits(p.AverageBits)
	var refs []Ref
	for {
		if err := w.failed(ctx); err != nil {
			return nil, err
		}
		buf := bufs.get()
		ch, err := c.Next((*buf)[:0])
		if err == io.EOF {
			bufs.put(buf, ch.Data)
			return refs, nil
		}
		if err != nil {
			bufs.put(buf, ch.Data)
			return nil, err
		}
		id := w.h.id(ch.Data)
		refs = append(refs, Ref{ID: id, Size: uint32(ch.Length)})
		w.chunks.Add(1)
		w.bytes.Add(int64(ch.Length))
		w.mu.Lock()
		isNew := w.known.add(id)
		w.mu.Unlock()
		if !isNew {
			bufs.put(buf, ch.Data)
			continue
		}
		w.newChunks.Add(1)
		w.newBytes.Add(int64(ch.Length))
		if fl != nil {
			fl.n.Add(1)
		}
		select {
		case w.jobs <- job{id: id, data: ch.Data, buf: buf, bufs: bufs, fl: fl}:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-w.ctx.Done():
			return nil, context.Cause(w.ctx)
		}
	}
}

// WriteBytes stores one small stream held in memory.
func (w *Writer) WriteBytes(ctx context.Context, b []byte) ([]Ref, error) {
	return w.WriteStream(ctx, bytes.NewReader(b))
}

// bufList is a free list of chunk buffers of one size. It is not a
// sync.Pool, which each garbage collection empties: under the mover's
// memory limit that was hundreds of MB of buffers allocated and faulted in
// again per GiB stored.
type bufList struct {
	free chan *[]byte
	size int
}

func newBufList(n, size int) bufList { return bufList{free: make(chan *[]byte, n), size: size} }

// get returns a free buffer, or a new one.
func (l *bufList) get() *[]byte {
	select {
	case b := <-l.free:
		return b
	default:
		b := make([]byte, 0, l.size)
		return &b
	}
}

// put returns buf to the list, as grown to hold used (the chunk cut into
// it; empty at the end of a stream), unless that made it larger than the
// list's size: the list keeps no buffer of the few largest chunks.
func (l *bufList) put(buf *[]byte, used []byte) {
	if cap(used) > l.size {
		return
	}
	if cap(used) > cap(*buf) {
		*buf = used[:0]
	}
	select {
	case l.free <- buf:
	default:
	}
}

func (w *Writer) failed(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	if w.ctx.Err() != nil {
		return context.Cause(w.ctx)
	}
	return nil
}

func (w *Writer) compress(enc *zstd.Encoder) {
	defer w.workers.Done()
	defer enc.Close()
	var dst, sealed []byte
	keep := blobBound(w.large.size) // the largest buffers kept
	for {
		var j job
		var ok bool
		select {
		case j, ok = <-w.jobs:
		case <-w.ctx.Done():
			return
		}
		if !ok {
			return
		}
		// Room for the largest blob of the chunk, so that neither buffer
		// grows while it is filled.
		raw := len(j.data)
		blob := encodeBlob(enc, room(&dst, blobBound(raw), keep), j.data)
		j.bufs.put(j.buf, j.data)
		if w.dk != nil {
			var err error
			if blob, err = w.dk.Seal(room(&sealed, len(blob)+seal.BlobOverhead, keep+seal.BlobOverhead), blob, j.id[:]); err != nil {
				w.cancel(err)
				return
			}
		}
		w.addBlob(j.id, raw, blob)
		if j.fl != nil && j.fl.n.Add(-1) == 0 {
			close(j.fl.done)
		}
	}
}

// room returns *b emptied, with room for n bytes: *b grown when it is
// smaller, to twice its size up to keep, so that chunks of slowly growing
// sizes do not each make one. A buffer for more than keep bytes is made
// for the one use, and *b kept for the chunks of usual sizes.
func room(b *[]byte, n, keep int) []byte {
	if n > keep {
		return make([]byte, 0, n)
	}
	if cap(*b) < n {
		*b = make([]byte, 0, max(n, min(2*cap(*b), keep)))
	}
	return (*b)[:0]
}

// addBlob appends a blob to the current pack and sends the pack off when
// it is full.
func (w *Writer) addBlob(id ID, raw int, blob []byte) {
	w.packMu.Lock()
	if w.cur == nil {
		p, err := w.newPack()
		if err != nil {
			w.packMu.Unlock()
			w.cancel(err)
			return
		}
		w.cur = p
	}
	p := w.cur
	if _, err := p.file.WriteAt(blob, p.size); err != nil {
		w.packMu.Unlock()
		w.cancel(fmt.Errorf("write pack %s to a temporary file: %w", p.id, err))
		return
	}
	p.entries = append(p.entries, Entry{ID: id, Pack: p.id, Offset: uint32(p.size), Length: uint32(len(blob)), RawLength: uint32(raw)})
	p.size += int64(len(blob))
	w.stored.Add(int64(len(blob)))
	full := p.size >= w.r.cfg.PackSize
	if full {
		w.cur = nil
	}
	w.packMu.Unlock()
	if full {
		w.upload(p)
	}
}

func (w *Writer) newPack() (*pack, error) {
	id, err := newPackID()
	if err != nil {
		return nil, err
	}
	select {
	case p := <-w.free:
		p.id, p.size, p.entries = id, 0, nil
		return p, nil
	default:
	}
	f, err := os.CreateTemp(w.tempDir, "kbak-pack-*")
	if err != nil {
		return nil, fmt.Errorf("create a temporary pack file (set TMPDIR to a writable directory): %w", err)
	}
	os.Remove(f.Name()) // unlinked: gone with the process, whatever ends it
	w.files = append(w.files, f)
	return &pack{id: id, file: f}, nil
}

// upload stores p in the background; the caller blocks while packsInFlight
// others are uploading, which bounds the temporary files to that many and
// one more being filled.
func (w *Writer) upload(p *pack) {
	select {
	case w.sem <- struct{}{}:
	case <-w.ctx.Done():
		return
	}
	w.uploads.Add(1)
	go func() {
		defer w.uploads.Done()
		defer func() { <-w.sem }()
		err := w.r.store.Put(w.ctx, Keys.Pack(p.id), io.NewSectionReader(p.file, 0, p.size), p.size)
		if err != nil {
			w.cancel(fmt.Errorf("write pack %s: %w", p.id, err))
			return
		}
		w.packs.Add(1)
		w.packMu.Lock()
		w.done = append(w.done, packEntries{pack: p.id, entries: p.entries})
		var batch []packEntries
		if len(w.done) >= indexEvery {
			batch, w.done = w.done, nil
		}
		w.packMu.Unlock()
		select {
		case w.free <- p:
		default:
		}
		if batch != nil {
			if err := w.r.putIndex(w.ctx, w.r.store, batch); err != nil {
				w.cancel(err)
			}
		}
	}()
}

// Close stores what is still buffered, waits for every upload and writes
// the index of what it stored. The chunk lists WriteStream returned are
// valid in the repository only once Close returned nil.
func (w *Writer) Close(ctx context.Context) error {
	close(w.jobs) // callers have no WriteStream running
	w.workers.Wait()
	w.packMu.Lock()
	p := w.cur
	w.cur = nil
	w.packMu.Unlock()
	if p != nil && len(p.entries) > 0 && w.ctx.Err() == nil {
		w.upload(p)
	}
	w.uploads.Wait()
	if err := w.ctx.Err(); err != nil {
		w.closeFiles()
		return context.Cause(w.ctx)
	}
	w.packMu.Lock()
	batch := w.done
	w.done = nil
	w.packMu.Unlock()
	if err := w.r.putIndex(ctx, w.r.store, batch); err != nil {
		w.cancel(err)
		w.closeFiles()
		return err
	}
	w.cancel(errClosed)
	w.closeFiles()
	return nil
}

func (w *Writer) closeFiles() {
	w.packMu.Lock()
	defer w.packMu.Unlock()
	for _, f := range w.files {
		f.Close()
	}
	w.files = nil
}

var errClosed = errors.New("writer closed")

// Abort stops the writer without writing an index for what it stored: the
// packs it uploaded are garbage that gc removes after its grace period.
// WriteStream calls still running return the cause.
func (w *Writer) Abort(cause error) {
	w.cancel(cause)
	w.workers.Wait()
	w.uploads.Wait()
	w.closeFiles()
}

// Stats returns the writer's counters.
func (w *Writer) Stats() WriterStats {
	return WriterStats{
		Chunks: w.chunks.Load(), Bytes: w.bytes.Load(),
		NewChunks: w.newChunks.Load(), NewBytes: w.newBytes.Load(),
		StoredBytes: w.stored.Load(), Packs: w.packs.Load(),
	}
}
