package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/hint"
	"github.com/kbak/kbak/internal/kube"
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
		fmt.Fprintln(stderr, "kbak: "+errorLine(err))
	}
	return code
}

// errorLine is what a person reads about err: the libraries' words with
// the settings they advise spelled as flags, unless kbak knows better what
// to do next.
func errorLine(err error) string {
	var timeout *kube.APITimeoutError
	if errors.As(err, &timeout) {
		return fmt.Sprintf("the Kubernetes API server at %s did not answer within %s: check that it is up and reachable, or raise --request-timeout", timeout.Server, timeout.After)
	}
	// A person reads the first line, scripts read the exit code.
	return catalog.OneLine(hint.Render(err, flagSpelling))
}
