// Command benchdata generates a database-like data set for kbak benchmarks:
// about 70% 8 KiB pages of row-like text, 20% random WAL-like 16 MiB
// segments and a few thousand small config and log files in nested
// directories. The same --size and --seed give the same tree.
//
//	go run ./e2e/benchdata --out /tmp/data --size 1GiB [--seed N]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/kbak/kbak/internal/archive/dataset"
)

func main() {
	out := flag.String("out", "", "directory to create (must not exist or be empty)")
	sizeFlag := flag.String("size", "1GiB", "total size: bytes or a number with KiB, MiB, GiB, KB, MB, GB")
	seed := flag.Uint64("seed", 1, "seed; the same seed and size give the same tree")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "benchdata: --out is required")
		os.Exit(2)
	}
	size, err := parseSize(*sizeFlag)
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchdata: --size %q: %v\n", *sizeFlag, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	start := time.Now()
	sum, err := dataset.Generate(ctx, *out, size, *seed)
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchdata: %v\n", err)
		os.Exit(1)
	}
	d := time.Since(start)
	fmt.Printf("benchdata: %s in %d files, %d dirs (pages %s, wal %s, small %s) to %s in %.1fs (%.0f MB/s)\n",
		human(sum.Bytes()), sum.Files, sum.Dirs, human(sum.PageBytes), human(sum.WALBytes), human(sum.SmallBytes),
		*out, d.Seconds(), float64(sum.Bytes())/1e6/d.Seconds())
}

func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(v), u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("want a positive size like 1GiB or 500MB")
	}
	return int64(n * float64(mult)), nil
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", n>>10)
}
