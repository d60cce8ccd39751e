package main

import (
	"crypto/rand"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kbak/kbak/internal/repo"
	"github.com/kbak/kbak/uploader"
	"github.com/kbak/kbak/uploader/uploadertest"
)

// mainArgsEnv makes the test binary run kbak itself with these arguments
// (separated by newlines), so that a test can measure a whole kbak process.
const mainArgsEnv = "KBAK_TEST_MAIN_ARGS"

// peakFileEnv names a file the child writes its /proc/self/status to.
const peakFileEnv = "KBAK_TEST_PEAK_FILE"

// runMeasured runs kbak in a child process with args and env and returns
// its peak RSS (VmHWM) and its output.
func runMeasured(t *testing.T, env []string, args ...string) (int64, []byte, error) {
	t.Helper()
	statusFile := filepath.Join(t.TempDir(), "status")
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), append(env, peakFileEnv+"="+statusFile, mainArgsEnv+"="+strings.Join(args, "\n"))...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, out, err
	}
	status, err := os.ReadFile(statusFile)
	if err != nil {
		t.Fatalf("the child wrote no status: %v", err)
	}
	for l := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", v, err)
			}
			return kb * 1024, out, nil
		}
	}
	t.Fatalf("no VmHWM in the child's status")
	return 0, out, nil
}

func TestMain(m *testing.M) {
	if dir := os.Getenv(fakeRunEnv); dir != "" {
		os.Exit(fakeRun(dir))
	}
	if args := os.Getenv(mainArgsEnv); args != "" {
		code := run(append([]string{"kbak"}, strings.Split(args, "\n")...), os.Stdout, os.Stderr)
		if f := os.Getenv(peakFileEnv); f != "" {
			// The kernel's wait4 figure would count the test process's own
			// peak (the child starts on its memory, vfork), so the child
			// tells its own.
			status, _ := os.ReadFile("/proc/self/status")
			os.WriteFile(f, status, 0o600)
		}
		os.Exit(code)
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

	peak, out, err := runMeasured(t, []string{
		"AWS_ACCESS_KEY_ID=" + srv.AccessKey, "AWS_SECRET_ACCESS_KEY=" + srv.SecretKey,
		"AWS_EC2_METADATA_DISABLED=true", "TMPDIR=" + t.TempDir()},
		"mover", "upload", "--repo", srv.URL("rss"), "--source", src,
		"--key", "vol.tar.zst", "--size-hint", strconv.FormatInt(2*uploader.TiB, 10), "--progress-interval", "0")
	if err != nil {
		t.Fatalf("kbak mover upload: %v\n%s", err, out)
	}
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
		peak, out, err := runMeasured(t, []string{"AWS_EC2_METADATA_DISABLED=true", "TMPDIR=" + t.TempDir()}, args...)
		if err != nil {
			t.Fatalf("kbak %s: %v\n%s", args[1], err, out)
		}
		t.Logf("peak RSS of kbak mover %s against a 1 TiB repository: %d MiB", args[1], peak/uploader.MiB)
		if peak > 128*uploader.MiB {
			t.Errorf("kbak mover %s: peak RSS %d MiB, want at most 128 MiB", args[1], peak/uploader.MiB)
		}
	}
}
