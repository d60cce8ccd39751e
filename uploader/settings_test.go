package uploader_test

import (
	"bytes"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/kbak/kbak/uploader"
	"github.com/kbak/kbak/uploader/uploadertest"
)

// AWS_CA_BUNDLE reaches the HTTP client: without it a server with a private
// CA is refused with a clear line, with it the store works.
func TestOpenCABundle(t *testing.T) {
	srv := uploadertest.StartVersityGWTLS(t)
	url := srv.URL("tls")
	t.Setenv("AWS_CA_BUNDLE", "")
	_, err := uploader.Open(t.Context(), url, srv.Options())
	if !errors.Is(err, uploader.ErrUnreachable) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Open without the CA: err = %v, want ErrUnreachable naming the certificate", err)
	}

	t.Logf("without the CA: %v", err)

	t.Setenv("AWS_CA_BUNDLE", srv.CAFile)
	s, err := uploader.Open(t.Context(), url, srv.Options())
	if err != nil {
		t.Fatalf("Open with AWS_CA_BUNDLE: %v", err)
	}
	if err := s.Put(t.Context(), "k", bytes.NewReader([]byte("over tls")), 8); err != nil {
		t.Fatalf("Put over https: %v", err)
	}
	if _, err := s.Stat(t.Context(), "k"); err != nil {
		t.Fatalf("Stat over https: %v", err)
	}
}

// Settings come from the URL first, then Options, then the environment.
func TestOpenSettingsPrecedence(t *testing.T) {
	srv := uploadertest.StartVersityGW(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()

	bare := "s3://" + srv.Bucket + "/p"
	tests := []struct {
		name        string
		url         string
		optEndpoint string
		envEndpoint string
		wantErr     bool
	}{
		{"environment", bare, "", srv.Endpoint, false},
		{"options over environment", bare, srv.Endpoint, closed, false},
		{"URL over options", bare + "?endpoint=" + srv.Endpoint, closed, closed, false},
		{"URL wrong", bare + "?endpoint=" + closed, srv.Endpoint, srv.Endpoint, true},
		{"options wrong", bare, closed, srv.Endpoint, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("AWS_ENDPOINT_URL_S3", tc.envEndpoint)
			t.Setenv("AWS_REGION", "us-east-1")
			opts := srv.Options()
			opts.Endpoint = tc.optEndpoint
			_, err := uploader.Open(t.Context(), tc.url, opts)
			if tc.wantErr != (err != nil) {
				t.Errorf("Open: err = %v, want error: %v", err, tc.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), closed) {
				t.Errorf("Open: %q does not name the endpoint it used, %s", err, closed)
			}
		})
	}
}

// With no credentials anywhere, Open says where to put them (instead of a
// signing error from deep inside the SDK).
func TestOpenNoCredentials(t *testing.T) {
	srv := uploadertest.StartVersityGW(t)
	for _, env := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"} {
		t.Setenv(env, "")
	}
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", dir+"/config")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", dir+"/credentials")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true") // no traffic to an instance metadata service
	_, err := uploader.Open(t.Context(), srv.URL("x"), uploader.Options{})
	if !errors.Is(err, uploader.ErrAccessDenied) || !strings.Contains(err.Error(), "no usable credentials for "+srv.Endpoint) {
		t.Fatalf("Open without credentials: err = %v, want ErrAccessDenied saying no usable credentials", err)
	}
	t.Logf("without credentials: %v", err)
}
