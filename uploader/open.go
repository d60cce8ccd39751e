package uploader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// Options configure Open. Zero values mean "from the URL, else from the
// standard AWS environment and shared config, else the default".
type Options struct {
	Endpoint string // S3 endpoint URL; AWS when empty everywhere
	Region   string
	// PathStyle addresses buckets as ENDPOINT/BUCKET rather than
	// BUCKET.ENDPOINT. nil: from the URL, else true when an endpoint is set
	// (what self-hosted servers expect), else false.
	PathStyle       *bool
	AccessKeyID     string
	SecretAccessKey Secret
	// PartSize of multipart uploads; 0 chooses it from each object's
	// expected size (see PartSize).
	PartSize int64
	// Concurrency is the number of parts in flight per Put; 0 means 4.
	// A Put holds at most PartSize x (Concurrency+1) bytes of buffers, and
	// at most BufferBytes of them in memory (0: DefaultBufferBytes); parts
	// too large for that go to unlinked files in SpoolDir (default: the
	// system's temporary directory, TMPDIR).
	Concurrency int
	BufferBytes int64
	SpoolDir    string
	// IdleTimeout fails a connection on which no byte moves, either way,
	// for this long, and a request whose response headers take longer; the
	// request is then retried, and Get resumes a body where it stopped.
	// It also bounds how long a server may think before it answers
	// (CompleteMultipartUpload of a large object included). 0 means 1 minute.
	IdleTimeout time.Duration
	Logger      *slog.Logger
	// UseIMDS lets the credential chain ask an EC2 instance metadata
	// service when nothing before it in the chain gives credentials; off,
	// it is never asked (see loadAWSConfig). The URL's ?imds=true and
	// KBAK_S3_USE_IMDS=true do the same; Resolve puts it into the URL, for
	// mover pods.
	UseIMDS bool
	// Retention puts S3 Object Lock retention on every object the store
	// writes; the bucket must have Object Lock enabled (Open checks it
	// when it may read the bucket's lock configuration). A file://
	// repository refuses it. WithRetention makes views with another.
	Retention Retention
}

const (
	defaultConcurrency = 4
	defaultRegion      = "us-east-1"
	// maxAttempts per request: transient errors during a long backup are
	// worth waiting for rather than losing hours of streaming.
	maxAttempts = 10
	// openCheckTimeout bounds Open's reachability check.
	openCheckTimeout = 30 * time.Second
	// defaultIdleTimeout is long enough for a busy server to answer a
	// request, short enough that a dead one is noticed within minutes.
	defaultIdleTimeout = time.Minute
)

// Open returns the store for a repository URL:
//
//	s3://BUCKET[/PREFIX][?endpoint=URL&region=R&path-style=true|false]
//	file:///ABS/DIR
//
// S3 settings come from the URL's query, then Options, then the standard AWS
// environment and shared config (AWS_REGION, AWS_ENDPOINT_URL_S3,
// AWS_PROFILE, AWS_ACCESS_KEY_ID, AWS_CA_BUNDLE, ...). Open checks that the
// bucket (or the directory) is reachable and returns one clear error line
// when it is not, wrapping ErrBadURL, ErrNoBucket, ErrAccessDenied or
// ErrUnreachable; or, when Options.Retention asks for retention the store
// cannot keep, ErrNoObjectLock.
func Open(ctx context.Context, repoURL string, opts Options) (Store, error) {
	loc, err := ParseURL(repoURL)
	if err != nil {
		return nil, err
	}
	switch loc.Scheme {
	case "file":
		if opts.Retention.Days != 0 {
			return nil, fileNoObjectLock(loc.Dir)
		}
		return NewFileStore(loc.Dir)
	default:
		return OpenS3(ctx, loc, opts)
	}
}

// OpenS3 is Open for a parsed s3:// location.
func OpenS3(ctx context.Context, loc Location, opts Options) (*S3Store, error) {
	retention, err := opts.Retention.normalize()
	if err != nil {
		return nil, err
	}
	endpoint := firstNonEmpty(loc.Endpoint, opts.Endpoint, os.Getenv("AWS_ENDPOINT_URL_S3"), os.Getenv("AWS_ENDPOINT_URL"))
	if endpoint != "" {
		if err := checkEndpoint(endpoint); err != nil {
			return nil, badURL("endpoint: %v", err)
		}
	}
	pathStyle := endpoint != ""
	switch {
	case loc.PathStyle != nil:
		pathStyle = *loc.PathStyle
	case opts.PathStyle != nil:
		pathStyle = *opts.PathStyle
	}
	conc := opts.Concurrency
	if conc <= 0 {
		conc = defaultConcurrency
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	idle := opts.IdleTimeout
	if idle <= 0 {
		idle = defaultIdleTimeout
	}

	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.MaxIdleConnsPerHost = max(t.MaxIdleConnsPerHost, conc+2)
	})
	load := []func(*config.LoadOptions) error{
		// A BuildableClient, so that the loader can add AWS_CA_BUNDLE to it.
		config.WithHTTPClient(httpClient),
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = maxAttempts
				o.MaxBackoff = 20 * time.Second
				// The client-wide retry quota would turn a burst of
				// failures across parallel parts into hard errors.
				o.RateLimiter = ratelimit.None
			})
		}),
		// The default request checksums (CRC32 trailers) halve throughput
		// against versitygw (51 vs 94 MB/s in BenchmarkS3Put) and not every
		// S3-compatible server understands them. Bodies are covered anyway:
		// over http SigV4 signs their SHA-256, over https TLS protects them,
		// and the archive's own sha256 is checked on restore.
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
	}
	if r := firstNonEmpty(loc.Region, opts.Region); r != "" {
		load = append(load, config.WithRegion(r))
	}
	if opts.AccessKeyID != "" {
		load = append(load, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(opts.AccessKeyID, string(opts.SecretAccessKey), "")))
	}
	imds := useIMDS(loc, opts)
	cfg, err := loadAWSConfig(ctx, logger, imds, load...)
	if err != nil {
		return nil, err
	}
	if cfg.Region == "" {
		cfg.Region = defaultRegion
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
		o.UsePathStyle = pathStyle
		// Here rather than on httpClient above: the SDK has resolved its
		// own copy of the client by now, and with AWS_DEFAULTS_MODE set that
		// copy's dialer replaces any DialContext given to the loader.
		if b, ok := o.HTTPClient.(*awshttp.BuildableClient); ok {
			o.HTTPClient = withIdleTimeout(b, idle)
		}
		if !strings.HasPrefix(endpoint, "http://") {
			// Over TLS the body is protected in transit, and hashing every
			// part for the signature costs a core-second per 3 GB: sign
			// UNSIGNED-PAYLOAD. Plain http keeps signed bodies.
			o.APIOptions = append(o.APIOptions, v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)
		}
	})
	where := endpoint
	if where == "" {
		where = "AWS S3 (" + cfg.Region + ")"
	}
	s := &S3Store{
		client:      client,
		bucket:      loc.Bucket,
		prefix:      loc.Prefix,
		partSize:    opts.PartSize,
		concurrency: conc,
		bufferBytes: opts.BufferBytes,
		spoolDir:    opts.SpoolDir,
		idle:        idle,
		log:         logger.With("bucket", loc.Bucket, "endpoint", where),
		where:       where,
		retention:   retention,
		state:       &bucketState{},
	}
	if loc.Prefix != "" {
		s.prefix += "/"
	}

	cctx, cancel := context.WithTimeout(ctx, openCheckTimeout)
	defer cancel()
	// Credentials first: a failure deep in the SDK's chain would otherwise
	// surface as a transport error.
	if cfg.Credentials != nil {
		if _, err := cfg.Credentials.Retrieve(cctx); err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("get credentials for %s: %w", where, ctx.Err())
			}
			hint := ""
			if !imds {
				hint = fmt.Sprintf(" (credentials of an EC2 instance profile: set %s=true)", EnvUseIMDS)
			}
			return nil, &openError{kind: ErrAccessDenied, cause: err, msg: fmt.Sprintf(
				"no usable credentials for %s: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE%s", where, hint)}
		}
	}
	// A one-key listing rather than HeadBucket: its error responses have a
	// body with a code (NoSuchBucket, InvalidAccessKeyId, ...), where HEAD
	// leaves some servers answering 404 for bad credentials. Listing is
	// needed by every command anyway.
	_, err = client.ListObjectsV2(cctx, &s3.ListObjectsV2Input{
		Bucket: &loc.Bucket, Prefix: aws.String(s.prefix), MaxKeys: aws.Int32(1),
	}, func(o *s3.Options) {
		o.RetryMaxAttempts = 2 // an unreachable endpoint should fail fast
	})
	if err != nil && ctx.Err() != nil {
		return nil, fmt.Errorf("check bucket %s at %s: %w", loc.Bucket, where, ctx.Err())
	}
	if err != nil {
		// A timeout is the check's own deadline or, sooner, a silent server:
		// net/http's "timeout awaiting response headers" matches
		// context.DeadlineExceeded too, so only cctx tells them apart.
		limit := idle
		if cctx.Err() != nil {
			limit = openCheckTimeout
		}
		return nil, classifyOpenError(err, where, loc.Bucket, cfg.Region, limit)
	}
	if err := s.checkRetention(cctx); err != nil {
		return nil, err
	}
	s.log.Debug("store opened", "prefix", loc.Prefix, "region", cfg.Region, "path_style", pathStyle, "retention_days", retention.Days, "retention_mode", retention.Mode)
	return s, nil
}

// classifyOpenError turns the failure of the bucket check into one line that
// says what to do; limit is how long a check that timed out waited.
func classifyOpenError(err error, where, bucket, region string, limit time.Duration) error {
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.Response != nil && re.HTTPStatusCode() != 0 {
		code := ""
		var ae smithy.APIError
		if errors.As(err, &ae) {
			code = ae.ErrorCode()
		}
		switch status := re.HTTPStatusCode(); {
		case credentialCodes[code] || status == http.StatusForbidden || status == http.StatusUnauthorized:
			return &openError{kind: ErrAccessDenied, cause: err, msg: fmt.Sprintf(
				"access denied by %s for bucket %s: check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and the bucket policy%s", where, bucket, paren(code))}
		case code == "NoSuchBucket" || status == http.StatusNotFound:
			return &openError{kind: ErrNoBucket, cause: err, msg: fmt.Sprintf(
				"bucket %s does not exist at %s: create it or fix --repo", bucket, where)}
		case status == http.StatusMovedPermanently || code == "AuthorizationHeaderMalformed" || code == "PermanentRedirect":
			return &openError{kind: ErrUnreachable, cause: err, msg: fmt.Sprintf(
				"bucket %s is not in region %s at %s: set the region (?region= in --repo, or AWS_REGION)", bucket, region, where)}
		default:
			return &openError{kind: ErrUnreachable, cause: err, msg: fmt.Sprintf(
				"check bucket %s at %s: HTTP %d%s", bucket, where, status, paren(code))}
		}
	}
	return &openError{kind: ErrUnreachable, cause: err, msg: fmt.Sprintf(
		"cannot reach %s: %s", where, rootCause(err, limit))}
}

// credentialCodes are the S3 error codes that mean "these credentials will
// not do" whatever the HTTP status (versitygw answers 404 for an unknown
// access key).
var credentialCodes = map[string]bool{
	"AccessDenied":          true,
	"InvalidAccessKeyId":    true,
	"SignatureDoesNotMatch": true,
	"ExpiredToken":          true,
	"InvalidToken":          true,
	"AllAccessDisabled":     true,
	"XAdminUserNotFound":    true,
}

// rootCause keeps the part of a transport error a person can act on
// ("connection refused", "no such host", a TLS complaint) instead of the
// SDK's nested operation and retry wrappers. A timeout that is not the
// dial's is reported as waiting limit for an answer.
func rootCause(err error, limit time.Duration) string {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" && oe.Err != nil {
		return oe.Err.Error()
	}
	if isTimeout(err) {
		return fmt.Sprintf("no answer within %s", limit)
	}
	if oe != nil && oe.Err != nil {
		return oe.Err.Error()
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return de.Error()
	}
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err.Error()
		}
		err = u
	}
}

func paren(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
