package uploader

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// Object Lock: a store with a Retention puts every object it writes under
// S3 Object Lock retention, so that nobody (COMPLIANCE), or nobody without
// the right to bypass it (GOVERNANCE), can delete or overwrite it before
// the date. The bucket must have been created with Object Lock enabled.
//
// Object Lock makes a bucket versioned on AWS, MinIO and versitygw with a
// versioning directory: there, deleting an object whose retention has
// expired only hides it behind a delete marker, and its data stays until a
// lifecycle rule expires noncurrent versions. Delete checks an object's
// retention first (HeadObject) and refuses, with ErrLocked, to hide one
// that is still locked.

// RetentionMode is an S3 Object Lock retention mode.
type RetentionMode string

const (
	// RetentionCompliance: nobody can remove the object before its date,
	// the account's root included.
	RetentionCompliance RetentionMode = "COMPLIANCE"
	// RetentionGovernance: only users with s3:BypassGovernanceRetention
	// can, by asking to bypass it.
	RetentionGovernance RetentionMode = "GOVERNANCE"
)

// maxRetentionDays is S3's limit (100 years).
const maxRetentionDays = 36500

// Retention is the Object Lock retention a store puts on every object it
// writes. The zero value writes without retention.
type Retention struct {
	// Days from the start of each write (a multipart upload's start);
	// 0 for none.
	Days int
	// Mode is RetentionCompliance when empty.
	Mode RetentionMode
}

func (r Retention) enabled() bool { return r.Days > 0 }

// normalize checks r and fills in the default mode.
func (r Retention) normalize() (Retention, error) {
	if r.Days == 0 {
		return Retention{}, nil
	}
	if r.Days < 0 || r.Days > maxRetentionDays {
		return Retention{}, fmt.Errorf("retention of %d days: want 1 to %d", r.Days, maxRetentionDays)
	}
	switch m := RetentionMode(strings.ToUpper(string(r.Mode))); m {
	case "":
		r.Mode = RetentionCompliance
	case RetentionCompliance, RetentionGovernance:
		r.Mode = m
	default:
		return Retention{}, fmt.Errorf("retention mode %q: want %s or %s", r.Mode, RetentionCompliance, RetentionGovernance)
	}
	return r, nil
}

// until is the retain-until date of an object written now: whole seconds,
// rounded up so that the object is kept at least Days.
func (r Retention) until(now time.Time) time.Time {
	t := now.UTC().Add(time.Duration(r.Days) * 24 * time.Hour)
	if tr := t.Truncate(time.Second); tr.Before(t) {
		t = tr.Add(time.Second)
	}
	return t
}

// ErrLocked is wrapped by Delete (and Put) errors for an object under
// Object Lock retention or legal hold: it cannot be removed or overwritten
// yet. errors.As with a *LockedError gives the date.
var ErrLocked = errors.New("object is under Object Lock retention")

// ErrNoObjectLock is wrapped by errors for a store asked for retention that
// cannot keep it: a bucket without Object Lock, or a file:// repository.
var ErrNoObjectLock = errors.New("store has no Object Lock")

// LockedError describes an object that Object Lock keeps. It wraps
// ErrLocked.
type LockedError struct {
	Key       string    // relative to the repository root
	Until     time.Time // zero when unknown or when only a legal hold keeps it
	Mode      RetentionMode
	LegalHold bool
}

func (e *LockedError) Error() string {
	var why []string
	if !e.Until.IsZero() {
		mode := ""
		if e.Mode != "" {
			mode = string(e.Mode) + " "
		}
		why = append(why, fmt.Sprintf("under %sretention until %s", mode, e.Until.UTC().Format(time.RFC3339)))
	}
	if e.LegalHold {
		why = append(why, "under legal hold")
	}
	if len(why) == 0 {
		why = append(why, "under Object Lock retention or legal hold (the server refused the change)")
	}
	return e.Key + " is " + strings.Join(why, " and ")
}

func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// bucketState is what an S3Store learns about its bucket, shared by the
// views WithRetention makes.
type bucketState struct {
	mu   sync.Mutex
	lock lockState
	// md5: the server wants Content-MD5 on uploads (AWS does in a bucket
	// with Object Lock, retention or not).
	md5 atomic.Bool
}

type lockState int

const (
	lockUnknown lockState = iota
	lockEnabled
	lockAbsent
	lockMaybe // the server would not say
)

// objectLock tells whether the bucket has Object Lock enabled, asking the
// server once. known is false when the server would not say (no right to
// read the bucket's lock configuration): callers then assume it may.
func (s *S3Store) objectLock(ctx context.Context) (enabled, known bool, err error) {
	s.state.mu.Lock()
	defer s.state.mu.Unlock()
	switch s.state.lock {
	case lockEnabled:
		return true, true, nil
	case lockAbsent:
		return false, true, nil
	case lockMaybe:
		return false, false, nil
	}
	out, err := s.client.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: &s.bucket})
	if err != nil {
		if ctx.Err() != nil {
			return false, false, ctx.Err()
		}
		var ae smithy.APIError
		var re *awshttp.ResponseError
		switch {
		case isNoSuchBucket(err):
			return false, false, fmt.Errorf("bucket %s does not exist at %s: %w", s.bucket, s.where, err)
		case errors.As(err, &ae) && (ae.ErrorCode() == "ObjectLockConfigurationNotFoundError" || ae.ErrorCode() == "NotImplemented"),
			errors.As(err, &re) && (re.HTTPStatusCode() == http.StatusNotFound || re.HTTPStatusCode() == http.StatusNotImplemented):
			// Not configured, or a server without Object Lock at all.
			s.state.lock = lockAbsent
			return false, true, nil
		}
		// Typically no s3:GetBucketObjectLockConfiguration right. Deletes
		// then read each object's retention first, which costs a request.
		s.log.Debug("cannot read the bucket's Object Lock configuration; assuming it may have one", "err", err)
		s.state.lock = lockMaybe
		return false, false, nil
	}
	if c := out.ObjectLockConfiguration; c != nil && c.ObjectLockEnabled == types.ObjectLockEnabledEnabled {
		s.state.lock = lockEnabled
		return true, true, nil
	}
	s.state.lock = lockAbsent
	return false, true, nil
}

// checkRetention fails, with one line that says what to do, when the store
// is to write with retention into a bucket known to lack Object Lock.
func (s *S3Store) checkRetention(ctx context.Context) error {
	if !s.retention.enabled() {
		return nil
	}
	enabled, known, err := s.objectLock(ctx)
	if err != nil {
		return fmt.Errorf("check Object Lock of bucket %s at %s: %w", s.bucket, s.where, err)
	}
	if known && !enabled {
		return s.noObjectLock(nil)
	}
	return nil
}

func (s *S3Store) noObjectLock(cause error) error {
	return &openError{kind: ErrNoObjectLock, cause: cause, msg: fmt.Sprintf(
		"bucket %s at %s does not have Object Lock enabled, which retention needs: create the bucket with Object Lock (aws s3api create-bucket --object-lock-enabled-for-bucket, mc mb --with-lock)", s.bucket, s.where)}
}

// WithRetention returns a view of st that writes with retention r (the
// zero Retention: without any) and otherwise shares st: connection,
// settings, what it learned of the bucket. Data that must outlive an
// attacker goes through a view with retention; objects that kbak rewrites
// or removes in its normal course (repository locks) through one without.
// A file:// store, or a bucket known to lack Object Lock, refuses
// retention with an error wrapping ErrNoObjectLock.
func WithRetention(ctx context.Context, st Store, r Retention) (Store, error) {
	r, err := r.normalize()
	if err != nil {
		return nil, err
	}
	switch st := st.(type) {
	case *S3Store:
		v := *st
		v.retention = r
		if err := v.checkRetention(ctx); err != nil {
			return nil, err
		}
		return &v, nil
	case *FileStore:
		if r.enabled() {
			return nil, fileNoObjectLock(st.dir)
		}
		return st, nil
	default:
		if r.enabled() {
			return nil, fmt.Errorf("%T cannot keep objects under retention: %w", st, ErrNoObjectLock)
		}
		return st, nil
	}
}

func fileNoObjectLock(dir string) error {
	return &openError{kind: ErrNoObjectLock, msg: fmt.Sprintf(
		"file://%s cannot keep objects under retention (Object Lock): use an s3:// bucket created with Object Lock, or write without retention", dir)}
}

// Retention is what the store puts on the objects it writes.
func (s *S3Store) Retention() Retention { return s.retention }

// lockParams are the Object Lock fields of a write starting now.
func (s *S3Store) lockParams() (types.ObjectLockMode, *time.Time) {
	if !s.retention.enabled() {
		return "", nil
	}
	return types.ObjectLockMode(s.retention.Mode), aws.Time(s.retention.until(time.Now()))
}

// lockedBy reads the Object Lock fields of a HeadObject answer; nil when
// nothing keeps the object now.
func lockedBy(key string, h *s3.HeadObjectOutput, now time.Time) *LockedError {
	e := &LockedError{Key: key, Mode: RetentionMode(h.ObjectLockMode), LegalHold: h.ObjectLockLegalHoldStatus == types.ObjectLockLegalHoldStatusOn}
	if t := aws.ToTime(h.ObjectLockRetainUntilDate); t.After(now) {
		e.Until = t
	}
	if e.Until.IsZero() && !e.LegalHold {
		return nil
	}
	return e
}

// isLockRefusal reports the server's refusal to remove or overwrite an
// object that Object Lock keeps: AccessDenied "... protected by object
// lock" (AWS, versitygw) or InvalidRequest "Object is WORM protected"
// (MinIO).
func isLockRefusal(err error) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	msg := strings.ToLower(ae.ErrorMessage())
	switch ae.ErrorCode() {
	case "AccessDenied":
		return strings.Contains(msg, "object lock")
	case "InvalidRequest":
		return strings.Contains(msg, "worm")
	}
	return false
}

// isMissingLockConfig reports a write with retention refused because the
// bucket has no Object Lock ("Bucket is missing Object Lock Configuration").
func isMissingLockConfig(err error) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "InvalidRequest" {
		return false
	}
	msg := strings.ReplaceAll(strings.ToLower(ae.ErrorMessage()), " ", "")
	return strings.Contains(msg, "missingobjectlockconfiguration")
}

// isMD5Required reports an upload refused for want of Content-MD5 (AWS in
// a bucket with Object Lock).
func isMD5Required(err error) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	return ae.ErrorCode() == "MissingContentMD5" ||
		(ae.ErrorCode() == "InvalidRequest" && strings.Contains(ae.ErrorMessage(), "Content-MD5"))
}

// writeError classifies the failure of a write of key.
func (s *S3Store) writeError(key string, err error) error {
	switch {
	case s.retention.enabled() && isMissingLockConfig(err):
		s.state.mu.Lock()
		s.state.lock = lockAbsent
		s.state.mu.Unlock()
		return s.noObjectLock(err)
	case isLockRefusal(err):
		// Overwriting a locked object where the bucket is not versioned
		// (versitygw without a versioning directory).
		return fmt.Errorf("%w: %w", &LockedError{Key: key}, err)
	}
	return err
}

// withMD5 runs send with the Content-MD5 of the n bytes of body from its
// current offset when the store writes with retention (AWS requires it) or
// the server has asked for it, and once more with it when the server asks
// now.
func (s *S3Store) withMD5(body io.ReadSeeker, n int64, send func(md5 *string) error) error {
	start, err := body.Seek(0, io.SeekCurrent)
	if err != nil {
		return err
	}
	var sum *string
	if s.retention.enabled() || s.state.md5.Load() {
		if sum, err = contentMD5(body, start, n); err != nil {
			return err
		}
	}
	err = send(sum)
	if err == nil || sum != nil || !isMD5Required(err) {
		return err
	}
	if !s.state.md5.Swap(true) {
		s.log.Info("the server wants Content-MD5 on uploads (a bucket with Object Lock); sending it from now on")
	}
	if sum, err = contentMD5(body, start, n); err != nil {
		return err
	}
	return send(sum)
}

// contentMD5 hashes n bytes of body from start and leaves body at start.
func contentMD5(body io.ReadSeeker, start, n int64) (*string, error) {
	if _, err := body.Seek(start, io.SeekStart); err != nil {
		return nil, err
	}
	h := md5.New()
	if _, err := io.CopyN(h, body, n); err != nil {
		return nil, fmt.Errorf("hash data for Content-MD5: %w", err)
	}
	if _, err := body.Seek(start, io.SeekStart); err != nil {
		return nil, err
	}
	return aws.String(base64.StdEncoding.EncodeToString(h.Sum(nil))), nil
}
