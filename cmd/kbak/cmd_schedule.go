package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/kbak/kbak/backup"
	"github.com/kbak/kbak/deploy"
	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/schedule"
	"github.com/kbak/kbak/uploader"
)

func scheduleCommand() *cli.Command {
	return &cli.Command{
		Name:  "schedule",
		Usage: "run backups on a cron schedule as a CronJob in the cluster",
		Description: `A schedule is a CronJob in the StatefulSet's namespace that runs
kbak backup --prune with its own ServiceAccount and least-privilege RBAC.
Store credentials come from a Secret you name (keys AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY), never from the manifests.`,
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "create a CronJob, ServiceAccount and least-privilege RBAC that back up a StatefulSet",
				ArgsUsage: "NAME sts/STATEFULSET",
				Description: `Every run backs up, then prunes by the --keep-* policy (never the newest
Completed backup). A failed run exits non-zero, so its Job shows it.
Cron specs have five fields or a descriptor (@hourly, @daily, @weekly,
@monthly); @every is for kbak agent only, the CronJob controller has no such thing.

EXAMPLES:
   kubectl -n shop create secret generic kbak-store --from-literal=AWS_ACCESS_KEY_ID=... --from-literal=AWS_SECRET_ACCESS_KEY=...
   kbak schedule create nightly sts/mariadb -n shop --cron '0 2 * * *' --time-zone Europe/Paris --secret kbak-store --keep-daily 7 --keep-weekly 4
   kbak schedule create hourly sts/mariadb -n shop --cron @hourly --secret kbak-store --keep-last 24 --dry-run=client -o yaml
   kbak schedule create nightly sts/mariadb -n shop --cron '0 2 * * *' --secret kbak-append-only --keep-daily 7 --lock-days 30

With --lock-days every run keeps what it writes under S3 Object Lock (see kbak
backup --help). The Secret's credentials then need no delete permission: a
run whose pruning the store denies still succeeds, with a warning, and the
backups are pruned where deletes are allowed (kbak prune).

` + exitCodesHelp,
				Flags: flags(repoFlags(), kubeFlags(), retentionFlags(), []cli.Flag{
					&cli.StringFlag{Name: "cron", Usage: "cron spec: five fields or @hourly, @daily, @weekly, @monthly"},
					&cli.StringFlag{Name: "time-zone", Usage: "IANA time zone of the cron spec (default: the controller's, UTC on most clusters)"},
					&cli.StringFlag{Name: "secret", Usage: "Secret in the namespace holding AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"},
					&cli.StringFlag{Name: "image", Aliases: []string{"mover-image"}, EnvVars: []string{"KBAK_MOVER_IMAGE"}, Value: deploy.MoverImage(version), Action: nonEmpty("image", deploy.MoverImage(version)), Usage: "kbak image of the CronJob and its movers"},
					&cli.StringFlag{Name: "pull-policy", Aliases: []string{"mover-pull-policy"}, Value: string(corev1.PullIfNotPresent), Usage: "imagePullPolicy: Always, IfNotPresent or Never"},
					&cli.StringFlag{Name: "method", Usage: "backup method: auto, snapshot or files (default auto)"},
					&cli.StringFlag{Name: "mover-security", Usage: "how mover pods run: auto, unprivileged, baseline or privileged (default auto; see kbak backup --help)"},
					&cli.StringFlag{Name: "snapshot-class", Usage: "VolumeSnapshotClass to use"},
					&cli.StringFlag{Name: "group", Usage: "auto, always or never: cut the claims in one VolumeGroupSnapshot (as kbak backup --group; default auto)"},
					&cli.StringFlag{Name: "group-snapshot-class", Usage: "VolumeGroupSnapshotClass to use"},
					&cli.BoolFlag{Name: "keep-snapshots", Usage: "leave each backup's VolumeSnapshots in the cluster"},
					&cli.IntFlag{Name: "parallel", Action: atLeastOne("parallel"), Usage: "mover pods at once (default 2)"},
					&cli.StringFlag{Name: "pre-hook", Usage: "command run in each app pod before the cut", Category: "Hooks"},
					&cli.StringFlag{Name: "post-hook", Usage: "command run in each app pod after the cut", Category: "Hooks"},
					&cli.StringFlag{Name: "hook-container", Usage: "container the hooks run in", Category: "Hooks"},
					&cli.StringFlag{Name: "hold-hook", Usage: "as kbak backup --hold-hook", Category: "Hooks"},
					&cli.StringFlag{Name: "hook-deadman", Usage: "as kbak backup --hook-deadman: a duration, or off", Category: "Hooks"},
					&cli.BoolFlag{Name: "suspend", Usage: "create the CronJob suspended"},
					&cli.DurationFlag{Name: "run-deadline", Value: deploy.DefaultRunDeadline, Action: positive("run-deadline"),
						Usage: "stop a run still going after this long (the Job's activeDeadlineSeconds), so a hung run does not hold back the next"},
					&cli.StringFlag{Name: "dry-run", Usage: "client: print the manifests instead of applying them (a bare --dry-run is client)"},
					&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "yaml", Usage: "with --dry-run=client: yaml or json"},
				}, lockFlags()),
				Action: scheduleCreate,
			},
			{
				Name:  "list",
				Usage: "list schedules with their next runs, last successful backup and whether they are overdue",
				Description: `EXAMPLES:
   kbak schedule list -n shop
   kbak schedule list -A -o json`,
				Flags: flags(repoFlags(), kubeFlags(), []cli.Flag{
					&cli.BoolFlag{Name: "all-namespaces", Aliases: []string{"A"}, Usage: "list schedules of every namespace"},
					outputFlag(),
				}),
				Action: scheduleList,
			},
			{
				Name:      "delete",
				Usage:     "delete a schedule and exactly what create made",
				ArgsUsage: "NAME",
				Description: `Backups already made stay in the repository.

EXAMPLES:
   kbak schedule delete nightly -n shop`,
				Flags: kubeFlags(),
				Action: func(c *cli.Context) error {
					name, err := oneArg(c, "a schedule NAME")
					if err != nil {
						return err
					}
					cl, err := connect(c)
					if err != nil {
						return err
					}
					gone, err := schedule.Delete(c.Context, cl.kube, cl.namespace, name)
					for _, g := range gone {
						fmt.Fprintf(stdout(c), "deleted %s\n", g)
					}
					return err
				},
			},
		},
	}
}

func scheduleCreate(c *cli.Context) error {
	if c.NArg() != 2 {
		return usagef("schedule create takes NAME sts/STATEFULSET (see `kbak schedule create --help`)")
	}
	name := c.Args().Get(0)
	sts, err := parseStatefulSet(c.Args().Get(1))
	if err != nil {
		return err
	}
	format, err := manifestsOutput(c)
	if err != nil {
		return err
	}
	dry := c.String("dry-run")
	repo, err := repoURL(c)
	if err != nil {
		return err
	}
	lock, err := lockRetention(c)
	if err != nil {
		return err
	}
	ns := c.String("namespace")
	var cl *cluster
	if dry == "" || ns == "" {
		if cl, err = connect(c); err != nil {
			return err
		}
		ns = cl.namespace
	}
	o := schedule.CreateOptions{
		Name: name, Namespace: ns, StatefulSet: sts,
		Cron: c.String("cron"), TimeZone: c.String("time-zone"), Policy: retentionPolicy(c), Suspend: c.Bool("suspend"),
		Repo: repo, S3Endpoint: c.String("s3-endpoint"), S3Region: c.String("s3-region"), S3PathStyle: c.Bool("s3-path-style"),
		Secret: c.String("secret"), KeySecret: c.String("key-secret"), Image: c.String("image"), PullPolicy: corev1.PullPolicy(c.String("pull-policy")),
		Method: c.String("method"), MoverSecurity: c.String("mover-security"), SnapshotClass: c.String("snapshot-class"), KeepSnapshots: c.Bool("keep-snapshots"),
		Group: c.String("group"), GroupSnapshotClass: c.String("group-snapshot-class"),
		Parallel: c.Int("parallel"), PreHook: c.String("pre-hook"), PostHook: c.String("post-hook"), HookContainer: c.String("hook-container"),
		HookDeadman: c.String("hook-deadman"), HoldHook: c.String("hold-hook"), RunDeadline: c.Duration("run-deadline"),
		LockDays: lock.Days, LockMode: strings.ToLower(string(lock.Mode)),
	}
	objs, err := schedule.Render(o)
	if err != nil {
		return usageError{err}
	}
	if dry == "client" {
		return printObjects(c, format, objs)
	}
	created, err := schedule.Create(c.Context, cl.kube, o)
	if err != nil {
		return err
	}
	for _, obj := range created {
		fmt.Fprintf(stdout(c), "applied %s\n", objectName(obj))
	}
	return nil
}

// printObjects prints Kubernetes objects as one v1 List, which `kubectl
// apply -f -` reads in either format.
func printObjects(c *cli.Context, format string, objs []runtime.Object) error {
	b, err := deploy.List(objs...)
	if err != nil {
		return err
	}
	switch format {
	case formatYAML:
		if b, err = yaml.JSONToYAML(b); err != nil {
			return fmt.Errorf("encode List as YAML: %w", err)
		}
	case formatJSON:
		var buf bytes.Buffer
		if err := json.Indent(&buf, b, "", "  "); err != nil {
			return fmt.Errorf("encode List: %w", err)
		}
		b = append(buf.Bytes(), '\n')
	default:
		return usagef("unknown output format %q: use -o yaml or -o json", format)
	}
	_, err = stdout(c).Write(b)
	return err
}

// manifestsOutput checks -o and --dry-run of a verb that prints manifests;
// a bare --dry-run is client (see permuteArgs).
func manifestsOutput(c *cli.Context) (string, error) {
	if dry := c.String("dry-run"); dry != "" && dry != "client" {
		return "", usagef("--dry-run=%s: only --dry-run=client is supported (kbak prints what it would apply)", dry)
	}
	switch o := c.String("output"); o {
	case formatYAML, formatJSON:
		return o, nil
	default:
		return "", usagef("unknown output format %q: use -o yaml or -o json", o)
	}
}

func objectName(obj runtime.Object) string {
	kind := obj.GetObjectKind().GroupVersionKind().Kind
	if m, ok := obj.(interface{ GetName() string }); ok {
		return kind + "/" + m.GetName()
	}
	return kind
}

func scheduleList(c *cli.Context) error {
	format, err := outputFormat(c)
	if err != nil {
		return err
	}
	cl, err := connect(c)
	if err != nil {
		return err
	}
	ns := cl.namespace
	if c.Bool("all-namespaces") {
		ns = ""
	}
	var cat schedule.LatestFinder
	if c.String("repo") != "" {
		store, err := openStore(c.Context, c)
		if err != nil {
			return err
		}
		key, err := repoKey(c, store)
		if err != nil {
			return err
		}
		cat = catalog.New(store, key)
	}
	now := time.Now()
	list, err := schedule.List(c.Context, cl.kube, cat, ns, now)
	if err != nil {
		return err
	}
	if structured(format) {
		return printStructured(c, format, "ScheduleList", listOf("ScheduleList", list))
	}
	return schedule.WriteTable(stdout(c), list, now)
}

func agentCommand() *cli.Command {
	return &cli.Command{
		Name:  "agent",
		Usage: "run several schedules in one long-running process, with /metrics and /healthz",
		Description: `Runs the backups of a configuration file on robfig/cron (a run still going
is skipped, a panic is recovered), prunes after each Completed backup and
serves Prometheus metrics per schedule. In a cluster, kbak deploy agent
prints its Deployment and RBAC.

CONFIGURATION (YAML):
   listen: ":9090"
   repo: s3://backups/prod?endpoint=https://minio.example.com
   secret: kbak-store
   runDeadline: 6h
   schedules:
     - name: mariadb-nightly
       namespace: shop
       statefulset: mariadb
       cron: "0 2 * * *"
       keepDaily: 7
       lockDays: 30          # optional: S3 Object Lock, as kbak backup --lock-days

EXAMPLES:
   kbak agent --config agent.yaml`,
		Flags: flags(repoFlags(), clusterFlags(), moverFlags(), []cli.Flag{
			&cli.PathFlag{Name: "config", Required: true, Usage: "agent configuration file"},
			verboseFlag(),
		}),
		Action: func(c *cli.Context) error {
			cfg, err := schedule.LoadConfig(c.Path("config"))
			if err != nil {
				return usageError{err}
			}
			if err := resolveScheduleRepos(c, cfg.Schedules); err != nil {
				return err
			}
			image, pull, err := moverSetup(c)
			if err != nil {
				return err
			}
			cl, err := connect(c)
			if err != nil {
				return err
			}
			r := schedule.BackupRunner{
				Deps: backup.Deps{Kube: cl.kube, Snap: cl.snapshots, RestConfig: cl.config, Log: serviceLogger(c)},
				OpenCatalog: func(ctx context.Context, repo string, lock uploader.Retention) (schedule.RunnerCatalog, error) {
					opts, err := storeOptions(c)
					if err != nil {
						return nil, err
					}
					opts.Retention = lock
					s, err := uploader.Open(ctx, repo, opts)
					if err != nil {
						return nil, err
					}
					key, err := repoKey(c, s)
					if err != nil {
						return nil, err
					}
					return catalog.New(s, key), nil
				},
				Defaults: backup.Options{Image: image, PullPolicy: pull, MoverSecurity: deploy.Security(c.String("mover-security")), Parallel: c.Int("parallel"), PodStartTimeout: c.Duration("pod-start-timeout"), DeadRunAge: c.Duration("dead-run-age"), KbakVersion: version},
			}
			// Each schedule's runs with the agent's own settings, checked
			// as kbak backup checks its flags, before the first run.
			for _, s := range cfg.Schedules {
				if _, err := s.BackupOptions(r.Defaults); err != nil {
					return usageError{fmt.Errorf("schedule %s: %w", s.Name, err)}
				}
			}
			a, err := schedule.NewAgent(cfg, r.Run, serviceLogger(c), time.Now)
			if err != nil {
				return usageError{err}
			}
			a.Version, a.LastSuccess = version, r.LastSuccess
			a.Healthy = func(ctx context.Context) error {
				if err := cl.kube.Discovery().RESTClient().Get().AbsPath("/version").Do(ctx).Error(); err != nil {
					return fmt.Errorf("cannot reach the Kubernetes API server: %w", err)
				}
				return nil
			}
			return a.Run(c.Context)
		},
	}
}

func deployCommand() *cli.Command {
	return &cli.Command{
		Name:  "deploy",
		Usage: "print the manifests that run kbak in a cluster",
		Subcommands: []*cli.Command{{
			Name:  "agent",
			Usage: "print the agent's Namespace, Deployment, ServiceAccount, RBAC, ConfigMap and Service",
			Description: `Prints one v1 List (YAML, or JSON with -o json) to apply with kubectl;
nothing is applied. Without --config the agent has no schedules (the
kustomize base in deploy/kustomize is the same).

EXAMPLES:
   kbak deploy agent --config agent.yaml | kubectl apply -f -
   kbak deploy agent -n backups --image registry.example.com/kbak:1.0`,
			Flags: []cli.Flag{
				&cli.PathFlag{Name: "config", Usage: "agent configuration file (its schedules' namespaces get the backup permissions)"},
				&cli.StringFlag{Name: "namespace", Aliases: []string{"n"}, Value: deploy.DefaultAgentNamespace, Usage: "namespace of the agent"},
				&cli.StringFlag{Name: "name", Value: deploy.DefaultAgentName, Usage: "name of the agent's Deployment and RBAC"},
				&cli.StringFlag{Name: "image", Aliases: []string{"mover-image"}, EnvVars: []string{"KBAK_MOVER_IMAGE"}, Value: deploy.MoverImage(version), Action: nonEmpty("image", deploy.MoverImage(version)), Usage: "kbak image of the agent and its movers"},
				&cli.StringFlag{Name: "pull-policy", Value: string(corev1.PullIfNotPresent), Usage: "imagePullPolicy"},
				&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "yaml", Usage: "yaml or json: a v1 List"},
				&cli.StringFlag{Name: "dry-run", Usage: "client (the only kind: deploy agent applies nothing, it prints)"},
			},
			Action: func(c *cli.Context) error {
				format, err := manifestsOutput(c)
				if err != nil {
					return err
				}
				a := deploy.Agent{Namespace: c.String("namespace"), Name: c.String("name"), Image: c.String("image"), PullPolicy: corev1.PullPolicy(c.String("pull-policy"))}
				var objs []runtime.Object
				if p := c.Path("config"); p != "" {
					cfg, err := schedule.LoadConfig(p)
					if err != nil {
						return usageError{err}
					}
					if objs, err = schedule.AgentObjects(cfg, a); err != nil {
						return usageError{err}
					}
				} else {
					base := deploy.BaseAgent()
					base.Namespace, base.Name, base.Image, base.PullPolicy = a.Namespace, a.Name, a.Image, a.PullPolicy
					objs = base.Objects()
				}
				return printObjects(c, format, objs)
			},
		}},
	}
}

// resolveScheduleRepos folds the agent's own S3 settings (flags and
// environment) into every schedule's repository URL, which its mover pods
// get as their only description of the store.
func resolveScheduleRepos(c *cli.Context, specs []schedule.ScheduleSpec) error {
	opts, err := storeOptions(c)
	if err != nil {
		return err
	}
	for i := range specs {
		repo, err := uploader.ResolveURL(c.Context, specs[i].Repo, opts)
		if err != nil {
			return fmt.Errorf("schedule %s: %w", specs[i].Name, err)
		}
		specs[i].Repo = repo
	}
	return nil
}
