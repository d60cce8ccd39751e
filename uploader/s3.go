package uploader

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// S3Store keeps objects in an S3 bucket under a key prefix.
type S3Store struct {
	client      *s3.Client
	bucket      string
	prefix      string // "" or ending in "/"
	partSize    int64  // configured; 0 for automatic
	concurrency int
	log         *slog.Logger
	where       string // endpoint, for messages
}

var _ Store = (*S3Store)(nil)

// abortTimeout bounds the clean-up of a failed multipart upload, which runs
// even when the Put's context is cancelled.
const abortTimeout = time.Minute

func (s *S3Store) objectKey(key string) (string, error) {
	if err := validateKey(key); err != nil {
		return "", fmt.Errorf("key %q: %w", key, err)
	}
	return s.prefix + key, nil
}

// Put sends objects smaller than one part with a single PutObject and
// larger ones as a multipart upload that streams: parts are read into at
// most Concurrency+1 buffers while up to Concurrency parts are in flight.
func (s *S3Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	k, err := s.objectKey(key)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	ps := PartSize(size, s.partSize)
	r = ctxReader{ctx, r}

	// Read the first part. Small objects (manifests, results) are common:
	// start with a buffer of the expected size plus one byte (to notice a
	// larger stream), or 1 MiB when the size is unknown, and grow to a whole
	// part only when the data goes on.
	initial := ps
	switch {
	case size >= 0 && size < ps:
		initial = size + 1
	case size < 0:
		initial = min(ps, MiB)
	}
	first := make([]byte, initial)
	n, err := readFull(r, first)
	if err == nil && int64(len(first)) < ps {
		grown := make([]byte, ps)
		copy(grown, first[:n])
		first = grown
		var m int
		m, err = readFull(r, first[n:])
		n += m
	}
	switch {
	case err == io.EOF:
		return s.putSingle(ctx, key, k, first[:n])
	case err != nil:
		return fmt.Errorf("put %s: read data: %w", key, err)
	}
	return s.putMultipart(ctx, key, k, r, ps, first)
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

func (s *S3Store) putSingle(ctx context.Context, key, k string, data []byte) error {
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        &s.bucket,
		Key:           &k,
		Body:          bytes.NewReader(data), // seekable: the SDK can retry
		ContentLength: aws.Int64(int64(len(data))),
	})
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// putMultipart uploads first and the rest of r in parts of ps bytes. Parts
// are completed only when all of them succeeded; on any error or on
// cancellation the upload is aborted so that nothing remains.
func (s *S3Store) putMultipart(ctx context.Context, key, k string, r io.Reader, ps int64, first []byte) (err error) {
	cr, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &s.bucket, Key: &k})
	if err != nil {
		return fmt.Errorf("put %s: start multipart upload: %w", key, err)
	}
	id := aws.ToString(cr.UploadId)
	log := s.log.With("key", k, "upload_id", id)
	log.Debug("multipart upload started", "part_size", ps)
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
		inFlight  = make(chan struct{}, s.concurrency)
		free      = make(chan []byte, s.concurrency+1)
		allocated = 1 // first
		total     int64
	)
	// getBuf hands out at most concurrency+1 buffers: one being filled and
	// the others uploading.
	getBuf := func() ([]byte, error) {
		select {
		case b := <-free:
			return b, nil
		default:
		}
		if allocated < s.concurrency+1 {
			allocated++
			return make([]byte, ps), nil
		}
		select {
		case b := <-free:
			return b, nil
		case <-pctx.Done():
			return nil, context.Cause(pctx)
		}
	}

	buf, n, readErr := first, len(first), error(nil)
	for part := int32(1); ; part++ {
		if part > MaxParts {
			cancel(fmt.Errorf("object is larger than %d parts of %d MiB: pass its expected size so that a larger part size is chosen", MaxParts, ps/MiB))
			break
		}
		select {
		case inFlight <- struct{}{}:
		case <-pctx.Done():
		}
		if pctx.Err() != nil {
			break
		}
		total += int64(n)
		wg.Add(1)
		go func(part int32, data []byte) {
			defer wg.Done()
			defer func() { <-inFlight }()
			out, err := s.client.UploadPart(pctx, &s3.UploadPartInput{
				Bucket:        &s.bucket,
				Key:           &k,
				UploadId:      &id,
				PartNumber:    aws.Int32(part),
				Body:          bytes.NewReader(data), // seekable: the SDK can retry
				ContentLength: aws.Int64(int64(len(data))),
			})
			select {
			case free <- data[:cap(data)]:
			default: // never full while getBuf keeps count; never block on it
			}
			if err != nil {
				cancel(fmt.Errorf("upload part %d: %w", part, err))
				return
			}
			mu.Lock()
			completed = append(completed, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(part)})
			mu.Unlock()
		}(part, buf[:n])

		if readErr == io.EOF {
			break
		}
		if buf, err = getBuf(); err != nil {
			break
		}
		n, readErr = readFull(r, buf)
		if readErr != nil && readErr != io.EOF {
			cancel(fmt.Errorf("read data: %w", readErr))
			break
		}
		if n == 0 && readErr == io.EOF {
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
		return fmt.Errorf("put %s: complete multipart upload of %d parts: %w", key, len(completed), err)
	}
	log.Debug("multipart upload completed", "parts", len(completed), "bytes", total)
	return nil
}

// abort runs on a context of its own: a cancelled Put must still remove its
// parts, which would otherwise be stored (and billed) invisibly.
func (s *S3Store) abort(ctx context.Context, log *slog.Logger, k, id string) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	_, err := s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: &k, UploadId: &id})
	if err != nil {
		log.Warn("abort multipart upload; its parts stay in the bucket until removed", "err", err)
		return
	}
	log.Debug("multipart upload aborted")
}

func (s *S3Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	k, err := s.objectKey(key)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &k})
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, s.notFound(err))
	}
	return out.Body, nil
}

func (s *S3Store) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	k, err := s.objectKey(key)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("stat %s: %w", key, err)
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &k})
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("stat %s: %w", key, s.notFound(err))
	}
	return ObjectInfo{Key: key, Size: aws.ToInt64(out.ContentLength), ModTime: aws.ToTime(out.LastModified)}, nil
}

// notFound makes a missing key wrap ErrNotFound; a missing bucket does not,
// since that is a different problem.
func (s *S3Store) notFound(err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "NoSuchBucket" {
		return fmt.Errorf("bucket %s does not exist at %s: %w", s.bucket, s.where, err)
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

func (s *S3Store) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	full := s.prefix + prefix
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &full})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list %s: %w", prefix, err)
		}
		for _, o := range page.Contents {
			k := aws.ToString(o.Key)
			if len(k) < len(s.prefix) {
				continue
			}
			err := fn(ObjectInfo{Key: k[len(s.prefix):], Size: aws.ToInt64(o.Size), ModTime: aws.ToTime(o.LastModified)})
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *S3Store) Delete(ctx context.Context, key string) error {
	k, err := s.objectKey(key)
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &k}); err != nil {
		var re *awshttp.ResponseError
		if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound && !isNoSuchBucket(err) {
			return nil
		}
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

func isNoSuchBucket(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "NoSuchBucket"
}

// IncompleteUpload is a multipart upload that was started and neither
// completed nor aborted.
type IncompleteUpload struct {
	Key       string // relative to the repository root
	UploadID  string
	Initiated time.Time
}

// IncompleteUploads lists the multipart uploads in progress (or left behind
// by a crashed process) under prefix, so that they can be found and aborted.
// MinIO lists only the uploads of the exact key given as prefix.
func (s *S3Store) IncompleteUploads(ctx context.Context, prefix string) ([]IncompleteUpload, error) {
	full := s.prefix + prefix
	in := &s3.ListMultipartUploadsInput{Bucket: &s.bucket, Prefix: &full}
	var res []IncompleteUpload
	for {
		out, err := s.client.ListMultipartUploads(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("list multipart uploads under %s: %w", prefix, err)
		}
		for _, u := range out.Uploads {
			k := aws.ToString(u.Key)
			if len(k) >= len(s.prefix) {
				k = k[len(s.prefix):]
			}
			res = append(res, IncompleteUpload{Key: k, UploadID: aws.ToString(u.UploadId), Initiated: aws.ToTime(u.Initiated)})
		}
		if !aws.ToBool(out.IsTruncated) {
			return res, nil
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
}

// AbortUpload removes an incomplete upload and its parts. An upload that is
// already gone is not an error.
func (s *S3Store) AbortUpload(ctx context.Context, u IncompleteUpload) error {
	k := s.prefix + u.Key
	_, err := s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: &k, UploadId: &u.UploadID})
	var ae smithy.APIError
	if err != nil && !(errors.As(err, &ae) && ae.ErrorCode() == "NoSuchUpload") {
		return fmt.Errorf("abort upload %s of %s: %w", u.UploadID, u.Key, err)
	}
	return nil
}
