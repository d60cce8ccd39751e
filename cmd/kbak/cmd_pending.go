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

func scheduleCommand() *cli.Command {
	return &cli.Command{
		Name:  "schedule",
		Usage: "run backups on a cron schedule as a CronJob in the cluster",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "create a CronJob, ServiceAccount and least-privilege RBAC that back up a StatefulSet",
				ArgsUsage: "NAME sts/STATEFULSET",
				Description: `EXAMPLES:
   kbak schedule create nightly sts/mariadb -n shop --cron '0 2 * * *' --keep-daily 7
   kbak schedule create hourly sts/mariadb --cron @hourly --dry-run=client -o yaml`,
				Flags: flags(repoFlags(), kubeFlags(), []cli.Flag{
					&cli.StringFlag{Name: "cron", Usage: "cron spec: five fields or @daily, @hourly, @every 1h"},
					&cli.StringFlag{Name: "time-zone", Usage: "IANA time zone of the cron spec (default UTC)"},
					&cli.StringFlag{Name: "secret", Usage: "Secret in the namespace holding AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"},
				}),
				Action: notYet,
			},
			{Name: "list", Usage: "list schedules with their next runs and last successful backup", Flags: kubeFlags(), Action: notYet},
			{Name: "delete", Usage: "delete a schedule and exactly what create made", ArgsUsage: "NAME", Flags: kubeFlags(), Action: notYet},
		},
	}
}

func agentCommand() *cli.Command {
	return &cli.Command{
		Name:   "agent",
		Usage:  "run several schedules in one long-running process, with /metrics",
		Flags:  []cli.Flag{&cli.PathFlag{Name: "config", Usage: "agent configuration file"}},
		Action: notYet,
	}
}

func deployCommand() *cli.Command {
	return &cli.Command{
		Name:   "deploy",
		Usage:  "print the manifests that run the kbak agent in a cluster",
		Action: notYet,
	}
}
