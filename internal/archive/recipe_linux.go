package archive

import (
	"archive/tar"
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// recipeQueue is how a recipe is written: the walker queues every entry in
// walk order, several readers hand the queued files' data to the
// ContentFunc at once, and one writer puts the entries into the stream in
// the order they were queued, each file's once its reference is known. So
// the files of a tree of small files are read, chunked and hashed in
// parallel, and the same tree still gives the same recipe.
//
// The walker alone decides what goes into the recipe (and counts it); the
// writer only adds what the readers learnt: each file's reference and the
// bytes it stands for.
type recipeQueue struct {
	ctx     context.Context
	cancel  context.CancelCauseFunc // the first error stops the walk, the readers and the writer
	tw      *tar.Writer
	prog    *Counters
	content ContentFunc
	written func(FileInfo, []byte) error

	order   chan queued      // every entry, in walk order, to the writer
	jobs    chan *contentJob // the files among them, to the readers
	readers sync.WaitGroup
	done    chan struct{} // closed when the writer has taken the last entry

	raw, read int64 // of the files written: the writer's alone
}

type queued struct {
	hdr *tar.Header
	job *contentJob // a regular file's: its data goes to the ContentFunc
}

// contentJob is one file for the readers; done is closed when ref or err is
// set and the file's descriptor is closed.
type contentJob struct {
	info FileInfo
	data *fileData
	done chan struct{}
	ref  []byte
	err  error
}

// recipeWindow bounds the entries queued ahead of the writer, and so the
// files held open: the writer waits for the oldest while the readers work
// on the next ones.
const recipeWindow = 128

// defaultReaders is how many files are read at once: a file's system calls
// leave the CPU idle for the next one, and chunking and hashing take a core.
func defaultReaders() int { return max(4, runtime.GOMAXPROCS(0)) }

func startRecipe(ctx context.Context, cancel context.CancelCauseFunc, tw *tar.Writer, opts WriteOptions) *recipeQueue {
	q := &recipeQueue{
		ctx: ctx, cancel: cancel, tw: tw, prog: opts.Progress, content: opts.Content, written: opts.Written,
		order: make(chan queued, recipeWindow),
		jobs:  make(chan *contentJob, recipeWindow+1), // never fuller than order, plus the writer's
		done:  make(chan struct{}),
	}
	readers := opts.Readers
	if readers <= 0 {
		readers = defaultReaders()
	}
	for range readers {
		q.readers.Go(q.reader)
	}
	go q.writer()
	return q
}

// add queues an entry; a job's file descriptor is the queue's from here on,
// whatever add returns.
func (q *recipeQueue) add(hdr *tar.Header, job *contentJob) error {
	select {
	case q.order <- queued{hdr, job}:
	case <-q.ctx.Done():
		if job != nil {
			unix.Close(job.data.fd)
		}
		return context.Cause(q.ctx)
	}
	if job != nil {
		select {
		case q.jobs <- job:
		case <-q.ctx.Done():
			unix.Close(job.data.fd) // the writer stops waiting for it at ctx
			return context.Cause(q.ctx)
		}
	}
	return nil
}

func (q *recipeQueue) reader() {
	for j := range q.jobs {
		if err := q.ctx.Err(); err != nil {
			j.err = context.Cause(q.ctx)
		} else {
			j.ref, j.err = q.content(q.ctx, j.info, j.data)
		}
		j.data.done = true // a late Read must not use the descriptor
		unix.Close(j.data.fd)
		close(j.done)
	}
}

func (q *recipeQueue) writer() {
	defer close(q.done)
	for e := range q.order {
		if q.ctx.Err() != nil {
			continue // failed: take what is left, write nothing
		}
		if err := q.write(e); err != nil {
			q.cancel(err)
		}
	}
}

func (q *recipeQueue) write(e queued) error {
	j := e.job
	if j == nil {
		return writeHeader(q.tw, q.prog, e.hdr)
	}
	select {
	case <-j.done:
	case <-q.ctx.Done():
		return nil
	}
	if j.err != nil {
		return fmt.Errorf("store content of %s: %w", j.data.full, j.err)
	}
	if len(j.ref) > MaxRefSize {
		return fmt.Errorf("store content of %s: reference of %d bytes, over the %d byte limit", j.data.full, len(j.ref), MaxRefSize)
	}
	// Files the ContentFunc did not read count in full: RawBytes is the
	// data the recipe stands for, ReadBytes what was read.
	q.raw += j.info.DataSize
	q.read += j.data.n
	if rest := j.info.DataSize - j.data.n; rest > 0 && q.prog != nil {
		q.prog.RawBytes.Add(rest)
	}
	hdr := e.hdr
	if hdr.PAXRecords == nil {
		hdr.PAXRecords = make(map[string]string)
	}
	hdr.PAXRecords[paxContentSize] = strconv.FormatInt(j.info.DataSize, 10)
	hdr.Size = int64(len(j.ref))
	if err := writeHeader(q.tw, q.prog, hdr); err != nil {
		return err
	}
	if _, err := q.tw.Write(j.ref); err != nil {
		return fmt.Errorf("write %s to archive: %w", j.data.full, err)
	}
	if q.written != nil {
		return q.written(j.info, j.ref)
	}
	return nil
}

// finish waits for the writer and the readers once the walk has ended (with
// walkErr) and adds what they counted to stats. It returns the first error
// of the walk, a reader or the writer.
func (q *recipeQueue) finish(walkErr error, stats *Stats) error {
	if walkErr != nil {
		q.cancel(walkErr)
	}
	close(q.order)
	close(q.jobs)
	<-q.done
	q.readers.Wait()
	stats.RawBytes += q.raw
	stats.ReadBytes += q.read
	if q.ctx.Err() != nil {
		return context.Cause(q.ctx)
	}
	return nil
}
