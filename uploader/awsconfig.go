package uploader

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/smithy-go/logging"
)

// EnvUseIMDS is the environment variable that, set to true, lets kbak ask
// an EC2 instance metadata service for credentials (kbak's --s3-use-imds).
const EnvUseIMDS = "KBAK_S3_USE_IMDS"

// useIMDS reports whether a location opened with opts may ask an instance
// metadata service: the URL's ?imds=true, Options.UseIMDS, or
// KBAK_S3_USE_IMDS=true in the environment.
func useIMDS(loc Location, opts Options) bool {
	env, _ := strconv.ParseBool(os.Getenv(EnvUseIMDS))
	return loc.UseIMDS || opts.UseIMDS || env
}

// loadAWSConfig is config.LoadDefaultConfig as every part of kbak calls it:
//
//   - the SDK's log lines (warnings it would print to stderr, such as a
//     response without a checksum) go to log at debug level, so that
//     stderr carries only kbak's own lines;
//   - the chain of credential sources never asks an instance metadata
//     service (IMDS, 169.254.169.254) unless useIMDS. Users of
//     S3-compatible stores have no such service, and its lookup costs
//     seconds of retries when nothing else gives credentials; AWS users
//     whose credentials come from an EC2 instance profile opt in (URL
//     ?imds=true, --s3-use-imds, KBAK_S3_USE_IMDS=true). Even then
//     AWS_EC2_METADATA_DISABLED=true wins, as in every AWS tool. Roles
//     for service accounts (web identity) and EKS Pod Identity (container
//     credentials) never need it.
func loadAWSConfig(ctx context.Context, log *slog.Logger, useIMDS bool, optFns ...func(*config.LoadOptions) error) (aws.Config, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts := []func(*config.LoadOptions) error{config.WithLogger(sdkLogger{log})}
	if !useIMDS {
		opts = append(opts, config.WithEC2IMDSClientEnableState(imds.ClientDisabled))
	}
	cfg, err := config.LoadDefaultConfig(ctx, append(opts, optFns...)...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load AWS configuration: %w", err)
	}
	return cfg, nil
}

// sdkLogger writes the AWS SDK's log lines to kbak's log at debug level.
type sdkLogger struct{ log *slog.Logger }

func (l sdkLogger) Logf(c logging.Classification, format string, v ...any) {
	l.log.Debug("aws sdk: "+fmt.Sprintf(format, v...), "sdk_level", string(c))
}
