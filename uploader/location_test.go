package uploader_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/kbak/kbak/uploader"
)

func TestParseURL(t *testing.T) {
	yes, no := true, false
	tests := []struct {
		url  string
		want uploader.Location
		str  string // String(); "" means same as url
	}{
		{"s3://bucket", uploader.Location{Scheme: "s3", Bucket: "bucket"}, ""},
		{"s3://bucket/", uploader.Location{Scheme: "s3", Bucket: "bucket"}, "s3://bucket"},
		{"s3://my.bucket-1/prod/db/", uploader.Location{Scheme: "s3", Bucket: "my.bucket-1", Prefix: "prod/db"}, "s3://my.bucket-1/prod/db"},
		{"s3://b12/p?endpoint=http://127.0.0.1:9000&region=eu-west-1&path-style=false",
			uploader.Location{Scheme: "s3", Bucket: "b12", Prefix: "p", Endpoint: "http://127.0.0.1:9000", Region: "eu-west-1", PathStyle: &no},
			"s3://b12/p?endpoint=http%3A%2F%2F127.0.0.1%3A9000&path-style=false&region=eu-west-1"},
		{"s3://b12?path-style=1", uploader.Location{Scheme: "s3", Bucket: "b12", PathStyle: &yes}, "s3://b12?path-style=true"},
		{"s3://b12?imds=true&region=r1", uploader.Location{Scheme: "s3", Bucket: "b12", Region: "r1", UseIMDS: true}, ""},
		{"s3://b12?imds=false", uploader.Location{Scheme: "s3", Bucket: "b12"}, "s3://b12"},
		{"file:///var/backups/kbak/", uploader.Location{Scheme: "file", Dir: "/var/backups/kbak"}, "file:///var/backups/kbak"},
		{"file://localhost/srv/x/../y", uploader.Location{Scheme: "file", Dir: "/srv/y"}, "file:///srv/y"},
	}
	for _, tc := range tests {
		got, err := uploader.ParseURL(tc.url)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", tc.url, err)
			continue
		}
		str := tc.str
		if str == "" {
			str = tc.url
		}
		if s := got.String(); s != str {
			t.Errorf("ParseURL(%q).String() = %q, want %q", tc.url, s, str)
		}
		if (got.PathStyle == nil) != (tc.want.PathStyle == nil) ||
			got.PathStyle != nil && *got.PathStyle != *tc.want.PathStyle {
			t.Errorf("ParseURL(%q).PathStyle = %v, want %v", tc.url, got.PathStyle, tc.want.PathStyle)
		}
		got.PathStyle, tc.want.PathStyle = nil, nil
		if got != tc.want {
			t.Errorf("ParseURL(%q) = %+v, want %+v", tc.url, got, tc.want)
		}
	}
}

func TestLocationStringRoundTrip(t *testing.T) {
	for _, u := range []string{
		"s3://bucket",
		"s3://bucket/a/b",
		"s3://b12/p?endpoint=http%3A%2F%2F127.0.0.1%3A9000&path-style=false&region=eu-west-1",
		"s3://b12?path-style=true",
		"s3://b12?imds=true&path-style=true",
		"file:///var/backups",
	} {
		loc, err := uploader.ParseURL(u)
		if err != nil {
			t.Fatalf("ParseURL(%q): %v", u, err)
		}
		if got := loc.String(); got != u {
			t.Errorf("ParseURL(%q).String() = %q", u, got)
		}
	}
}

func TestParseURLErrors(t *testing.T) {
	tests := []struct{ url, msg string }{
		{"", "empty"},
		{"bucket/prefix", "no scheme"},
		{"s3//bucket", "no scheme"},
		{"gs://bucket", `unsupported scheme "gs"`},
		{"s3://", "without a bucket"},
		{"s3:///prefix", "without a bucket"},
		{"s3://Bucket", "invalid bucket name"},
		{"s3://b_c", "invalid bucket name"},
		{"s3://bucket/a/../b", `".." segment`},
		{"s3://bucket/a//b", "empty segment"},
		{"s3://bucket?endpoint=ftp://x", "not an http:// or https:// URL"},
		{"s3://bucket?endpoint=http://", "no host"},
		{"s3://bucket?path-style=maybe", "want true or false"},
		{"s3://bucket?regoin=x", `unknown query parameter "regoin"`},
		{"s3://bucket?imds=sometimes", `imds="sometimes"`},
		{"s3://bucket?region=a&region=b", "given 2 times"},
		{"s3://AKIAEXAMPLE:topsecret@bucket/x", "credentials in the URL"},
		{"s3://bucket?endpoint=http://AKIAEXAMPLE:topsecret@host", "credentials in the endpoint"},
		{"file://relative/dir", "three slashes"},
		{"file:relative", "absolute path"},
		{"file:///x?y=1", "query"},
		{"s3://bucket/%zz", "invalid URL escape"},
	}
	for _, tc := range tests {
		_, err := uploader.ParseURL(tc.url)
		if !errors.Is(err, uploader.ErrBadURL) {
			t.Errorf("ParseURL(%q): err = %v, want ErrBadURL", tc.url, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("ParseURL(%q): %q lacks %q", tc.url, err, tc.msg)
		}
		if strings.Contains(err.Error(), "topsecret") {
			t.Errorf("ParseURL(%q): message reveals the secret: %q", tc.url, err)
		}
	}
}

func TestSecretRedacted(t *testing.T) {
	const plain = "wJalrXUtnFEMI/K7MDENG"
	opts := uploader.Options{AccessKeyID: "AKIA", SecretAccessKey: plain}
	var out []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%10s"} {
		out = append(out, fmt.Sprintf(verb, opts.SecretAccessKey), fmt.Sprintf(verb, opts))
	}
	j, err := json.Marshal(opts)
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, string(j))
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	log.Info("open", "secret", opts.SecretAccessKey, "opts", opts)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("open", "secret", opts.SecretAccessKey)
	out = append(out, logs.String())
	for _, s := range out {
		if strings.Contains(s, plain) || strings.Contains(s, fmt.Sprintf("%x", plain)) || strings.Contains(s, fmt.Sprintf("%X", plain)) {
			t.Errorf("secret revealed in %q", s)
		}
	}
	if !strings.Contains(string(j), "[REDACTED]") {
		t.Errorf("JSON %s lacks the placeholder", j)
	}
	if string(opts.SecretAccessKey) != plain {
		t.Errorf("explicit conversion lost the value")
	}
}
