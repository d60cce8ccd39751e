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

// exitNow ends the process at a second interrupt; tests replace it.
var exitNow = os.Exit

// run is main without the exit, so tests can drive the whole CLI.
func run(args []string, stdout, stderr io.Writer) int {
	// Every line to stderr, the interrupt's and the error's too, goes
	// through the progress printer, which keeps them off its block.
	if _, ok := stderr.(*progressPrinter); !ok {
		stderr = newProgressPrinter(stderr, isTerminal(stderr))
	}
	// SIGINT and SIGTERM cancel the context; every command cleans up what it
	// made on a context of its own and returns, and the exit code says 130.
	// A second signal abandons the cleanup.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	done := make(chan struct{})
	defer close(done)
	go watchSignals(sigs, done, cancel, stderr, exitNow)

	app := newApp(stdout, stderr)
	err := app.RunContext(ctx, permuteArgs(app, args))
	code := exitCode(ctx, err)
	if err != nil && code != exitOK {
		fmt.Fprintln(stderr, "kbak: "+errorLine(err))
	}
	return code
}

// watchSignals cancels the run at the first signal, which then removes
// what it created, and at a second one (a person who will not wait, or a
// kubelet's second SIGTERM) says what is left and exits 130 at once. It
// returns when done is closed.
func watchSignals(sigs <-chan os.Signal, done <-chan struct{}, cancel func(), stderr io.Writer, exit func(int)) {
	select {
	case <-sigs:
		cancel()
		fmt.Fprintln(stderr, "kbak: interrupted: removing what this run created; interrupt again to stop at once")
	case <-done:
		return
	}
	select {
	case <-sigs:
		fmt.Fprintln(stderr, "kbak: interrupted again: cleanup abandoned; what this run created may be left in the cluster and the repository: `kbak gc` removes it")
		exit(exitInterrupted)
	case <-done:
	}
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
