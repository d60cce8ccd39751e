package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// permuteArgs moves flags in front of positional arguments, so that
// `kbak backup sts/db -n shop` works like `kbak backup -n shop sts/db`.
// urfave/cli v2 stops reading flags at the first positional argument; kbak's
// users write the object first, as kubectl taught them. A bare --dry-run
// of a verb whose --dry-run takes a value means --dry-run=client, as it
// does to kubectl.
func permuteArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	out := []string{args[0]}
	rest := args[1:]
	cmds := app.Commands
	var flags []cli.Flag
	// Walk the command chain: `schedule create` and the like.
	for len(rest) > 0 {
		cmd := findCommand(cmds, rest[0])
		if cmd == nil {
			break
		}
		out = append(out, rest[0])
		rest = rest[1:]
		cmds, flags = cmd.Subcommands, cmd.Flags
	}
	if flags == nil {
		return append(out, rest...)
	}
	var positional []string
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		switch {
		case a == "--":
			positional = append(positional, rest[i+1:]...)
			i = len(rest)
		case a == "--dry-run" && takesValue(flags, "dry-run"):
			out = append(out, "--dry-run=client")
		case len(a) > 1 && a[0] == '-':
			out = append(out, a)
			if !strings.Contains(a, "=") && takesValue(flags, strings.TrimLeft(a, "-")) && i+1 < len(rest) {
				i++
				out = append(out, rest[i])
			}
		default:
			positional = append(positional, a)
		}
	}
	if len(positional) > 0 {
		out = append(out, "--")
		out = append(out, positional...)
	}
	return out
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// takesValue says whether flag name expects a value in the next argument.
func takesValue(flags []cli.Flag, name string) bool {
	for _, f := range flags {
		for _, n := range f.Names() {
			if n != name {
				continue
			}
			_, isBool := f.(*cli.BoolFlag)
			return !isBool
		}
	}
	return false // unknown flags are reported by the parser itself
}
