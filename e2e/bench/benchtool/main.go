// Command benchtool is the Go half of e2e/bench.sh, which compares kbak with
// restic and kopia: it makes the small-files data set, applies the
// deterministic "1 % change" between two backups, creates and sizes S3
// buckets, and turns the measured samples into the table and
// bench-results.json.
//
//	benchtool smallfiles --out DIR --count N [--seed S]
//	benchtool change --dir DIR [--seed S]
//	benchtool bucket create|size --endpoint URL --bucket NAME
//	benchtool report --samples FILE --meta FILE --json FILE
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
)

// usageError is a wrong command line; main exits 2 for it.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err := run(ctx, os.Args[1:])
	if err == nil {
		return
	}
	fmt.Fprintf(os.Stderr, "benchtool: %v\n", err)
	if errors.As(err, new(usageError)) {
		os.Exit(2)
	}
	os.Exit(1)
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usageError{"want a command: smallfiles, change, bucket or report"}
	}
	switch args[0] {
	case "smallfiles":
		return smallFilesCmd(ctx, args[1:])
	case "change":
		return changeCmd(args[1:])
	case "bucket":
		return bucketCmd(ctx, args[1:])
	case "report":
		return reportCmd(args[1:])
	}
	return usageError{fmt.Sprintf("unknown command %q: want smallfiles, change, bucket or report", args[0])}
}
