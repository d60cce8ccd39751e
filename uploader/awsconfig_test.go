package uploader_test

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kbak/kbak/uploader"
)

// fakeIMDS is an EC2 instance metadata service on 127.0.0.1 that hands
// out the credentials of an instance profile and counts the requests it
// gets; the SDK is pointed at it by AWS_EC2_METADATA_SERVICE_ENDPOINT.
func fakeIMDS(t *testing.T) *atomic.Int64 {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		switch {
		case r.Method == http.MethodPut && r.URL.Path == "/latest/api/token":
			w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", "21600")
			w.Write([]byte("token"))
		case r.URL.Path == "/latest/meta-data/iam/security-credentials/":
			w.Write([]byte("node-role\n"))
		case r.URL.Path == "/latest/meta-data/iam/security-credentials/node-role":
			w.Write([]byte(`{"Code":"Success","Type":"AWS-HMAC","AccessKeyId":"AKIMDS","SecretAccessKey":"secret","Token":"tok","Expiration":"2099-01-01T00:00:00Z"}`))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	isolateAWSEnv(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "") // what kbak does, not the environment, keeps it away
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", srv.URL)
	return &hits
}

// Opening a store asks no instance metadata service for credentials
// unless the user opts in (--s3-use-imds, KBAK_S3_USE_IMDS=true,
// ?imds=true), and even then not with AWS_EC2_METADATA_DISABLED=true.
// Without credentials the error says how to opt in.
func TestOpenAsksNoInstanceMetadataUnlessAsked(t *testing.T) {
	const unreachable = "s3://bkt?endpoint=http%3A%2F%2F127.0.0.1%3A1&region=us-east-1"
	t.Run("not asked", func(t *testing.T) {
		hits := fakeIMDS(t)
		_, err := uploader.Open(t.Context(), unreachable, uploader.Options{})
		if !errors.Is(err, uploader.ErrAccessDenied) || !strings.Contains(err.Error(), "KBAK_S3_USE_IMDS=true") {
			t.Errorf("Open = %v, want no usable credentials, naming KBAK_S3_USE_IMDS", err)
		}
		if n := hits.Load(); n != 0 {
			t.Errorf("the instance metadata service got %d requests", n)
		}
	})
	for _, tc := range []struct {
		name string
		url  string
		opts uploader.Options
		env  string
	}{
		{"asked by option", unreachable, uploader.Options{UseIMDS: true}, ""},
		{"asked by URL", unreachable + "&imds=true", uploader.Options{}, ""},
		{"asked by environment", unreachable, uploader.Options{}, "true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hits := fakeIMDS(t)
			t.Setenv(uploader.EnvUseIMDS, tc.env)
			// The instance profile's credentials get as far as the
			// (unreachable) endpoint.
			_, err := uploader.Open(t.Context(), tc.url, tc.opts)
			if !errors.Is(err, uploader.ErrUnreachable) || hits.Load() == 0 {
				t.Errorf("Open = %v after %d metadata requests, want the endpoint unreachable with the instance profile's credentials", err, hits.Load())
			}
			t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
			before := hits.Load()
			_, err = uploader.Open(t.Context(), tc.url, tc.opts)
			if !errors.Is(err, uploader.ErrAccessDenied) || hits.Load() != before {
				t.Errorf("with AWS_EC2_METADATA_DISABLED=true: Open = %v after %d metadata requests, want no credentials and none", err, hits.Load()-before)
			}
		})
	}
}

// What the AWS SDK logs (here: a server's malformed Date header, which it
// warns about) goes to kbak's logger at debug level, never to stderr.
func TestSDKLogsStayOffStderr(t *testing.T) {
	isolateAWSEnv(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AK")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "SK")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", "the day before yesterday")
		w.Header().Set("Content-Type", "application/xml")
		w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>bkt</Name><Prefix></Prefix><KeyCount>0</KeyCount><MaxKeys>1</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>`))
	}))
	defer srv.Close()

	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	saved := os.Stderr
	os.Stderr = f
	defer func() { os.Stderr = saved }()

	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if _, err := uploader.Open(t.Context(), "s3://bkt?region=us-east-1&endpoint="+url.QueryEscape(srv.URL), uploader.Options{Logger: log}); err != nil {
		t.Fatal(err)
	}
	os.Stderr = saved
	if b, _ := os.ReadFile(f.Name()); len(b) != 0 {
		t.Errorf("the SDK wrote to stderr:\n%s", b)
	}
	if !strings.Contains(logs.String(), "level=DEBUG") || !strings.Contains(logs.String(), "failed to parse response Date header") {
		t.Errorf("the SDK's warning is not in kbak's debug log:\n%s", logs.String())
	}
}
