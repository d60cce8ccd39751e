package main

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/doctor"
)

func doctorCommand() *cli.Command {
	return &cli.Command{
		Name:      "doctor",
		Usage:     "check what this cluster and repository support, with advice per missing piece",
		ArgsUsage: "[sts/NAME]",
		Description: `Checks the snapshot API, the CSI drivers and their VolumeSnapshotClasses, which
method each storage class gets, the permissions kbak needs in the namespace,
the repository (when --repo or KBAK_REPO is set) and, given sts/NAME, how
each claim of that StatefulSet would be backed up. Exits 1 when a check fails.

EXAMPLES:
   kbak doctor -n shop
   kbak doctor sts/mariadb -n shop --repo s3://backups/prod -o json`,
		Flags: flags(repoFlags(), kubeFlags(), []cli.Flag{outputFlag(), verboseFlag()}),
		Action: func(c *cli.Context) error {
			format, err := outputFormat(c)
			if err != nil {
				return err
			}
			var sts string
			if c.NArg() > 0 {
				if sts, err = oneArg(c, "at most one StatefulSet (sts/NAME)"); err != nil {
					return err
				}
				if sts, err = parseStatefulSet(sts); err != nil {
					return err
				}
			}
			cl, err := connect(c)
			if err != nil {
				return err
			}
			checks, err := doctor.Run(c.Context, cl.kube, cl.snapshots, doctor.Options{Namespace: cl.namespace, StatefulSet: sts, Spell: flagSpelling})
			if err != nil {
				return err
			}
			if c.String("repo") != "" {
				ck := doctor.Check{Name: "repository", Level: doctor.LevelOK, Detail: "reachable: " + c.String("repo")}
				if _, err := openStore(c.Context, c); err != nil {
					ck.Level, ck.Detail = doctor.LevelFail, catalog.OneLine(err.Error())
				}
				checks = append(checks, ck)
			} else {
				checks = append(checks, doctor.Check{Name: "repository", Level: doctor.LevelWarn, Detail: "not checked", Advice: "pass --repo or set KBAK_REPO"})
			}
			if structured(format) {
				if err := printStructured(c, format, "DoctorCheckList", listOf("DoctorCheckList", checks)); err != nil {
					return err
				}
			} else {
				tw := tabwriter.NewWriter(stdout(c), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "CHECK\tRESULT\tDETAIL")
				for _, ck := range checks {
					detail := ck.Detail
					if ck.Advice != "" {
						detail += " → " + ck.Advice
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\n", ck.Name, strings.ToUpper(string(ck.Level)), detail)
				}
				_ = tw.Flush()
			}
			if doctor.Failed(checks) {
				return errors.New("doctor found problems: see the FAIL lines above")
			}
			return nil
		},
	}
}
