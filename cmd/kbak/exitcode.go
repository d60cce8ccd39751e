package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/kbak/kbak/uploader"
)

// Exit codes, documented in the README and in `kbak --help`.
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitPartial     = 3
	exitInterrupted = 130
)

// usageError marks bad input: a wrong flag, argument or URL. It maps to exit 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// errPartial marks a run that finished with some volumes failed: the result
// was printed, the exit code must still not be 0.
var errPartial = errors.New("partially failed")

// exitCode is the one table from errors to exit codes.
func exitCode(ctx context.Context, err error) int {
	var usage usageError
	switch {
	case err == nil:
		return exitOK
	case ctx.Err() != nil:
		return exitInterrupted
	case errors.Is(err, errPartial):
		return exitPartial
	case errors.As(err, &usage), errors.Is(err, uploader.ErrBadURL):
		return exitUsage
	default:
		return exitFailed
	}
}
