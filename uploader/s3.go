package uploader

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// S3Store keeps objects in an S3 bucket under a key prefix.
type S3Store struct {
	client      *s3.Client
	bucket      string
	prefix      string // "" or ending in "/"
	partSize    int64  // configured; 0 for automatic
	concurrency int
	bufferBytes int64         // part data held in memory per Put; 0 for DefaultBufferBytes
	spoolDir    string        // where parts beyond it go; "" for the system's temp dir
	idle        time.Duration // see Options.IdleTimeout
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

// Create is Put for a small object whose key must not exist yet: a
// conditional PutObject (If-None-Match: *), refused with ErrExists when
// another writer got there first. A server that ignores the condition
// overwrites; callers read the object back.
func (s *S3Store) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	k, err := s.objectKey(key)
	if err != nil {
		return fmt.Errorf("create %s: %w", key, err)
	}
	b, err := io.ReadAll(io.LimitReader(r, maxSeekablePut+1))
	if err != nil {
		return fmt.Errorf("create %s: read data: %w", key, err)
	}
	if len(b) > maxSeekablePut {
		return fmt.Errorf("create %s: larger than %d MiB", key, maxSeekablePut/MiB)
	}
	_, err = s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &s.bucket, Key: &k, Body: bytes.NewReader(b), ContentLength: aws.Int64(int64(len(b))),
		IfNoneMatch: aws.String("*"),
	})
	var re *awshttp.ResponseError
	if errors.As(err, &re) && (re.HTTPStatusCode() == http.StatusPreconditionFailed || re.HTTPStatusCode() == http.StatusConflict) {
		return fmt.Errorf("create %s: %w", key, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", key, err)
	}
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

// Get's reader resumes a body that stalls or breaks (see resumingBody).
func (s *S3Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	k, err := s.objectKey(key)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &k})
	if err != nil {
		if isTimeout(err) && ctx.Err() == nil {
			return nil, s.stalled(key, "no answer", maxAttempts, err)
		}
		return nil, fmt.Errorf("get %s: %w", key, s.notFound(err))
	}
	return s.newResumingBody(ctx, key, k, out, 0, false), nil
}

func (s *S3Store) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	k, err := s.objectKey(key)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if off < 0 || length <= 0 {
		return nil, fmt.Errorf("get %s: invalid range at %d of %d bytes", key, off, length)
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: &s.bucket, Key: &k, Range: aws.String(fmt.Sprintf("bytes=%d-%d", off, off+length-1)),
	})
	if err != nil {
		if isTimeout(err) && ctx.Err() == nil {
			return nil, s.stalled(key, "no answer", maxAttempts, err)
		}
		return nil, fmt.Errorf("get %s at %d: %w", key, off, s.notFound(err))
	}
	if !strings.HasPrefix(aws.ToString(out.ContentRange), fmt.Sprintf("bytes %d-", off)) {
		out.Body.Close()
		return nil, fmt.Errorf("get %s at %d: the server ignored the range (answered %q)", key, off, aws.ToString(out.ContentRange))
	}
	return s.newResumingBody(ctx, key, k, out, off, true), nil
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
