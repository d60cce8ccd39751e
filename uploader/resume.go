package uploader

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

const (
	// getAttempts bounds the reads of one body that fail in a row, the
	// first included: each costs up to the idle timeout, and the SDK has
	// already retried the requests themselves.
	getAttempts = 3
	// resumeBackoff, times the attempt, is the pause before resuming.
	resumeBackoff = time.Second
)

// resumingBody is the body of a Get that survives a stall or a broken
// connection: the SDK retries requests, never a body it has handed over, and
// a restore reads one object for hours. It asks for the rest of the object
// from the offset already delivered, only if the object still has the ETag
// of the first response, so that parts of two versions are never stitched.
type resumingBody struct {
	ctx    context.Context
	s      *S3Store
	key, k string // as given, and with the store's prefix
	etag   string
	size   int64 // offset just past the last byte asked for; -1 when the server did not say
	ranged bool  // a GetRange: resume within size, not to the object's end
	body   io.ReadCloser
	off    int64 // offset of the next byte to deliver
	fails  int   // failed reads since data last arrived
	err    error // final
}

// newResumingBody wraps the body of a GetObject answer that starts at byte
// start; ranged says it was asked for a range, not the rest of the object.
func (s *S3Store) newResumingBody(ctx context.Context, key, k string, out *s3.GetObjectOutput, start int64, ranged bool) *resumingBody {
	size := int64(-1)
	if out.ContentLength != nil {
		size = start + *out.ContentLength
	}
	return &resumingBody{ctx: ctx, s: s, key: key, k: k, etag: aws.ToString(out.ETag), size: size, ranged: ranged, body: out.Body, off: start}
}

func (r *resumingBody) Read(p []byte) (int, error) {
	for r.err == nil {
		n, err := r.body.Read(p)
		r.off += int64(n)
		if n > 0 {
			r.fails = 0
		}
		if err == nil || err == io.EOF || r.ctx.Err() != nil {
			return n, err
		}
		r.fails++
		if r.err = r.resume(err); r.err != nil || n > 0 {
			return n, r.err
		}
	}
	return 0, r.err
}

func (r *resumingBody) Close() error {
	return r.body.Close()
}

// resume replaces the body that failed with cause by one that starts at
// r.off, or says why it cannot.
func (r *resumingBody) resume(cause error) error {
	r.body.Close()
	if r.off == r.size {
		// Everything arrived; only the end of the stream was lost.
		r.body = io.NopCloser(strings.NewReader(""))
		return nil
	}
	if r.fails >= getAttempts && isTimeout(cause) {
		return r.s.stalled(r.key, "no data", r.fails, cause)
	}
	if r.fails >= getAttempts {
		return fmt.Errorf("get %s from %s: read at byte %d, %d attempts: %w", r.key, r.s.where, r.off, r.fails, cause)
	}
	if r.etag == "" {
		return fmt.Errorf("get %s from %s: read at byte %d: %w (no ETag to resume safely)", r.key, r.s.where, r.off, cause)
	}
	r.s.log.Warn("resume object read", "key", r.k, "bytes", r.off, "attempt", r.fails+1, "err", cause)
	t := time.NewTimer(time.Duration(r.fails) * resumeBackoff)
	defer t.Stop()
	select {
	case <-r.ctx.Done():
		return fmt.Errorf("get %s: %w", r.key, r.ctx.Err())
	case <-t.C:
	}
	out, err := r.s.client.GetObject(r.ctx, &s3.GetObjectInput{
		Bucket:  &r.s.bucket,
		Key:     &r.k,
		Range:   aws.String(r.rangeHeader()),
		IfMatch: aws.String(r.etag),
	})
	var re *awshttp.ResponseError
	switch {
	case err != nil && r.ctx.Err() != nil:
		return fmt.Errorf("get %s: %w", r.key, r.ctx.Err())
	case err != nil && isTimeout(err):
		return r.s.stalled(r.key, "no answer", r.fails+1, err)
	case errors.As(err, &re) && re.HTTPStatusCode() == http.StatusPreconditionFailed:
		return fmt.Errorf("get %s from %s: the object was replaced while being read; retry: %w", r.key, r.s.where, err)
	case err != nil:
		return fmt.Errorf("get %s from %s: resume at byte %d: %w", r.key, r.s.where, r.off, r.s.notFound(err))
	}
	// A server that ignores Range or If-Match must not have its answer
	// appended.
	if !strings.HasPrefix(aws.ToString(out.ContentRange), fmt.Sprintf("bytes %d-", r.off)) || aws.ToString(out.ETag) != r.etag {
		out.Body.Close()
		return fmt.Errorf("get %s from %s: resume at byte %d: the server ignored Range or If-Match (answered range %q of ETag %s)",
			r.key, r.s.where, r.off, aws.ToString(out.ContentRange), aws.ToString(out.ETag))
	}
	r.body = out.Body
	return nil
}

// stalled is the error of a Get given up after attempts that timed out;
// what says what was missing ("no answer", "no data"). One line: the
// cause, nested in the SDK's wrappers, is only wrapped.
func (s *S3Store) stalled(key, what string, attempts int, cause error) error {
	return &openError{kind: ErrStalled, cause: cause, msg: fmt.Sprintf(
		"get %s from %s: %s for %s, %d attempts: the S3 server stalled; check its health and retry", key, s.where, what, s.idle, attempts)}
}

// isTimeout reports a timeout of the network (a silent connection, response
// headers that never came), as opposed to a refusal.
func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

func (r *resumingBody) rangeHeader() string {
	if r.ranged && r.size > r.off {
		return fmt.Sprintf("bytes=%d-%d", r.off, r.size-1)
	}
	return fmt.Sprintf("bytes=%d-", r.off)
}
