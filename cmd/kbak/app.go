package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/urfave/cli/v2"
)

// version and commit are set at build time with -ldflags
// "-X main.version=... -X main.commit=..."; without commit, kbak version
// reads the revision the Go toolchain recorded.
var (
	version = "dev"
	commit  = ""
)

const exitCodesHelp = `EXIT CODES:
   0    success
   1    failed (the error line says what to do)
   2    usage: a bad flag, argument or repository URL
   3    partially failed: some volumes were not backed up or restored
   130  interrupted (Ctrl-C or SIGTERM); everything kbak created was removed
        (a second Ctrl-C stops at once and leaves it to kbak gc)`

func init() {
	// -v is --verbose in every command, so --version has no short form,
	// and it prints the version alone, for scripts.
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Usage: "print the version and exit (kbak version says more)", DisableDefaultText: true}
	cli.VersionPrinter = func(c *cli.Context) { fmt.Fprintln(c.App.Writer, c.App.Version) }
}

func newApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:    "kbak",
		Usage:   "back up and restore the volumes of Kubernetes StatefulSets",
		Version: version,
		Description: `kbak snapshots every claim of every ordinal of a StatefulSet (or copies the
live files where the CSI driver cannot snapshot), compresses the data and
uploads it to an S3-compatible store. Restores come back as fresh PVCs named
<claimTemplate>-<statefulset>-<ordinal>, so the StatefulSet adopts them.

EXAMPLES:
   export KBAK_REPO='s3://backups/prod?endpoint=https://s3.example.com&region=eu-west-1'
   kbak doctor -n shop
   kbak backup sts/mariadb -n shop
   kbak list
   kbak restore latest --from sts/mariadb -n shop --create-statefulset

` + exitCodesHelp,
		Writer:    stdout,
		ErrWriter: stderr,
		// kbak's own help command: urfave/cli's shares state between
		// apps, which tests run many of.
		HideHelpCommand:      true,
		EnableBashCompletion: true,
		Flags:                []cli.Flag{verboseFlag(), cli.HelpFlag},
		// The error goes through main's one table of exit codes; urfave/cli
		// must not exit behind our back.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError:   onUsageError,
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usagef("unknown command %q: run `kbak --help` for the list", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
		Commands: []*cli.Command{
			backupCommand(),
			restoreCommand(),
			listCommand(),
			describeCommand(),
			deleteCommand(),
			verifyCommand(),
			pruneCommand(),
			gcCommand(),
			repoCommand(),
			keyCommand(),
			scheduleCommand(),
			agentCommand(),
			deployCommand(),
			doctorCommand(),
			moverCommand(),
			versionCommand(),
			completionCommand(),
			helpCommand(),
		},
	}
	app.Metadata = map[string]any{"stdout": stdout, "stderr": stderr}
	setUsageErrors(app.Commands)
	addVerbose(app.Commands)
	return app
}

// helpCommand is `kbak help [COMMAND...]`: the help of a command, as
// `kbak COMMAND... --help` prints it.
func helpCommand() *cli.Command {
	return &cli.Command{
		Name:      "help",
		Usage:     "show the help of kbak or of a command",
		ArgsUsage: "[COMMAND [SUBCOMMAND]]",
		Action: func(c *cli.Context) error {
			if !c.Args().Present() {
				return cli.ShowAppHelp(c)
			}
			cmds := c.App.Commands
			for _, name := range c.Args().Slice() {
				cmd := findCommand(cmds, name)
				if cmd == nil || cmd.Name == "help" {
					return usagef("no command %q: run `kbak --help` for the list", strings.Join(c.Args().Slice(), " "))
				}
				cmds = cmd.Subcommands
			}
			return c.App.RunContext(c.Context, append(append([]string{c.App.Name}, c.Args().Slice()...), "--help"))
		},
	}
}

func onUsageError(c *cli.Context, err error, _ bool) error {
	return usageError{fmt.Errorf("%w (see `%s --help`)", err, c.Command.HelpName)}
}

// addVerbose gives -v to every command that lacks it, so that -v means
// --verbose wherever it is written.
func addVerbose(cmds []*cli.Command) {
	for _, c := range cmds {
		if len(c.Subcommands) > 0 {
			addVerbose(c.Subcommands)
			continue
		}
		has := false
		for _, f := range c.Flags {
			for _, n := range f.Names() {
				has = has || n == "verbose"
			}
		}
		if !has {
			c.Flags = append(c.Flags, verboseFlag())
		}
	}
}

func setUsageErrors(cmds []*cli.Command) {
	for _, c := range cmds {
		c.OnUsageError = onUsageError
		setUsageErrors(c.Subcommands)
	}
}

func stdout(c *cli.Context) io.Writer { return c.App.Metadata["stdout"].(io.Writer) }
func stderr(c *cli.Context) io.Writer { return c.App.Metadata["stderr"].(io.Writer) }

// logger writes human-readable logs to stderr; stdout carries only results.
func logger(c *cli.Context) *slog.Logger {
	level := slog.LevelInfo
	if c.Bool("verbose") {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(stderr(c), &slog.HandlerOptions{Level: level}))
}

// oneArg returns the single positional argument a command takes.
func oneArg(c *cli.Context, what string) (string, error) {
	switch c.NArg() {
	case 1:
		return c.Args().First(), nil
	case 0:
		return "", usagef("%s needs %s (see `%s --help`)", c.Command.HelpName, what, c.Command.HelpName)
	default:
		return "", usagef("%s takes one %s, got %d arguments: %s", c.Command.HelpName, what, c.NArg(), strings.Join(c.Args().Slice(), " "))
	}
}

// parseStatefulSet reads "sts/NAME" (also "statefulset/NAME" and
// "statefulsets.apps/NAME", as kubectl accepts them).
func parseStatefulSet(s string) (string, error) {
	kind, name, ok := strings.Cut(s, "/")
	if !ok {
		return "", usagef("%q is not a StatefulSet reference: write sts/NAME", s)
	}
	switch strings.ToLower(kind) {
	case "sts", "statefulset", "statefulsets", "statefulset.apps", "statefulsets.apps":
	default:
		return "", usagef("%q is not a StatefulSet reference: write sts/NAME (kbak backs up StatefulSets only)", s)
	}
	if name == "" {
		return "", usagef("%q names no StatefulSet: write sts/NAME", s)
	}
	return name, nil
}
