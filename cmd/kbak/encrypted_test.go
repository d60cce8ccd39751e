package main

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An encrypted repository, from the command line, outside any cluster: the
// write key uploads and lists; the read key, or the passphrase alone,
// restores; the write key cannot; no object holds the volume's plaintext;
// key files are never overwritten; the last read key cannot be removed.
func TestEncryptedRepository(t *testing.T) {
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	os.MkdirAll(store, 0o755)
	os.MkdirAll(filepath.Join(dir, "other"), 0o755)
	url := "file://" + store
	wk, rk := filepath.Join(dir, "write.key"), filepath.Join(dir, "read.key")
	pass := filepath.Join(dir, "pass")
	os.WriteFile(pass, []byte("a long passphrase for the runbook\n"), 0o600)
	code, _, errs := kbak(t, "repo", "init", "--repo", url, "--write-key-out", wk, "--read-key-out", rk, "--passphrase-file", pass)
	if code != 0 {
		t.Fatalf("init: exit %d: %s", code, errs)
	}
	for _, f := range []string{wk, rk} {
		if st, err := os.Stat(f); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("key file %s: %v %v", f, st, err)
		}
	}
	if code, _, errs = kbak(t, "repo", "init", "--repo", "file://"+filepath.Join(dir, "other"), "--write-key-out", wk, "--read-key-out", filepath.Join(dir, "r2")); code != exitUsage {
		t.Fatalf("init over an existing key file: exit %d", code)
	}
	oneErrorLine(t, errs, "exists", "never overwrites")

	src := filepath.Join(dir, "src")
	os.MkdirAll(filepath.Join(src, "mysql"), 0o755)
	secret := bytes.Repeat([]byte("CUSTOMER-ROW-PLAINTEXT "), 4096)
	os.WriteFile(filepath.Join(src, "mysql", "customers.ibd"), secret, 0o644)
	key := "kbak/v2/backups/ns/db/db-1/volumes/data-db-0.tree"
	if code, out, errs := kbak(t, "mover", "upload", "--repo", url, "--key-file", wk, "--source", src, "--key", key); code != 0 {
		t.Fatalf("upload with the write key: exit %d: %s %s", code, out, errs)
	}
	target := filepath.Join(dir, "target")
	os.MkdirAll(target, 0o755)
	code, _, errs = kbak(t, "mover", "download", "--repo", url, "--key-file", wk, "--key", key, "--target", target)
	if code != exitFailed {
		t.Fatalf("download with the write key: exit %d", code)
	}
	oneErrorLine(t, errs, "read key")
	if _, err := os.Stat(filepath.Join(target, "mysql")); err == nil {
		t.Error("a refused download wrote into the target")
	}
	for _, how := range [][]string{{"--key-file", rk}, {"--passphrase-file", pass}} {
		target := filepath.Join(dir, "restored-"+strings.TrimPrefix(how[0], "--"))
		os.MkdirAll(target, 0o755)
		args := append([]string{"mover", "download", "--repo", url, "--key", key, "--target", target}, how...)
		if code, _, errs = kbak(t, args...); code != 0 {
			t.Fatalf("download %v: exit %d: %s", how, code, errs)
		}
		got, _ := os.ReadFile(filepath.Join(target, "mysql", "customers.ibd"))
		if !bytes.Equal(got, secret) {
			t.Errorf("download %v: the file differs", how)
		}
	}
	wrong := filepath.Join(dir, "wrong")
	os.WriteFile(wrong, []byte("not the passphrase at all\n"), 0o600)
	code, _, errs = kbak(t, "mover", "download", "--repo", url, "--passphrase-file", wrong, "--key", key, "--target", filepath.Join(dir, "t3"))
	if code != exitFailed {
		t.Fatalf("download with a wrong passphrase: exit %d", code)
	}
	oneErrorLine(t, errs, "passphrase")
	code, _, errs = kbak(t, "mover", "download", "--repo", url, "--key", key, "--target", filepath.Join(dir, "t4"))
	if code != exitFailed {
		t.Fatalf("download with no key: exit %d", code)
	}
	oneErrorLine(t, errs, "encrypted", "--key-file")

	filepath.WalkDir(store, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := os.ReadFile(p)
		for _, plain := range []string{"CUSTOMER-ROW", "customers.ibd", "mysql"} {
			if bytes.Contains(b, []byte(plain)) {
				t.Errorf("%s holds %q", p, plain)
			}
		}
		return nil
	})

	code, out, _ := kbak(t, "key", "list", "--repo", url, "--key-file", wk)
	if code != 0 || strings.Count(out, "age1") != 1 {
		t.Fatalf("key list: exit %d:\n%s", code, out)
	}
	id := strings.Fields(strings.Split(out, "\n")[1])[0]
	code, _, errs = kbak(t, "key", "remove", "--repo", url, "--key-file", wk, id)
	if code != exitFailed {
		t.Fatalf("removing the last read key: exit %d", code)
	}
	oneErrorLine(t, errs, "last")
	second := filepath.Join(dir, "second.key")
	if code, _, errs = kbak(t, "key", "add", "--repo", url, "--key-file", rk, "--generate-out", second, "--label", "dr"); code != 0 {
		t.Fatalf("key add: exit %d: %s", code, errs)
	}
	if code, _, errs = kbak(t, "key", "remove", "--repo", url, "--key-file", second, id); code != 0 {
		t.Fatalf("key remove: exit %d: %s", code, errs)
	}
	code, _, errs = kbak(t, "key", "list", "--repo", url, "--key-file", rk)
	if code != exitFailed {
		t.Fatalf("the removed read key still opens the repository: exit %d", code)
	}
	oneErrorLine(t, errs, "does not open")
}
