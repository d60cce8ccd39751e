package repo_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/kbak/kbak/internal/repo"
	"github.com/kbak/kbak/internal/seal"
)

// newEncrypted creates an encrypted repository with one read key and
// returns the store's directory, the read key and the write key.
func newEncrypted(t *testing.T) (repo.Store, string, seal.Key, seal.Key) {
	t.Helper()
	s, dir := newStore(t)
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Init(t.Context(), s, repo.InitOptions{Encryption: repo.EncryptionAge, ReadKeys: []string{id.Recipient().String()}})
	if err != nil {
		t.Fatal(err)
	}
	rid, secret, ok := r.WriteKey()
	if !ok {
		t.Fatal("an encrypted repository gives no write key")
	}
	return s, dir, seal.Key{Read: id}, seal.Key{RepoID: rid, Write: &secret}
}

// With only the write key a writer stores, deduplicates, lists its file
// cache and checks; it cannot read data back. The read key reads it all.
// No object of the repository holds the plaintext, a path or the
// chunker's polynomial.
func TestEncryptedRoles(t *testing.T) {
	s, dir, readKey, writeKey := newEncrypted(t)
	w, err := repo.Open(t.Context(), s, writeKey)
	if err != nil {
		t.Fatal(err)
	}
	if !w.Encrypted() || w.CanRead() {
		t.Fatalf("write key: encrypted %v, can read %v", w.Encrypted(), w.CanRead())
	}
	marker := []byte("PLAINTEXT-MARKER-of-the-volume ")
	data := append(bytes.Repeat(marker, 1<<16), randomData(3, 2<<20)...)
	refs, st := write(t, w, data)
	if _, st2 := write(t, w, data); st2.NewChunks != 0 {
		t.Errorf("the write key did not deduplicate: %d new chunks of %d", st2.NewChunks, st.Chunks)
	}
	fc, err := w.NewFileCacheWriter(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	fc.Add(repo.FileEntry{Path: w.PathID("var/lib/mysql/secret-table.ibd"), Size: int64(len(data)), Refs: refs[0]})
	if _, err := fc.Store(t.Context(), repo.FileCacheKey("vol.tree")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.PutTree(t.Context(), "vol.tree", refs[0]); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := w.ForEachFile(t.Context(), repo.FileCacheKey("vol.tree"), func(repo.FileEntry) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("the write key reads the file cache: %d entries, %v", n, err)
	}
	c, err := w.NewChecker(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if res, err := c.Check(t.Context(), "vol.tree"); err != nil || res.Missing != 0 || res.Chunks == 0 {
		t.Fatalf("the write key checks: %+v %v", res, err)
	}
	if _, err := read(t.Context(), w, refs[0]); !errors.Is(err, seal.ErrNoReadKey) || !strings.Contains(err.Error(), "read key") {
		t.Fatalf("the write key read data back: %v", err)
	}
	r, err := repo.Open(t.Context(), s, readKey)
	if err != nil {
		t.Fatal(err)
	}
	got, err := read(t.Context(), r, refs[0])
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the read key reads back %d bytes (want %d): %v", len(got), len(data), err)
	}
	// Zeros make the same chunk again and again, which one fetch reads
	// once and decrypts in place once.
	zeros := append(make([]byte, 6<<20), marker...)
	zrefs, _ := write(t, w, zeros)
	distinct := map[repo.ID]bool{}
	for _, ref := range zrefs[0] {
		distinct[ref.ID] = true
	}
	if len(distinct) >= len(zrefs[0]) {
		t.Fatalf("zeros made %d chunks, %d distinct: want repeats", len(zrefs[0]), len(distinct))
	}
	if got, err := read(t.Context(), r, zrefs[0]); err != nil || !bytes.Equal(got, zeros) {
		t.Fatalf("the read key reads back a stream of repeated chunks: %d bytes (want %d): %v", len(got), len(zeros), err)
	}
	pol := w.Config().Chunker.Polynomial
	if pol != 0 {
		t.Errorf("Config shows the polynomial %v", pol)
	}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := os.ReadFile(p)
		for _, plain := range []string{string(marker), "secret-table", "mysql"} {
			if bytes.Contains(b, []byte(plain)) {
				t.Errorf("%s holds %q in plaintext", p, plain)
			}
		}
		return nil
	})
}

// Wrong keys, a tampered blob and tampered key entries are each one clear
// error.
func TestEncryptedBadKeys(t *testing.T) {
	s, dir, readKey, writeKey := newEncrypted(t)
	if _, err := repo.Open(t.Context(), s, seal.Key{}); !errors.Is(err, repo.ErrNeedKey) || !strings.Contains(err.Error(), "--key-file") {
		t.Errorf("no key: %v", err)
	}
	other, _ := age.GenerateX25519Identity()
	if _, err := repo.Open(t.Context(), s, seal.Key{Read: other}); !errors.Is(err, seal.ErrWrongKey) {
		t.Errorf("another read key: %v", err)
	}
	otherSecret, _ := seal.NewSecret()
	if _, err := repo.Open(t.Context(), s, seal.Key{RepoID: writeKey.RepoID, Write: &otherSecret}); !errors.Is(err, seal.ErrWrongKey) {
		t.Errorf("another write secret: %v", err)
	}
	if _, err := repo.Open(t.Context(), s, seal.Key{RepoID: "elsewhere", Write: writeKey.Write}); !errors.Is(err, seal.ErrWrongKey) || !strings.Contains(err.Error(), "elsewhere") {
		t.Errorf("a write key of another repository: %v", err)
	}
	w, _ := repo.Open(t.Context(), s, writeKey)
	data := randomData(4, 1<<20)
	refs, _ := write(t, w, data)
	p := onlyFile(t, dir, "kbak/v2/data")
	b, _ := os.ReadFile(p)
	b[len(b)-5] ^= 1
	os.WriteFile(p, b, 0o644)
	r, _ := repo.Open(t.Context(), s, readKey)
	if _, err := read(t.Context(), r, refs[0]); !errors.Is(err, repo.ErrCorrupt) || !strings.Contains(err.Error(), "pack") {
		t.Errorf("a tampered blob: %v", err)
	}
	// A read key slipped into the bucket by someone without the write key
	// is refused, not used.
	forged := `{"id":"0000000000000000","recipient":"` + other.Recipient().String() + `","created":"2026-01-01T00:00:00Z","mac":"AAAA"}`
	os.WriteFile(filepath.Join(dir, "kbak/v2/keys/recipients/0000000000000000"), []byte(forged), 0o644)
	if _, err := repo.Open(t.Context(), s, writeKey); !errors.Is(err, seal.ErrTampered) || !strings.Contains(err.Error(), "0000000000000000") {
		t.Errorf("a forged read key entry: %v", err)
	}
}

// Read keys are added and removed with the write secret sealed anew; the
// last one cannot go; a read key stored with a passphrase opens the
// repository with the passphrase alone.
func TestRecipientsAndPassphrase(t *testing.T) {
	s, _, readKey, _ := newEncrypted(t)
	r, err := repo.Open(t.Context(), s, readKey)
	if err != nil {
		t.Fatal(err)
	}
	second, _ := age.GenerateX25519Identity()
	if _, err := r.AddRecipient(t.Context(), second.Recipient().String(), "dr", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Open(t.Context(), s, seal.Key{Read: second}); err != nil {
		t.Fatalf("the added read key: %v", err)
	}
	first := r.Recipients()[0]
	if _, err := r.RemoveRecipient(t.Context(), first.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Open(t.Context(), s, readKey); !errors.Is(err, seal.ErrWrongKey) {
		t.Errorf("the removed read key still opens the repository: %v", err)
	}
	if _, err := r.RemoveRecipient(t.Context(), second.Recipient().String()); err == nil || !strings.Contains(err.Error(), "last") {
		t.Errorf("removing the last read key: %v", err)
	}
	if _, err := r.StorePassphraseKey(t.Context(), second, "short"); err == nil {
		t.Error("a short passphrase was taken")
	}
	if _, err := r.StorePassphraseKey(t.Context(), second, "correct horse battery staple"); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.PassphraseKey(t.Context(), s, "wrong passphrase, long enough"); !errors.Is(err, seal.ErrWrongKey) {
		t.Errorf("a wrong passphrase: %v", err)
	}
	k, err := repo.PassphraseKey(t.Context(), s, "correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := repo.Open(t.Context(), s, k)
	if err != nil || !r2.CanRead() {
		t.Fatalf("the passphrase key: %v", err)
	}
}
