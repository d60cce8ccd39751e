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
	"strings"
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
	bufferBytes int64         // part data held in memory per Put; 0 for DefaultBufferBytes
	spoolDir    string        // where parts beyond it go; "" for the system's temp dir
	idle        time.Duration // see Options.IdleTimeout
	log         *slog.Logger
	where       string       // endpoint, for messages
	retention   Retention    // put on every object written; see WithRetention
	state       *bucketState // shared with the views WithRetention makes
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
// overwrites; callers read the object back. An object under retention
// where the bucket is not versioned also gives ErrExists (versitygw checks
// the lock before the condition).
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
	err = s.putObject(ctx, k, bytes.NewReader(b), int64(len(b)), true)
	var re *awshttp.ResponseError
	if errors.As(err, &re) && (re.HTTPStatusCode() == http.StatusPreconditionFailed || re.HTTPStatusCode() == http.StatusConflict) || isLockRefusal(err) {
		return fmt.Errorf("create %s: %w", key, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", key, s.writeError(key, err))
	}
	return nil
}

// putObject sends body, n bytes, to k in one request, with the store's
// retention; create adds If-None-Match: *.
func (s *S3Store) putObject(ctx context.Context, k string, body io.ReadSeeker, n int64, create bool) error {
	in := &s3.PutObjectInput{
		Bucket:        &s.bucket,
		Key:           &k,
		Body:          body, // seekable: the SDK can retry
		ContentLength: aws.Int64(n),
	}
	if create {
		in.IfNoneMatch = aws.String("*")
	}
	in.ObjectLockMode, in.ObjectLockRetainUntilDate = s.lockParams()
	return s.withMD5(body, n, func(sum *string) error {
		in.ContentMD5 = sum
		_, err := s.client.PutObject(ctx, in)
		return err
	})
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
	return ObjectInfo{
		Key: key, Size: aws.ToInt64(out.ContentLength), ModTime: aws.ToTime(out.LastModified),
		RetainUntil: aws.ToTime(out.ObjectLockRetainUntilDate),
		LegalHold:   out.ObjectLockLegalHoldStatus == types.ObjectLockLegalHoldStatusOn,
	}, nil
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

// Delete removes key, or in a versioned bucket (every bucket with Object
// Lock on AWS and MinIO) hides it behind a delete marker: the data stays
// until the bucket's lifecycle rules expire noncurrent versions. In a
// bucket with Object Lock it first reads the object's retention and leaves
// an object that is still locked alone, with an error wrapping ErrLocked
// (a *LockedError that says until when). On AWS that reading needs
// s3:GetObjectRetention and s3:GetObjectLegalHold; without them a locked
// object is hidden like any other, and its data kept.
func (s *S3Store) Delete(ctx context.Context, key string) error {
	k, err := s.objectKey(key)
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	enabled, known, err := s.objectLock(ctx)
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	var head *s3.HeadObjectOutput
	if enabled || !known {
		head, err = s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &k})
		var re *awshttp.ResponseError
		switch {
		case err == nil:
			if le := lockedBy(key, head, time.Now()); le != nil {
				return fmt.Errorf("delete %s: %w", key, le)
			}
		case errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound && !isNoSuchBucket(err):
			// Gone, or hidden already: a delete would only stack markers.
			return nil
		case errors.As(err, &re) && re.HTTPStatusCode() == http.StatusForbidden:
			// No right to read it; the delete will say whether it is locked.
		default:
			return fmt.Errorf("delete %s: read its retention: %w", key, s.notFound(err))
		}
	}
	if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &k}); err != nil {
		var re *awshttp.ResponseError
		if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound && !isNoSuchBucket(err) {
			return nil
		}
		if isLockRefusal(err) {
			return fmt.Errorf("delete %s: %w", key, s.refusedLock(ctx, key, k, head))
		}
		// Denied: credentials without s3:DeleteObject (an append-only
		// writer).
		return fmt.Errorf("delete %s: %w", key, denied(err))
	}
	return nil
}

// refusedLock describes an object whose removal the server refused for its
// lock, from head or, failing that, a fresh HeadObject.
func (s *S3Store) refusedLock(ctx context.Context, key, k string, head *s3.HeadObjectOutput) *LockedError {
	if head == nil {
		head, _ = s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &k})
	}
	if head != nil {
		// The server's clock, not ours, decides: keep a date just past.
		if le := lockedBy(key, head, time.Time{}); le != nil {
			return le
		}
	}
	return &LockedError{Key: key}
}

// isDenied reports a request refused for want of permission.
func isDenied(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "AccessDenied" {
		return true
	}
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusForbidden
}

// denied makes err wrap ErrAccessDenied when the server refused the
// request for want of permission.
func denied(err error) error {
	if isDenied(err) {
		return fmt.Errorf("%w: %w", ErrAccessDenied, err)
	}
	return err
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
// MinIO lists only the uploads of the exact key given as prefix, or of the
// whole bucket: when the prefix finds none, the whole bucket's are listed
// and those outside prefix left out.
func (s *S3Store) IncompleteUploads(ctx context.Context, prefix string) ([]IncompleteUpload, error) {
	full := s.prefix + prefix
	res, err := s.listUploads(ctx, full, full)
	if err == nil && len(res) == 0 && full != "" {
		res, err = s.listUploads(ctx, "", full)
	}
	if err != nil {
		return nil, fmt.Errorf("list multipart uploads under %s: %w", prefix, denied(err))
	}
	return res, nil
}

// listUploads lists the uploads the server finds under asked and keeps
// those under want (a full key prefix).
func (s *S3Store) listUploads(ctx context.Context, asked, want string) ([]IncompleteUpload, error) {
	in := &s3.ListMultipartUploadsInput{Bucket: &s.bucket, Prefix: &asked}
	var res []IncompleteUpload
	for {
		out, err := s.client.ListMultipartUploads(ctx, in)
		if err != nil {
			return nil, err
		}
		for _, u := range out.Uploads {
			k := aws.ToString(u.Key)
			if !strings.HasPrefix(k, want) {
				continue
			}
			res = append(res, IncompleteUpload{Key: k[len(s.prefix):], UploadID: aws.ToString(u.UploadId), Initiated: aws.ToTime(u.Initiated)})
		}
		if !aws.ToBool(out.IsTruncated) {
			return res, nil
		}
		if aws.ToString(out.NextKeyMarker) == "" && aws.ToString(out.NextUploadIdMarker) == "" {
			return nil, errors.New("the server says the listing goes on but gives no marker to continue from")
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
}

// AbortStaleUploads aborts the incomplete uploads under prefix that were
// started more than olderThan ago (by the server's clock against this
// machine's), so that the parts of crashed writers stop costing storage.
// olderThan must exceed the longest upload that may still be running: a
// running Put whose upload is aborted fails. It returns how many it
// aborted; an error for one upload does not stop the others, and the first
// is returned.
func (s *S3Store) AbortStaleUploads(ctx context.Context, prefix string, olderThan time.Duration) (int, error) {
	if olderThan < 0 {
		return 0, fmt.Errorf("abort stale uploads under %s: negative age %s", prefix, olderThan)
	}
	ups, err := s.IncompleteUploads(ctx, prefix)
	if err != nil {
		return 0, err
	}
	cutoff := time.Now().Add(-olderThan)
	n := 0
	var first error
	for _, u := range ups {
		if !u.Initiated.Before(cutoff) {
			continue
		}
		if err := s.AbortUpload(ctx, u); err != nil {
			if ctx.Err() != nil {
				return n, err
			}
			first = cmp.Or(first, err)
			continue
		}
		s.log.Debug("stale multipart upload aborted", "key", u.Key, "upload_id", u.UploadID, "initiated", u.Initiated)
		n++
	}
	return n, first
}

// AbortUpload removes an incomplete upload and its parts. An upload that is
// already gone is not an error.
func (s *S3Store) AbortUpload(ctx context.Context, u IncompleteUpload) error {
	k := s.prefix + u.Key
	_, err := s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: &k, UploadId: &u.UploadID})
	var ae smithy.APIError
	if err != nil && !(errors.As(err, &ae) && ae.ErrorCode() == "NoSuchUpload") {
		return fmt.Errorf("abort upload %s of %s: %w", u.UploadID, u.Key, denied(err))
	}
	return nil
}
