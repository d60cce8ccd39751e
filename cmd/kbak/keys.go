package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/kbak/kbak/internal/moverrun"
	"github.com/kbak/kbak/internal/repo"
	"github.com/kbak/kbak/internal/seal"
	"github.com/kbak/kbak/uploader"
)

// keyFlags say where the key of an encrypted repository is. Keys are never
// flag values: a flag names a file or a Secret.
func keyFlags() []cli.Flag {
	return []cli.Flag{
		&cli.PathFlag{Name: "key-file", EnvVars: []string{"KBAK_KEY_FILE"}, Category: "Keys",
			Usage: "file with the repository's write key (backs up, lists, prunes) or read key (also restores); an encrypted repository needs one"},
		&cli.StringFlag{Name: "key-secret", Category: "Keys",
			Usage: "Kubernetes Secret [NAMESPACE/]NAME holding the key file under kbak.key, instead of --key-file"},
		&cli.PathFlag{Name: "passphrase-file", EnvVars: []string{"KBAK_PASSPHRASE_FILE"}, Category: "Keys",
			Usage: "file with the passphrase of a read key stored in the repository (kbak key add --store-with-passphrase): all a disaster recovery needs"},
	}
}

// repoKey returns the key the flags name, or the zero Key when they name
// none (a repository that is not encrypted needs none).
func repoKey(c *cli.Context, store uploader.Store) (seal.Key, error) {
	set := 0
	for _, f := range []string{"key-file", "key-secret", "passphrase-file"} {
		if c.IsSet(f) && c.String(f) != "" {
			set++
		}
	}
	if set > 1 {
		return seal.Key{}, usagef("give one of --key-file, --key-secret and --passphrase-file")
	}
	switch {
	case c.String("key-file") != "":
		b, err := os.ReadFile(c.Path("key-file"))
		if err != nil {
			return seal.Key{}, usagef("read --key-file: %v", err)
		}
		k, err := seal.ParseKey(b)
		if err != nil {
			return seal.Key{}, usagef("--key-file %s: %v", c.Path("key-file"), err)
		}
		return k, nil
	case c.String("key-secret") != "":
		cl, err := connect(c)
		if err != nil {
			return seal.Key{}, err
		}
		ns, name, ok := strings.Cut(c.String("key-secret"), "/")
		if !ok {
			ns, name = cl.namespace, ns
		}
		b, err := moverrun.ReadKeySecret(c.Context, cl.kube, ns, name)
		if err != nil {
			return seal.Key{}, err
		}
		k, err := seal.ParseKey(b)
		if err != nil {
			return seal.Key{}, fmt.Errorf("--key-secret %s/%s: %w", ns, name, err)
		}
		return k, nil
	case c.String("passphrase-file") != "":
		p, err := readPassphrase(c.Path("passphrase-file"))
		if err != nil {
			return seal.Key{}, err
		}
		return repo.PassphraseKey(c.Context, store, p)
	}
	return seal.Key{}, nil
}

// readPassphrase reads a passphrase file: its first line.
func readPassphrase(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", usagef("read the passphrase file: %v", err)
	}
	p, _, _ := strings.Cut(string(b), "\n")
	p = strings.TrimRight(p, "\r")
	if p == "" {
		return "", usagef("the passphrase file %s is empty", path)
	}
	return p, nil
}

// openRepo opens the store and the deduplicating repository in it with the
// key the flags name.
func openRepo(ctx context.Context, c *cli.Context) (*repo.Repo, uploader.Store, error) {
	store, err := openStore(ctx, c)
	if err != nil {
		return nil, nil, err
	}
	key, err := repoKey(c, store)
	if err != nil {
		return nil, nil, err
	}
	r, err := repo.Open(ctx, store, key)
	return r, store, err
}
