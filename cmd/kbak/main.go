package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// run is main without the exit, so tests can drive the whole CLI.
func run(args []string, stdout, stderr io.Writer) int {
	// SIGINT and SIGTERM cancel the context; every command cleans up what it
	// made on a context of its own and returns, and the exit code says 130.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	app := newApp(stdout, stderr)
	err := app.RunContext(ctx, permuteArgs(app, args))
	code := exitCode(ctx, err)
	if err != nil && code != exitOK {
		fmt.Fprintln(stderr, "kbak: "+oneLine(err.Error()))
	}
	return code
}

// oneLine keeps an error to one line however the libraries below formatted
// it: a person reads the first line, scripts read the exit code.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
