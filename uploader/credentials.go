package uploader

import (
	"context"
)

// Credentials are resolved S3 credentials, for handing to mover pods through
// a Secret. Every field redacts itself when printed.
type Credentials struct {
	AccessKeyID     Secret
	SecretAccessKey Secret
	SessionToken    Secret
}

// ResolveCredentials returns the credentials Open would use for the
// repository at repoURL: the ones in opts, else the standard AWS chain
// (environment, shared config and credentials files, SSO, web identity,
// container credentials; an EC2 instance metadata service only when the
// URL or opts ask for it). A file:// repository needs none and resolves
// nothing. An empty AccessKeyID means none were found.
func ResolveCredentials(ctx context.Context, repoURL string, opts Options) (Credentials, error) {
	loc, err := ParseURL(repoURL)
	if err != nil {
		return Credentials{}, err
	}
	if loc.Scheme != "s3" {
		return Credentials{}, nil
	}
	if opts.AccessKeyID != "" {
		return Credentials{AccessKeyID: Secret(opts.AccessKeyID), SecretAccessKey: opts.SecretAccessKey}, nil
	}
	cfg, err := loadAWSConfig(ctx, opts.Logger, useIMDS(loc, opts))
	if err != nil {
		return Credentials{}, err
	}
	if cfg.Credentials == nil {
		return Credentials{}, nil
	}
	c, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		// No credentials anywhere is not an error here: the movers may have
		// an identity of their own.
		return Credentials{}, nil
	}
	return Credentials{AccessKeyID: Secret(c.AccessKeyID), SecretAccessKey: Secret(c.SecretAccessKey), SessionToken: Secret(c.SessionToken)}, nil
}
