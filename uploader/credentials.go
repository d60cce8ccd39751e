package uploader

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/config"
)

// Credentials are resolved S3 credentials, for handing to mover pods through
// a Secret. Every field redacts itself when printed.
type Credentials struct {
	AccessKeyID     Secret
	SecretAccessKey Secret
	SessionToken    Secret
}

// ResolveCredentials returns the credentials Open would use: the ones in
// opts, else the standard AWS chain (environment, shared config and
// credentials files, SSO, ...). An empty AccessKeyID means none were found.
func ResolveCredentials(ctx context.Context, opts Options) (Credentials, error) {
	if opts.AccessKeyID != "" {
		return Credentials{AccessKeyID: Secret(opts.AccessKeyID), SecretAccessKey: opts.SecretAccessKey}, nil
	}
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return Credentials{}, fmt.Errorf("load AWS configuration: %w", err)
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
