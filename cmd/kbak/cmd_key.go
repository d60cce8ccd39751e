package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"filippo.io/age"
	"github.com/urfave/cli/v2"

	"github.com/kbak/kbak/internal/repo"
	"github.com/kbak/kbak/internal/seal"
)

func keyCommand() *cli.Command {
	return &cli.Command{
		Name:  "key",
		Usage: "manage the read keys of an encrypted repository",
		Description: `An encrypted repository has one write key (backs up, lists, prunes; it
cannot read data back) and one or more read keys (age identities: they
restore). These commands need either key in --key-file (or --key-secret,
or --passphrase-file).

EXAMPLES:
   kbak key list --repo s3://backups/prod --key-file write.key
   kbak key add --repo s3://backups/prod --key-file read.key --recipient age1... --label dr-team
   kbak key add --repo s3://backups/prod --key-file read.key --generate-out second.key
   kbak key passphrase --repo s3://backups/prod --key-file read.key --new-passphrase-file pass.txt
   kbak key write-key --repo s3://backups/prod --key-file read.key --out write.key
   kbak key remove --repo s3://backups/prod --key-file read.key 3f2a9c01d4e5b6a7`,
		Subcommands: []*cli.Command{{
			Name:  "list",
			Usage: "list the read keys",
			Flags: flags(repoFlags(), []cli.Flag{outputFlag(), verboseFlag()}),
			Action: func(c *cli.Context) error {
				format, err := outputFormat(c)
				if err != nil {
					return err
				}
				r, err := openKeyedRepo(c)
				if err != nil {
					return err
				}
				if structured(format) {
					return printStructured(c, format, "ReadKeyList", listOf("ReadKeyList", r.Recipients()))
				}
				tw := tabwriter.NewWriter(stdout(c), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tRECIPIENT\tLABEL\tADDED")
				for _, k := range r.Recipients() {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.ID, k.Recipient, k.Label, k.Created.Format(time.DateOnly))
				}
				return tw.Flush()
			},
		}, {
			Name:  "add",
			Usage: "add a read key: the public half of yours (--recipient), or a new one (--generate-out)",
			Description: `Backups written from now on are sealed to the new key as well; the write
key is sealed to it at once, so the new key opens the repository.`,
			Flags: flags(repoFlags(), []cli.Flag{
				&cli.StringFlag{Name: "recipient", Usage: "public half of the read key (age1...)"},
				&cli.PathFlag{Name: "generate-out", Usage: "make a new read key and write it to this file (created, never overwritten)"},
				&cli.StringFlag{Name: "label", Usage: "a name for the key, for kbak key list"},
				verboseFlag(),
			}),
			Action: func(c *cli.Context) error {
				if (c.String("recipient") == "") == (c.Path("generate-out") == "") {
					return usagef("give one of --recipient age1... and --generate-out FILE")
				}
				r, err := openKeyedRepo(c)
				if err != nil {
					return err
				}
				rcpt := c.String("recipient")
				var id *age.X25519Identity
				if c.Path("generate-out") != "" {
					if id, err = age.GenerateX25519Identity(); err != nil {
						return err
					}
					rcpt = id.Recipient().String()
					if err := writeKeyFile(c.Path("generate-out"), seal.FormatReadKey(r.Config().ID, id)); err != nil {
						return err
					}
				}
				k, err := r.AddRecipient(c.Context, rcpt, c.String("label"), time.Now())
				if err != nil {
					return err
				}
				fmt.Fprintf(stdout(c), "added read key %s (%s)\n", k.ID, k.Recipient)
				return nil
			},
		}, {
			Name:      "remove",
			Usage:     "remove a read key by id or recipient; the last one is refused",
			ArgsUsage: "ID",
			Description: `New backups are no longer sealed to the key, and it no longer opens the
write key. Data written before stays sealed to the keys of its time.`,
			Flags: flags(repoFlags(), []cli.Flag{verboseFlag()}),
			Action: func(c *cli.Context) error {
				id, err := oneArg(c, "a read key id (see kbak key list)")
				if err != nil {
					return err
				}
				r, err := openKeyedRepo(c)
				if err != nil {
					return err
				}
				k, err := r.RemoveRecipient(c.Context, id)
				if err != nil {
					return err
				}
				fmt.Fprintf(stdout(c), "removed read key %s (%s)\n", k.ID, k.Recipient)
				return nil
			},
		}, {
			Name:  "passphrase",
			Usage: "store the read key of --key-file in the repository, sealed with a passphrase",
			Description: `Then a restore needs only the bucket and the passphrase (--passphrase-file):
the disaster-recovery runbook. The passphrase is all that protects the data
from whoever holds the bucket: make it long.`,
			Flags: flags(repoFlags(), []cli.Flag{
				&cli.PathFlag{Name: "new-passphrase-file", Required: true, Usage: "file with the passphrase (its first line, at least 12 characters)"},
				verboseFlag(),
			}),
			Action: func(c *cli.Context) error {
				p, err := readPassphrase(c.Path("new-passphrase-file"))
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
				if key.Read == nil {
					return usagef("give the read key to store in --key-file")
				}
				r, err := repo.Open(c.Context, store, key)
				if err != nil {
					return err
				}
				name, err := r.StorePassphraseKey(c.Context, key.Read, p)
				if err != nil {
					return err
				}
				fmt.Fprintf(stdout(c), "stored the read key sealed with the passphrase (%s)\n", name)
				return nil
			},
		}, {
			Name:  "write-key",
			Usage: "write the repository's write key to a file (from a read key)",
			Flags: flags(repoFlags(), []cli.Flag{
				&cli.PathFlag{Name: "out", Required: true, Usage: "file to write the write key to (created, never overwritten)"},
				verboseFlag(),
			}),
			Action: func(c *cli.Context) error {
				r, err := openKeyedRepo(c)
				if err != nil {
					return err
				}
				id, secret, _ := r.WriteKey()
				if err := writeKeyFile(c.Path("out"), seal.FormatWriteKey(id, secret)); err != nil {
					return err
				}
				fmt.Fprintf(stdout(c), "write key: %s\n", c.Path("out"))
				return nil
			},
		}},
	}
}

// openKeyedRepo opens an encrypted repository with the key the flags name.
func openKeyedRepo(c *cli.Context) (*repo.Repo, error) {
	r, _, err := openRepo(c.Context, c)
	if err != nil {
		return nil, err
	}
	if !r.Encrypted() {
		return nil, fmt.Errorf("the repository is not encrypted: it has no keys")
	}
	return r, nil
}
