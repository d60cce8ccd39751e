package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	corev1 "k8s.io/api/core/v1"

	"github.com/kbak/kbak/backup"
	"github.com/kbak/kbak/deploy"
	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/kube"
	"github.com/kbak/kbak/internal/mover"
	"github.com/kbak/kbak/internal/moverrun"
	"github.com/kbak/kbak/internal/repo"
	"github.com/kbak/kbak/internal/upkeep"
	"github.com/kbak/kbak/uploader"
)

func moverFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "mover-image", EnvVars: []string{"KBAK_MOVER_IMAGE"}, Value: deploy.MoverImage(version), Action: nonEmpty("mover-image", deploy.MoverImage(version)), Usage: "image of the mover pods (the kbak image)", Category: "Movers"},
		&cli.StringFlag{Name: "mover-pull-policy", Value: string(corev1.PullIfNotPresent), Usage: "imagePullPolicy of the mover pods: Always, IfNotPresent or Never", Category: "Movers"},
		&cli.StringFlag{Name: "mover-security", Value: string(deploy.SecurityAuto), Usage: "how mover pods run: auto (what the namespace's Pod Security level admits), unprivileged (as the StatefulSet's user, passes restricted), baseline (root with baseline's capabilities) or privileged (root with DAC_READ_SEARCH)", Category: "Movers"},
		&cli.StringFlag{Name: "secret", Usage: "existing Secret in the namespace with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the movers (default: kbak creates one for the run from your credentials and deletes it after)", Category: "Movers"},
		&cli.IntFlag{Name: "parallel", Value: moverrun.DefaultParallel, Action: atLeastOne("parallel"), Usage: "mover pods at once", Category: "Movers"},
		&cli.DurationFlag{Name: "pod-start-timeout", Value: moverrun.DefaultPodStartTimeout, Action: positive("pod-start-timeout"), Usage: "how long a mover pod may take to start (scheduling, volume binding, image pull)", Category: "Movers"},
		&cli.DurationFlag{Name: "dead-run-age", Value: kube.DeadRunAge, Action: positive("dead-run-age"), Usage: "before it makes its own Secrets, the run deletes the credential and key Secrets of kbak runs in the namespace that have no pod left running and have not marked them alive for this long (runs killed outright)", Category: "Movers"},
	}
}

func backupCommand() *cli.Command {
	return &cli.Command{
		Name:      "backup",
		Usage:     "back up every volume of every ordinal of a StatefulSet",
		ArgsUsage: "sts/NAME",
		Description: `Finds the claims <template>-<statefulset>-<ordinal> of every claim template and
ordinal, then per volume either cuts a CSI VolumeSnapshot and reads a
temporary PVC made from it (method snapshot), or reads the live PVC from a
pod on the same node (method files, for drivers that cannot snapshot). A
mover pod streams each volume as tar + zstd to the repository; the manifest
is written last. Everything kbak creates in the cluster is removed at the
end, on failure and on Ctrl-C too (VolumeSnapshots stay with --keep-snapshots).

Hooks run in every running pod of the StatefulSet: --pre-hook right before
the snapshots are cut (or the files copied), --post-hook right after, always,
even when something failed. A hook is a shell command line run with /bin/sh -c,
or a JSON array run as it is. Hooks run through a small sh wrapper in the
container: beside the pre-hook it leaves a deadman that runs the post-hook by
itself should kbak die before it does (--hook-deadman), and a hook that passes
--hook-timeout is killed in the pod, with its children, before the post-hook
runs. Images without /bin/sh need --hook-deadman off. --hold-hook keeps a
session open in every pod across the cut of them all, for a lock that lasts
as long as its client (MariaDB FLUSH TABLES WITH READ LOCK): kbak cuts once
each session printed the line "kbak: ready", then closes their stdin.

EXAMPLES:
   kbak backup sts/mariadb -n shop
   kbak backup sts/postgres -n shop --pre-hook 'psql -U postgres -c CHECKPOINT' --post-hook 'echo done'
   kbak backup sts/mariadb --pre-hook '["fsfreeze","--freeze","/var/lib/mysql"]' --post-hook '["fsfreeze","--unfreeze","/var/lib/mysql"]'
   kbak backup sts/mariadb --hold-hook '{ echo "FLUSH TABLES WITH READ LOCK;"; echo "SELECT \"kbak: ready\";"; cat; } | mariadb -N -B --unbuffered'
   kbak backup sts/postgres --method files --parallel 4 -o json
   kbak backup sts/mariadb --keep-snapshots --prune --keep-daily 7
   kbak backup sts/mariadb --lock-days 30   # immutable: kept under S3 Object Lock for 30 days

With --lock-days every object of the backup (data, index, trees, file caches,
mover results, manifest) is written under S3 Object Lock retention: until the
date nobody can delete or overwrite it, whatever their credentials; prune,
delete and gc leave it and say until when. Credentials for such a backup need
no delete permission: a --prune they deny is reported as a warning.

` + exitCodesHelp,
		Flags: flags(repoFlags(), kubeFlags(), moverFlags(), []cli.Flag{
			&cli.StringFlag{Name: "method", Value: "auto", Usage: "auto (snapshot when the driver has a VolumeSnapshotClass, else files), snapshot or files"},
			&cli.StringFlag{Name: "snapshot-class", Usage: "VolumeSnapshotClass to use (default: the driver's default class)"},
			&cli.StringFlag{Name: "group", Value: "auto", Usage: "auto (cut the claims of a driver that has a VolumeGroupSnapshotClass in one VolumeGroupSnapshot), always (refuse when a claim cannot be grouped) or never"},
			&cli.StringFlag{Name: "group-snapshot-class", Usage: "VolumeGroupSnapshotClass to use (default: the driver's default class)"},
			&cli.BoolFlag{Name: "keep-snapshots", Usage: "leave the VolumeSnapshots in the cluster for fast restores; deleting or pruning the backup removes them"},
			&cli.DurationFlag{Name: "snapshot-gone-timeout", Value: kube.DefaultSnapshotGoneTimeout, Action: positive("snapshot-gone-timeout"), Usage: "at the end, wait this long for the run's VolumeSnapshots to be gone (the snapshot controller and the CSI driver finish deleting them); those still there are reported as still deleting"},
			&cli.BoolFlag{Name: "include-retained", Usage: "also back up PVCs left by an earlier scale-down (ordinals >= replicas)"},
			&cli.StringFlag{Name: "pre-hook", Usage: "command run in each app pod before the cut", Category: "Hooks"},
			&cli.StringFlag{Name: "post-hook", Usage: "command run in each app pod after the cut, always", Category: "Hooks"},
			&cli.StringFlag{Name: "hook-container", Usage: "container the hooks run in (default: the pod's first)", Category: "Hooks"},
			&cli.StringFlag{Name: "hold-hook", Usage: "command run in each app pod, its stdin open, from after the pre-hook until every volume is cut; kbak cuts once each printed the line '" + backup.HoldReady + "', and ends it by closing its stdin", Category: "Hooks"},
			&cli.StringFlag{Name: "hook-deadman", Usage: "run the post-hook in the pod this long after the pre-hook started, should kbak die before it does (default: twice the hook timeout plus the longest the cut or copy may take); off: no deadman, hooks run without the in-pod sh wrapper", Category: "Hooks"},
			&cli.DurationFlag{Name: "hook-timeout", Value: backup.DefaultHookTimeout, Action: positive("hook-timeout"), Usage: "time limit of one hook in one pod", Category: "Hooks"},
			&cli.StringFlag{Name: "compression", Value: mover.DefaultCompression, Usage: "zstd:1 (fastest) to zstd:4 (smallest)"},
			&cli.IntFlag{Name: "format", Value: catalog.FormatRepo, Usage: "repository format: 2 stores each chunk once and reads only changed files; 1 writes one tar+zstd archive a volume"},
			&cli.BoolFlag{Name: "prune", Usage: "after a Completed backup, prune this StatefulSet's backups by the --keep-* policy", Category: "Retention"},
			outputFlag(), verboseFlag(),
		}, retentionFlags(), lockFlags()),
		Action: backupAction,
	}
}

func backupAction(c *cli.Context) error {
	arg, err := oneArg(c, "a StatefulSet (sts/NAME)")
	if err != nil {
		return err
	}
	name, err := parseStatefulSet(arg)
	if err != nil {
		return err
	}
	format, err := outputFormat(c)
	if err != nil {
		return err
	}
	policy := retentionPolicy(c)
	if c.Bool("prune") {
		if err := policy.Validate(); err != nil {
			return usageError{err}
		}
	}
	repo, err := repoURL(c)
	if err != nil {
		return err
	}
	lock, err := lockRetention(c)
	if err != nil {
		return err
	}
	opts := backup.Options{
		Namespace: c.String("namespace"), StatefulSet: name, Repo: repo,
		Method: backup.Method(c.String("method")), SnapshotClass: c.String("snapshot-class"),
		Group: backup.Group(c.String("group")), GroupSnapshotClass: c.String("group-snapshot-class"),
		KeepSnapshots: c.Bool("keep-snapshots"), IncludeRetained: c.Bool("include-retained"),
		HookContainer: c.String("hook-container"), HookTimeout: c.Duration("hook-timeout"),
		Parallel: c.Int("parallel"), Compression: c.String("compression"), Format: c.Int("format"),
		Image: c.String("mover-image"), PullPolicy: corev1.PullPolicy(c.String("mover-pull-policy")), SecretName: c.String("secret"),
		MoverSecurity:   deploy.Security(c.String("mover-security")),
		PodStartTimeout: c.Duration("pod-start-timeout"), DeadRunAge: c.Duration("dead-run-age"), SnapshotGoneTimeout: c.Duration("snapshot-gone-timeout"),
		LockDays: lock.Days, LockMode: strings.ToLower(string(lock.Mode)),
		KbakVersion: version, Spell: flagSpelling,
	}
	if err := opts.SetHooks(c.String("pre-hook"), c.String("post-hook")); err != nil {
		return usageError{err}
	}
	if err := opts.SetDeadman(c.String("hook-deadman")); err != nil {
		return usageError{err}
	}
	if err := opts.SetHold(c.String("hold-hook")); err != nil {
		return usageError{err}
	}
	var cl *cluster
	if opts.Namespace == "" {
		// The kubeconfig's namespace: reading it asks the API server nothing.
		if cl, err = connect(c); err != nil {
			return err
		}
		opts.Namespace = cl.namespace
	}
	// Every setting is checked before the store is opened and anything is
	// created, as schedules and the agent check theirs.
	if err := opts.Validate(); err != nil {
		return usageError{err}
	}
	// With --lock-days, the manifest (and the repository's config, when
	// the backup creates it) is kept as long as the movers keep the data.
	store, err := openStore(c.Context, c)
	if err != nil {
		return err
	}
	if cl == nil {
		if cl, err = connect(c); err != nil {
			return err
		}
	}
	if opts.SecretName == "" {
		creds, err := moverCredentials(c, repo)
		if err != nil {
			return err
		}
		opts.Credentials = creds
	}
	pp := progress(c)
	opts.Progress, opts.Queued = pp.event, pp.queue
	key, err := repoKey(c, store)
	if err != nil {
		return err
	}
	if ks := c.String("key-secret"); ks != "" && key.Write != nil {
		// The movers mount the same Secret: the run makes no copy of the key.
		ns, name, ok := strings.Cut(ks, "/")
		if !ok {
			ns, name = opts.Namespace, ks
		}
		if ns == opts.Namespace {
			opts.KeySecretName = name
		}
	}
	cat := catalog.New(store, key)
	m, runErr := backup.Run(c.Context, backup.Deps{
		Kube: cl.kube, Snap: cl.snapshots, RestConfig: cl.config, Catalog: cat, Log: logger(c),
	}, opts)
	pp.done()
	if m != nil && (runErr == nil || errors.Is(runErr, backup.ErrPartiallyFailed) || errors.Is(runErr, backup.ErrFailed)) {
		if structured(format) {
			if err := printStructured(c, format, catalog.ManifestKind, m); err != nil {
				return err
			}
		} else if err := printManifest(stdout(c), m); err != nil {
			return err
		}
	}
	switch {
	case errors.Is(runErr, backup.ErrUsage):
		return usageError{runErr}
	case errors.Is(runErr, backup.ErrPartiallyFailed):
		return fmt.Errorf("%w: %w", errPartial, runErr)
	case runErr != nil:
		return runErr
	}
	if !c.Bool("prune") {
		return nil
	}
	pruned, err := upkeep.PruneAfter(c.Context, cat, cl.snapshots, m, upkeep.PruneOptions{Policy: policy})
	if pruned.Denied != "" {
		fmt.Fprintf(stderr(c), "warning: %s\n", pruned.Denied)
		return nil
	}
	for _, d := range pruned.Remove {
		if lb, ok := pruned.LockedBackup(d.Item.ID); ok {
			fmt.Fprintf(stderr(c), "%s\n", lockedLine(lb))
			continue
		}
		fmt.Fprintf(stderr(c), "pruned %s (%s)\n", d.Item.ID, strings.Join(d.Reasons, ", "))
	}
	printDeletedSnapshots(c, pruned.Snapshots)
	printRefusedSnapshots(c, pruned.RefusedSnapshots)
	return err
}

// lockedLine says what Object Lock kept of a backup being deleted.
func lockedLine(lb catalog.LockedBackup) string {
	if lb.Listed {
		return fmt.Sprintf("kept %s: its manifest is under Object Lock until %s; nothing of it was deleted (%d objects)", lb.ID, lockedUntil(lb.LockedObjects), lb.Objects)
	}
	return fmt.Sprintf("deleted %s, but %s stay (kbak gc removes them after)", lb.ID, lb.LockedObjects)
}

// lockedUntil is the date Object Lock keeps objects to, or what keeps them.
func lockedUntil(l repo.LockedObjects) string {
	if l.Until.IsZero() {
		return "a legal hold ends"
	}
	return l.Until.UTC().Format(time.RFC3339)
}

// moverCredentials are the CLI's own credentials for the store at repo,
// handed to the mover pods through a Secret the run creates and deletes.
func moverCredentials(c *cli.Context, repo string) (*deploy.Credentials, error) {
	opts, err := storeOptions(c)
	if err != nil {
		return nil, err
	}
	creds, err := uploader.ResolveCredentials(c.Context, repo, opts)
	if err != nil {
		return nil, err
	}
	if creds.AccessKeyID == "" {
		return nil, nil // anonymous, or the pods' own identity (IAM roles for service accounts)
	}
	out := &deploy.Credentials{AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey, SessionToken: creds.SessionToken}
	if ca := os.Getenv("AWS_CA_BUNDLE"); ca != "" {
		if out.CABundle, err = os.ReadFile(ca); err != nil {
			return nil, fmt.Errorf("read AWS_CA_BUNDLE: %w", err)
		}
	}
	return out, nil
}
