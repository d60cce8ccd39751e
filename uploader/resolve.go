package uploader

import (
	"context"
	"os"
)

// Resolve folds every setting that Open would take from Options and the
// environment into the location itself, so that a process that has neither
// (a mover pod, a CronJob run, the agent) reaches the same store from the
// URL alone. Settings already in the URL win, as they do in Open.
func Resolve(ctx context.Context, loc Location, opts Options) (Location, error) {
	if loc.Scheme != "s3" {
		return loc, nil
	}
	if loc.Endpoint == "" {
		loc.Endpoint = firstNonEmpty(opts.Endpoint, os.Getenv("AWS_ENDPOINT_URL_S3"), os.Getenv("AWS_ENDPOINT_URL"))
	}
	if loc.Endpoint != "" {
		if err := checkEndpoint(loc.Endpoint); err != nil {
			return Location{}, badURL("endpoint: %v", err)
		}
	}
	if loc.Region == "" {
		loc.Region = opts.Region
	}
	if loc.Region == "" {
		// The standard chain (AWS_REGION, AWS_DEFAULT_REGION, the shared
		// config's profile) reads only the environment and files here.
		cfg, err := loadAWSConfig(ctx, opts.Logger, false)
		if err != nil {
			return Location{}, err
		}
		loc.Region = cfg.Region
	}
	loc.UseIMDS = useIMDS(loc, opts)
	if loc.PathStyle == nil && opts.PathStyle != nil {
		v := *opts.PathStyle
		loc.PathStyle = &v
	}
	return loc, nil
}

// ResolveURL is Resolve for a repository URL; it returns the URL in
// canonical form with the resolved settings in its query.
func ResolveURL(ctx context.Context, repoURL string, opts Options) (string, error) {
	loc, err := ParseURL(repoURL)
	if err != nil {
		return "", err
	}
	if loc, err = Resolve(ctx, loc, opts); err != nil {
		return "", err
	}
	return loc.String(), nil
}
