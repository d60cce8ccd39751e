package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// notYet is the action of a verb whose implementation has not shipped: it
// says so plainly instead of pretending.
func notYet(c *cli.Context) error {
	return fmt.Errorf("`%s` is %w: see the README for what this version supports", c.Command.HelpName, errNotYet)
}

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "download every object of a backup and check it, writing nothing",
		ArgsUsage: "ID",
		Description: `Reads every volume archive of the backup, checks its sha256 against the
manifest and reads the archive through to its end, writing nothing. With
--restore-test it also restores the backup into a scratch namespace of the
cluster through mover pods and compares what arrived with the manifest.

EXAMPLES:
   kbak verify mariadb-20261122T020000Z-3f2a
   kbak verify mariadb-20261122T020000Z-3f2a --restore-test -n shop

` + exitCodesHelp,
		Flags: flags(repoFlags(), kubeFlags(), moverFlags(), []cli.Flag{
			&cli.BoolFlag{Name: "restore-test", Usage: "also restore into a scratch namespace kbak-verify-ID, compare file counts and sizes with the manifest, and remove the namespace"},
			outputFlag(), verboseFlag(),
		}),
		Action: verifyAction,
	}
}
