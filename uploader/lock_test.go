package uploader_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/kbak/kbak/uploader"
	"github.com/kbak/kbak/uploader/uploadertest"
)

const lockBucket = "kbak-lock"

// The servers Object Lock is tested on: versitygw keeps one version of an
// object, versitygw with a versioning directory and MinIO version every
// bucket with Object Lock, as AWS does.
var lockServers = []func(testing.TB) *uploadertest.Server{
	uploadertest.StartVersityGW, uploadertest.StartVersityGWVersioned, uploadertest.StartMinIO,
}

// Every object a store with retention writes (one request, multipart, a
// Create) is kept until the date: Delete leaves it with ErrLocked and says
// until when, Stat tells the date, and a second Create is ErrExists.
// Objects written through a view without retention are deleted as usual.
func TestS3RetentionKeepsObjects(t *testing.T) {
	for _, start := range lockServers {
		srv := start(t)
		t.Run(srv.Name, func(t *testing.T) {
			ctx := t.Context()
			srv.CreateLockBucket(t, lockBucket)
			opts := srv.Options()
			opts.PartSize = uploader.MinPartSize
			opts.Retention = uploader.Retention{Days: 1}
			st, err := uploader.Open(ctx, srv.BucketURL(lockBucket, "repo"), opts)
			if err != nil {
				t.Fatal(err)
			}
			before := time.Now()
			small := uploadertest.Data(1, 1000)
			large := uploadertest.Data(2, 2*uploader.MinPartSize+3)
			if err := st.Put(ctx, "data/small", bytes.NewReader(small), int64(len(small))); err != nil {
				t.Fatalf("Put small: %v", err)
			}
			if err := st.Put(ctx, "data/large", io.LimitReader(bytes.NewReader(large), int64(len(large))), -1); err != nil {
				t.Fatalf("Put multipart: %v", err)
			}
			creator := st.(interface {
				Create(context.Context, string, io.Reader, int64) error
			})
			if err := creator.Create(ctx, "config", bytes.NewReader(small), int64(len(small))); err != nil {
				t.Fatalf("Create: %v", err)
			}
			after := time.Now()

			for _, key := range []string{"data/small", "data/large", "config"} {
				oi, err := st.Stat(ctx, key)
				if err != nil {
					t.Fatalf("Stat %s: %v", key, err)
				}
				lo, hi := before.Add(24*time.Hour-time.Second), after.Add(24*time.Hour+time.Second)
				if oi.RetainUntil.Before(lo) || oi.RetainUntil.After(hi) {
					t.Errorf("Stat %s: RetainUntil %v, want a day after the write (%v to %v)", key, oi.RetainUntil, lo, hi)
				}
				if !oi.Locked(time.Now()) {
					t.Errorf("Stat %s: Locked = false", key)
				}
				full := "repo/" + key
				h, err := srv.Client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(lockBucket), Key: &full})
				if err != nil {
					t.Fatal(err)
				}
				if h.ObjectLockMode != types.ObjectLockModeCompliance {
					t.Errorf("%s: lock mode %q, want COMPLIANCE by default", key, h.ObjectLockMode)
				}

				err = st.Delete(ctx, key)
				if !errors.Is(err, uploader.ErrLocked) {
					t.Fatalf("Delete %s under retention: err = %v, want ErrLocked", key, err)
				}
				var le *uploader.LockedError
				if !errors.As(err, &le) || !le.Until.Equal(oi.RetainUntil) || le.Key != key || le.Mode != uploader.RetentionCompliance {
					t.Errorf("Delete %s: error %#v, want a LockedError of %s until %v (COMPLIANCE)", key, le, key, oi.RetainUntil)
				}
				t.Logf("%v", err)
				if _, err := st.Stat(ctx, key); err != nil {
					t.Errorf("Stat %s after the refused Delete: %v", key, err)
				}
			}
			got := listKeys(t, st, "")
			if strings.Join(got, " ") != "config data/large data/small" {
				t.Errorf("List after the refused Deletes = %q, want every object still listed", got)
			}
			if b := getAll(t, st, "data/large"); !bytes.Equal(b, large) {
				t.Errorf("data/large: read back %d bytes that differ from the %d written", len(b), len(large))
			}
			if err := creator.Create(ctx, "config", bytes.NewReader(small), int64(len(small))); !errors.Is(err, uploader.ErrExists) {
				t.Errorf("Create of a locked key: err = %v, want ErrExists", err)
			}

			// A view with GOVERNANCE retention, and one without retention,
			// on the same bucket.
			gov, err := uploader.WithRetention(ctx, st, uploader.Retention{Days: 2, Mode: uploader.RetentionGovernance})
			if err != nil {
				t.Fatal(err)
			}
			if err := gov.Put(ctx, "gov", bytes.NewReader(small), int64(len(small))); err != nil {
				t.Fatalf("Put GOVERNANCE: %v", err)
			}
			h, err := srv.Client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(lockBucket), Key: aws.String("repo/gov")})
			if err != nil {
				t.Fatal(err)
			}
			if h.ObjectLockMode != types.ObjectLockModeGovernance || aws.ToTime(h.ObjectLockRetainUntilDate).Before(before.Add(47*time.Hour)) {
				t.Errorf("gov: mode %q until %v, want GOVERNANCE for 2 days", h.ObjectLockMode, aws.ToTime(h.ObjectLockRetainUntilDate))
			}
			if err := st.Delete(ctx, "gov"); !errors.Is(err, uploader.ErrLocked) {
				t.Errorf("Delete under GOVERNANCE retention: err = %v, want ErrLocked", err)
			}

			plain, err := uploader.WithRetention(ctx, st, uploader.Retention{})
			if err != nil {
				t.Fatal(err)
			}
			for _, size := range []int{1000, 2*uploader.MinPartSize + 1} {
				data := uploadertest.Data(3, size)
				if err := plain.Put(ctx, "locks/x", io.LimitReader(bytes.NewReader(data), int64(size)), -1); err != nil {
					t.Fatalf("Put without retention: %v", err)
				}
				oi, err := plain.Stat(ctx, "locks/x")
				if err != nil || !oi.RetainUntil.IsZero() || oi.Locked(time.Now()) {
					t.Errorf("Stat of an object written without retention = %+v, %v; want no retention", oi, err)
				}
				if err := plain.Delete(ctx, "locks/x"); err != nil {
					t.Fatalf("Delete of an object without retention: %v", err)
				}
				if _, err := plain.Stat(ctx, "locks/x"); !errors.Is(err, uploader.ErrNotFound) {
					t.Errorf("Stat after Delete: err = %v, want ErrNotFound", err)
				}
				// Deleting it again is no error (and adds nothing).
				if err := plain.Delete(ctx, "locks/x"); err != nil {
					t.Errorf("second Delete: %v", err)
				}
			}
			if r := st.(*uploader.S3Store).Retention(); r != (uploader.Retention{Days: 1, Mode: uploader.RetentionCompliance}) {
				t.Errorf("the store's retention changed with its views: %+v", r)
			}
		})
	}
}

// Delete goes by the object's own date and legal hold: an object whose
// retention ran out is deleted, one under legal hold is not.
func TestS3DeleteAfterRetentionEnds(t *testing.T) {
	for _, start := range lockServers {
		srv := start(t)
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel() // each waits for a retention to end
			ctx := t.Context()
			srv.CreateLockBucket(t, lockBucket)
			st, err := uploader.Open(ctx, srv.BucketURL(lockBucket, ""), srv.Options())
			if err != nil {
				t.Fatal(err)
			}
			body := []byte("short-lived")
			until := time.Now().Add(3 * time.Second)
			put := func(in *s3.PutObjectInput) {
				t.Helper()
				in.Bucket, in.Body, in.ContentLength = aws.String(lockBucket), bytes.NewReader(body), aws.Int64(int64(len(body)))
				sum := md5.Sum(body)
				in.ContentMD5 = aws.String(base64.StdEncoding.EncodeToString(sum[:]))
				if _, err := srv.Client.PutObject(ctx, in); err != nil {
					t.Fatal(err)
				}
			}
			put(&s3.PutObjectInput{Key: aws.String("short"), ObjectLockMode: types.ObjectLockModeCompliance, ObjectLockRetainUntilDate: &until})
			put(&s3.PutObjectInput{Key: aws.String("held"), ObjectLockLegalHoldStatus: types.ObjectLockLegalHoldStatusOn})

			if err := st.Delete(ctx, "short"); !errors.Is(err, uploader.ErrLocked) {
				t.Fatalf("Delete before the date: err = %v, want ErrLocked", err)
			}
			var le *uploader.LockedError
			if err := st.Delete(ctx, "held"); !errors.As(err, &le) || !le.LegalHold || !errors.Is(err, uploader.ErrLocked) {
				t.Errorf("Delete under legal hold: err = %v, want a LockedError with LegalHold", err)
			}
			if oi, err := st.Stat(ctx, "held"); err != nil || !oi.LegalHold || !oi.Locked(time.Now()) {
				t.Errorf("Stat held = %+v, %v; want LegalHold", oi, err)
			}
			time.Sleep(time.Until(until.Add(1500 * time.Millisecond)))
			if err := st.Delete(ctx, "short"); err != nil {
				t.Fatalf("Delete after the date: %v", err)
			}
			if _, err := st.Stat(ctx, "short"); !errors.Is(err, uploader.ErrNotFound) {
				t.Errorf("Stat after Delete: err = %v, want ErrNotFound", err)
			}
			if got := listKeys(t, st, ""); strings.Join(got, " ") != "held" {
				t.Errorf("List = %q, want only held", got)
			}
		})
	}
}

// Retention asked of a bucket without Object Lock fails at Open (and at
// WithRetention) with one line that says what to do.
func TestS3RetentionNeedsObjectLock(t *testing.T) {
	for _, start := range []func(testing.TB) *uploadertest.Server{uploadertest.StartVersityGW, uploadertest.StartMinIO} {
		srv := start(t)
		t.Run(srv.Name, func(t *testing.T) {
			opts := srv.Options()
			opts.Retention = uploader.Retention{Days: 7}
			_, err := uploader.Open(t.Context(), srv.URL("repo"), opts)
			checkNoObjectLock(t, err, srv.Bucket)

			st, err := uploader.Open(t.Context(), srv.URL("repo"), srv.Options())
			if err != nil {
				t.Fatal(err)
			}
			_, err = uploader.WithRetention(t.Context(), st, uploader.Retention{Days: 7})
			checkNoObjectLock(t, err, srv.Bucket)
		})
	}
}

func checkNoObjectLock(t *testing.T, err error, bucket string) {
	t.Helper()
	if !errors.Is(err, uploader.ErrNoObjectLock) {
		t.Fatalf("err = %v, want ErrNoObjectLock", err)
	}
	msg := err.Error()
	for _, want := range []string{"bucket " + bucket, "does not have Object Lock enabled", "create the bucket with Object Lock"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("message spans lines: %q", msg)
	}
	t.Logf("%v", err)
}

// Where the bucket's lock configuration may not be read, Open cannot tell;
// the first write with retention then fails with the same error.
func TestS3RetentionNeedsObjectLockUnreadable(t *testing.T) {
	srv := uploadertest.StartVersityGW(t)
	target, err := url.Parse(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("object-lock") {
			s3ErrorMsg(w, http.StatusForbidden, "AccessDenied", "Access Denied")
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()
	opts := srv.Options()
	opts.Endpoint = front.URL
	opts.PartSize = uploader.MinPartSize
	opts.Retention = uploader.Retention{Days: 1}
	st, err := uploader.Open(t.Context(), "s3://"+srv.Bucket+"/repo", opts)
	if err != nil {
		t.Fatalf("Open with an unreadable lock configuration: %v", err)
	}
	small := uploadertest.Data(4, 100)
	err = st.Put(t.Context(), "a", bytes.NewReader(small), int64(len(small)))
	checkNoObjectLock(t, err, srv.Bucket)
	large := uploadertest.Data(5, uploader.MinPartSize+1)
	err = st.Put(t.Context(), "b", io.LimitReader(bytes.NewReader(large), int64(len(large))), -1)
	checkNoObjectLock(t, err, srv.Bucket)
	// Delete reads the object first rather than trusting an unknown bucket.
	if err := st.Delete(t.Context(), "missing"); err != nil {
		t.Errorf("Delete of a missing key: %v", err)
	}
}

// A file:// repository cannot keep anything under retention: asking for
// it fails, it is not ignored.
func TestFileStoreRefusesRetention(t *testing.T) {
	dir := t.TempDir()
	_, err := uploader.Open(t.Context(), "file://"+dir, uploader.Options{Retention: uploader.Retention{Days: 30}})
	if !errors.Is(err, uploader.ErrNoObjectLock) || !strings.Contains(err.Error(), "file://"+dir+" cannot keep objects under retention") {
		t.Fatalf("Open file:// with retention: err = %v, want ErrNoObjectLock saying so", err)
	}
	st, err := uploader.Open(t.Context(), "file://"+dir, uploader.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := uploader.WithRetention(t.Context(), st, uploader.Retention{Days: 30}); !errors.Is(err, uploader.ErrNoObjectLock) {
		t.Errorf("WithRetention(file store, 30 days): err = %v, want ErrNoObjectLock", err)
	}
	if v, err := uploader.WithRetention(t.Context(), st, uploader.Retention{}); err != nil || v != st {
		t.Errorf("WithRetention(file store, none) = %v, %v; want the store itself", v, err)
	}
}

// A retention the store cannot express is refused before any request.
func TestRetentionInvalid(t *testing.T) {
	for _, r := range []uploader.Retention{{Days: -1}, {Days: 36501}, {Days: 1, Mode: "FOREVER"}} {
		_, err := uploader.Open(t.Context(), "s3://bucket?endpoint=http://127.0.0.1:1", uploader.Options{Retention: r})
		if err == nil || !strings.Contains(err.Error(), "retention") {
			t.Errorf("Open with %+v: err = %v, want a retention error", r, err)
		}
	}
}

// A server that wants Content-MD5 on uploads (AWS in a bucket with Object
// Lock) gets it from the first refusal on, for single and part uploads;
// a store with retention sends it from the start.
func TestS3ContentMD5WhenAsked(t *testing.T) {
	srv := uploadertest.StartVersityGW(t)
	target, err := url.Parse(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	var mu sync.Mutex
	var refused, withMD5, puts int
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && strings.Count(strings.Trim(r.URL.Path, "/"), "/") > 0 {
			mu.Lock()
			puts++
			if r.Header.Get("Content-MD5") == "" {
				refused++
				mu.Unlock()
				io.Copy(io.Discard, r.Body)
				s3ErrorMsg(w, http.StatusBadRequest, "InvalidRequest",
					"Content-MD5 OR x-amz-checksum- HTTP header is required for Put Object requests with Object Lock parameters")
				return
			}
			withMD5++
			mu.Unlock()
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()
	counts := func() (int, int, int) {
		mu.Lock()
		defer mu.Unlock()
		r, m, p := refused, withMD5, puts
		refused, withMD5, puts = 0, 0, 0
		return r, m, p
	}

	opts := srv.Options()
	opts.Endpoint = front.URL
	opts.PartSize = uploader.MinPartSize
	st, err := uploader.Open(t.Context(), "s3://"+srv.Bucket+"/md5", opts)
	if err != nil {
		t.Fatal(err)
	}
	small := uploadertest.Data(6, 1000)
	if err := st.Put(t.Context(), "small", bytes.NewReader(small), int64(len(small))); err != nil {
		t.Fatalf("Put to a server that wants Content-MD5: %v", err)
	}
	if r, m, _ := counts(); r != 1 || m != 1 {
		t.Errorf("small Put: %d refused, %d with Content-MD5; want 1 and 1", r, m)
	}
	large := uploadertest.Data(7, 3*uploader.MinPartSize+5)
	if err := st.Put(t.Context(), "large", io.LimitReader(bytes.NewReader(large), int64(len(large))), -1); err != nil {
		t.Fatalf("multipart Put: %v", err)
	}
	if r, m, _ := counts(); r != 0 || m != 4 {
		t.Errorf("multipart Put: %d refused, %d parts with Content-MD5; want 0 and 4", r, m)
	}
	for key, want := range map[string][]byte{"small": small, "large": large} {
		if got := getAll(t, st, key); !bytes.Equal(got, want) {
			t.Errorf("%s: read back %d bytes that differ from the %d written", key, len(got), len(want))
		}
	}

	// A fresh store that does not know yet, its first part uploads in
	// parallel: each refused one is sent again.
	st2, err := uploader.Open(t.Context(), "s3://"+srv.Bucket+"/md5", opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := st2.Put(t.Context(), "large2", io.LimitReader(bytes.NewReader(large), int64(len(large))), -1); err != nil {
		t.Fatalf("multipart Put, Content-MD5 asked for in the middle: %v", err)
	}
	if r, m, _ := counts(); r < 1 || m != 4 {
		t.Errorf("multipart Put: %d refused, %d parts with Content-MD5; want at least 1 and 4", r, m)
	}

	srv.CreateLockBucket(t, lockBucket)
	opts.Retention = uploader.Retention{Days: 1}
	st3, err := uploader.Open(t.Context(), "s3://"+lockBucket+"/md5", opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{1000, 2*uploader.MinPartSize + 1} {
		data := uploadertest.Data(8, size)
		if err := st3.Put(t.Context(), fmt.Sprintf("locked-%d", size), io.LimitReader(bytes.NewReader(data), int64(size)), -1); err != nil {
			t.Fatalf("Put with retention: %v", err)
		}
		if r, m, _ := counts(); r != 0 || m == 0 {
			t.Errorf("Put of %d bytes with retention: %d refused, %d with Content-MD5; want none refused", size, r, m)
		}
	}
}

// The servers refuse a wrong Content-MD5, so the writes with retention
// above, which send one, prove it is the data's.
func TestS3ServersCheckContentMD5(t *testing.T) {
	for _, start := range []func(testing.TB) *uploadertest.Server{uploadertest.StartVersityGW, uploadertest.StartMinIO} {
		srv := start(t)
		body := []byte("checked")
		_, err := srv.Client.PutObject(t.Context(), &s3.PutObjectInput{
			Bucket: &srv.Bucket, Key: aws.String("x"), Body: bytes.NewReader(body), ContentLength: aws.Int64(int64(len(body))),
			ContentMD5: aws.String(base64.StdEncoding.EncodeToString(make([]byte, 16))),
		})
		if err == nil {
			t.Errorf("%s accepted a wrong Content-MD5", srv.Name)
		}
	}
}

func s3ErrorMsg(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>`+code+`</Code><Message>`+msg+`</Message></Error>`)
}

func listKeys(t *testing.T, st uploader.Store, prefix string) []string {
	t.Helper()
	var keys []string
	if err := st.List(t.Context(), prefix, func(oi uploader.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return keys
}

func getAll(t *testing.T, st uploader.Store, key string) []byte {
	t.Helper()
	rc, err := st.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
