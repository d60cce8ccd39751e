// Package dataset generates a database-like directory tree for benchmarks of
// the archive stream: mostly 8 KiB pages of row-like text, WAL-like random
// segments and a few thousand small config and log files. The same size and
// seed give the same tree, byte for byte, mtimes included.
package dataset

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"
)

const (
	pageSize    = 8 << 10
	walSegment  = 16 << 20
	maxTable    = 64 << 20
	smallFiles  = 3000
	writeChunk  = 1 << 20
	pageShare   = 70 // percent of the size in table pages
	walShare    = 20 // percent in WAL segments; the rest in small files
	dirsPerTree = 40
)

// epoch is the base of every mtime, so the tree (and its archive) is
// reproducible.
var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Summary says what Generate wrote.
type Summary struct {
	Files, Dirs                     int64
	PageBytes, WALBytes, SmallBytes int64
}

// Bytes is the total file content written.
func (s Summary) Bytes() int64 { return s.PageBytes + s.WALBytes + s.SmallBytes }

type kind int

const (
	pages kind = iota
	wal
	small
)

type job struct {
	path string
	kind kind
	size int64
	seed uint64
}

// Generate writes about size bytes of files under dir, which must not exist
// or be empty.
func Generate(ctx context.Context, dir string, size int64, seed uint64) (Summary, error) {
	if es, err := os.ReadDir(dir); err == nil && len(es) > 0 {
		return Summary{}, fmt.Errorf("generate data set in %s: directory is not empty", dir)
	}
	jobs, dirs := plan(size, seed)
	var sum Summary
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return sum, fmt.Errorf("create directory %s: %w", d, err)
		}
	}
	sum.Dirs = int64(len(dirs))
	for _, j := range jobs {
		sum.Files++
		switch j.kind {
		case pages:
			sum.PageBytes += j.size
		case wal:
			sum.WALBytes += j.size
		default:
			sum.SmallBytes += j.size
		}
	}

	ch := make(chan job)
	errs := make(chan error, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, writeChunk+pageSize)
			for j := range ch {
				if err := write(filepath.Join(dir, j.path), j, buf); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var err error
feed:
	for _, j := range jobs {
		select {
		case ch <- j:
		case err = <-errs:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(ch)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	if err != nil {
		return sum, err
	}
	// Directory mtimes last: creating files changed them.
	for i, d := range slices.Backward(dirs) {
		ts := epoch.Add(time.Duration(i) * time.Hour)
		if err := os.Chtimes(filepath.Join(dir, d), ts, ts); err != nil {
			return sum, fmt.Errorf("set mtime of %s: %w", d, err)
		}
	}
	return sum, nil
}

// plan lays out every file and directory; it is cheap and deterministic.
func plan(size int64, seed uint64) ([]job, []string) {
	rng := rand.New(rand.NewPCG(seed, 0x6b62616b))
	var jobs []job
	next := func(path string, k kind, n int64) {
		jobs = append(jobs, job{path, k, n, rng.Uint64()})
	}
	dirs := []string{"base/16384", "base/16385", "global", "pg_wal", "log", "conf"}

	left := size * pageShare / 100 / pageSize * pageSize
	for oid := 16400; left > 0; oid++ {
		n := min(left, int64(1+rng.IntN(maxTable/pageSize))*pageSize)
		db := dirs[oid%2]
		next(db+"/"+strconv.Itoa(oid), pages, n)
		left -= n
	}
	left = size * walShare / 100
	for seg := 1; left > 0; seg++ {
		n := min(left, walSegment)
		next(fmt.Sprintf("pg_wal/%024X", seg), wal, n)
		left -= n
	}
	left = size - size*pageShare/100/pageSize*pageSize - size*walShare/100
	count := int64(smallFiles)
	if left/count < 512 {
		count = max(1, left/512)
	}
	var sub []string
	for i := range dirsPerTree {
		top := "log"
		if i%4 == 0 {
			top = "conf"
		}
		d := fmt.Sprintf("%s/%s-%02d/%d", top, []string{"app", "db", "web", "batch"}[i%4], i/4, i%3)
		sub = append(sub, d)
	}
	dirs = append(dirs, sub...)
	dirs = append(dirs, "log/empty") // empty directories are part of real trees
	for i := range count {
		n := left / (count - i)
		if i < count-1 {
			n = max(1, n/2+rng.Int64N(n+1))
		}
		d := sub[rng.IntN(len(sub))]
		ext := ".log"
		if d[:4] == "conf" {
			ext = ".conf"
		}
		next(fmt.Sprintf("%s/f%05d%s", d, i, ext), small, n)
		left -= n
	}
	// Every ancestor too, so that all directory mtimes are set.
	for _, d := range dirs {
		for p := filepath.Dir(d); p != "."; p = filepath.Dir(p) {
			dirs = append(dirs, p)
		}
	}
	slices.Sort(dirs)
	return jobs, slices.Compact(dirs)
}

func write(path string, j job, buf []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	g := newGen(j.seed)
	for left := j.size; left > 0; {
		buf = buf[:0]
		switch j.kind {
		case pages:
			for len(buf) < writeChunk && int64(len(buf)) < left {
				buf = g.page(buf)
			}
		case wal:
			buf = buf[:min(writeChunk, left)]
			g.cha.Read(buf)
		default:
			for len(buf) < writeChunk && int64(len(buf)) < left {
				buf = g.logLine(buf)
			}
		}
		buf = buf[:min(int64(len(buf)), left)]
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", path, err)
		}
		left -= int64(len(buf))
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	ts := epoch.Add(time.Duration(j.seed%(365*24*3600)) * time.Second)
	if err := os.Chtimes(path, ts, ts); err != nil {
		return fmt.Errorf("set mtime of %s: %w", path, err)
	}
	return nil
}

type gen struct {
	rng  *rand.Rand
	cha  *rand.ChaCha8
	row  int64
	lsn  uint64
	day  int64
	date []byte
}

func newGen(seed uint64) *gen {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	return &gen{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), cha: rand.NewChaCha8(key)}
}

var (
	firstNames = []string{"anna", "bruno", "chen", "dmitri", "elena", "farid", "greta", "hiro", "ines", "jonas", "kofi", "lena", "mateo", "nora", "olga", "pavel", "quinn", "rosa", "sami", "tara", "uwe", "vera", "wei", "ximena", "yusuf", "zoe"}
	lastNames  = []string{"schmidt", "garcia", "kowalski", "nguyen", "okafor", "rossi", "silva", "tanaka", "muller", "novak", "haddad", "larsen", "petrov", "dubois", "smith", "ivanova"}
	cities     = []string{"berlin", "lisbon", "osaka", "lagos", "lima", "oslo", "prague", "quito", "seoul", "tunis", "vienna", "warsaw"}
	statuses   = []string{"active", "pending", "shipped", "cancelled", "refunded"}
	levels     = []string{"INFO ", "INFO ", "INFO ", "DEBUG", "WARN ", "ERROR"}
	paths      = []string{"/api/v1/orders", "/api/v1/items", "/api/v1/customers", "/healthz", "/metrics", "/api/v2/search"}
	hexDigits  = "0123456789abcdef"
)

// page appends one 8 KiB page: a binary header, rows of text from the end
// backwards like a heap page, and zeroed free space between.
func (g *gen) page(b []byte) []byte {
	start := len(b)
	b = slices.Grow(b, pageSize)[:start+pageSize]
	p := b[start:]
	clear(p)
	h := g.rng.Uint64()
	g.lsn += 1 + h%4096
	binary.LittleEndian.PutUint64(p[0:], g.lsn)
	binary.LittleEndian.PutUint16(p[8:], uint16(h>>12))
	var row [256]byte
	lower, upper := 24, pageSize
	for {
		r := g.rowText(row[:0])
		if upper-len(r) < lower+4+int(h>>32)%512 {
			break
		}
		upper -= len(r)
		copy(p[upper:], r)
		binary.LittleEndian.PutUint16(p[lower:], uint16(upper))
		binary.LittleEndian.PutUint16(p[lower+2:], uint16(len(r)))
		lower += 4
	}
	binary.LittleEndian.PutUint16(p[12:], uint16(lower))
	binary.LittleEndian.PutUint16(p[14:], uint16(upper))
	return b
}

// rowText draws all of a row's choices from two random words: generation
// must run at disk speed.
func (g *gen) rowText(b []byte) []byte {
	g.row++
	x, y := g.rng.Uint64(), g.rng.Uint64()
	first, last := firstNames[x%uint64(len(firstNames))], lastNames[(x>>8)%uint64(len(lastNames))]
	b = strconv.AppendInt(b, g.row, 10)
	b = append(b, '|')
	b = append(b, first...)
	b = append(b, ' ')
	b = append(b, last...)
	b = append(b, '|')
	b = append(b, first...)
	b = append(b, '.')
	b = append(b, last...)
	b = strconv.AppendUint(b, (x>>16)%1000, 10)
	b = append(b, "@example.com|"...)
	b = append(b, cities[(x>>26)%uint64(len(cities))]...)
	b = append(b, '|')
	b = strconv.AppendUint(b, (x>>32)%100000, 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, 10+(x>>50)%90, 10)
	b = append(b, '|')
	b = append(b, statuses[(x>>57)%uint64(len(statuses))]...)
	b = append(b, "|2024-"...)
	b = appendPad2(b, int(1+y%12))
	b = append(b, '-')
	b = appendPad2(b, int(1+(y>>4)%28))
	b = append(b, '|')
	y >>= 16
	for range 12 {
		b = append(b, hexDigits[y&15])
		y >>= 4
	}
	return append(b, '\n')
}

func appendPad2(b []byte, v int) []byte {
	if v < 10 {
		b = append(b, '0')
	}
	return strconv.AppendInt(b, int64(v), 10)
}

func (g *gen) logLine(b []byte) []byte {
	x := g.rng.Uint64()
	g.row += int64(1 + x%2000)
	x >>= 11
	ms := g.row
	if day := ms / 86400000; day != g.day || g.date == nil {
		g.day = day
		g.date = epoch.Add(time.Duration(day)*24*time.Hour).AppendFormat(g.date[:0], "2006-01-02T")
	}
	b = append(b, g.date...)
	ms %= 86400000
	b = appendPad2(b, int(ms/3600000))
	b = append(b, ':')
	b = appendPad2(b, int(ms/60000%60))
	b = append(b, ':')
	b = appendPad2(b, int(ms/1000%60))
	b = append(b, '.')
	b = append(b, byte('0'+ms/100%10), byte('0'+ms/10%10), byte('0'+ms%10))
	b = append(b, "Z "...)
	b = append(b, levels[x%uint64(len(levels))]...)
	b = append(b, " [worker-"...)
	b = strconv.AppendUint(b, (x>>3)%16, 10)
	b = append(b, "] request done method=GET path="...)
	b = append(b, paths[(x>>7)%uint64(len(paths))]...)
	b = append(b, '/')
	b = strconv.AppendUint(b, (x>>10)%100000, 10)
	b = append(b, " status="...)
	b = strconv.AppendInt(b, int64([]int{200, 200, 200, 201, 204, 404, 500}[(x>>27)%7]), 10)
	b = append(b, " dur="...)
	b = strconv.AppendUint(b, (x>>30)%900, 10)
	return append(b, "ms\n"...)
}
