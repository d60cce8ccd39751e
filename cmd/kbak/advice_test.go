package main

import (
	"io"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/kbak/kbak/internal/hint"
	"github.com/kbak/kbak/internal/hint/hinttest"
)

// Every setting the libraries' advice names is spelled as a flag this
// command has, and as the libraries' tests expect a person to read it.
func TestFlagSpelling(t *testing.T) {
	flags := map[string]bool{}
	var collect func([]*cli.Command)
	collect = func(cmds []*cli.Command) {
		for _, c := range cmds {
			for _, f := range c.Flags {
				for _, n := range f.Names() {
					if len(n) == 1 {
						flags["-"+n] = true
					} else {
						flags["--"+n] = true
					}
				}
			}
			collect(c.Subcommands)
		}
	}
	collect(newApp(io.Discard, io.Discard).Commands)
	for _, s := range hint.Settings {
		if got := flagSpelling(hint.Of(s)); !flags[got] {
			t.Errorf("setting %s is spelled %s, which no command has", s, got)
		}
		for _, r := range []hint.Ref{hint.Of(s), hint.Set(s, "v")} {
			if got, want := flagSpelling(r), hinttest.Flags(r); got != want {
				t.Errorf("%+v spelled %q, the libraries' tests expect %q", r, got, want)
			}
		}
	}
}
