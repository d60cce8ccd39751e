package main

import (
	"context"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kbak/kbak/internal/kube"
	"github.com/kbak/kbak/uploader"
)

const (
	repoUsage = "repository URL: s3://BUCKET[/PREFIX][?endpoint=URL&region=R&path-style=true] or file:///DIR"
)

func repoFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "repo", EnvVars: []string{"KBAK_REPO"}, Usage: repoUsage, Category: "Repository"},
		&cli.StringFlag{Name: "s3-endpoint", EnvVars: []string{"KBAK_S3_ENDPOINT"}, Usage: "S3 endpoint URL, when the repository URL names none", Category: "Repository"},
		&cli.StringFlag{Name: "s3-region", EnvVars: []string{"KBAK_S3_REGION"}, Usage: "S3 region (default: AWS_REGION, the shared config, or us-east-1)", Category: "Repository"},
		&cli.BoolFlag{Name: "s3-path-style", Usage: "address buckets by path, as MinIO and most self-hosted servers want (default: on when an endpoint is set)", Category: "Repository"},
		&cli.StringFlag{Name: "s3-access-key-id", Usage: "S3 access key id (default: AWS_ACCESS_KEY_ID, AWS_PROFILE or the shared credentials file)", Category: "Repository"},
		&cli.PathFlag{Name: "s3-secret-access-key-file", Usage: "file holding the S3 secret access key (default: AWS_SECRET_ACCESS_KEY or the shared credentials file); never pass secrets as flags", Category: "Repository"},
		&cli.BoolFlag{Name: "s3-use-imds", EnvVars: []string{uploader.EnvUseIMDS}, Category: "Repository",
			Usage: "when nothing else gives S3 credentials, ask the EC2 instance metadata service (an instance profile's); kept in the repository URL as ?imds=true, so mover pods, CronJobs and the agent do too. Off by default: S3-compatible stores have no such service. AWS_EC2_METADATA_DISABLED=true always wins"},
	}, keyFlags()...)
}

// lockFlags put S3 Object Lock retention on what a backup writes.
func lockFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "lock-days", Category: "Object Lock",
			Usage: "keep every object the backup writes under S3 Object Lock retention for N days: nobody can delete or overwrite it before then, prune and delete skip it; the bucket must have Object Lock enabled"},
		&cli.StringFlag{Name: "lock-mode", Value: "compliance", Category: "Object Lock",
			Usage: "retention mode with --lock-days: compliance (nobody can remove the objects early) or governance (users with s3:BypassGovernanceRetention can)"},
	}
}

// lockRetention reads --lock-days and --lock-mode; the zero Retention on a
// command without them.
func lockRetention(c *cli.Context) (uploader.Retention, error) {
	days := c.Int("lock-days")
	if days == 0 {
		return uploader.Retention{}, nil
	}
	if days < 0 || days > 36500 {
		return uploader.Retention{}, usagef("--lock-days %d: give a number of days from 1 to 36500", days)
	}
	mode := uploader.RetentionMode(strings.ToUpper(c.String("lock-mode")))
	switch mode {
	case "", uploader.RetentionCompliance, uploader.RetentionGovernance:
	default:
		return uploader.Retention{}, usagef("--lock-mode %q: use compliance or governance", c.String("lock-mode"))
	}
	return uploader.Retention{Days: days, Mode: mode}, nil
}

// kubeFlags are the cluster flags of the verbs that act in one namespace.
func kubeFlags() []cli.Flag {
	return append([]cli.Flag{namespaceFlag("namespace of the StatefulSet")}, clusterFlags()...)
}

func namespaceFlag(what string) cli.Flag {
	return &cli.StringFlag{Name: "namespace", Aliases: []string{"n"}, Usage: what + " (default: the kubeconfig context's)", Category: "Cluster"}
}

// allNamespacesFlag widens a verb that defaults to one namespace.
func allNamespacesFlag(what string) cli.Flag {
	return &cli.BoolFlag{Name: "all-namespaces", Aliases: []string{"A"}, Usage: what + " of every namespace (-n then may not be given)", Category: "Cluster"}
}

// clusterFlags reach the cluster, for verbs where a namespace means nothing
// (the backup ID, or a configuration, names it).
func clusterFlags() []cli.Flag {
	return []cli.Flag{
		&cli.PathFlag{Name: "kubeconfig", EnvVars: []string{"KUBECONFIG"}, Usage: "kubeconfig file (default: in-cluster config, then ~/.kube/config)", Category: "Cluster"},
		&cli.StringFlag{Name: "context", Usage: "kubeconfig context to use", Category: "Cluster"},
		&cli.DurationFlag{Name: "request-timeout", Value: kube.DefaultRequestTimeout, Action: positive("request-timeout"), Category: "Cluster",
			Usage: "how long the Kubernetes API server may take to answer a request (log follows and exec: to start answering)"},
	}
}

// positive is the Action of a duration flag that must be greater than zero.
func positive(name string) func(*cli.Context, time.Duration) error {
	return func(_ *cli.Context, d time.Duration) error {
		if d <= 0 {
			return usagef("--%s %s: give a positive duration, e.g. --%s 30s", name, d, name)
		}
		return nil
	}
}

// notNegative is the Action of a duration flag that may be zero but not
// less.
func notNegative(name, example string) func(*cli.Context, time.Duration) error {
	return func(_ *cli.Context, d time.Duration) error {
		if d < 0 {
			return usagef("--%s %s: give a duration of 0 or more, e.g. --%s %s", name, d, name, example)
		}
		return nil
	}
}

// atLeastOne is the Action of a count flag whose zero would otherwise
// quietly stand for its default.
func atLeastOne(name string) func(*cli.Context, int) error {
	return func(_ *cli.Context, n int) error {
		if n < 1 {
			return usagef("--%s %d: give 1 or more, or leave the flag out for the default", name, n)
		}
		return nil
	}
}

// nonEmpty is the Action of a string flag whose empty value would
// otherwise quietly stand for its default.
func nonEmpty(name, example string) func(*cli.Context, string) error {
	return func(_ *cli.Context, v string) error {
		if strings.TrimSpace(v) == "" {
			return usagef("--%s is empty: give a value, e.g. --%s %s, or leave the flag out for that default", name, name, example)
		}
		return nil
	}
}

func verboseFlag() cli.Flag {
	return &cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "log information and debug details to stderr (a terminal shows warnings and the progress only)"}
}

func logFormatFlag() cli.Flag {
	return &cli.StringFlag{Name: "log-format", Value: logText, EnvVars: []string{"KBAK_LOG_FORMAT"},
		Usage: "text, or json: log records (progress included) as JSON lines on stderr, for machines; no live progress block",
		Action: func(_ *cli.Context, v string) error {
			if v != logText && v != logJSON {
				return usagef("--log-format %q: use text or json", v)
			}
			return nil
		}}
}

func flags(groups ...[]cli.Flag) []cli.Flag {
	var out []cli.Flag
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

// storeOptions turns the repository flags into uploader options, with the
// Object Lock retention of --lock-days where the command has it.
func storeOptions(c *cli.Context) (uploader.Options, error) {
	opts := uploader.Options{
		Endpoint:    c.String("s3-endpoint"),
		Region:      c.String("s3-region"),
		AccessKeyID: c.String("s3-access-key-id"),
		UseIMDS:     c.Bool("s3-use-imds"),
		Logger:      logger(c),
	}
	var err error
	if opts.Retention, err = lockRetention(c); err != nil {
		return opts, err
	}
	if c.IsSet("s3-path-style") {
		v := c.Bool("s3-path-style")
		opts.PathStyle = &v
	}
	if f := c.Path("s3-secret-access-key-file"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return opts, usagef("read --s3-secret-access-key-file: %v", err)
		}
		opts.SecretAccessKey = uploader.Secret(strings.TrimSpace(string(b)))
	}
	return opts, nil
}

// repoURL returns --repo with every S3 setting of the flags and the
// environment folded into it (endpoint, region, path style), the one URL
// that mover pods, CronJobs and the agent are given: they have neither this
// process's flags nor its environment. A missing --repo is a usage error
// saying how to give one.
func repoURL(c *cli.Context) (string, error) {
	repo := c.String("repo")
	if repo == "" {
		return "", usagef("no repository: pass --repo s3://BUCKET/PREFIX (or file:///DIR), or set KBAK_REPO")
	}
	opts, err := storeOptions(c)
	if err != nil {
		return "", err
	}
	return uploader.ResolveURL(c.Context, repo, opts)
}

// openStore opens the repository named by the flags and checks it is
// reachable, so that a wrong bucket or credentials fail before any work.
func openStore(ctx context.Context, c *cli.Context) (uploader.Store, error) {
	repo, err := repoURL(c)
	if err != nil {
		return nil, err
	}
	opts, err := storeOptions(c)
	if err != nil {
		return nil, err
	}
	return uploader.Open(ctx, repo, opts)
}
