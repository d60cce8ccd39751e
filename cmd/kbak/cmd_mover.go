package main

import (
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/mover"
	"github.com/kbak/kbak/internal/repo"
	"github.com/kbak/kbak/uploader"
)

// The Go runtime's soft memory limit in mover processes: it makes the
// garbage collector run and return memory before a pod's 128 MiB are
// reached (the binary itself adds ~36 MiB). A format 1 archive's live
// memory is its part buffers and zstd jobs (~90 MiB); the deduplicating
// repository's is its chunk-id set (16 MiB a TiB of unique data) and a few
// chunks (~45 MiB), and it churns more, so its limit is lower.
const (
	moverMemoryLimit     = 100 << 20
	repoMoverMemoryLimit = 64 << 20
)

// moverCommand is what mover pods run. It is hidden: operators use backup and
// restore, which start mover pods with exactly these arguments.
func moverCommand() *cli.Command {
	progress := &cli.DurationFlag{Name: "progress-interval", Value: time.Second, Usage: "how often to print a progress line (0: never)"}
	return &cli.Command{
		Name:   "mover",
		Usage:  "stream one directory to the repository, or one archive back (runs in mover pods)",
		Hidden: true,
		Description: `Prints JSON lines on stdout: {"type":"progress",...} while it works and one
{"type":"result",...} or {"type":"error",...} at the end.

EXAMPLES:
   kbak mover upload --repo file:///tmp/repo --source /data --key kbak/v2/backups/ns/db/ID/volumes/data-db-0.tree --parent KEY0
   kbak mover upload --repo file:///tmp/repo --source /data --key kbak/v1/ns/db/ID/volumes/data-db-0.tar.zst
   kbak mover download --repo file:///tmp/repo --key KEY --sha256 HEX --target /restore
   kbak mover download --repo file:///tmp/repo --key KEY --target /restore --restore-devices --restore-setid`,
		Subcommands: []*cli.Command{
			{
				Name:  "upload",
				Usage: "archive --source into --key",
				Flags: flags(repoFlags(), []cli.Flag{
					&cli.PathFlag{Name: "source", Required: true, Usage: "directory to archive"},
					&cli.StringFlag{Name: "key", Required: true, Usage: "object key of the archive"},
					&cli.StringFlag{Name: "result-key", Usage: "object key for the JSON result (written after the archive)"},
					&cli.Int64Flag{Name: "size-hint", Usage: "expected bytes; chooses the multipart part size"},
					&cli.StringFlag{Name: "compression", Value: mover.DefaultCompression, Usage: "zstd:1 (fastest) to zstd:4 (smallest)"},
					&cli.StringFlag{Name: "parent", Usage: "tree key of an earlier upload of the same volume: its unchanged files are not read again (" + repo.TreeSuffix + " keys only)"},
					&cli.StringFlag{Name: "parent-match", Value: mover.ParentMatchStrict, Usage: "how a file is known unchanged: strict (size, mtime, ctime, inode) or size-mtime (a snapshot's copy, with new inodes)"},
					progress,
				}, lockFlags()),
				Action: func(c *cli.Context) error {
					return runMover(c, func(ev *mover.Emitter) (mover.Result, error) {
						// With --lock-days, what the upload writes is kept
						// under Object Lock; the repository's lock object is
						// not (internal/repo).
						opts, err := storeOptions(c)
						if err != nil {
							return mover.Result{}, err
						}
						// Two parts in flight keep a loopback or LAN link busy;
						// each more costs a part of memory.
						opts.Concurrency = 2
						repo, err := repoURL(c)
						if err != nil {
							return mover.Result{}, err
						}
						store, err := uploader.Open(c.Context, repo, opts)
						if err != nil {
							return mover.Result{}, err
						}
						key, err := repoKey(c, store)
						if err != nil {
							return mover.Result{}, err
						}
						return mover.Upload(c.Context, store, mover.UploadOptions{
							Source: c.Path("source"), Key: c.String("key"), ResultKey: c.String("result-key"),
							SizeHint: c.Int64("size-hint"), Compression: c.String("compression"),
							Parent: c.String("parent"), ParentMatch: c.String("parent-match"), KbakVersion: version,
							RepoKey: key,
						}, ev)
					})
				},
			},
			{
				Name:  "download",
				Usage: "check and extract --key into --target (or only check it without --target)",
				Flags: flags(repoFlags(), []cli.Flag{
					&cli.StringFlag{Name: "key", Required: true, Usage: "object key of the archive"},
					&cli.StringFlag{Name: "sha256", Usage: "expected sha256 of the stored object (from the manifest)"},
					&cli.PathFlag{Name: "target", Usage: "directory to extract into; omit to verify only"},
					&cli.BoolFlag{Name: "restore-devices", Usage: "create the archive's character and block device nodes (default: skip them and report them in the result)"},
					&cli.BoolFlag{Name: "restore-setid", Usage: "keep setuid and setgid bits and file capabilities (default: clear them and report the files in the result)"},
					progress,
				}),
				Action: func(c *cli.Context) error {
					return runMover(c, func(ev *mover.Emitter) (mover.Result, error) {
						store, err := openStore(c.Context, c)
						if err != nil {
							return mover.Result{}, err
						}
						key, err := repoKey(c, store)
						if err != nil {
							return mover.Result{}, err
						}
						return mover.Download(c.Context, store, mover.DownloadOptions{
							Key: c.String("key"), SHA256: c.String("sha256"), Target: c.Path("target"), RepoKey: key,
							RestoreDevices: c.Bool("restore-devices"), RestoreSetID: c.Bool("restore-setid"),
						}, ev)
					})
				},
			},
		},
	}
}

// runMover prints the outcome of a transfer as the last JSON line; the error
// still goes back to main for the exit code.
func runMover(c *cli.Context, transfer func(*mover.Emitter) (mover.Result, error)) error {
	if os.Getenv("GOMEMLIMIT") == "" {
		limit := int64(moverMemoryLimit)
		if strings.HasSuffix(c.String("key"), repo.TreeSuffix) {
			limit = repoMoverMemoryLimit
		}
		debug.SetMemoryLimit(limit)
	}
	ev := mover.NewEmitter(stdout(c), c.Duration("progress-interval"))
	res, err := transfer(ev)
	if err != nil {
		ev.Emit(mover.Event{Type: mover.EventError, Error: catalog.OneLine(err.Error())})
		return err
	}
	ev.Emit(mover.Event{Type: mover.EventResult, Result: &res})
	return nil
}
