package uploader

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// DefaultBufferBytes bounds the part data one Put holds in memory. Parts
// are as large as an object's expected size requires (236 MiB for a 2 TiB
// volume), so when Concurrency+1 of them do not fit, fewer are sent at once,
// and when even two do not, parts are spooled to temporary files: memory
// stays the same for any object size, disk holds (Concurrency+1) parts.
const DefaultBufferBytes = 48 * MiB

// maxSeekablePut is the largest object a Put sends in one request straight
// from a seekable reader of known size.
const maxSeekablePut = 64 * MiB

// Put sends objects smaller than one part with a single PutObject and
// larger ones as a multipart upload that streams: parts are read into at
// most Concurrency+1 buffers while up to Concurrency parts are in flight.
func (s *S3Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	k, err := s.objectKey(key)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if rs, ok := r.(io.ReadSeeker); ok && size >= 0 && size <= maxSeekablePut {
		// Already in memory or on disk (a pack, a file cache): one request,
		// retried from the reader itself, and no copy.
		return s.putSingle(ctx, key, k, rs, size)
	}
	pool := s.newPartPool(PartSize(size, s.partSize))
	defer pool.close()
	r = ctxReader{ctx, r}

	first, err := pool.first(r, size)
	switch {
	case err == io.EOF:
		return s.putSingle(ctx, key, k, first.body(), first.n)
	case err != nil:
		return fmt.Errorf("put %s: read data: %w", key, err)
	}
	return s.putMultipart(ctx, key, k, r, pool, first)
}

func (s *S3Store) putSingle(ctx context.Context, key, k string, body io.ReadSeeker, n int64) error {
	if err := s.putObject(ctx, k, body, n, false); err != nil {
		return fmt.Errorf("put %s: %w", key, s.writeError(key, err))
	}
	return nil
}

// putMultipart uploads first and the rest of r in parts of the pool's part
// size. Parts are completed only when all of them succeeded; on any error
// or on cancellation the upload is aborted so that nothing remains.
func (s *S3Store) putMultipart(ctx context.Context, key, k string, r io.Reader, pool *partPool, first *partBuf) (err error) {
	cin := &s3.CreateMultipartUploadInput{Bucket: &s.bucket, Key: &k}
	cin.ObjectLockMode, cin.ObjectLockRetainUntilDate = s.lockParams()
	cr, err := s.client.CreateMultipartUpload(ctx, cin)
	if err != nil {
		return fmt.Errorf("put %s: start multipart upload: %w", key, s.writeError(key, err))
	}
	id := aws.ToString(cr.UploadId)
	log := s.log.With("key", k, "upload_id", id)
	log.Debug("multipart upload started", "part_size", pool.partSize, "in_flight", pool.concurrency, "spooled", pool.spool)
	defer func() {
		if err != nil {
			s.abort(ctx, log, k, id)
		}
	}()

	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	var (
		mu        sync.Mutex
		completed []types.CompletedPart
		wg        sync.WaitGroup
		inFlight  = make(chan struct{}, pool.concurrency)
		total     int64
	)
	buf, readErr := first, error(nil)
	for part := int32(1); ; part++ {
		if part > MaxParts {
			cancel(fmt.Errorf("object is larger than %d parts of %d MiB: pass its expected size so that a larger part size is chosen", MaxParts, pool.partSize/MiB))
			break
		}
		select {
		case inFlight <- struct{}{}:
		case <-pctx.Done():
		}
		if pctx.Err() != nil {
			break
		}
		total += buf.n
		wg.Add(1)
		go func(part int32, p *partBuf) {
			defer wg.Done()
			defer func() { <-inFlight }()
			defer pool.release(p)
			body := p.body() // seekable: the SDK can retry
			in := &s3.UploadPartInput{
				Bucket:        &s.bucket,
				Key:           &k,
				UploadId:      &id,
				PartNumber:    aws.Int32(part),
				Body:          body,
				ContentLength: aws.Int64(p.n),
			}
			var out *s3.UploadPartOutput
			err := s.withMD5(body, p.n, func(sum *string) (err error) {
				in.ContentMD5 = sum
				out, err = s.client.UploadPart(pctx, in)
				return err
			})
			if err != nil {
				cancel(fmt.Errorf("upload part %d: %w", part, err))
				return
			}
			mu.Lock()
			completed = append(completed, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(part)})
			mu.Unlock()
		}(part, buf)

		if readErr == io.EOF {
			break
		}
		if buf, err = pool.get(pctx); err != nil {
			break
		}
		readErr = buf.fill(r, pool.partSize)
		if readErr != nil && readErr != io.EOF {
			cancel(fmt.Errorf("read data: %w", readErr))
			pool.release(buf)
			break
		}
		if buf.n == 0 && readErr == io.EOF {
			pool.release(buf)
			break // the previous part was the last
		}
	}
	wg.Wait()
	if err := context.Cause(pctx); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}

	slices.SortFunc(completed, func(a, b types.CompletedPart) int { return cmp.Compare(*a.PartNumber, *b.PartNumber) })
	_, err = s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          &s.bucket,
		Key:             &k,
		UploadId:        &id,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: completed},
	})
	if err != nil {
		return fmt.Errorf("put %s: complete multipart upload of %d parts: %w", key, len(completed), s.writeError(key, err))
	}
	log.Debug("multipart upload completed", "parts", len(completed), "bytes", total)
	return nil
}

// partPool hands out the buffers of one Put: at most concurrency+1 of them,
// one being filled and the others uploading. They live in memory, or in
// unlinked temporary files when parts are too large for the memory budget.
type partPool struct {
	partSize    int64
	concurrency int
	spool       bool
	dir         string

	mu        sync.Mutex
	allocated int
	free      chan *partBuf
	all       []*partBuf
}

func (s *S3Store) newPartPool(partSize int64) *partPool {
	p := &partPool{partSize: partSize, concurrency: s.concurrency, dir: s.spoolDir}
	budget := s.bufferBytes
	if budget <= 0 {
		budget = DefaultBufferBytes
	}
	if need := partSize * int64(p.concurrency+1); need > budget {
		// Fewer parts in flight before any touch the disk.
		p.concurrency = max(int(budget/partSize)-1, 1)
		p.spool = partSize*2 > budget
		if p.spool {
			p.concurrency = s.concurrency
		}
	}
	p.free = make(chan *partBuf, p.concurrency+1)
	return p
}

// first reads the first part. Small objects (manifests, results) are
// common: in memory, it starts with a buffer of the expected size plus one
// byte (to notice a larger stream), or 1 MiB when the size is unknown, and
// grows to a whole part only when the data goes on. io.EOF means the object
// fits in this one part.
func (p *partPool) first(r io.Reader, size int64) (*partBuf, error) {
	if p.spool {
		b, err := p.get(context.Background()) // the first never waits
		if err != nil {
			return nil, err
		}
		return b, b.fill(r, p.partSize)
	}
	initial := p.partSize
	switch {
	case size >= 0 && size < p.partSize:
		initial = size + 1
	case size < 0:
		initial = min(p.partSize, MiB)
	}
	b := &partBuf{mem: make([]byte, initial)}
	p.track(b)
	n, err := readFull(r, b.mem)
	b.n = int64(n)
	if err == nil && initial < p.partSize {
		grown := make([]byte, p.partSize)
		copy(grown, b.mem[:n])
		b.mem = grown
		var m int
		m, err = readFull(r, b.mem[n:])
		b.n += int64(m)
	}
	return b, err
}

func (p *partPool) track(b *partBuf) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.allocated++
	p.all = append(p.all, b)
}

// get returns a free buffer, allocating one while fewer than concurrency+1
// exist, else waiting for an upload to release one.
func (p *partPool) get(ctx context.Context) (*partBuf, error) {
	select {
	case b := <-p.free:
		return b, nil
	default:
	}
	p.mu.Lock()
	grow := p.allocated < p.concurrency+1
	p.mu.Unlock()
	if grow {
		b := &partBuf{}
		if p.spool {
			f, err := os.CreateTemp(p.dir, "kbak-part-*")
			if err != nil {
				return nil, fmt.Errorf("spool a part of %d MiB: %w (set TMPDIR to a directory with room for %d MiB)", p.partSize/MiB, err, p.partSize*int64(p.concurrency+1)/MiB)
			}
			// Unlinked at once: the space is freed when the file is closed,
			// also when the process dies.
			os.Remove(f.Name())
			b.file = f
		} else {
			b.mem = make([]byte, p.partSize)
		}
		p.track(b)
		return b, nil
	}
	select {
	case b := <-p.free:
		return b, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

func (p *partPool) release(b *partBuf) {
	b.n = 0
	select {
	case p.free <- b:
	default: // never full while get keeps count; never block on it
	}
}

func (p *partPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range p.all {
		if b.file != nil {
			b.file.Close()
		}
	}
}

// partBuf holds one part: n bytes in mem, or in file from offset 0.
type partBuf struct {
	mem  []byte
	file *os.File
	n    int64
}

// fill reads up to size bytes from r. It returns io.EOF when the stream
// ended first (n may be > 0), nil when the part is full.
func (b *partBuf) fill(r io.Reader, size int64) error {
	if b.file == nil {
		n, err := readFull(r, b.mem[:size])
		b.n = int64(n)
		return err
	}
	n, err := io.CopyN(io.NewOffsetWriter(b.file, 0), r, size)
	b.n = n
	if errors.Is(err, io.EOF) || (err == nil && n < size) {
		return io.EOF
	}
	return err
}

func (b *partBuf) body() io.ReadSeeker {
	if b.file != nil {
		return io.NewSectionReader(b.file, 0, b.n)
	}
	return bytes.NewReader(b.mem[:b.n])
}

// readFull fills buf. It returns io.EOF when the stream ended before buf
// was full (n may be > 0), nil when buf is full.
func readFull(r io.Reader, buf []byte) (int, error) {
	n, err := io.ReadFull(r, buf)
	if err == io.ErrUnexpectedEOF {
		err = io.EOF
	}
	return n, err
}
