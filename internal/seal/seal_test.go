package seal

import (
	"bytes"
	"errors"
	"testing"

	"filippo.io/age"
)

func TestMetaSealsAndAuthenticates(t *testing.T) {
	s, _ := NewSecret()
	other, _ := NewSecret()
	b, err := SealBytes([]byte("index"), s.Meta())
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenBytes(b, 1<<20, s.Meta())
	if err != nil || string(got) != "index" {
		t.Fatalf("open: %q %v", got, err)
	}
	if _, err := OpenBytes(b, 1<<20, other.Meta()); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("another secret opened it: %v", err)
	}
	// Someone with only a public key cannot make an object the meta key opens.
	id, _ := age.GenerateX25519Identity()
	forged, _ := SealBytes([]byte("forged"), id.Recipient())
	if _, err := OpenBytes(forged, 1<<20, s.Meta()); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("a forged object opened: %v", err)
	}
	b[len(b)-1] ^= 1
	if _, err := OpenBytes(b, 1<<20, s.Meta()); !errors.Is(err, ErrTampered) {
		t.Fatalf("a flipped bit: %v", err)
	}
}

func TestDataKey(t *testing.T) {
	k, raw, err := NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	blob, err := k.Seal([]byte("x"), []byte("chunk"), []byte("id1"))
	if err != nil {
		t.Fatal(err)
	}
	blob = blob[1:]
	if id, _ := BlobKeyID(blob); id != k.ID {
		t.Fatal("key id not at the start of the blob")
	}
	if bytes.Contains(blob, []byte("chunk")) {
		t.Fatal("plaintext in the sealed blob")
	}
	k2, _ := DataKeyFrom(k.ID, raw)
	if _, err := k2.OpenInPlace(bytes.Clone(blob), []byte("id2")); !errors.Is(err, ErrTampered) {
		t.Fatalf("a blob passed off as another chunk opened: %v", err)
	}
	out, err := k2.OpenInPlace(blob, []byte("id1"))
	if err != nil || string(out) != "chunk" {
		t.Fatalf("open: %q %v", out, err)
	}
	if &out[0] != &blob[len(blob)-len(out)-16] {
		t.Error("the plain bytes are not in the blob's own memory")
	}
}

func TestKeyFiles(t *testing.T) {
	s, _ := NewSecret()
	k, err := ParseKey(FormatWriteKey("r1", s))
	if err != nil || k.Kind() != "write" || *k.Write != s || k.RepoID != "r1" {
		t.Fatalf("write key: %+v %v", k, err)
	}
	id, _ := age.GenerateX25519Identity()
	k, err = ParseKey(FormatReadKey("r1", id))
	if err != nil || k.Kind() != "read" {
		t.Fatalf("read key: %+v %v", k, err)
	}
	for _, bad := range []string{"", "hello", "KBAK-WRITE-KEY-1-r1-short", string(FormatWriteKey("r", s)) + string(FormatWriteKey("r", s))} {
		if _, err := ParseKey([]byte(bad)); !errors.Is(err, ErrBadKeyFile) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func BenchmarkDataKeySeal(b *testing.B) {
	k, _, _ := NewDataKey()
	plain := make([]byte, 1<<20)
	var dst []byte
	b.SetBytes(int64(len(plain)))
	for b.Loop() {
		dst, _ = k.Seal(dst[:0], plain, []byte("id"))
	}
}
