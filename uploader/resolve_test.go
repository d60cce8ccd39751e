package uploader_test

import (
	"errors"
	"testing"

	"github.com/kbak/kbak/uploader"
)

// ResolveURL puts into the URL what Open would take from Options and the
// environment, with the same precedence, so that a mover pod given only the
// URL reaches the same store.
func TestResolveURL(t *testing.T) {
	yes := true
	tests := []struct {
		name string
		url  string
		opts uploader.Options
		env  map[string]string
		want string
	}{
		{"endpoint from KBAK-style options", "s3://bkt/p", uploader.Options{Endpoint: "http://10.0.0.1:7070"}, nil,
			"s3://bkt/p?endpoint=http%3A%2F%2F10.0.0.1%3A7070&region=us-east-1"},
		{"endpoint from AWS_ENDPOINT_URL_S3 over AWS_ENDPOINT_URL", "s3://bkt", uploader.Options{},
			map[string]string{"AWS_ENDPOINT_URL_S3": "https://s3.example", "AWS_ENDPOINT_URL": "https://other.example"},
			"s3://bkt?endpoint=https%3A%2F%2Fs3.example&region=us-east-1"},
		{"options over environment", "s3://bkt", uploader.Options{Endpoint: "https://opt.example", Region: "eu-west-1"},
			map[string]string{"AWS_ENDPOINT_URL": "https://env.example", "AWS_REGION": "us-west-2"},
			"s3://bkt?endpoint=https%3A%2F%2Fopt.example&region=eu-west-1"},
		{"URL over options", "s3://bkt?endpoint=https://url.example&region=ap-south-1", uploader.Options{Endpoint: "https://opt.example", Region: "eu-west-1"}, nil,
			"s3://bkt?endpoint=https%3A%2F%2Furl.example&region=ap-south-1"},
		{"region from AWS_REGION", "s3://bkt", uploader.Options{}, map[string]string{"AWS_REGION": "eu-central-1"},
			"s3://bkt?region=eu-central-1"},
		{"path style from options", "s3://bkt", uploader.Options{PathStyle: &yes, Region: "r1"}, nil,
			"s3://bkt?path-style=true&region=r1"},
		{"instance metadata from options", "s3://bkt", uploader.Options{UseIMDS: true, Region: "r1"}, nil,
			"s3://bkt?imds=true&region=r1"},
		{"instance metadata from KBAK_S3_USE_IMDS", "s3://bkt?region=r1", uploader.Options{}, map[string]string{uploader.EnvUseIMDS: "true"},
			"s3://bkt?imds=true&region=r1"},
		{"file URLs unchanged", "file:///srv/kbak/", uploader.Options{Endpoint: "https://ignored.example"}, nil,
			"file:///srv/kbak"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			isolateAWSEnv(t)
			t.Setenv("AWS_REGION", "us-east-1")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			got, err := uploader.ResolveURL(t.Context(), tc.url, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("ResolveURL(%q) = %q, want %q", tc.url, got, tc.want)
			}
			// Resolving twice changes nothing: the movers resolve again.
			if again, err := uploader.ResolveURL(t.Context(), got, uploader.Options{}); err != nil || again != got {
				t.Errorf("ResolveURL(%q) again = %q, %v", got, again, err)
			}
		})
	}
}

func TestResolveURLBadEndpoint(t *testing.T) {
	isolateAWSEnv(t)
	_, err := uploader.ResolveURL(t.Context(), "s3://bkt", uploader.Options{Endpoint: "ftp://x"})
	if !errors.Is(err, uploader.ErrBadURL) {
		t.Fatalf("err = %v, want ErrBadURL", err)
	}
}

// isolateAWSEnv keeps the machine's AWS settings out of a test.
func isolateAWSEnv(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	for _, k := range []string{"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", uploader.EnvUseIMDS} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_CONFIG_FILE", dir+"/config")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", dir+"/credentials")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}
