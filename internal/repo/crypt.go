package repo

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"filippo.io/age"
	"github.com/restic/chunker"

	"github.com/kbak/kbak/internal/seal"
	"github.com/kbak/kbak/uploader"
)

// An encrypted repository (Encryption "age") seals:
//
//   - blobs, each under the data key of the writer that stored it
//     (AES-256-GCM, the chunk id as associated data); a data key is stored
//     only sealed to the read keys, at keys/data/<id>;
//   - index objects, trees and file caches under the meta key, which the
//     write secret derives: writers read them back to deduplicate, skip
//     unchanged files and prune, and nothing in them names a file;
//   - the write secret itself, sealed to the read keys at keys/write, so a
//     read key alone opens everything.
//
// `kbak key` rewrites keys/write and removes entries of keys/recipients,
// so those (and keys/passphrase) are written without Object Lock
// retention; a data key is written once, with the blobs it seals, and is
// kept with them.
//
// The read keys' public halves are listed at keys/recipients/<id>, each
// with a MAC under the write secret, so that whoever holds only the bucket
// cannot slip in a key of their own. A read key may also be stored in the
// repository sealed with a passphrase, at keys/passphrase/<id>.

// EncryptionAge is the encrypted scheme.
const EncryptionAge = "age"

// ErrNeedKey: the repository is encrypted and no key was given.
var ErrNeedKey = errors.New("the repository is encrypted")

// keyring is what an encrypted repository is opened with.
type keyring struct {
	secret     seal.Secret
	meta       seal.Meta
	idKey      []byte
	read       age.Identity // nil with only the write key
	recipients []Recipient

	mu       sync.Mutex
	dataKeys map[seal.DataKeyID]*seal.DataKey
}

// Recipient is a read key of the repository, by its public half.
type Recipient struct {
	ID        string    `json:"id"`
	Recipient string    `json:"recipient"`
	Label     string    `json:"label,omitempty"`
	Created   time.Time `json:"created"`
	// MAC authenticates the other fields under the write secret.
	MAC []byte `json:"mac"`
}

func (rc Recipient) macInput() []byte {
	return fmt.Appendf(nil, "kbak recipient\x00%s\x00%s\x00%s\x00%d", rc.ID, rc.Recipient, rc.Label, rc.Created.UnixNano())
}

// idKey is the key of the hash that names chunks.
func (r *Repo) idKey() []byte {
	if r.keys != nil {
		return r.keys.idKey
	}
	return r.cfg.IDKey
}

// derivePolynomial is an encrypted repository's chunker polynomial: derived
// from the write secret, so that chunk boundaries say nothing to whoever
// holds only the bucket.
func derivePolynomial(s seal.Secret) (chunker.Pol, error) {
	// Some 50 tries find one on average; 4 KiB of key stream gives 512.
	return chunker.DerivePolynomial(bytes.NewReader(s.Derive("chunker polynomial", 4096)))
}

// Encrypted reports whether the repository seals what it stores.
func (r *Repo) Encrypted() bool { return r.keys != nil }

// CanRead reports whether the repository was opened with a key that opens
// data (always, when it is not encrypted).
func (r *Repo) CanRead() bool { return r.keys == nil || r.keys.read != nil }

// NeedRead is the error of an operation that opens data without a read key.
func (r *Repo) NeedRead(what string) error {
	if r.CanRead() {
		return nil
	}
	return fmt.Errorf("%w: %s opens sealed data, and only the write key was given: give a read key (--key-file with an AGE-SECRET-KEY-1 file, or --passphrase-file)", seal.ErrNoReadKey, what)
}

// putMeta stores b at key through st, sealed under the meta key when
// encrypted.
func (r *Repo) putMeta(ctx context.Context, st Store, key string, b []byte) error {
	if r.keys != nil {
		var err error
		if b, err = seal.SealBytes(b, r.keys.meta); err != nil {
			return err
		}
	}
	return st.Put(ctx, key, bytes.NewReader(b), int64(len(b)))
}

// openMeta opens the object read from rc (sealed under the meta key when
// encrypted).
func (r *Repo) openMeta(rc io.Reader) (io.Reader, error) {
	if r.keys == nil {
		return rc, nil
	}
	return seal.Decrypt(rc, r.keys.meta)
}

// SealMeta seals b under the meta key, for objects the writers read back
// (a backup's manifest): b as it is when the repository is not encrypted.
func (r *Repo) SealMeta(b []byte) ([]byte, error) {
	if r.keys == nil {
		return b, nil
	}
	return seal.SealBytes(b, r.keys.meta)
}

// IsSealed reports whether b is an object sealed by this package (age's
// format), so that a reader knows to open it.
func IsSealed(b []byte) bool { return bytes.HasPrefix(b, []byte("age-encryption.org/v1\n")) }

// OpenMeta opens what SealMeta sealed; limit bounds what it reads.
func (r *Repo) OpenMeta(b []byte, limit int64) ([]byte, error) {
	if r.keys == nil {
		return nil, fmt.Errorf("%w: a sealed object in a repository that is not encrypted", ErrCorrupt)
	}
	return seal.OpenBytes(b, limit, r.keys.meta)
}

// sealMeta wraps w so that what is written is sealed under the meta key.
func (r *Repo) sealMeta(w io.Writer) (io.WriteCloser, error) {
	if r.keys == nil {
		return nopCloser{w}, nil
	}
	return seal.Encrypt(w, r.keys.meta)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// readRecipients are the age recipients of the read keys.
func (r *Repo) readRecipients() ([]age.Recipient, error) {
	var out []age.Recipient
	for _, rc := range r.keys.recipients {
		p, err := seal.ParseRecipient(rc.Recipient)
		if err != nil {
			return nil, fmt.Errorf("%w: read key %s: %v", ErrCorrupt, rc.ID, err)
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: the repository lists no read key: add one with `kbak key add`", ErrCorrupt)
	}
	return out, nil
}

// SealForReaders seals b to the repository's read keys: only they open it.
// A repository that is not encrypted returns b as it is.
func (r *Repo) SealForReaders(b []byte) ([]byte, error) {
	if r.keys == nil {
		return b, nil
	}
	rcpts, err := r.readRecipients()
	if err != nil {
		return nil, err
	}
	return seal.SealBytes(b, rcpts...)
}

// OpenForReaders opens what SealForReaders sealed; it needs a read key.
func (r *Repo) OpenForReaders(b []byte, what string) ([]byte, error) {
	if r.keys == nil {
		return b, nil
	}
	if err := r.NeedRead(what); err != nil {
		return nil, err
	}
	return seal.OpenBytes(b, 64<<20, r.keys.read)
}

// newDataKey makes a writer's data key and stores it sealed to the read
// keys, before any blob sealed under it.
func (r *Repo) newDataKey(ctx context.Context) (*seal.DataKey, error) {
	k, raw, err := seal.NewDataKey()
	if err != nil {
		return nil, err
	}
	b, err := r.SealForReaders(raw)
	if err != nil {
		return nil, err
	}
	if err := r.store.Put(ctx, Keys.DataKey(k.ID), bytes.NewReader(b), int64(len(b))); err != nil {
		return nil, fmt.Errorf("store data key: %w", err)
	}
	return k, nil
}

// dataKey returns the data key id, reading it from the repository once.
func (r *Repo) dataKey(ctx context.Context, id seal.DataKeyID) (*seal.DataKey, error) {
	k := r.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	if dk, ok := k.dataKeys[id]; ok {
		return dk, nil
	}
	if err := r.NeedRead("reading data"); err != nil {
		return nil, err
	}
	rc, err := r.store.Get(ctx, Keys.DataKey(id))
	if errors.Is(err, uploader.ErrNotFound) {
		return nil, fmt.Errorf("%w: data key %x is missing: blobs sealed under it cannot be opened", ErrCorrupt, id)
	}
	if err != nil {
		return nil, fmt.Errorf("read data key: %w", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read data key: %w", err)
	}
	raw, err := seal.OpenBytes(b, 1<<10, k.read)
	if err != nil {
		return nil, fmt.Errorf("data key %x: %w", id, err)
	}
	dk, err := seal.DataKeyFrom(id, raw)
	if err != nil {
		return nil, err
	}
	if k.dataKeys == nil {
		k.dataKeys = map[seal.DataKeyID]*seal.DataKey{}
	}
	k.dataKeys[id] = dk
	return dk, nil
}

// openBlob returns the stored blob of chunk id as encodeBlob made it. It
// decrypts in place: an encrypted blob's memory holds its plain bytes
// afterwards, and the result is a part of it.
func (r *Repo) openBlob(ctx context.Context, blob []byte, id ID) ([]byte, error) {
	if r.keys == nil {
		return blob, nil
	}
	kid, err := seal.BlobKeyID(blob)
	if err != nil {
		return nil, err
	}
	dk, err := r.dataKey(ctx, kid)
	if err != nil {
		return nil, err
	}
	return dk.OpenInPlace(blob, id[:])
}

// openKeys opens an encrypted repository's keys with key.
func (r *Repo) openKeys(ctx context.Context, key seal.Key) error {
	if key.IsZero() {
		return fmt.Errorf("%w: give its write key or read key (--key-file FILE or --key-secret NAME), or --passphrase-file for a read key stored in it", ErrNeedKey)
	}
	k := &keyring{read: key.Read}
	switch {
	case key.Write != nil:
		if key.RepoID != r.cfg.ID {
			return fmt.Errorf("%w: the write key is of repository %s, this is %s", seal.ErrWrongKey, key.RepoID, r.cfg.ID)
		}
		k.secret = *key.Write
	default:
		b, err := r.getAll(ctx, Keys.WriteSecret(), 1<<20)
		if err != nil {
			return fmt.Errorf("read the sealed write key: %w", err)
		}
		raw, err := seal.OpenBytes(b, 1<<10, key.Read)
		if err != nil {
			return fmt.Errorf("the read key does not open repository %s: %w", r.cfg.ID, err)
		}
		if len(raw) != len(k.secret) {
			return fmt.Errorf("%w: the sealed write key has %d bytes", ErrCorrupt, len(raw))
		}
		copy(k.secret[:], raw)
	}
	if k.secret.Check() != r.cfg.KeyCheck {
		return fmt.Errorf("%w: the key's check value does not match repository %s", seal.ErrWrongKey, r.cfg.ID)
	}
	k.meta, k.idKey = k.secret.Meta(), k.secret.Derive("chunk id", 32)
	pol, err := derivePolynomial(k.secret)
	if err != nil {
		return fmt.Errorf("%w: derive the chunker polynomial: %v", ErrCorrupt, err)
	}
	r.cfg.Chunker.Polynomial = pol
	r.keys = k
	rcpts, err := r.listRecipients(ctx)
	if err != nil {
		return err
	}
	k.recipients = rcpts
	return nil
}

func (r *Repo) getAll(ctx context.Context, key string, limit int64) ([]byte, error) {
	rc, err := r.store.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, limit))
}

// listRecipients reads the read keys' public halves, checking each one's MAC.
func (r *Repo) listRecipients(ctx context.Context) ([]Recipient, error) {
	var keys []string
	err := r.store.List(ctx, Keys.RecipientPrefix(), func(oi uploader.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list read keys: %w", err)
	}
	var out []Recipient
	for _, key := range keys {
		b, err := r.getAll(ctx, key, 1<<20)
		if errors.Is(err, uploader.ErrNotFound) {
			continue // removed since the listing
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", key, err)
		}
		var rc Recipient
		if err := json.Unmarshal(b, &rc); err != nil || Keys.Recipient(rc.ID) != key {
			return nil, fmt.Errorf("%w: read key entry %s is not readable", ErrCorrupt, key)
		}
		if !bytes.Equal(rc.MAC, r.keys.secret.MAC(rc.macInput())) {
			return nil, fmt.Errorf("%w: read key entry %s fails its MAC: someone without the write key wrote it; remove it from the bucket", seal.ErrTampered, key)
		}
		out = append(out, rc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// Recipients lists the repository's read keys.
func (r *Repo) Recipients() []Recipient {
	if r.keys == nil {
		return nil
	}
	return append([]Recipient(nil), r.keys.recipients...)
}

// AddRecipient adds a read key by its public half (age1...), and seals
// the write secret anew to every read key. Data written before stays
// readable by the keys it was sealed to; new data is sealed to the new set.
func (r *Repo) AddRecipient(ctx context.Context, recipient, label string, now time.Time) (Recipient, error) {
	if r.keys == nil {
		return Recipient{}, fmt.Errorf("the repository is not encrypted: it has no keys")
	}
	if _, err := seal.ParseRecipient(recipient); err != nil {
		return Recipient{}, fmt.Errorf("not an age recipient (age1...): %v", err)
	}
	for _, rc := range r.keys.recipients {
		if rc.Recipient == recipient {
			return rc, fmt.Errorf("read key %s is there already, as %s", recipient, rc.ID)
		}
	}
	id, err := newPackID()
	if err != nil {
		return Recipient{}, err
	}
	rc := Recipient{ID: hex.EncodeToString(id[:8]), Recipient: recipient, Label: label, Created: now.UTC().Truncate(time.Second)}
	rc.MAC = r.keys.secret.MAC(rc.macInput())
	b, err := json.MarshalIndent(rc, "", "  ")
	if err != nil {
		return Recipient{}, err
	}
	if err := r.plain.Put(ctx, Keys.Recipient(rc.ID), bytes.NewReader(b), int64(len(b))); err != nil {
		return Recipient{}, fmt.Errorf("store read key: %w", err)
	}
	r.keys.recipients = append(r.keys.recipients, rc)
	return rc, r.sealSecret(ctx)
}

// RemoveRecipient removes read key id (or the key whose public half is id).
// Removing the last one is refused: nothing could read the data then.
func (r *Repo) RemoveRecipient(ctx context.Context, id string) (Recipient, error) {
	if r.keys == nil {
		return Recipient{}, fmt.Errorf("the repository is not encrypted: it has no keys")
	}
	i := -1
	for j, rc := range r.keys.recipients {
		if rc.ID == id || rc.Recipient == id {
			i = j
		}
	}
	if i < 0 {
		return Recipient{}, fmt.Errorf("no read key %s: see `kbak key list`", id)
	}
	if len(r.keys.recipients) == 1 {
		return Recipient{}, fmt.Errorf("read key %s is the last one: add another first, or nothing could restore the backups", id)
	}
	rc := r.keys.recipients[i]
	r.keys.recipients = append(r.keys.recipients[:i:i], r.keys.recipients[i+1:]...)
	if err := r.sealSecret(ctx); err != nil {
		return rc, err
	}
	if err := r.plain.Delete(ctx, Keys.Recipient(rc.ID)); err != nil {
		return rc, fmt.Errorf("delete read key entry: %w", err)
	}
	return rc, nil
}

// sealSecret stores the write secret sealed to the current read keys.
func (r *Repo) sealSecret(ctx context.Context) error {
	b, err := r.SealForReaders(r.keys.secret[:])
	if err != nil {
		return err
	}
	if err := r.plain.Put(ctx, Keys.WriteSecret(), bytes.NewReader(b), int64(len(b))); err != nil {
		return fmt.Errorf("store the sealed write key: %w", err)
	}
	return nil
}

// WriteKey returns the repository id and write secret, to write a write
// key file.
func (r *Repo) WriteKey() (string, seal.Secret, bool) {
	if r.keys == nil {
		return "", seal.Secret{}, false
	}
	return r.cfg.ID, r.keys.secret, true
}

// StorePassphraseKey stores read identity id in the repository sealed with
// passphrase (scrypt), so that a restore needs only the bucket and the
// passphrase. It returns the stored key's id.
func (r *Repo) StorePassphraseKey(ctx context.Context, identity age.Identity, passphrase string) (string, error) {
	if r.keys == nil {
		return "", fmt.Errorf("the repository is not encrypted: it has no keys")
	}
	x, ok := identity.(*age.X25519Identity)
	if !ok {
		return "", fmt.Errorf("only X25519 read keys (AGE-SECRET-KEY-1...) can be stored with a passphrase")
	}
	if len(passphrase) < 12 {
		return "", fmt.Errorf("the passphrase is shorter than 12 characters: anyone with the bucket could guess it")
	}
	pub := x.Recipient().String()
	var known bool
	for _, rc := range r.keys.recipients {
		known = known || rc.Recipient == pub
	}
	if !known {
		return "", fmt.Errorf("read key %s is not a read key of this repository: add it first with `kbak key add`", pub)
	}
	rcpt, err := seal.PassphraseRecipient(passphrase)
	if err != nil {
		return "", err
	}
	b, err := seal.SealBytes([]byte(x.String()), rcpt)
	if err != nil {
		return "", err
	}
	id, err := newPackID()
	if err != nil {
		return "", err
	}
	name := hex.EncodeToString(id[:8])
	if err := r.plain.Put(ctx, Keys.PassphraseKey(name), bytes.NewReader(b), int64(len(b))); err != nil {
		return "", fmt.Errorf("store the passphrase-sealed read key: %w", err)
	}
	return name, nil
}

// PassphraseKey opens a read key stored with a passphrase; it tries each
// stored one.
func PassphraseKey(ctx context.Context, store Store, passphrase string) (seal.Key, error) {
	var keys []string
	err := store.List(ctx, Keys.PassphrasePrefix(), func(oi uploader.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	})
	if err != nil {
		return seal.Key{}, fmt.Errorf("list passphrase keys: %w", err)
	}
	if len(keys) == 0 {
		return seal.Key{}, fmt.Errorf("%w: the repository holds no passphrase-sealed read key: give the read key file (--key-file)", seal.ErrNoReadKey)
	}
	id, err := seal.PassphraseIdentity(passphrase)
	if err != nil {
		return seal.Key{}, err
	}
	for _, k := range keys {
		rc, err := store.Get(ctx, k)
		if err != nil {
			return seal.Key{}, fmt.Errorf("read %s: %w", k, err)
		}
		b, err := io.ReadAll(io.LimitReader(rc, 1<<20))
		rc.Close()
		if err != nil {
			return seal.Key{}, fmt.Errorf("read %s: %w", k, err)
		}
		raw, err := seal.OpenBytes(b, 1<<10, id)
		if errors.Is(err, seal.ErrWrongKey) {
			continue
		}
		if err != nil {
			return seal.Key{}, fmt.Errorf("%s: %w", k, err)
		}
		return seal.ParseKey(raw)
	}
	return seal.Key{}, fmt.Errorf("%w: the passphrase opens none of the repository's %d passphrase-sealed read keys", seal.ErrWrongKey, len(keys))
}
