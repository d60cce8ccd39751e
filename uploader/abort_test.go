package uploader_test

import (
	"testing"

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
