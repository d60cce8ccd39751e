package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
	corev1 "k8s.io/api/core/v1"

	"github.com/kbak/kbak/deploy"
	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/moverrun"
	"github.com/kbak/kbak/restore"
)

func restoreCommand() *cli.Command {
	return &cli.Command{
		Name:      "restore",
		Usage:     "restore a backup into fresh PVCs that a StatefulSet adopts",
		ArgsUsage: "ID|latest",
		Description: `Plans first, then creates one PVC per backed-up claim of each ordinal, named
<claimTemplate>-<statefulset>-<ordinal>, and fills it from a VolumeSnapshot
the backup kept (when it still exists in the target namespace) or from the
repository through a mover pod that checks the sha256 and extracts with
owners, modes and times. Existing PVCs are never touched: a conflict (an
existing target PVC, a running target StatefulSet, a missing storage class)
stops the restore before anything is created. On a new cluster the target
namespace is created.

What a backup holds is not trusted to grant privileges: device nodes are not
created and files lose their setuid and setgid bits and file capabilities,
unless --restore-devices and --restore-setid say otherwise (the mover pods
then get the capabilities for it). The result names what was left out per
claim, the ordinals the backup could not restore, and the plan's notes.

EXAMPLES:
   kbak restore latest --from sts/mariadb -n shop --create-statefulset
   kbak restore mariadb-20261122T020000Z-3f2a --to-name mariadb-restored --dry-run
   kbak restore latest --from sts/mariadb -n shop --to-namespace staging --ordinals 0 --storage-class-map fast=standard

` + exitCodesHelp,
		Flags: flags(repoFlags(), kubeFlags(), moverFlags(), []cli.Flag{
			&cli.StringFlag{Name: "from", Usage: "the backed-up StatefulSet, sts/NAME (needed with latest; -n names its namespace, default the kubeconfig context's)"},
			&cli.StringFlag{Name: "to-namespace", Usage: "namespace to restore into (default: the backup's)"},
			&cli.StringFlag{Name: "to-name", Usage: "StatefulSet name the restored PVCs are named for (default: the backup's)"},
			&cli.StringFlag{Name: "ordinals", Usage: "restore only these ordinals, e.g. 0,2"},
			&cli.StringSliceFlag{Name: "storage-class-map", Usage: "map a storage class, OLD=NEW (repeatable)"},
			&cli.BoolFlag{Name: "create-statefulset", Usage: "re-create the StatefulSet from the backup and wait until it is Ready"},
			&cli.BoolFlag{Name: "from-store", Usage: "download from the repository even when the backup kept VolumeSnapshots"},
			&cli.BoolFlag{Name: "restore-devices", Usage: "create the backup's character and block device nodes (default: skip them and say so)"},
			&cli.BoolFlag{Name: "restore-setid", Usage: "keep setuid and setgid bits and file capabilities (default: clear them and say so)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print the plan and create nothing"},
			outputFlag(), verboseFlag(),
		}),
		Action: restoreAction,
	}
}

// backupManifest resolves ID|latest to a manifest.
func backupManifest(c *cli.Context, cat *catalog.Catalog, ref string) (*catalog.Manifest, error) {
	if ref != "latest" {
		return cat.Get(c.Context, ref)
	}
	from := c.String("from")
	if from == "" {
		return nil, usagef("latest needs --from sts/NAME (-n NAMESPACE if not the kubeconfig context's) to say whose latest backup")
	}
	name, err := parseStatefulSet(from)
	if err != nil {
		return nil, err
	}
	ns, _, err := namespaceScope(c)
	if err != nil {
		return nil, err
	}
	return cat.Latest(c.Context, catalog.Filter{Namespace: ns, StatefulSet: name})
}

// moverSetup reads the mover flags shared by restore and verify.
func moverSetup(c *cli.Context) (image string, pull corev1.PullPolicy, err error) {
	pull = corev1.PullPolicy(c.String("mover-pull-policy"))
	switch pull {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		return "", "", usagef("--mover-pull-policy %q: use Always, IfNotPresent or Never", pull)
	}
	if err := moverrun.CheckSecurity(deploy.Security(c.String("mover-security"))); err != nil {
		return "", "", usageError{err}
	}
	return c.String("mover-image"), pull, nil
}

func restoreOptions(c *cli.Context, repo string) (restore.Options, error) {
	image, pull, err := moverSetup(c)
	if err != nil {
		return restore.Options{}, err
	}
	ordinals, err := restore.ParseOrdinals(c.String("ordinals"))
	if err != nil {
		return restore.Options{}, usageError{err}
	}
	classes, err := restore.ParseStorageClassMap(c.StringSlice("storage-class-map"))
	if err != nil {
		return restore.Options{}, usageError{err}
	}
	opts := restore.Options{
		ToNamespace: c.String("to-namespace"), ToName: c.String("to-name"),
		Ordinals: ordinals, StorageClassMap: classes,
		CreateStatefulSet: c.Bool("create-statefulset"), FromStore: c.Bool("from-store"),
		RestoreDevices: c.Bool("restore-devices"), RestoreSetID: c.Bool("restore-setid"),
		Repo: repo, Parallel: c.Int("parallel"), Image: image, PullPolicy: pull,
		MoverSecurity: deploy.Security(c.String("mover-security")),
		SecretName:    c.String("secret"), PodStartTimeout: c.Duration("pod-start-timeout"), DeadRunAge: c.Duration("dead-run-age"),
		Spell: flagSpelling,
	}
	if opts.SecretName == "" {
		if opts.Credentials, err = moverCredentials(c, repo); err != nil {
			return restore.Options{}, err
		}
	}
	return opts, nil
}

func restoreAction(c *cli.Context) error {
	ref, err := oneArg(c, "a backup ID or latest")
	if err != nil {
		return err
	}
	format, err := outputFormat(c)
	if err != nil {
		return err
	}
	repo, err := repoURL(c)
	if err != nil {
		return err
	}
	opts, err := restoreOptions(c, repo)
	if err != nil {
		return err
	}
	cat, key, err := openCatalogKey(c)
	if err != nil {
		return err
	}
	if key.Read != nil {
		opts.MoverKey = key.File() // a restore's movers open data: they need the read key
	}
	m, err := backupManifest(c, cat, ref)
	if err != nil {
		return err
	}
	cl, err := connect(c)
	if err != nil {
		return err
	}
	pp := progress(c)
	opts.Progress, opts.Queued = pp.event, pp.queue
	deps := restore.Deps{Kube: cl.kube, Snap: cl.snapshots, Log: logger(c)}

	plan, err := restore.NewPlan(c.Context, deps, m, opts)
	if plan != nil && (c.Bool("dry-run") || err != nil) {
		if perr := printPlan(c, format, plan); perr != nil {
			return perr
		}
	}
	if err != nil {
		if errors.Is(err, restore.ErrUsage) {
			return usageError{err}
		}
		return err
	}
	if c.Bool("dry-run") {
		return nil
	}
	res, runErr := restore.Run(c.Context, deps, plan)
	pp.done()
	if res != nil {
		if structured(format) {
			if err := printStructured(c, format, "RestoreResult", res); err != nil {
				return err
			}
		} else {
			printRestoreResult(stdout(c), res)
		}
	}
	switch {
	case errors.Is(runErr, restore.ErrPartiallyFailed):
		return fmt.Errorf("%w: %w", errPartial, runErr)
	case errors.Is(runErr, restore.ErrUsage):
		return usageError{runErr}
	}
	return runErr
}

func printPlan(c *cli.Context, format string, p *restore.Plan) error {
	if structured(format) {
		return printStructured(c, format, "RestorePlan", p)
	}
	w := stdout(c)
	fmt.Fprintf(w, "Restore %s (%s/%s) into %s/%s", p.BackupID, p.FromNamespace, p.FromStatefulSet, p.Namespace, p.StatefulSet)
	if p.CreateNamespace {
		fmt.Fprint(w, ", creating the namespace")
	}
	fmt.Fprintf(w, ", %d replicas\n", p.Replicas)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PVC\tORDINAL\tCLASS\tSIZE\tACCESS\tSOURCE\tDATA\tFILES")
	for _, cl := range p.Claims {
		src := string(cl.Source)
		if cl.Snapshot != "" {
			src += " " + cl.Snapshot
		}
		modes := make([]string, len(cl.AccessModes))
		for i, m := range cl.AccessModes {
			modes[i] = string(m)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%d\n", cl.Name, cl.Ordinal, cl.StorageClass, cl.Size.String(), strings.Join(modes, ","), src, humanBytes(cl.RawBytes), cl.Files)
	}
	_ = tw.Flush()
	for _, s := range p.Skipped {
		fmt.Fprintf(w, "skipped ordinal %d: %s\n", s.Ordinal, s.Reason)
	}
	for _, n := range p.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	for _, cf := range p.Conflicts {
		fmt.Fprintf(w, "conflict: %s\n", cf)
	}
	return nil
}

func printRestoreResult(w io.Writer, res *restore.Result) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PVC\tORDINAL\tSOURCE\tDATA\tFILES\tSTATUS")
	for _, o := range res.Ordinals {
		for _, cl := range o.Claims {
			status := string(cl.Status)
			if cl.Error != "" {
				status += ": " + cl.Error
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%s\n", cl.PVC, o.Ordinal, cl.Source, humanBytes(cl.RawBytes), cl.Files, status)
		}
	}
	_ = tw.Flush()
	if res.CreatedNamespace {
		if len(res.Restored()) > 0 {
			fmt.Fprintf(w, "created namespace %s\n", res.Namespace)
		} else {
			fmt.Fprintf(w, "created namespace %s, deleted again: nothing was restored\n", res.Namespace)
		}
	}
	for _, s := range res.Skipped {
		fmt.Fprintf(w, "skipped ordinal %d: %s\n", s.Ordinal, s.Reason)
	}
	for _, n := range res.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	if res.StatefulSetCreated {
		ready := "not Ready"
		if res.StatefulSetReady {
			ready = "Ready"
		}
		fmt.Fprintf(w, "StatefulSet %s/%s re-created: %s\n", res.Namespace, res.StatefulSet, ready)
	}
	for _, warn := range res.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	if res.NextStep != "" {
		fmt.Fprintf(w, "next: %s\n", res.NextStep)
	}
}
