package seal

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"filippo.io/age"
	"golang.org/x/crypto/chacha20poly1305"
)

// Errors callers map to messages.
var (
	// ErrNoReadKey: the operation opens data, and only a write key is at hand.
	ErrNoReadKey = errors.New("this needs the repository's read key")
	// ErrWrongKey: the key does not open the repository or object.
	ErrWrongKey = errors.New("the key does not open this repository")
	// ErrBadKeyFile: the key file cannot be parsed.
	ErrBadKeyFile = errors.New("not a kbak key file")
	// ErrTampered: a sealed object or blob fails its authentication.
	ErrTampered = errors.New("sealed data fails authentication (damaged or tampered with)")
)

// Secret is a repository's write secret: every key a writer needs derives
// from it (chunk ids, the chunker's polynomial, the meta key), and none of
// them opens data. A writer holds it in a write key file; the repository
// holds it sealed to its read keys.
type Secret [32]byte

// NewSecret returns a random write secret.
func NewSecret() (Secret, error) {
	var s Secret
	_, err := rand.Read(s[:])
	return s, err
}

// Derive returns n bytes of the key of purpose, derived from s.
func (s Secret) Derive(purpose string, n int) []byte {
	k, err := hkdf.Key(sha256.New, s[:], nil, "kbak v2 "+purpose, n)
	if err != nil {
		panic(err) // only for n beyond 255 hash lengths
	}
	return k
}

// Check is a public value that tells whether a secret is the repository's
// without revealing it.
func (s Secret) Check() string {
	return hex.EncodeToString(s.Derive("check", 16))
}

// MAC returns the keyed MAC of msg under s's MAC key: what authenticates
// the repository's public objects (its recipients) to writers.
func (s Secret) MAC(msg []byte) []byte {
	m := hmac.New(sha256.New, s.Derive("mac", 32))
	m.Write(msg)
	return m.Sum(nil)
}

// metaStanza is the age stanza type of the meta key.
const metaStanza = "kbak-meta"

// Meta is the age recipient and identity of s's meta key: the symmetric key
// that seals what writers must read back (index, trees, file caches).
// Being symmetric, it also authenticates: no one without the write secret
// can make an object it opens.
type Meta struct{ key []byte }

// Meta returns s's meta recipient and identity.
func (s Secret) Meta() Meta { return Meta{key: s.Derive("meta", chacha20poly1305.KeySize)} }

// Wrap seals age's file key under the meta key.
func (m Meta) Wrap(fileKey []byte) ([]*age.Stanza, error) {
	aead, err := chacha20poly1305.NewX(m.key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(fileKey)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return []*age.Stanza{{Type: metaStanza, Body: aead.Seal(nonce, nonce, fileKey, []byte(metaStanza))}}, nil
}

// WrapWithLabels makes the meta recipient one that is used alone, so that
// an object it opens is known to come from a holder of the write secret.
func (m Meta) WrapWithLabels(fileKey []byte) ([]*age.Stanza, []string, error) {
	s, err := m.Wrap(fileKey)
	return s, []string{metaStanza}, err
}

// Unwrap opens age's file key sealed under the meta key.
func (m Meta) Unwrap(stanzas []*age.Stanza) ([]byte, error) {
	aead, err := chacha20poly1305.NewX(m.key)
	if err != nil {
		return nil, err
	}
	for _, s := range stanzas {
		if s.Type != metaStanza {
			continue
		}
		if len(s.Body) < aead.NonceSize() {
			return nil, fmt.Errorf("%w: short meta stanza", ErrTampered)
		}
		k, err := aead.Open(nil, s.Body[:aead.NonceSize()], s.Body[aead.NonceSize():], []byte(metaStanza))
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrWrongKey, age.ErrIncorrectIdentity)
		}
		return k, nil
	}
	return nil, age.ErrIncorrectIdentity
}

// Encrypt seals what is written to the returned writer to recipients, in
// age's format; Close ends it.
func Encrypt(dst io.Writer, recipients ...age.Recipient) (io.WriteCloser, error) {
	return age.Encrypt(dst, recipients...)
}

// Decrypt opens an age stream with identities. An identity that matches no
// recipient is ErrWrongKey; a stream that fails authentication is
// ErrTampered (it may fail so while being read).
func Decrypt(src io.Reader, identities ...age.Identity) (io.Reader, error) {
	r, err := age.Decrypt(src, identities...)
	if err == nil {
		return &tamperReader{r: r}, nil
	}
	var nomatch *age.NoIdentityMatchError
	if errors.As(err, &nomatch) || errors.Is(err, ErrWrongKey) {
		return nil, fmt.Errorf("%w (no recipient of the object matches)", ErrWrongKey)
	}
	return nil, fmt.Errorf("%w: %v", ErrTampered, err)
}

// tamperReader marks errors of a stream's payload as ErrTampered.
type tamperReader struct{ r io.Reader }

func (t *tamperReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%w: %v", ErrTampered, err)
	}
	return n, err
}

// SealBytes seals b to recipients.
func SealBytes(b []byte, recipients ...age.Recipient) ([]byte, error) {
	var buf bytes.Buffer
	w, err := Encrypt(&buf, recipients...)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(b); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// OpenBytes opens what SealBytes sealed, reading at most limit bytes.
func OpenBytes(b []byte, limit int64, identities ...age.Identity) ([]byte, error) {
	r, err := Decrypt(bytes.NewReader(b), identities...)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(io.LimitReader(r, limit))
}

// Key files. A write key file holds the repository id and the write
// secret; a read key file is an age identity (AGE-SECRET-KEY-1...,
// as age-keygen writes), optionally with kbak's comment lines.
const writeKeyPrefix = "KBAK-WRITE-KEY-1-"

// Key is what a key file holds: a write secret, or a read identity.
type Key struct {
	// RepoID names the repository a write key belongs to.
	RepoID string
	Write  *Secret
	Read   age.Identity
}

// IsZero reports whether k holds no key.
func (k Key) IsZero() bool { return k.Write == nil && k.Read == nil }

// Kind is "write", "read" or "" for no key.
func (k Key) Kind() string {
	switch {
	case k.Read != nil:
		return "read"
	case k.Write != nil:
		return "write"
	}
	return ""
}

// FormatWriteKey renders a write key file.
func FormatWriteKey(repoID string, s Secret) []byte {
	return fmt.Appendf(nil, "# kbak write key of repository %s: it backs up, lists and prunes, and cannot read data back.\n# Keep it in a Secret of the cluster that backs up; keep the read key elsewhere.\n%s%s-%s\n",
		repoID, writeKeyPrefix, repoID, base64.RawURLEncoding.EncodeToString(s[:]))
}

// FormatReadKey renders a read key file for identity id.
func FormatReadKey(repoID string, id *age.X25519Identity) []byte {
	return fmt.Appendf(nil, "# kbak read key of repository %s: it restores. Keep it out of the cluster that backs up.\n# public key: %s\n%s\n",
		repoID, id.Recipient(), id)
}

// ParseKey reads a key file's content: a write key or an age identity.
// Comment lines (#) and blank lines are skipped.
func ParseKey(b []byte) (Key, error) {
	var line string
	for l := range strings.Lines(string(b)) {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if line != "" {
			return Key{}, fmt.Errorf("%w: more than one key in the file", ErrBadKeyFile)
		}
		line = l
	}
	switch {
	case strings.HasPrefix(line, writeKeyPrefix):
		repoID, enc, ok := strings.Cut(strings.TrimPrefix(line, writeKeyPrefix), "-")
		raw, err := base64.RawURLEncoding.DecodeString(enc)
		if !ok || err != nil || len(raw) != len(Secret{}) || repoID == "" {
			return Key{}, fmt.Errorf("%w: a damaged write key", ErrBadKeyFile)
		}
		var s Secret
		copy(s[:], raw)
		return Key{RepoID: repoID, Write: &s}, nil
	case strings.HasPrefix(line, "AGE-SECRET-KEY-PQ-1"):
		id, err := age.ParseHybridIdentity(line)
		if err != nil {
			return Key{}, fmt.Errorf("%w: %v", ErrBadKeyFile, err)
		}
		return Key{Read: id}, nil
	case strings.HasPrefix(line, "AGE-SECRET-KEY-1"):
		id, err := age.ParseX25519Identity(line)
		if err != nil {
			return Key{}, fmt.Errorf("%w: %v", ErrBadKeyFile, err)
		}
		return Key{Read: id}, nil
	case line == "":
		return Key{}, fmt.Errorf("%w: the file holds no key", ErrBadKeyFile)
	}
	return Key{}, fmt.Errorf("%w: want a kbak write key (%s...) or an age identity (AGE-SECRET-KEY-1...)", ErrBadKeyFile, writeKeyPrefix)
}

// ParseRecipient parses a read key's public half: an age X25519 (age1...)
// or hybrid post-quantum (age1pq1...) recipient.
func ParseRecipient(s string) (age.Recipient, error) {
	if strings.HasPrefix(s, "age1pq1") {
		return age.ParseHybridRecipient(s)
	}
	return age.ParseX25519Recipient(s)
}

// RecipientOf returns the public half of a read identity, as a string.
func RecipientOf(id age.Identity) (string, error) {
	switch id := id.(type) {
	case *age.X25519Identity:
		return id.Recipient().String(), nil
	case *age.HybridIdentity:
		return id.Recipient().String(), nil
	}
	return "", fmt.Errorf("%w: an identity of an unknown kind", ErrBadKeyFile)
}

// Passphrase recipients and identities (scrypt, as age does).
func PassphraseRecipient(p string) (age.Recipient, error) { return age.NewScryptRecipient(p) }

// PassphraseIdentity opens what PassphraseRecipient sealed.
func PassphraseIdentity(p string) (age.Identity, error) { return age.NewScryptIdentity(p) }

// File renders k as a key file, for a Secret that hands it to a mover.
func (k Key) File() []byte {
	switch {
	case k.Read != nil:
		if s, ok := k.Read.(fmt.Stringer); ok {
			return []byte(s.String() + "\n")
		}
	case k.Write != nil:
		return FormatWriteKey(k.RepoID, *k.Write)
	}
	return nil
}
