package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/kbak/kbak/internal/catalog"
)

// A repository written by kbak before the deduplicating format (testdata/
// v1repo, made by the kbak of commit 8767075 from a tree with a hard link, a
// symlink, an empty directory, modes and ns mtimes) is still listed,
// described, verified and restored by this kbak, byte for byte.
func TestFormat1RepositoryStillReadable(t *testing.T) {
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	repoDir := t.TempDir()
	if err := os.CopyFS(repoDir, os.DirFS("testdata/v1repo")); err != nil {
		t.Fatal(err)
	}
	repo := "file://" + repoDir
	const id = "db-20261101T020000Z-0a1f"

	code, out, errs := kbak(t, "list", "--repo", repo, "-n", "shop", "-o", "json")
	if code != 0 || !strings.Contains(out, id) {
		t.Fatalf("list: exit %d, stdout %s, stderr %s", code, out, errs)
	}
	code, out, errs = kbak(t, "describe", id, "--repo", repo, "-o", "json")
	if code != 0 {
		t.Fatalf("describe: exit %d: %s", code, errs)
	}
	var m catalog.Manifest
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatal(err)
	}
	if m.Format != 0 || len(m.Volumes) != 1 || m.Volumes[0].SHA256 == "" {
		t.Fatalf("describe: format %d, volumes %+v", m.Format, m.Volumes)
	}
	if code, _, errs = kbak(t, "verify", id, "--repo", repo); code != 0 {
		t.Fatalf("verify: exit %d: %s", code, errs)
	}
	target := t.TempDir()
	v := m.Volumes[0]
	code, _, errs = kbak(t, "mover", "download", "--repo", repo, "--key", v.Key, "--sha256", v.SHA256, "--target", target, "--progress-interval", "0")
	if code != 0 {
		t.Fatalf("restore: exit %d: %s", code, errs)
	}
	want, err := os.ReadFile("testdata/v1repo.tree")
	if err != nil {
		t.Fatal(err)
	}
	if got := listTree(t, target); got != string(want) {
		t.Errorf("restored tree:\n%s\nwant:\n%s", got, want)
	}
}

// listTree describes every entry under dir: type and mode, owner, size,
// mtime, link count, symlink target and content digest.
func listTree(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		line := fmt.Sprintf("%s %s %d:%d", rel, fi.Mode(), st.Uid, st.Gid)
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			line += fmt.Sprintf(" size=%d links=%d mtime=%d sha256=%s", fi.Size(), st.Nlink, fi.ModTime().UnixNano(), hex.EncodeToString(sum[:8]))
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + target
		case fi.IsDir() && rel != ".":
			line += fmt.Sprintf(" mtime=%d", fi.ModTime().UnixNano())
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n") + "\n"
}

// TestWriteFormat1Expectation records the listing of the tree the fixture
// was made from, when KBAK_FIXTURE_SOURCE names it.
func TestWriteFormat1Expectation(t *testing.T) {
	src := os.Getenv("KBAK_FIXTURE_SOURCE")
	if src == "" {
		return
	}
	if err := os.WriteFile("testdata/v1repo.tree", []byte(listTree(t, src)), 0o644); err != nil {
		t.Fatal(err)
	}
}
