package uploader_test

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kbak/kbak/uploader"
	"github.com/kbak/kbak/uploader/uploadertest"
)

// Open fails with one line that says what is wrong and what to do, wrapping
// the sentinel the command line maps to an exit code, and writes nothing.
func TestOpenErrors(t *testing.T) {
	srv := uploadertest.StartVersityGW(t)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()

	wrong := srv.Options()
	wrong.SecretAccessKey = "not-the-secret"
	unknown := srv.Options()
	unknown.AccessKeyID = "nosuchuser"

	tests := []struct {
		name string
		url  string
		opts uploader.Options
		kind error
		msg  []string // substrings of the message
	}{
		{"missing bucket", "s3://no-such-bucket/x?endpoint=" + srv.Endpoint, srv.Options(), uploader.ErrNoBucket,
			[]string{"bucket no-such-bucket does not exist at " + srv.Endpoint, "create it or fix --repo"}},
		{"wrong secret", srv.URL("x"), wrong, uploader.ErrAccessDenied,
			[]string{"access denied by " + srv.Endpoint + " for bucket " + srv.Bucket, "AWS_ACCESS_KEY_ID"}},
		{"unknown access key", srv.URL("x"), unknown, uploader.ErrAccessDenied,
			[]string{"access denied by " + srv.Endpoint}},
		{"unreachable endpoint", "s3://" + srv.Bucket + "?endpoint=" + closed, srv.Options(), uploader.ErrUnreachable,
			[]string{"cannot reach " + closed, "connection refused"}},
		{"endpoint from options", "s3://" + srv.Bucket, func() uploader.Options {
			o := srv.Options()
			o.Endpoint = closed
			return o
		}(), uploader.ErrUnreachable, []string{"cannot reach " + closed}},
		{"missing directory", "file:///nonexistent/kbak/repo", uploader.Options{}, uploader.ErrNoBucket,
			[]string{"directory /nonexistent/kbak/repo does not exist", "create it or fix --repo"}},
		{"malformed URL", "s3//bucket", uploader.Options{}, uploader.ErrBadURL, []string{"bad repository URL"}},
		{"bad endpoint option", "s3://bucket", uploader.Options{Endpoint: "ftp://x"}, uploader.ErrBadURL, []string{"endpoint"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := uploader.Open(t.Context(), tc.url, tc.opts)
			if err == nil {
				t.Fatalf("Open(%s) = %T, want an error", tc.url, s)
			}
			if !errors.Is(err, tc.kind) {
				t.Errorf("Open(%s): err %q does not wrap %v", tc.url, err, tc.kind)
			}
			t.Logf("%v", err)
			msg := err.Error()
			for _, want := range tc.msg {
				if !strings.Contains(msg, want) {
					t.Errorf("Open(%s): message %q lacks %q", tc.url, msg, want)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("Open(%s): message spans lines: %q", tc.url, msg)
			}
			if strings.Contains(msg, srv.SecretKey) || strings.Contains(msg, "not-the-secret") {
				t.Errorf("Open(%s): message reveals a secret: %q", tc.url, msg)
			}
		})
	}

	// Nothing was created: no bucket, no object.
	out, err := srv.Client.ListBuckets(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Buckets) != 1 {
		t.Errorf("buckets after failed Opens: %d, want only %s", len(out.Buckets), srv.Bucket)
	}
	objs, err := srv.Client.ListObjectsV2(t.Context(), &s3.ListObjectsV2Input{Bucket: &srv.Bucket})
	if err != nil {
		t.Fatal(err)
	}
	if len(objs.Contents) != 0 {
		t.Errorf("objects after failed Opens: %d, want 0", len(objs.Contents))
	}
}
