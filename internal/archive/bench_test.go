package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/kbak/kbak/internal/archive/dataset"
)

// benchSize is the data set the benchmarks archive: big enough for zstd's
// goroutines to matter, small enough to stay in the page cache.
const benchSize = 64 << 20

var (
	benchOnce sync.Once
	benchDir  string
	benchErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

func benchData(b *testing.B) string {
	benchOnce.Do(func() {
		if benchDir, benchErr = os.MkdirTemp("", "kbak-bench-"); benchErr == nil {
			_, benchErr = dataset.Generate(context.Background(), filepath.Join(benchDir, "src"), benchSize, 1)
		}
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return filepath.Join(benchDir, "src")
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

func BenchmarkWrite(b *testing.B) {
	src := benchData(b)
	for _, tc := range []struct{ level, conc int }{{1, 0}, {1, 1}, {3, 0}} {
		b.Run(fmt.Sprintf("level=%d/concurrency=%d", tc.level, tc.conc), func(b *testing.B) {
			var st Stats
			var out countWriter
			for b.Loop() {
				out.n = 0
				var err error
				if st, err = Write(context.Background(), src, &out, WriteOptions{Level: tc.level, Concurrency: tc.conc}); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(st.RawBytes)
			b.ReportMetric(float64(st.RawBytes)/float64(out.n), "ratio")
		})
	}
}

// BenchmarkTarBaseline is plain archive/tar of the same tree into io.Discard,
// with no compression, metadata or sparse detection: the floor Write is
// compared with.
func BenchmarkTarBaseline(b *testing.B) {
	src := benchData(b)
	var total int64
	for b.Loop() {
		total = 0
		tw := tar.NewWriter(io.Discard)
		err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			hdr, err := tar.FileInfoHeader(fi, "")
			if err != nil {
				return err
			}
			hdr.Name = p
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if fi.Mode().IsRegular() {
				f, err := os.Open(p)
				if err != nil {
					return err
				}
				n, err := io.Copy(tw, f)
				f.Close()
				total += n
				return err
			}
			return nil
		})
		if err == nil {
			err = tw.Close()
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(total)
}

func BenchmarkExtract(b *testing.B) {
	src := benchData(b)
	var buf bytes.Buffer
	st, err := Write(context.Background(), src, &buf, WriteOptions{})
	if err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	b.SetBytes(st.RawBytes)
	i := 0
	for b.Loop() {
		b.StopTimer()
		dst := filepath.Join(benchDir, fmt.Sprint("dst", i))
		i++
		if err := os.Mkdir(dst, 0o755); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := Extract(context.Background(), bytes.NewReader(data), dst, ExtractOptions{}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := os.RemoveAll(dst); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
