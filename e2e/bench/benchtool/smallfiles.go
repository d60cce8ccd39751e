package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sync/errgroup"
)

const (
	smallMin    = 100  // bytes; sizes are log-uniform between the two
	smallMax    = 8192 // so that most files are a few KiB
	filesPerDir = 1000
)

// smallFilesCmd writes count small text files, 1000 to a directory, in two
// levels of directories. The same count and seed give the same tree.
func smallFilesCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("smallfiles", flag.ContinueOnError)
	out := fs.String("out", "", "directory to create (must not exist or be empty)")
	count := fs.Int("count", 200000, "number of files")
	seed := fs.Uint64("seed", 1, "seed; the same seed and count give the same tree")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if *out == "" || *count <= 0 {
		return usageError{"smallfiles: --out and a positive --count are required"}
	}
	if es, err := os.ReadDir(*out); err == nil && len(es) > 0 {
		return fmt.Errorf("write small files to %s: directory is not empty", *out)
	}
	g, ctx := errgroup.WithContext(ctx)
	// File creation waits on the file system more than on the CPU.
	g.SetLimit(2 * runtime.GOMAXPROCS(0))
	var total int64
	sizes := make([]int, *count)
	for i := range sizes {
		rng := rand.New(rand.NewPCG(*seed, uint64(i)))
		sizes[i] = int(smallMin * math.Exp(rng.Float64()*math.Log(smallMax/smallMin)))
		total += int64(sizes[i])
	}
	for d := 0; d < *count; d += filesPerDir {
		g.Go(func() error {
			dir := filepath.Join(*out, fmt.Sprintf("t%02d", d/(10*filesPerDir)), fmt.Sprintf("m%d", d/filesPerDir%10))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("create directory %s: %w", dir, err)
			}
			for i := d; i < min(d+filesPerDir, *count); i++ {
				if err := ctx.Err(); err != nil {
					return err
				}
				rng := rand.New(rand.NewPCG(*seed, uint64(i)))
				rng.Float64() // the size, drawn above
				path := filepath.Join(dir, fmt.Sprintf("f%06d.txt", i))
				if err := os.WriteFile(path, rowText(rng, sizes[i]), 0o644); err != nil {
					return fmt.Errorf("write %s: %w", path, err)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	fmt.Printf("benchtool: %d small files, %d bytes in %s\n", *count, total, *out)
	return nil
}
