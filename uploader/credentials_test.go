package uploader_test

import (
	"errors"
	"testing"

	"github.com/kbak/kbak/uploader"
)

// Resolving the credentials handed to movers asks no instance metadata service unless the user
// opts in (--s3-use-imds, KBAK_S3_USE_IMDS=true, ?imds=true), and even
// then not with AWS_EC2_METADATA_DISABLED=true.
func TestResolveCredentialsAsksNoInstanceMetadataUnlessAsked(t *testing.T) {
	t.Run("not asked", func(t *testing.T) {
		hits := fakeIMDS(t)
		creds, err := uploader.ResolveCredentials(t.Context(), "s3://bkt?region=us-east-1", uploader.Options{})
		if err != nil || creds.AccessKeyID != "" {
			t.Errorf("credentials %q, %v; want none", creds.AccessKeyID, err)
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
		{"asked by option", "s3://bkt?region=us-east-1", uploader.Options{UseIMDS: true}, ""},
		{"asked by URL", "s3://bkt?region=us-east-1&imds=true", uploader.Options{}, ""},
		{"asked by environment", "s3://bkt?region=us-east-1", uploader.Options{}, "true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hits := fakeIMDS(t)
			t.Setenv(uploader.EnvUseIMDS, tc.env)
			creds, err := uploader.ResolveCredentials(t.Context(), tc.url, tc.opts)
			if err != nil || creds.AccessKeyID != "AKIMDS" || hits.Load() == 0 {
				t.Errorf("credentials %q, %v after %d requests; want the instance profile's", creds.AccessKeyID, err, hits.Load())
			}
			t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
			before := hits.Load()
			creds, err = uploader.ResolveCredentials(t.Context(), tc.url, tc.opts)
			if err != nil || creds.AccessKeyID != "" || hits.Load() != before {
				t.Errorf("with AWS_EC2_METADATA_DISABLED=true: credentials %q, %v, %d requests", creds.AccessKeyID, err, hits.Load()-before)
			}
		})
	}
}

// A file:// repository needs no credentials: nothing of the AWS chain is
// consulted, not even a broken shared configuration.
func TestResolveCredentialsFileRepository(t *testing.T) {
	hits := fakeIMDS(t)
	t.Setenv("AWS_PROFILE", "no-such-profile")
	creds, err := uploader.ResolveCredentials(t.Context(), "file:///srv/kbak", uploader.Options{UseIMDS: true})
	if err != nil || creds.AccessKeyID != "" || hits.Load() != 0 {
		t.Errorf("credentials %q, %v, %d metadata requests; want none of them", creds.AccessKeyID, err, hits.Load())
	}
	// The same environment breaks the chain of an s3:// repository.
	if _, err := uploader.ResolveCredentials(t.Context(), "s3://bkt?region=us-east-1", uploader.Options{}); err == nil {
		t.Error("an unknown AWS_PROFILE did not fail the s3 chain: the file case proves nothing")
	}
	if _, err := uploader.ResolveCredentials(t.Context(), "s4://x", uploader.Options{}); !errors.Is(err, uploader.ErrBadURL) {
		t.Errorf("bad URL: %v, want ErrBadURL", err)
	}
}
