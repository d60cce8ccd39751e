package main

import (
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/kbak/kbak/internal/repo"
)

func repoCommand() *cli.Command {
	return &cli.Command{
		Name:  "repo",
		Usage: "create the deduplicating repository, or show its configuration and size",
		Subcommands: []*cli.Command{{
			Name:  "init",
			Usage: "create the repository's config object (a first backup does it with the defaults)",
			Description: `Draws the chunker's polynomial and the key that names chunks, and records
the format, the chunk and pack sizes and the encryption scheme. Only
--encryption none is built so far: data, recipes and specs are stored
compressed, not encrypted.

EXAMPLES:
   kbak repo init --repo s3://backups/prod --encryption none`,
			Flags: flags(repoFlags(), []cli.Flag{
				&cli.StringFlag{Name: "encryption", Value: repo.EncryptionNone, Usage: "how data is sealed: none"},
				verboseFlag(),
			}),
			Action: func(c *cli.Context) error {
				if e := c.String("encryption"); e != repo.EncryptionNone {
					return usagef("--encryption %s: this kbak builds only --encryption none", e)
				}
				store, err := openStore(c.Context, c)
				if err != nil {
					return err
				}
				r, err := repo.Init(c.Context, store, repo.InitOptions{KbakVersion: version, Encryption: c.String("encryption")})
				if err != nil {
					return err
				}
				fmt.Fprintf(stdout(c), "created a format %d repository (encryption %s)\n", r.Config().Format, r.Config().Encryption)
				return nil
			},
		}, {
			Name:  "info",
			Usage: "print the repository's configuration and what its shared data takes",
			Description: `EXAMPLES:
   kbak repo info --repo s3://backups/prod
   kbak repo info -o json`,
			Flags: flags(repoFlags(), []cli.Flag{outputFlag(), verboseFlag()}),
			Action: func(c *cli.Context) error {
				format, err := outputFormat(c)
				if err != nil {
					return err
				}
				store, err := openStore(c.Context, c)
				if err != nil {
					return err
				}
				r, err := repo.Open(c.Context, store)
				if errors.Is(err, repo.ErrNoRepository) {
					return fmt.Errorf("%w: the first kbak backup into it creates one, or run kbak repo init", err)
				}
				if err != nil {
					return err
				}
				u, err := r.Usage(c.Context)
				if err != nil {
					return err
				}
				cfg := r.Config()
				if format == "json" {
					return printJSON(c, struct {
						Format      int                `json:"format"`
						Created     string             `json:"created"`
						KbakVersion string             `json:"kbakVersion,omitempty"`
						Encryption  string             `json:"encryption"`
						Chunker     repo.ChunkerParams `json:"chunker"`
						PackSize    int64              `json:"packSize"`
						Usage       repo.Usage         `json:"usage"`
					}{cfg.Format, cfg.Created.Format("2006-01-02T15:04:05Z07:00"), cfg.KbakVersion, cfg.Encryption, cfg.Chunker, cfg.PackSize, u})
				}
				tw := tabwriter.NewWriter(stdout(c), 0, 4, 2, ' ', 0)
				fmt.Fprintf(tw, "Format:\t%d\n", cfg.Format)
				fmt.Fprintf(tw, "Created:\t%s by kbak %s\n", cfg.Created.Format("2006-01-02T15:04:05Z"), cfg.KbakVersion)
				fmt.Fprintf(tw, "Encryption:\t%s\n", cfg.Encryption)
				fmt.Fprintf(tw, "Chunks:\t%s to %s, %s on average\n", humanBytes(int64(cfg.Chunker.MinSize)), humanBytes(int64(cfg.Chunker.MaxSize)), humanBytes(1<<cfg.Chunker.AverageBits))
				fmt.Fprintf(tw, "Packs:\t%d, %s (closed at %s)\n", u.Packs, humanBytes(u.PackBytes), humanBytes(cfg.PackSize))
				fmt.Fprintf(tw, "Index:\t%d objects, %s\n", u.IndexObjects, humanBytes(u.IndexBytes))
				fmt.Fprintf(tw, "Locks:\t%d\n", u.Locks)
				return tw.Flush()
			},
		}},
	}
}
