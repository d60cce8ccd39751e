package repo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/restic/chunker"

	"github.com/kbak/kbak/internal/seal"
	"github.com/kbak/kbak/uploader"
)

// FormatVersion is the repository format this kbak writes and the newest it
// reads.
const FormatVersion = 2

// Encryption schemes: EncryptionNone, and EncryptionAge (crypt.go).
const (
	EncryptionNone = "none"
)

// Config is the repository's config object, written once by Init.
type Config struct {
	Format int `json:"format"`
	// ID names the repository; write key files carry it.
	ID          string    `json:"id,omitempty"`
	Created     time.Time `json:"created"`
	KbakVersion string    `json:"kbakVersion,omitempty"`
	// Chunker parameters: every writer must cut the same way for chunks to
	// deduplicate. An encrypted repository's polynomial derives from the
	// write secret and is not stored.
	Chunker ChunkerParams `json:"chunker"`
	// PackSize is the size packs are closed at.
	PackSize int64 `json:"packSize"`
	// Encryption names how blobs and objects are sealed: "none" stores
	// them compressed only.
	Encryption string `json:"encryption"`
	// IDKey is the key of the hash that names chunks (HMAC-SHA256). With
	// encryption it derives from the write secret, and is not stored.
	IDKey []byte `json:"idKey,omitempty"`
	// KeyCheck tells whether a write secret is this repository's.
	KeyCheck string `json:"keyCheck,omitempty"`
}

// ChunkerParams fix how data is cut into chunks.
type ChunkerParams struct {
	Polynomial  chunker.Pol `json:"polynomial"`
	MinSize     uint        `json:"minSize"`
	MaxSize     uint        `json:"maxSize"`
	AverageBits int         `json:"averageBits"`
}

// Defaults of a new repository.
const (
	DefaultPackSize = 16 << 20
	defaultMinChunk = 512 << 10
	defaultMaxChunk = 8 << 20
	defaultAvgBits  = 20 // 1 MiB
)

// Errors that callers map to messages and exit codes.
var (
	// ErrNoRepository: the location holds no v2 repository yet.
	ErrNoRepository = errors.New("no kbak v2 repository")
	// ErrNewerFormat: the repository was written by a newer kbak.
	ErrNewerFormat = errors.New("repository format newer than this kbak")
	// ErrCorrupt: an object of the repository is damaged or missing.
	ErrCorrupt = errors.New("repository damaged")
)

// Store is what the repository needs of an object store.
type Store interface {
	Put(ctx context.Context, key string, r io.Reader, size int64) error
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error)
	List(ctx context.Context, prefix string, fn func(uploader.ObjectInfo) error) error
	Delete(ctx context.Context, key string) error
}

var _ Store = uploader.Store(nil)

// Repo is an opened repository.
type Repo struct {
	// store writes with whatever Object Lock retention it was opened
	// with: the data of backups. plain is the same store writing without
	// retention, for what kbak rewrites or removes in its normal course
	// (see objectlock.go).
	store Store
	plain Store
	cfg   Config
	keys  *keyring               // of an encrypted repository
	paths atomic.Pointer[hasher] // of PathID
}

// newRepo is the repository in store with config cfg.
func newRepo(ctx context.Context, store Store, cfg Config) (*Repo, error) {
	plain, err := unretained(ctx, store)
	if err != nil {
		return nil, err
	}
	return &Repo{store: store, plain: plain, cfg: cfg}, nil
}

// InitOptions tune Init.
type InitOptions struct {
	KbakVersion string
	Encryption  string // default EncryptionNone
	// ReadKeys are the public halves (age1...) of the read keys of an
	// encrypted repository: at least one.
	ReadKeys []string
	Now      time.Time
}

// Init creates the repository's config object. It fails when one exists.
func Init(ctx context.Context, store Store, opts InitOptions) (*Repo, error) {
	if _, err := LoadConfig(ctx, store); err == nil {
		return nil, fmt.Errorf("init repository: a v2 repository exists already at %s: %w", Keys.Config(), uploader.ErrExists)
	} else if !errors.Is(err, ErrNoRepository) {
		return nil, err
	}
	enc := opts.Encryption
	if enc == "" {
		enc = EncryptionNone
	}
	if enc != EncryptionNone && enc != EncryptionAge {
		return nil, fmt.Errorf("init repository: unknown encryption %q: use %s or %s", enc, EncryptionAge, EncryptionNone)
	}
	if enc == EncryptionAge && len(opts.ReadKeys) == 0 {
		return nil, fmt.Errorf("init repository: an encrypted repository needs a read key")
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	rid, err := newPackID()
	if err != nil {
		return nil, err
	}
	cfg := Config{
		Format: FormatVersion, ID: hex.EncodeToString(rid[:8]), Created: now.UTC(), KbakVersion: opts.KbakVersion,
		Chunker:  ChunkerParams{MinSize: defaultMinChunk, MaxSize: defaultMaxChunk, AverageBits: defaultAvgBits},
		PackSize: DefaultPackSize, Encryption: enc,
	}
	var secret seal.Secret
	if enc == EncryptionAge {
		for _, k := range opts.ReadKeys {
			if _, err := seal.ParseRecipient(k); err != nil {
				return nil, fmt.Errorf("init repository: read key %q is not an age recipient (age1...): %v", k, err)
			}
		}
		// A secret whose key stream yields no irreducible polynomial is
		// about as likely as a cosmic ray: draw again.
		for {
			if secret, err = seal.NewSecret(); err != nil {
				return nil, err
			}
			if _, err := derivePolynomial(secret); err == nil {
				break
			}
		}
		cfg.KeyCheck = secret.Check()
	} else {
		if cfg.Chunker.Polynomial, err = chunker.RandomPolynomial(); err != nil {
			return nil, fmt.Errorf("init repository: chunker polynomial: %w", err)
		}
		cfg.IDKey = make([]byte, 32)
		if _, err := rand.Read(cfg.IDKey); err != nil {
			return nil, fmt.Errorf("init repository: id key: %w", err)
		}
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	// Writers that start at once on an empty bucket (the movers of one run,
	// two schedules) must agree on one config: its key names every chunk.
	// The config is created only if absent, and read back, so that the
	// config a writer uses is the one stored.
	if c, ok := store.(creator); ok {
		err = c.Create(ctx, Keys.Config(), bytes.NewReader(b), int64(len(b)))
	} else {
		err = store.Put(ctx, Keys.Config(), bytes.NewReader(b), int64(len(b)))
	}
	if err != nil && !errors.Is(err, uploader.ErrExists) {
		return nil, fmt.Errorf("init repository: %w", err)
	}
	stored, err := LoadConfig(ctx, store)
	if err != nil {
		return nil, fmt.Errorf("init repository: read the config back: %w", err)
	}
	r, err := newRepo(ctx, store, stored)
	if err != nil {
		return nil, fmt.Errorf("init repository: %w", err)
	}
	if stored.Encryption == EncryptionNone {
		return r, nil
	}
	if stored.KeyCheck != cfg.KeyCheck {
		return nil, fmt.Errorf("init repository: another kbak created it at the same time: %w", uploader.ErrExists)
	}
	// The keys are written after the config that names them: a crash in
	// between leaves a repository no key opens, which init reports.
	r.keys = &keyring{secret: secret, meta: secret.Meta(), idKey: secret.Derive("chunk id", 32)}
	r.cfg.Chunker.Polynomial, _ = derivePolynomial(secret)
	for _, k := range opts.ReadKeys {
		if _, err := r.AddRecipient(ctx, k, "", now); err != nil {
			return nil, fmt.Errorf("init repository: %w", err)
		}
	}
	return r, nil
}

// creator is a store that can create an object only if it is absent.
type creator interface {
	Create(ctx context.Context, key string, r io.Reader, size int64) error
}

// LoadConfig reads and checks the config object.
func LoadConfig(ctx context.Context, store Store) (Config, error) {
	rc, err := store.Get(ctx, Keys.Config())
	if errors.Is(err, uploader.ErrNotFound) {
		return Config{}, fmt.Errorf("%w: %s is missing", ErrNoRepository, Keys.Config())
	}
	if err != nil {
		return Config{}, fmt.Errorf("read repository config: %w", err)
	}
	defer rc.Close()
	var cfg Config
	if err := json.NewDecoder(io.LimitReader(rc, 1<<20)).Decode(&cfg); err != nil {
		return Config{}, fmt.Errorf("%w: config %s: %v", ErrCorrupt, Keys.Config(), err)
	}
	switch {
	case cfg.Format > FormatVersion:
		return Config{}, fmt.Errorf("%w: the repository is format %d, this kbak reads up to %d: use a newer kbak", ErrNewerFormat, cfg.Format, FormatVersion)
	case cfg.Format != FormatVersion:
		return Config{}, fmt.Errorf("%w: config %s has format %d", ErrCorrupt, Keys.Config(), cfg.Format)
	case cfg.Encryption != EncryptionNone && cfg.Encryption != EncryptionAge:
		return Config{}, fmt.Errorf("%w: the repository uses encryption %q, which this kbak cannot open: use a newer kbak", ErrNewerFormat, cfg.Encryption)
	case cfg.Encryption == EncryptionAge && (cfg.KeyCheck == "" || cfg.ID == ""):
		return Config{}, fmt.Errorf("%w: config %s of an encrypted repository has no key check", ErrCorrupt, Keys.Config())
	case cfg.Encryption == EncryptionNone && len(cfg.IDKey) != 32:
		return Config{}, fmt.Errorf("%w: config %s has no chunk id key", ErrCorrupt, Keys.Config())
	case cfg.Encryption == EncryptionNone && (cfg.Chunker.Polynomial == 0 || !cfg.Chunker.Polynomial.Irreducible()):
		return Config{}, fmt.Errorf("%w: config %s has an invalid chunker polynomial", ErrCorrupt, Keys.Config())
	case cfg.Chunker.MinSize == 0 || cfg.Chunker.MaxSize < cfg.Chunker.MinSize || cfg.Chunker.MaxSize > 64<<20 || cfg.Chunker.AverageBits < 10 || cfg.Chunker.AverageBits > 26:
		return Config{}, fmt.Errorf("%w: config %s has invalid chunk sizes", ErrCorrupt, Keys.Config())
	case cfg.PackSize < 1<<20 || cfg.PackSize > 1<<30:
		return Config{}, fmt.Errorf("%w: config %s has an invalid pack size", ErrCorrupt, Keys.Config())
	}
	return cfg, nil
}

// Open opens the repository in store; key opens an encrypted one (a
// repository that is not encrypted ignores it).
func Open(ctx context.Context, store Store, key seal.Key) (*Repo, error) {
	cfg, err := LoadConfig(ctx, store)
	if err != nil {
		return nil, err
	}
	r, err := newRepo(ctx, store, cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Encryption == EncryptionAge {
		if err := r.openKeys(ctx, key); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// OpenOrInit opens the repository, creating it with opts when the store
// holds none; created says which. A repository made here is encrypted
// when key is a read key (to that key), and not encrypted when no key is
// given.
func OpenOrInit(ctx context.Context, store Store, key seal.Key, opts InitOptions) (r *Repo, created bool, err error) {
	r, err = Open(ctx, store, key)
	if !errors.Is(err, ErrNoRepository) {
		return r, false, err
	}
	switch {
	case key.Read != nil:
		pub, err := seal.RecipientOf(key.Read)
		if err != nil {
			return nil, false, err
		}
		opts.Encryption, opts.ReadKeys = EncryptionAge, []string{pub}
	case key.Write != nil:
		return nil, false, fmt.Errorf("%w: a write key was given, and the store holds no repository to write into: create it with `kbak repo init`", ErrNoRepository)
	}
	r, err = Init(ctx, store, opts)
	if errors.Is(err, uploader.ErrExists) {
		r, err = Open(ctx, store, key) // another writer created it meanwhile
		return r, false, err
	}
	if err != nil {
		return nil, false, err
	}
	return r, true, nil
}

// Config returns the repository's configuration as stored.
func (r *Repo) Config() Config {
	c := r.cfg
	if r.keys != nil {
		c.Chunker.Polynomial = 0 // derived from the write secret
	}
	return c
}
