package uploader_test

import (
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kbak/kbak/uploader"
	"github.com/kbak/kbak/uploader/uploadertest"
)

// An upload left by a process that died is found under the store's prefix
// and can be aborted, twice without error.
func TestS3AbortLeftUpload(t *testing.T) {
	for _, start := range []func(testing.TB) *uploadertest.Server{uploadertest.StartVersityGW, uploadertest.StartMinIO} {
		srv := start(t)
		t.Run(srv.Name, func(t *testing.T) {
			st, err := uploader.Open(t.Context(), srv.URL("repo"), srv.Options())
			if err != nil {
				t.Fatal(err)
			}
			s := st.(*uploader.S3Store)
			key := "ns/sts/id/volumes/data-sts-0.tar.zst"
			full := "repo/" + key
			out, err := srv.Client.CreateMultipartUpload(t.Context(), &s3.CreateMultipartUploadInput{Bucket: &srv.Bucket, Key: &full})
			if err != nil {
				t.Fatal(err)
			}
			ups, err := s.IncompleteUploads(t.Context(), key)
			if err != nil {
				t.Fatal(err)
			}
			if len(ups) != 1 || ups[0].Key != key || ups[0].UploadID != *out.UploadId {
				t.Fatalf("IncompleteUploads(%q) = %+v, want the upload %s of %s", key, ups, *out.UploadId, key)
			}
			for range 2 {
				if err := s.AbortUpload(t.Context(), ups[0]); err != nil {
					t.Fatalf("AbortUpload: %v", err)
				}
			}
			if ups, err := s.IncompleteUploads(t.Context(), key); err != nil || len(ups) != 0 {
				t.Errorf("IncompleteUploads after abort = %+v, %v; want none", ups, err)
			}
		})
	}
}

// AbortStaleUploads aborts the uploads under its prefix that are older than
// the age given, and only those: not younger ones, not those outside the
// store's prefix. MinIO lists uploads by exact key or for the whole
// bucket, so a directory prefix needs the bucket-wide listing.
func TestS3AbortStaleUploads(t *testing.T) {
	for _, start := range []func(testing.TB) *uploadertest.Server{uploadertest.StartVersityGW, uploadertest.StartMinIO} {
		srv := start(t)
		t.Run(srv.Name, func(t *testing.T) {
			ctx := t.Context()
			st, err := uploader.Open(ctx, srv.URL("repo"), srv.Options())
			if err != nil {
				t.Fatal(err)
			}
			s := st.(*uploader.S3Store)
			begin := func(key string) {
				t.Helper()
				if _, err := srv.Client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &srv.Bucket, Key: &key}); err != nil {
					t.Fatal(err)
				}
			}
			begin("repo/a/old")
			begin("repo/b/old")
			begin("other/old")
			time.Sleep(2 * time.Second)
			begin("repo/a/new")

			uploads := func(prefix string) []string {
				t.Helper()
				ups, err := s.IncompleteUploads(ctx, prefix)
				if err != nil {
					t.Fatal(err)
				}
				var keys []string
				for _, u := range ups {
					keys = append(keys, u.Key)
				}
				slices.Sort(keys)
				return keys
			}
			if got := uploads("a/"); !slices.Equal(got, []string{"a/new", "a/old"}) {
				t.Errorf("IncompleteUploads(a/) = %q, want a/new a/old", got)
			}
			if n, err := s.AbortStaleUploads(ctx, "", time.Hour); n != 0 || err != nil {
				t.Errorf("AbortStaleUploads(1h) = %d, %v; want none aborted", n, err)
			}
			if n, err := s.AbortStaleUploads(ctx, "a/", time.Second); n != 1 || err != nil {
				t.Errorf("AbortStaleUploads(a/, 1s) = %d, %v; want 1 (a/old)", n, err)
			}
			if got := uploads(""); !slices.Equal(got, []string{"a/new", "b/old"}) {
				t.Errorf("after aborting a/: uploads %q, want a/new b/old", got)
			}
			if n, err := s.AbortStaleUploads(ctx, "", time.Second); n != 1 || err != nil {
				t.Errorf("AbortStaleUploads(1s) = %d, %v; want 1 (b/old)", n, err)
			}
			if got := uploads(""); !slices.Equal(got, []string{"a/new"}) {
				t.Errorf("after aborting all stale: uploads %q, want a/new", got)
			}
			out, err := srv.Client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &srv.Bucket, Prefix: aws.String("other/old")})
			if err != nil {
				t.Fatal(err)
			}
			if len(out.Uploads) != 1 {
				t.Errorf("the upload outside the store's prefix: %d left, want 1", len(out.Uploads))
			}
		})
	}
}
