package main

import (
	"github.com/urfave/cli/v2"
)

func backupCommand() *cli.Command {
	return &cli.Command{
		Name:      "backup",
		Usage:     "back up every volume of every ordinal of a StatefulSet",
		ArgsUsage: "sts/NAME",
		Action:    notYet,
	}
}

func doctorCommand() *cli.Command {
	return &cli.Command{
		Name:   "doctor",
		Usage:  "check what this cluster and repository support, with advice per missing piece",
		Action: notYet,
	}
}
