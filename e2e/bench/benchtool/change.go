package main

import (
	"flag"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// The change between two backups: about 1 % of a 1 GiB data set made by
// e2e/benchdata, of the kinds a database makes between two backups.
const (
	pageSize       = 8 << 10
	changedPages   = 100     // 8 KiB pages rewritten in place, anywhere in the tables
	appendBytes    = 4 << 20 // appended to one table
	walSegmentSize = 16 << 20
	changedSmall   = 20 // small config and log files that get a line more
)

// changeCmd applies the change to dir in place. The same data set and seed
// give the same change.
func changeCmd(args []string) error {
	fset := flag.NewFlagSet("change", flag.ContinueOnError)
	dir := fset.String("dir", "", "data set made by e2e/benchdata")
	seed := fset.Uint64("seed", 1, "seed; the same seed gives the same change")
	if err := fset.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if *dir == "" {
		return usageError{"change: --dir is required"}
	}
	t, err := scan(*dir)
	if err != nil {
		return err
	}
	if len(t.tables) == 0 || len(t.wal) == 0 || len(t.small) < changedSmall {
		return fmt.Errorf("change %s: not a data set made by e2e/benchdata (tables, pg_wal and small files expected)", *dir)
	}
	rng := rand.New(rand.NewPCG(*seed, 0x6368616e6765))
	var written int64

	// Pages: distinct page numbers over all tables, in table order.
	var pages int64
	for _, f := range t.tables {
		pages += f.size / pageSize
	}
	picked := map[int64]bool{}
	for len(picked) < min(changedPages, int(pages)) {
		picked[rng.Int64N(pages)] = true
	}
	for _, p := range slices.Sorted(maps.Keys(picked)) {
		f, off := t.page(p)
		if err := writeAt(f, off, rowText(rng, pageSize)); err != nil {
			return err
		}
		written += pageSize
	}

	table := t.tables[rng.IntN(len(t.tables))]
	if err := writeAt(table.path, table.size, rowText(rng, appendBytes)); err != nil {
		return err
	}
	written += appendBytes

	last := filepath.Base(t.wal[len(t.wal)-1])
	n, err := strconv.ParseUint(last, 16, 64)
	if err != nil {
		return fmt.Errorf("change %s: WAL segment name %s is not hex: %w", *dir, last, err)
	}
	seg := make([]byte, walSegmentSize)
	rand.NewChaCha8([32]byte{byte(*seed), 'w', 'a', 'l'}).Read(seg)
	segPath := filepath.Join(filepath.Dir(t.wal[0]), fmt.Sprintf("%024X", n+1))
	if err := os.WriteFile(segPath, seg, 0o600); err != nil {
		return fmt.Errorf("write WAL segment %s: %w", segPath, err)
	}
	written += walSegmentSize

	for _, i := range rng.Perm(len(t.small))[:changedSmall] {
		f, err := os.OpenFile(t.small[i], os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", t.small[i], err)
		}
		line := fmt.Sprintf("changed by e2e/bench.sh, seed %d: %s\n", *seed, rowText(rng, 64))
		_, err = f.WriteString(line)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("append to %s: %w", t.small[i], err)
		}
		written += int64(len(line))
	}
	fmt.Printf("benchtool: changed %s: %d pages rewritten, %d bytes appended, WAL segment %s, %d small files; %d bytes written\n",
		*dir, len(picked), appendBytes, filepath.Base(segPath), changedSmall, written)
	return nil
}

type file struct {
	path string
	size int64
}

// tree is what change needs to know of a data set, every list sorted.
type tree struct {
	tables []file   // base/*/*: 8 KiB pages
	wal    []string // pg_wal segments
	small  []string // under conf/ and log/
}

func scan(dir string) (tree, error) {
	var t tree
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		switch top, _, _ := strings.Cut(filepath.ToSlash(rel), "/"); top {
		case "base":
			info, err := d.Info()
			if err != nil {
				return err
			}
			if info.Size() >= pageSize {
				t.tables = append(t.tables, file{path, info.Size()})
			}
		case "pg_wal":
			t.wal = append(t.wal, path)
		case "conf", "log":
			t.small = append(t.small, path)
		}
		return nil
	})
	if err != nil {
		return t, fmt.Errorf("scan data set %s: %w", dir, err)
	}
	// WalkDir visits in lexical order already; WAL names sort by number.
	return t, nil
}

// page returns the file and offset of page p, counted over all tables.
func (t tree) page(p int64) (string, int64) {
	for _, f := range t.tables {
		if n := f.size / pageSize; p >= n {
			p -= n
			continue
		}
		return f.path, p * pageSize
	}
	panic("page number out of range")
}

func writeAt(path string, off int64, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	_, err = f.WriteAt(b, off)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s at %d: %w", path, off, err)
	}
	return nil
}
