package main

import (
	"crypto/rand"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/kbak/kbak/internal/repo"
	"github.com/kbak/kbak/uploader"
	"github.com/kbak/kbak/uploader/uploadertest"
)

// mainArgsEnv makes the test binary run kbak itself with these arguments
// (separated by newlines), so that a test can measure a whole kbak process.
const mainArgsEnv = "KBAK_TEST_MAIN_ARGS"

func TestMain(m *testing.M) {
	if args := os.Getenv(mainArgsEnv); args != "" {
		os.Exit(run(append([]string{"kbak"}, strings.Split(args, "\n")...), os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// A mover's peak RSS stays under the 128 MiB that its pod may use whatever
// the claim's size: with a 2 TiB size hint the parts (236 MiB each) go to
// disk, not memory.
func TestMoverUploadPeakRSS(t *testing.T) {
	srv := uploadertest.StartVersityGW(t)
	src := t.TempDir()
	// Incompressible, so the stored object is as large as the data and the
	// upload is multipart (a part and a bit).
	writeRandomFile(t, filepath.Join(src, "db.bin"), 300*uploader.MiB)

	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(),
		"AWS_ACCESS_KEY_ID="+srv.AccessKey, "AWS_SECRET_ACCESS_KEY="+srv.SecretKey,
		"AWS_EC2_METADATA_DISABLED=true", "TMPDIR="+t.TempDir(),
		mainArgsEnv+"="+strings.Join([]string{"mover", "upload", "--repo", srv.URL("rss"), "--source", src,
			"--key", "vol.tar.zst", "--size-hint", strconv.FormatInt(2*uploader.TiB, 10), "--progress-interval", "0"}, "\n"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kbak mover upload: %v\n%s", err, out)
	}
	peak := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss * 1024
	t.Logf("peak RSS of kbak mover upload with a 2 TiB size hint: %d MiB", peak/uploader.MiB)
	if peak > 128*uploader.MiB {
		t.Errorf("peak RSS %d MiB, want at most 128 MiB", peak/uploader.MiB)
	}
	s, err := uploader.Open(t.Context(), srv.URL("rss"), srv.Options())
	if err != nil {
		t.Fatal(err)
	}
	if oi, err := s.Stat(t.Context(), "vol.tar.zst"); err != nil || oi.Size < 300*uploader.MiB {
		t.Errorf("stored archive: %+v, %v; want one of at least 300 MiB", oi, err)
	}
}

func writeRandomFile(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		t.Fatal(err)
	}
}

// A mover's peak RSS stays under 128 MiB with a repository holding 1 TiB of
// unique data (an index of 1 048 576 chunks of 1 MiB, made up: the data is
// not needed to measure what the index costs), for an upload that
// deduplicates against it and for a restore.
func TestMoverPeakRSSLargeRepository(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 1 TiB index")
	}
	dir := t.TempDir()
	store, err := uploader.NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Init(t.Context(), store, repo.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.SyntheticIndex(t.Context(), 1<<20); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	writeRandomFile(t, filepath.Join(src, "db.bin"), 64*uploader.MiB)
	const key = "kbak/v2/backups/ns/db/db-20260101T000000Z-0001/volumes/data-db-0.tree"
	for _, args := range [][]string{
		{"mover", "upload", "--repo", "file://" + dir, "--source", src, "--key", key, "--progress-interval", "0"},
		{"mover", "download", "--repo", "file://" + dir, "--key", key, "--target", t.TempDir(), "--progress-interval", "0"},
	} {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "AWS_EC2_METADATA_DISABLED=true", "TMPDIR="+t.TempDir(), mainArgsEnv+"="+strings.Join(args, "\n"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kbak %s: %v\n%s", args[1], err, out)
		}
		peak := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss * 1024
		t.Logf("peak RSS of kbak mover %s against a 1 TiB repository: %d MiB", args[1], peak/uploader.MiB)
		if peak > 128*uploader.MiB {
			t.Errorf("kbak mover %s: peak RSS %d MiB, want at most 128 MiB", args[1], peak/uploader.MiB)
		}
	}
}
