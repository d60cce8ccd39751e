package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/kube"
	"github.com/kbak/kbak/internal/repo"
	"github.com/kbak/kbak/internal/retention"
	"github.com/kbak/kbak/internal/seal"
	"github.com/kbak/kbak/internal/upkeep"
	"github.com/kbak/kbak/restore"
	"github.com/kbak/kbak/uploader"
)

func openCatalog(c *cli.Context) (*catalog.Catalog, error) {
	cat, _, err := openCatalogKey(c)
	return cat, err
}

// openCatalogKey opens the catalog with the key the flags name, and returns
// the key too.
func openCatalogKey(c *cli.Context) (*catalog.Catalog, seal.Key, error) {
	store, err := openStore(c.Context, c)
	if err != nil {
		return nil, seal.Key{}, err
	}
	key, err := repoKey(c, store)
	if err != nil {
		return nil, seal.Key{}, err
	}
	return catalog.New(store, key), key, nil
}

func listCommand() *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "list the restorable backups in the repository, newest first",
		Description: `Works from the repository alone: no cluster needed. Backups still running or
left by a crash have no manifest yet and are not listed (see kbak gc).

Lists the backups of the kubeconfig context's namespace, or of -n
NAMESPACE; -A lists those of every namespace. SIZE is the data backed up,
ADDED what the backup added to the repository; -o wide adds the creation
time and the methods. No backups is no error: a line on stderr, exit 0.

EXAMPLES:
   kbak list
   kbak list -A -o wide
   kbak list -n shop --statefulset mariadb -o json`,
		Flags: flags(repoFlags(), []cli.Flag{
			namespaceFlag("only backups of this namespace"),
			allNamespacesFlag("list backups"),
			&cli.StringFlag{Name: "statefulset", Usage: "only backups of this StatefulSet"},
			wideOutputFlag(), verboseFlag(),
		}, clusterFlags()),
		Action: func(c *cli.Context) error {
			format, err := outputFormat(c, formatWide)
			if err != nil {
				return err
			}
			ns, all, err := namespaceScope(c)
			if err != nil {
				return err
			}
			cat, err := openCatalog(c)
			if err != nil {
				return err
			}
			list, err := cat.List(c.Context, catalog.Filter{Namespace: ns, StatefulSet: c.String("statefulset")})
			if err != nil {
				return err
			}
			// ADDED is what each backup added; the shared data they all
			// draw on is the repository's.
			u, err := cat.DataUsage(c.Context)
			if err != nil {
				logger(c).Debug("repository usage", "err", err)
			}
			if u != nil {
				for i := range list {
					if list[i].Format == catalog.FormatRepo {
						list[i].RepositoryBytes = u.PackBytes + u.IndexBytes
					}
				}
			}
			if structured(format) {
				return printStructured(c, format, "BackupList", listOf("BackupList", list))
			}
			if len(list) == 0 {
				// As kubectl: no header, a line for a person on stderr, exit 0.
				if all {
					fmt.Fprintln(stderr(c), "No backups found")
				} else {
					fmt.Fprintf(stderr(c), "No backups found in namespace %s\n", ns)
				}
				return nil
			}
			cols := summaryColumns{namespace: all, statefulSet: c.String("statefulset") == "", wide: format == formatWide}
			if err := printSummaries(stdout(c), list, cols, clock()); err != nil {
				return err
			}
			if u != nil {
				fmt.Fprintf(stderr(c), "repository data: %s in %d packs and %d index objects, shared by every backup of format 2 (kbak repo info)\n", humanBytes(u.PackBytes+u.IndexBytes), u.Packs, u.IndexObjects)
			}
			return nil
		},
	}
}

// clock is the time tables measure ages from; tests pin it.
var clock = time.Now

// summaryColumns says which columns of kbak list a listing needs: the
// namespace only with -A and the StatefulSet only when not filtered by
// it, as kubectl drops what the command line already says; -o wide adds
// the creation time, the methods and a manifest's error in full.
type summaryColumns struct {
	namespace, statefulSet, wide bool
}

func printSummaries(w io.Writer, list []catalog.Summary, cols summaryColumns, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(namespace, id, statefulSet string, rest ...string) {
		cells := []string{}
		if cols.namespace {
			cells = append(cells, namespace)
		}
		cells = append(cells, id)
		if cols.statefulSet {
			cells = append(cells, statefulSet)
		}
		fmt.Fprintln(tw, strings.Join(append(cells, rest...), "\t"))
	}
	header := []string{"STATUS", "VOLUMES", "SIZE", "ADDED", "AGE"}
	if cols.wide {
		header = append(header, "CREATED", "METHOD")
	}
	row("NAMESPACE", "ID", "STATEFULSET", header...)
	for _, s := range list {
		status := string(s.Status)
		if s.Error != "" {
			status = "Unreadable"
			if cols.wide {
				status += ": " + s.Error
			}
		}
		cells := []string{status, fmt.Sprint(s.Volumes), humanBytes(s.RawBytes), humanBytes(s.StoredBytes), duration.HumanDuration(now.Sub(s.Created))}
		if cols.wide {
			methods := make([]string, len(s.Methods))
			for i, m := range s.Methods {
				methods[i] = string(m)
			}
			cells = append(cells, s.Created.UTC().Format(time.RFC3339), strings.Join(methods, ","))
		}
		row(s.Namespace, s.ID, s.StatefulSet, cells...)
	}
	return tw.Flush()
}

func describeCommand() *cli.Command {
	return &cli.Command{
		Name:      "describe",
		Usage:     "show one backup: its StatefulSet, volumes, methods, sizes and errors",
		ArgsUsage: "ID",
		Description: `EXAMPLES:
   kbak describe mariadb-20261122T020000Z-3f2a
   kbak describe mariadb-20261122T020000Z-3f2a -o json   # the whole manifest

In an encrypted repository the StatefulSet spec is sealed to the read keys:
-o json needs a read key; the table says whether the spec is sealed.`,
		Flags: flags(repoFlags(), []cli.Flag{outputFlag(), verboseFlag()}),
		Action: func(c *cli.Context) error {
			id, err := oneArg(c, "a backup ID")
			if err != nil {
				return err
			}
			format, err := outputFormat(c)
			if err != nil {
				return err
			}
			cat, err := openCatalog(c)
			if err != nil {
				return err
			}
			m, err := cat.Get(c.Context, id)
			if err != nil {
				return err
			}
			if structured(format) {
				if m.SpecSealed() {
					return fmt.Errorf("%w: -o json and -o yaml print the statefulset spec, which is sealed to the read keys: give a read key (--key-file with an AGE-SECRET-KEY-1 file, or --passphrase-file), or drop -o for the rest", seal.ErrNoReadKey)
				}
				return printStructured(c, format, catalog.ManifestKind, m)
			}
			return printManifest(stdout(c), m)
		},
	}
}

func printManifest(w io.Writer, m *catalog.Manifest) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "ID:\t%s\n", m.ID)
	fmt.Fprintf(tw, "StatefulSet:\t%s/%s\n", m.Namespace, m.StatefulSet)
	fmt.Fprintf(tw, "Status:\t%s\n", m.Status)
	fmt.Fprintf(tw, "Created:\t%s\n", m.Created.UTC().Format(time.RFC3339))
	fmt.Fprintf(tw, "Duration:\t%s\n", m.Finished.Sub(m.Started).Round(time.Millisecond))
	fmt.Fprintf(tw, "Snapshot spread:\t%s\n", m.SnapshotSpread.Duration)
	fmt.Fprintf(tw, "kbak version:\t%s\n", m.KbakVersion)
	fmt.Fprintf(tw, "Format:\t%s\n", formatName(m.Format))
	fmt.Fprintf(tw, "Cluster:\t%s\n", m.ClusterID)
	if m.SpecSealed() {
		fmt.Fprintf(tw, "Spec:\tsealed to the read keys (give a read key to see it)\n")
	}
	for _, h := range m.Hooks {
		line := fmt.Sprintf("%s in %s", h.Name, h.Pod)
		if h.DeadmanSeconds > 0 {
			line += fmt.Sprintf(" (deadman %ds)", h.DeadmanSeconds)
		}
		if h.ThawedBy != "" {
			line += " (thawed by " + h.ThawedBy + ")"
		}
		if h.Error != "" {
			line += ": " + h.Error
		}
		fmt.Fprintf(tw, "Hook:\t%s\n", line)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PVC\tORDINAL\tCLASS\tSIZE\tMETHOD\tCONSISTENCY\tDATA\tREAD\tADDED\tFILES\tUNCHANGED\tSTATUS")
	for _, v := range m.Volumes {
		status := string(v.Status)
		if v.Error != "" {
			status += ": " + v.Error
		}
		read, unchanged := humanBytes(v.RawBytes), "-"
		if m.Format == catalog.FormatRepo {
			read, unchanged = humanBytes(v.ReadBytes), fmt.Sprint(v.SkippedFiles)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", v.PVC, v.Ordinal, v.StorageClass, v.Capacity.String(),
			v.Method, v.Consistency, humanBytes(v.RawBytes), read, humanBytes(v.StoredBytes), v.Files, unchanged, status)
	}
	return tw.Flush()
}

func formatName(f int) string {
	if f == catalog.FormatRepo {
		return "2 (deduplicated: unchanged data is stored once)"
	}
	return "1 (one tar+zstd archive a volume)"
}

func deleteCommand() *cli.Command {
	return &cli.Command{
		Name:      "delete",
		Usage:     "delete one backup from the repository (and the VolumeSnapshots it kept)",
		ArgsUsage: "ID",
		Description: `Asks before it deletes when stdin is a terminal; otherwise (scripts, CI) it
deletes only with --yes. --dry-run shows what would go and deletes nothing.

The manifest goes first, so an interrupted delete leaves an incomplete backup
that kbak gc finishes. Snapshots kept with --keep-snapshots are deleted from
the cluster when it is reachable; otherwise kbak names them. A backup written
with --lock-days whose manifest is still under S3 Object Lock is kept whole
and stays listed; kbak says until when (that is no failure).

EXAMPLES:
   kbak delete mariadb-20261122T020000Z-3f2a
   kbak delete mariadb-20261122T020000Z-3f2a --dry-run
   kbak delete mariadb-20261122T020000Z-3f2a --yes   # in a script`,
		Flags: flags(repoFlags(), clusterFlags(), []cli.Flag{
			&cli.BoolFlag{Name: "yes", Aliases: []string{"y", "confirm"}, Usage: "delete without asking (needed when stdin is not a terminal)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "show what would be deleted and delete nothing"},
			verboseFlag(),
		}),
		Action: func(c *cli.Context) error {
			id, err := oneArg(c, "a backup ID")
			if err != nil {
				return err
			}
			dry := c.Bool("dry-run")
			if !dry && !c.Bool("yes") && !console.isTerminal() {
				return usagef("delete %s: stdin is not a terminal to ask on: pass --yes to delete without asking, or --dry-run to see what would go", id)
			}
			cat, err := openCatalog(c)
			if err != nil {
				return err
			}
			if dry || !c.Bool("yes") {
				m, err := cat.Get(c.Context, id)
				if err != nil {
					return err
				}
				if dry {
					fmt.Fprintf(stdout(c), "would delete %s\n", describeForDelete(m))
					return nil
				}
				ok, err := console.confirm(stderr(c), fmt.Sprintf("Delete %s? [y/N] ", describeForDelete(m)))
				if err != nil {
					return err
				}
				if !ok {
					fmt.Fprintf(stderr(c), "not deleted: %s\n", id)
					return nil
				}
			}
			m, err := cat.Delete(c.Context, id)
			var locked *catalog.LockedBackup
			switch {
			case errors.As(err, &locked) && locked.Listed:
				fmt.Fprintln(stdout(c), lockedLine(*locked))
				return nil
			case errors.As(err, &locked):
				fmt.Fprintln(stdout(c), lockedLine(*locked))
			case err != nil:
				return err
			default:
				fmt.Fprintf(stdout(c), "deleted %s\n", id)
			}
			if m == nil || m.Format == catalog.FormatRepo {
				data, err := cat.SweepData(c.Context, repo.SweepOptions{Grace: catalog.DataGrace})
				printSweep(c, data, false)
				if err != nil {
					fmt.Fprintf(stderr(c), "repository data: not freed now (%s); the next kbak prune or kbak gc frees it\n", catalog.OneLine(err.Error()))
				}
			}
			return deleteKeptSnapshots(c, []*catalog.Manifest{m})
		},
	}
}

// describeForDelete names a backup the way a person checks it before it
// goes: whose it is, when and what it holds.
func describeForDelete(m *catalog.Manifest) string {
	s := fmt.Sprintf("backup %s of sts/%s in namespace %s, %s, %s, %d volumes", m.ID, m.StatefulSet, m.Namespace,
		m.Created.UTC().Format(time.RFC3339), m.Status, len(m.Volumes))
	if kept, _ := upkeep.KeptSnapshots([]*catalog.Manifest{m}); len(kept) > 0 {
		s += fmt.Sprintf(", and its VolumeSnapshots %s", upkeep.Names(kept))
	}
	return s
}

// deleteKeptSnapshots removes the VolumeSnapshots that deleted backups kept
// in the cluster, connecting to it only when there are any. A snapshot
// that is not provably the backup's is left alone, with a warning.
func deleteKeptSnapshots(c *cli.Context, deleted []*catalog.Manifest) error {
	kept, refused := upkeep.KeptSnapshots(deleted)
	if len(kept) == 0 {
		printRefusedSnapshots(c, refused)
		return nil
	}
	cl, err := connect(c)
	if err != nil {
		printRefusedSnapshots(c, refused)
		return fmt.Errorf("the deleted backups kept VolumeSnapshots %s, but the cluster is not reachable (%v): delete them with kubectl", upkeep.Names(kept), err)
	}
	done, err := upkeep.DeleteKeptSnapshots(c.Context, cl.snapshots, deleted, 0)
	printDeletedSnapshots(c, done.Deleted)
	printRefusedSnapshots(c, done.Refused)
	return err
}

func printDeletedSnapshots(c *cli.Context, snaps []catalog.Snapshot) {
	for _, s := range snaps {
		fmt.Fprintf(stdout(c), "deleted VolumeSnapshot %s/%s\n", s.Namespace, s.Name)
	}
}

// printRefusedSnapshots warns on stderr of each snapshot a manifest named
// that kbak left alone.
func printRefusedSnapshots(c *cli.Context, refused []upkeep.SnapshotRefusal) {
	for _, r := range refused {
		fmt.Fprintf(stderr(c), "warning: %s\n", r.Warning())
	}
}

func retentionFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "keep-last", Usage: "keep the last N successful backups", Category: "Retention"},
		&cli.IntFlag{Name: "keep-hourly", Usage: "keep the newest backup of each of the last N hours", Category: "Retention"},
		&cli.IntFlag{Name: "keep-daily", Usage: "keep the newest backup of each of the last N days", Category: "Retention"},
		&cli.IntFlag{Name: "keep-weekly", Usage: "keep the newest backup of each of the last N ISO weeks", Category: "Retention"},
		&cli.IntFlag{Name: "keep-monthly", Usage: "keep the newest backup of each of the last N months", Category: "Retention"},
	}
}

func retentionPolicy(c *cli.Context) retention.Policy {
	return retention.Policy{KeepLast: c.Int("keep-last"), Hourly: c.Int("keep-hourly"), Daily: c.Int("keep-daily"),
		Weekly: c.Int("keep-weekly"), Monthly: c.Int("keep-monthly")}
}

func pruneCommand() *cli.Command {
	return &cli.Command{
		Name:  "prune",
		Usage: "delete the backups a retention policy no longer keeps",
		Description: `Each StatefulSet is pruned on its own. Only Completed backups count for the
rules; the newest Completed backup is never removed, whatever the policy.
A backup still under S3 Object Lock (kbak backup --lock-days) is left whole
and reported as kept until its date; a later prune removes it.

Prunes the backups of the kubeconfig context's namespace, or of -n
NAMESPACE; -A prunes those of every namespace in the repository.

EXAMPLES:
   kbak prune --keep-last 3 --keep-daily 7 --keep-weekly 4 --dry-run
   kbak prune -n shop --statefulset mariadb --keep-daily 14
   kbak prune -A --keep-daily 7 --dry-run`,
		Flags: flags(repoFlags(), kubeFlags(), retentionFlags(), []cli.Flag{
			allNamespacesFlag("prune backups"),
			&cli.StringFlag{Name: "statefulset", Usage: "only backups of this StatefulSet"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print what would be removed and remove nothing"},
			outputFlag(), verboseFlag(),
		}),
		Action: func(c *cli.Context) error {
			format, err := outputFormat(c)
			if err != nil {
				return err
			}
			policy := retentionPolicy(c)
			if err := policy.Validate(); err != nil {
				return usageError{err}
			}
			ns, _, err := namespaceScope(c)
			if err != nil {
				return err
			}
			cat, err := openCatalog(c)
			if err != nil {
				return err
			}
			res, pruneErr := retention.Prune(c.Context, cat, catalog.Filter{Namespace: ns, StatefulSet: c.String("statefulset")}, policy, c.Bool("dry-run"))
			if structured(format) {
				if err := printStructured(c, format, "PruneResult", newPruneOutput(ns, c.String("statefulset"), c.Bool("dry-run"), res)); err != nil {
					return err
				}
			} else {
				printDecisions(stdout(c), res, c.Bool("dry-run"))
				printSweep(c, res.Data, false)
			}
			if res.DataDeferred != "" {
				fmt.Fprintf(stderr(c), "repository data: not freed now (%s); the next kbak prune or kbak gc frees it\n", catalog.OneLine(res.DataDeferred))
			}
			if !structured(format) {
				var kept repo.LockedObjects
				for _, lb := range res.Locked {
					kept.Add(lb.LockedObjects)
				}
				printLocked(c, "prune", kept)
			}
			if pruneErr != nil {
				return pruneErr
			}
			return deleteKeptSnapshots(c, res.Deleted)
		},
	}
}

func printDecisions(w io.Writer, res retention.PruneResult, dryRun bool) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCREATED\tVERDICT\tWHY")
	removed := "removed"
	if dryRun {
		removed = "would remove"
	}
	for _, set := range []struct {
		verdict string
		ds      []retention.Decision
	}{{"keep", res.Keep}, {removed, res.Remove}} {
		for _, d := range set.ds {
			verdict := set.verdict
			if lb, ok := res.LockedBackup(d.Item.ID); ok && lb.Listed {
				verdict = "locked until " + lockedUntil(lb.LockedObjects)
			} else if ok {
				verdict += fmt.Sprintf(" (%d objects locked until %s)", lb.Objects, lockedUntil(lb.LockedObjects))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", d.Item.ID, d.Item.Time.UTC().Format(time.RFC3339), verdict, strings.Join(d.Reasons, ", "))
		}
	}
	_ = tw.Flush()
}

// printLocked says on stderr how much of what was to be removed S3 Object
// Lock kept.
func printLocked(c *cli.Context, what string, l repo.LockedObjects) {
	if l.Any() {
		fmt.Fprintf(stderr(c), "%s: left %s; a later run removes them once their retention ends\n", what, l)
	}
}

func gcCommand() *cli.Command {
	return &cli.Command{
		Name:  "gc",
		Usage: "remove leftovers of crashed runs, in the repository and in the cluster",
		Description: `A backup writes its manifest last. In the repository, objects of a backup
without one, whose newest object is older than --grace, are removed (a
running backup is younger). In the cluster (when a kubeconfig is at hand),
mover pods, temporary PVCs, VolumeSnapshots not kept on purpose and
credential Secrets of kbak runs whose newest object is older than --grace
(and that have not marked their Secrets alive since) are removed. Kept
snapshots and anything without kbak's run label stay. VolumeSnapshots already
deleted that the snapshot controller still holds with its finalizers (until
the CSI driver has deleted their data) are no leftovers: gc lists them as
"still deleting" and does not delete them again. The credential and key
Secrets of a run killed outright go sooner: the next backup or restore in
their namespace removes them (see --dead-run-age).

Objects still under S3 Object Lock (kbak backup --lock-days) are not leaks:
they stay, are reported as locked until their date, and a gc after it
removes them. In an S3 repository gc also aborts incomplete multipart uploads
older than --upload-grace, which crashed writers leave.

Cleans up after the runs of the kubeconfig context's namespace, or of -n
NAMESPACE; -A cleans up after every namespace's and also checks the
multipart uploads, which belong to no namespace. The shared data no backup
references is freed either way, except while a backup uploads: then gc
says so, exits 0 and leaves it to the next gc or prune.

EXAMPLES:
   kbak gc --dry-run
   kbak gc -A --grace 6h -o json`,
		Flags: flags(repoFlags(), kubeFlags(), []cli.Flag{
			allNamespacesFlag("clean up after the runs"),
			&cli.DurationFlag{Name: "grace", Value: upkeep.DefaultGrace, Action: notNegative("grace", "24h"), Usage: "leave anything younger than this alone (0: remove every leftover now)"},
			&cli.DurationFlag{Name: "upload-grace", Value: upkeep.DefaultUploadGrace, Action: positive("upload-grace"),
				Usage: "abort incomplete multipart uploads started longer ago than this (longer than any upload may run)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "list what would be removed and remove nothing"},
			&cli.BoolFlag{Name: "no-cluster", Usage: "only clean the repository"},
			outputFlag(), verboseFlag(),
		}),
		Action: gcAction,
	}
}

// printSweep says on stderr what freeing shared data did.
func printSweep(c *cli.Context, r *repo.SweepResult, dryRun bool) {
	if r == nil {
		return
	}
	verb := "freed"
	if dryRun {
		verb = "would free"
	}
	fmt.Fprintf(stderr(c), "repository data: %s %s (%d packs removed, %d rewritten); %s referenced by %d volumes stays\n",
		verb, humanBytes(r.FreedBytes), r.DeletedPacks, r.RepackedPacks, humanBytes(r.LiveBytes), r.Trees)
	printLocked(c, "repository data", r.Locked)
}

func gcAction(c *cli.Context) error {
	format, err := outputFormat(c)
	if err != nil {
		return err
	}
	ns, _, err := namespaceScope(c)
	if err != nil {
		return err
	}
	store, err := openStore(c.Context, c)
	if err != nil {
		return err
	}
	key, err := repoKey(c, store)
	if err != nil {
		return err
	}
	cat := catalog.New(store, key)
	dry := c.Bool("dry-run")
	o := upkeep.GCOptions{Namespace: ns, Grace: c.Duration("grace"), UploadGrace: c.Duration("upload-grace"), DryRun: dry, Log: logger(c)}
	if s3, ok := store.(*uploader.S3Store); ok {
		o.Uploads = s3
	}
	if c.Bool("no-cluster") {
		o.ClusterSkipped = "--no-cluster"
	} else if cl, err := connect(c); err != nil {
		o.ClusterSkipped = catalog.OneLine(err.Error())
	} else {
		o.Kube, o.Snap = cl.kube, cl.snapshots
	}
	res, gcErr := upkeep.GC(c.Context, cat, o)
	if structured(format) {
		out := gcOutput{Namespace: ns, AllNamespaces: ns == "", DryRun: dry, GCResult: res}
		if err := printStructured(c, format, "GCResult", out); err != nil {
			return err
		}
		return gcErr
	}
	printSweep(c, res.Data, dry)
	if res.DataDeferred != "" {
		fmt.Fprintf(stderr(c), "repository data: not swept now (%s); the next kbak prune or kbak gc sweeps it\n", res.DataDeferred)
	}
	verb := "removed"
	if dry {
		verb = "would remove"
	}
	tw := tabwriter.NewWriter(stdout(c), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WHERE\tNAMESPACE\tRUN\tOBJECTS\tSIZE\tNEWEST\tVERDICT")
	for _, o := range res.Store {
		verdict := verb
		switch {
		case o.Locked.Objects == o.Objects:
			verdict = "locked until " + lockedUntil(o.Locked)
		case o.Locked.Any():
			verdict += fmt.Sprintf(", but %d locked until %s", o.Locked.Objects, lockedUntil(o.Locked))
		}
		fmt.Fprintf(tw, "repository\t%s\t%s\t%d\t%s\t%s\t%s\n", o.Namespace, o.ID, o.Objects, humanBytes(o.Bytes), o.Newest.UTC().Format(time.RFC3339), verdict)
	}
	for _, r := range res.Cluster {
		fmt.Fprintf(tw, "cluster\t%s\t%s\t-\t-\t%s\t%s\n", r.Namespace, r.ID, r.Newest.UTC().Format(time.RFC3339), verb)
	}
	for _, d := range res.Deleting {
		// Deleted already: not a leftover, nothing for gc to do.
		fmt.Fprintf(tw, "cluster\t%s\t%s\tvolumesnapshot/%s\t-\t%s\t%s\n", d.Namespace, d.RunID, d.Name, d.Since.UTC().Format(time.RFC3339), deletingVerdict(d))
	}
	_ = tw.Flush()
	var orphansLocked repo.LockedObjects
	for _, o := range res.Store {
		orphansLocked.Add(o.Locked)
	}
	printLocked(c, "gc: backups without a manifest", orphansLocked)
	if res.StaleUploads > 0 {
		aborted := "aborted"
		if dry {
			aborted = "would abort"
		}
		fmt.Fprintf(stderr(c), "gc: %s %d incomplete multipart uploads older than %s\n", aborted, res.StaleUploads, o.UploadGrace)
	}
	if res.UploadsSkipped != "" {
		fmt.Fprintf(stderr(c), "gc: incomplete multipart uploads not checked: %s\n", res.UploadsSkipped)
	}
	if res.ClusterSkipped != "" {
		fmt.Fprintf(stderr(c), "gc: cluster not checked: %s\n", res.ClusterSkipped)
	}
	return gcErr
}

// deletingVerdict says what holds a snapshot being deleted.
func deletingVerdict(s kube.SnapshotStatus) string {
	var held []string
	held = append(held, s.Finalizers...)
	if len(s.ContentFinalizers) > 0 {
		held = append(held, "content "+s.Content+": "+strings.Join(s.ContentFinalizers, ","))
	}
	if len(held) == 0 {
		return "still deleting"
	}
	return "still deleting, held by " + strings.Join(held, ", ")
}

// verifyAction reads every archive of a backup back and checks it.
func verifyAction(c *cli.Context) error {
	id, err := oneArg(c, "a backup ID")
	if err != nil {
		return err
	}
	format, err := outputFormat(c)
	if err != nil {
		return err
	}
	store, err := openStore(c.Context, c)
	if err != nil {
		return err
	}
	key, err := repoKey(c, store)
	if err != nil {
		return err
	}
	m, err := catalog.New(store, key).Get(c.Context, id)
	if err != nil {
		return err
	}
	subset := c.Float64("read-data-subset")
	if subset < 0 || subset > 1 {
		return usagef("--read-data-subset %g: give a fraction between 0 and 1, e.g. 0.1 for a tenth of the chunks", subset)
	}
	pp := progress(c)
	checks, checkErr := restore.CheckBackup(c.Context, store, key, m, restore.CheckOptions{
		ReadData: c.Bool("read-data"), Subset: subset, Queued: pp.queue, Progress: pp.event,
	})
	pp.done()
	if checks == nil && checkErr != nil {
		return checkErr
	}
	if structured(format) {
		// One document: the checks, and the test restore when asked and
		// the checks passed.
		out := verifyOutput{Backup: m.ID, Status: m.Status, Volumes: checks}
		var testErr error
		if checkErr == nil && c.Bool("restore-test") {
			out.RestoreTest, testErr = restoreTest(c, m)
		}
		if err := printStructured(c, format, "Verification", out); err != nil {
			return err
		}
		if testErr != nil {
			return testErr
		}
	} else {
		tw := tabwriter.NewWriter(stdout(c), 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PVC\tFILES\tDATA\tRESULT")
		for _, ck := range checks {
			result := "ok"
			switch {
			case ck.NotChecked != "":
				result = "not checked: " + ck.NotChecked
			case !ck.OK:
				result = ck.Error
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", ck.PVC, ck.Files, humanBytes(ck.Bytes), result)
		}
		_ = tw.Flush()
	}
	if checkErr != nil {
		return fmt.Errorf("%w: restore from another backup", checkErr)
	}
	if c.Bool("restore-test") && !structured(format) {
		res, err := restoreTest(c, m)
		if res != nil {
			printRestoreTest(stdout(c), res)
		}
		if err != nil {
			return err
		}
	}
	// What a PartiallyFailed backup lacks was never checked: say which,
	// and do not exit 0 as if all of it was.
	if left := restore.Unchecked(checks); len(left) > 0 {
		return fmt.Errorf("%w: backup %s is %s: %d volumes checked, could not check %s", errPartial, m.ID, m.Status, len(checks)-len(left), strings.Join(left, "; "))
	}
	return nil
}

// restoreTest restores m into a scratch namespace and compares what arrived
// with the manifest; the namespace is removed on every path.
func restoreTest(c *cli.Context, m *catalog.Manifest) (*restore.VerifyResult, error) {
	repo, err := repoURL(c)
	if err != nil {
		return nil, err
	}
	opts, err := restoreOptions(c, repo)
	if err != nil {
		return nil, err
	}
	cl, err := connect(c)
	if err != nil {
		return nil, err
	}
	pp := progress(c)
	opts.Progress, opts.Queued = pp.event, pp.queue
	res, err := restore.VerifyRestore(c.Context, restore.Deps{Kube: cl.kube, Snap: cl.snapshots, Log: logger(c)}, m, opts)
	pp.done()
	return res, err
}

func printRestoreTest(w io.Writer, res *restore.VerifyResult) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "\nTest restore into %s (removed):\n", res.Namespace)
	fmt.Fprintln(tw, "PVC\tFILES\tDATA\tRESULT")
	for _, v := range res.Volumes {
		result := "ok"
		if !v.OK {
			result = v.Error
		}
		fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%s\n", v.PVC, v.GotFiles, v.WantFiles, humanBytes(v.GotBytes), result)
	}
	_ = tw.Flush()
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for v := n / unit; v >= unit; v /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "download every object of a backup and check it, writing nothing",
		ArgsUsage: "ID",
		Description: `For a backup of format 2 (deduplicated), checks each volume's tree against
the sha256 its manifest records (backups written before trees had one are
checked by key) and that every chunk it references is listed by the
repository's index in a pack that exists; with --read-data it also reads
every chunk, checks it against its id and reads each volume's archive stream
through, writing nothing. For format 1, reads every volume archive, checks
its sha256 against the manifest and reads it through; a manifest without
one is refused as corrupt. With --restore-test it also restores the backup
into a scratch namespace of the cluster through mover pods and compares what
arrived with the manifest. Of a PartiallyFailed backup the volumes it holds
no data for are named as not checked, and verify exits 3.

EXAMPLES:
   kbak verify mariadb-20261122T020000Z-3f2a
   kbak verify mariadb-20261122T020000Z-3f2a --read-data
   kbak verify mariadb-20261122T020000Z-3f2a --read-data-subset 0.1
   kbak verify mariadb-20261122T020000Z-3f2a --restore-test

` + exitCodesHelp,
		Flags: flags(repoFlags(), clusterFlags(), moverFlags(), []cli.Flag{
			&cli.BoolFlag{Name: "read-data", Usage: "format 2: read and check every chunk, not only that it is there"},
			&cli.Float64Flag{Name: "read-data-subset", Usage: "format 2: also read and check this fraction of the chunks, chosen at random (0.1: a tenth)"},
			&cli.BoolFlag{Name: "restore-test", Usage: "also restore into a scratch namespace kbak-verify-ID, compare file counts and sizes with the manifest, and remove the namespace"},
			outputFlag(), verboseFlag(),
		}),
		Action: verifyAction,
	}
}
