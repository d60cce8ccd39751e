package main

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
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
	// Every line kbak writes to stderr goes through the printer, so that
	// none overwrites the progress block, nor the block a line.
	errw, ok := stderr.(*progressPrinter)
	if !ok {
		errw = newProgressPrinter(stderr, isTerminal(stderr))
	}
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
		ErrWriter: errw,
		// kbak's own help command: urfave/cli's shares state between
		// apps, which tests run many of.
		HideHelpCommand:      true,
		EnableBashCompletion: true,
		Flags:                []cli.Flag{verboseFlag(), logFormatFlag(), cli.HelpFlag},
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
	app.Metadata = map[string]any{"stdout": stdout, "stderr": errw}
	setUsageErrors(app.Commands)
	addLogFlags(app.Commands)
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

// addLogFlags gives -v and --log-format to every command that lacks them,
// so that they mean the same wherever they are written.
func addLogFlags(cmds []*cli.Command) {
	for _, c := range cmds {
		if len(c.Subcommands) > 0 {
			addLogFlags(c.Subcommands)
			continue
		}
		hasVerbose, hasFormat := false, false
		for _, f := range c.Flags {
			for _, n := range f.Names() {
				hasVerbose = hasVerbose || n == "verbose"
				hasFormat = hasFormat || n == "log-format"
			}
		}
		if !hasVerbose {
			c.Flags = append(c.Flags, verboseFlag())
		}
		if !hasFormat {
			c.Flags = append(c.Flags, logFormatFlag())
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
func stderr(c *cli.Context) io.Writer { return printer(c) }

// printer owns stderr: the progress display and every line above it.
func printer(c *cli.Context) *progressPrinter { return c.App.Metadata["stderr"].(*progressPrinter) }

// progress is the display of a run's movers on stderr: a block redrawn in
// place on a terminal, periodic lines elsewhere, log records with
// --log-format json. The command calls its done when the movers are.
func progress(c *cli.Context) *progressPrinter {
	pp := printer(c)
	if logFormat(c) == logJSON {
		pp.mu.Lock()
		// Straight to stderr: the printer writes its records holding its lock.
		pp.log = slog.New(slog.NewJSONHandler(pp.w, &slog.HandlerOptions{Level: logLevel(c, false)}))
		pp.mu.Unlock()
	}
	return pp
}

// logger writes logs to stderr, through the printer; stdout carries only
// results. On a terminal it logs warnings and errors only, the progress
// display saying the rest, unless -v.
func logger(c *cli.Context) *slog.Logger { return newLogger(c, true) }

// serviceLogger is the logger of a command whose log is its output (the
// agent): information too, on a terminal as elsewhere.
func serviceLogger(c *cli.Context) *slog.Logger { return newLogger(c, false) }

func newLogger(c *cli.Context, quietOnTerminal bool) *slog.Logger {
	opts := &slog.HandlerOptions{Level: logLevel(c, quietOnTerminal)}
	if logFormat(c) == logJSON {
		return slog.New(slog.NewJSONHandler(stderr(c), opts))
	}
	return slog.New(slog.NewTextHandler(stderr(c), opts))
}

func logLevel(c *cli.Context, quietOnTerminal bool) slog.Level {
	switch {
	case flagOf(c, "verbose", (*cli.Context).Bool):
		return slog.LevelDebug
	case quietOnTerminal && printer(c).tty && logFormat(c) == logText:
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// Values of --log-format.
const (
	logText = "text"
	logJSON = "json"
)

func logFormat(c *cli.Context) string { return flagOf(c, "log-format", (*cli.Context).String) }

// flagOf is the value of a flag every command has, also where it was
// given before the command's name (kbak -v backup …), which the
// command's own default would otherwise hide.
func flagOf[T any](c *cli.Context, name string, get func(*cli.Context, string) T) T {
	for _, cc := range c.Lineage() {
		if slices.Contains(cc.LocalFlagNames(), name) {
			return get(cc, name)
		}
	}
	return get(c, name)
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
