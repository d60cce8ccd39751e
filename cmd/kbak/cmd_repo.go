package main

import (
	"errors"
	"fmt"
	"os"
	"text/tabwriter"

	"filippo.io/age"
	"github.com/urfave/cli/v2"

	"github.com/kbak/kbak/internal/repo"
	"github.com/kbak/kbak/internal/seal"
)

func repoCommand() *cli.Command {
	return &cli.Command{
		Name:  "repo",
		Usage: "create the deduplicating repository, or show its configuration and size",
		Subcommands: []*cli.Command{{
			Name:  "init",
			Usage: "create the repository: encrypted, with a write key for the cluster and a read key for you",
			Description: `Records the format, the chunk and pack sizes and the encryption scheme, and
for an encrypted repository (the default) makes its keys:

  the write key  (--write-key-out) backs up, lists and prunes. Put it in the
                 cluster: kubectl create secret generic kbak-key --from-file=kbak.key=FILE
  the read key   (--read-key-out) restores, describes specs, verifies data.
                 Keep it out of the cluster that backs up. Or give --read-key
                 age1... (the public half of an age key you keep elsewhere).

--passphrase-file also stores the read key in the repository, sealed with
the passphrase (scrypt): then a disaster recovery needs only the bucket and
the passphrase. --encryption none stores data compressed, not encrypted.

A first backup into an empty store creates a repository without encryption
(no one would hold its keys); run kbak repo init before it.

EXAMPLES:
   kbak repo init --repo s3://backups/prod --write-key-out write.key --read-key-out read.key
   kbak repo init --repo s3://backups/prod --write-key-out write.key --read-key age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
   kbak repo init --repo s3://backups/prod --encryption none`,
			Flags: flags(repoFlags(), []cli.Flag{
				&cli.StringFlag{Name: "encryption", Value: repo.EncryptionAge, Usage: "how data is sealed: age (X25519 read keys, AES-256-GCM data keys) or none"},
				&cli.PathFlag{Name: "write-key-out", Usage: "file to write the write key to (created, never overwritten)"},
				&cli.PathFlag{Name: "read-key-out", Usage: "file to write a new read key to (created, never overwritten)"},
				&cli.StringSliceFlag{Name: "read-key", Usage: "public half (age1...) of a read key you hold; repeat for more"},
				verboseFlag(),
			}),
			Action: repoInitAction,
		}, {
			Name:  "info",
			Usage: "print the repository's configuration and what its shared data takes",
			Description: `Needs no key, even for an encrypted repository.

EXAMPLES:
   kbak repo info --repo s3://backups/prod
   kbak repo info -o json`,
			Flags:  flags(repoFlags(), []cli.Flag{outputFlag(), verboseFlag()}),
			Action: repoInfoAction,
		}},
	}
}

func repoInitAction(c *cli.Context) error {
	enc := c.String("encryption")
	if enc != repo.EncryptionAge && enc != repo.EncryptionNone {
		return usagef("--encryption %s: use %s or %s", enc, repo.EncryptionAge, repo.EncryptionNone)
	}
	readKeys := c.StringSlice("read-key")
	var identity *age.X25519Identity
	if enc == repo.EncryptionAge {
		if c.Path("write-key-out") == "" {
			return usagef("an encrypted repository needs --write-key-out FILE: the backups' key")
		}
		if c.Path("read-key-out") == "" && len(readKeys) == 0 {
			return usagef("an encrypted repository needs a read key: --read-key-out FILE makes one, or --read-key age1... names yours")
		}
		for _, k := range readKeys {
			if _, err := seal.ParseRecipient(k); err != nil {
				return usagef("--read-key %s: not an age recipient (age1...)", k)
			}
		}
		if c.Path("read-key-out") != "" {
			var err error
			if identity, err = age.GenerateX25519Identity(); err != nil {
				return err
			}
			readKeys = append(readKeys, identity.Recipient().String())
		}
		// Check the output files before anything is created.
		for _, f := range []string{c.Path("write-key-out"), c.Path("read-key-out")} {
			if _, err := os.Lstat(f); f != "" && err == nil {
				return usagef("%s exists: kbak never overwrites a key file; give another path", f)
			}
		}
	} else if c.IsSet("write-key-out") || c.IsSet("read-key-out") || len(readKeys) > 0 {
		return usagef("--encryption none has no keys: drop --write-key-out, --read-key-out and --read-key")
	}
	var passphrase string
	if c.Path("passphrase-file") != "" {
		if identity == nil {
			return usagef("--passphrase-file stores the read key kbak makes: give --read-key-out too")
		}
		var err error
		if passphrase, err = readPassphrase(c.Path("passphrase-file")); err != nil {
			return err
		}
		if len(passphrase) < 12 {
			return usagef("the passphrase is shorter than 12 characters: anyone with the bucket could guess it")
		}
	}
	store, err := openStore(c.Context, c)
	if err != nil {
		return err
	}
	r, err := repo.Init(c.Context, store, repo.InitOptions{KbakVersion: version, Encryption: enc, ReadKeys: readKeys})
	if err != nil {
		return err
	}
	cfg := r.Config()
	out := stdout(c)
	fmt.Fprintf(out, "created repository %s, format %d, encryption %s\n", cfg.ID, cfg.Format, cfg.Encryption)
	if enc == repo.EncryptionNone {
		return nil
	}
	id, secret, _ := r.WriteKey()
	if err := writeKeyFile(c.Path("write-key-out"), seal.FormatWriteKey(id, secret)); err != nil {
		return err
	}
	fmt.Fprintf(out, "write key: %s (for the cluster)\n", c.Path("write-key-out"))
	if identity != nil {
		if err := writeKeyFile(c.Path("read-key-out"), seal.FormatReadKey(id, identity)); err != nil {
			return err
		}
		fmt.Fprintf(out, "read key:  %s (keep it out of the cluster; without it or a passphrase nothing restores)\n", c.Path("read-key-out"))
	}
	if passphrase != "" {
		if _, err := r.StorePassphraseKey(c.Context, identity, passphrase); err != nil {
			return err
		}
		fmt.Fprintln(out, "the read key is also stored in the repository, sealed with the passphrase")
	}
	return nil
}

// writeKeyFile creates path with b, readable by its owner only; it never
// replaces a file.
func writeKeyFile(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write key file: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	return f.Close()
}

func repoInfoAction(c *cli.Context) error {
	format, err := outputFormat(c)
	if err != nil {
		return err
	}
	store, err := openStore(c.Context, c)
	if err != nil {
		return err
	}
	cfg, err := repo.LoadConfig(c.Context, store)
	if errors.Is(err, repo.ErrNoRepository) {
		return fmt.Errorf("%w: run kbak repo init (a first backup creates one without encryption)", err)
	}
	if err != nil {
		return err
	}
	u, err := repo.StoreUsage(c.Context, store)
	if err != nil {
		return err
	}
	var keys []repo.Recipient
	if cfg.Encryption != repo.EncryptionNone && (c.String("key-file") != "" || c.String("key-secret") != "" || c.String("passphrase-file") != "") {
		r, _, err := openRepo(c.Context, c)
		if err != nil {
			return err
		}
		keys = r.Recipients()
	}
	cfg.IDKey, cfg.KeyCheck = nil, ""
	if cfg.Encryption != repo.EncryptionNone {
		cfg.Chunker.Polynomial = 0
	}
	if structured(format) {
		return printStructured(c, format, "RepositoryInfo", struct {
			ID          string             `json:"id,omitempty"`
			Format      int                `json:"format"`
			Created     string             `json:"created"`
			KbakVersion string             `json:"kbakVersion,omitempty"`
			Encryption  string             `json:"encryption"`
			Chunker     repo.ChunkerParams `json:"chunker"`
			PackSize    int64              `json:"packSize"`
			ReadKeys    []repo.Recipient   `json:"readKeys,omitempty"`
			Usage       repo.Usage         `json:"usage"`
		}{cfg.ID, cfg.Format, cfg.Created.Format("2006-01-02T15:04:05Z07:00"), cfg.KbakVersion, cfg.Encryption, cfg.Chunker, cfg.PackSize, keys, u})
	}
	tw := tabwriter.NewWriter(stdout(c), 0, 4, 2, ' ', 0)
	if cfg.ID != "" {
		fmt.Fprintf(tw, "ID:\t%s\n", cfg.ID)
	}
	fmt.Fprintf(tw, "Format:\t%d\n", cfg.Format)
	fmt.Fprintf(tw, "Created:\t%s by kbak %s\n", cfg.Created.Format("2006-01-02T15:04:05Z"), cfg.KbakVersion)
	fmt.Fprintf(tw, "Encryption:\t%s\n", cfg.Encryption)
	for _, k := range keys {
		fmt.Fprintf(tw, "Read key:\t%s %s %s\n", k.ID, k.Recipient, k.Label)
	}
	fmt.Fprintf(tw, "Chunks:\t%s to %s, %s on average\n", humanBytes(int64(cfg.Chunker.MinSize)), humanBytes(int64(cfg.Chunker.MaxSize)), humanBytes(1<<cfg.Chunker.AverageBits))
	fmt.Fprintf(tw, "Packs:\t%d, %s (closed at %s)\n", u.Packs, humanBytes(u.PackBytes), humanBytes(cfg.PackSize))
	fmt.Fprintf(tw, "Index:\t%d objects, %s\n", u.IndexObjects, humanBytes(u.IndexBytes))
	fmt.Fprintf(tw, "Locks:\t%d\n", u.Locks)
	return tw.Flush()
}
