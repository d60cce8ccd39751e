package repo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/restic/chunker"

	"github.com/kbak/kbak/uploader"
)

// FormatVersion is the repository format this kbak writes and the newest it
// reads.
const FormatVersion = 2

// Encryption schemes. Only EncryptionNone is built so far; the format keeps
// room for sealed blobs and objects (see Config.Encryption).
const (
	EncryptionNone = "none"
)

// Config is the repository's config object, written once by Init.
type Config struct {
	Format      int       `json:"format"`
	Created     time.Time `json:"created"`
	KbakVersion string    `json:"kbakVersion,omitempty"`
	// Chunker parameters: every writer must cut the same way for chunks to
	// deduplicate.
	Chunker ChunkerParams `json:"chunker"`
	// PackSize is the size packs are closed at.
	PackSize int64 `json:"packSize"`
	// Encryption names how blobs and objects are sealed: "none" stores
	// them compressed only.
	Encryption string `json:"encryption"`
	// IDKey is the key of the hash that names chunks (HMAC-SHA256). With
	// encryption it is held by the key files, not here.
	IDKey []byte `json:"idKey,omitempty"`
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
	store Store
	cfg   Config
}

// InitOptions tune Init.
type InitOptions struct {
	KbakVersion string
	Encryption  string // default EncryptionNone
	Now         time.Time
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
	if enc != EncryptionNone {
		return nil, fmt.Errorf("init repository: encryption %q is not supported by this kbak: use none", enc)
	}
	pol, err := chunker.RandomPolynomial()
	if err != nil {
		return nil, fmt.Errorf("init repository: chunker polynomial: %w", err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("init repository: id key: %w", err)
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	cfg := Config{
		Format: FormatVersion, Created: now.UTC(), KbakVersion: opts.KbakVersion,
		Chunker:  ChunkerParams{Polynomial: pol, MinSize: defaultMinChunk, MaxSize: defaultMaxChunk, AverageBits: defaultAvgBits},
		PackSize: DefaultPackSize, Encryption: enc, IDKey: key,
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
	return &Repo{store: store, cfg: stored}, nil
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
	case cfg.Encryption != EncryptionNone:
		return Config{}, fmt.Errorf("%w: the repository uses encryption %q, which this kbak cannot open: use a newer kbak", ErrNewerFormat, cfg.Encryption)
	case len(cfg.IDKey) != 32:
		return Config{}, fmt.Errorf("%w: config %s has no chunk id key", ErrCorrupt, Keys.Config())
	case cfg.Chunker.Polynomial == 0 || !cfg.Chunker.Polynomial.Irreducible():
		return Config{}, fmt.Errorf("%w: config %s has an invalid chunker polynomial", ErrCorrupt, Keys.Config())
	case cfg.Chunker.MinSize == 0 || cfg.Chunker.MaxSize < cfg.Chunker.MinSize || cfg.Chunker.MaxSize > 64<<20 || cfg.Chunker.AverageBits < 10 || cfg.Chunker.AverageBits > 26:
		return Config{}, fmt.Errorf("%w: config %s has invalid chunk sizes", ErrCorrupt, Keys.Config())
	case cfg.PackSize < 1<<20 || cfg.PackSize > 1<<30:
		return Config{}, fmt.Errorf("%w: config %s has an invalid pack size", ErrCorrupt, Keys.Config())
	}
	return cfg, nil
}

// Open opens the repository in store.
func Open(ctx context.Context, store Store) (*Repo, error) {
	cfg, err := LoadConfig(ctx, store)
	if err != nil {
		return nil, err
	}
	return &Repo{store: store, cfg: cfg}, nil
}

// OpenOrInit opens the repository, creating it with opts when the store
// holds none; created says which.
func OpenOrInit(ctx context.Context, store Store, opts InitOptions) (r *Repo, created bool, err error) {
	r, err = Open(ctx, store)
	if !errors.Is(err, ErrNoRepository) {
		return r, false, err
	}
	r, err = Init(ctx, store, opts)
	if errors.Is(err, uploader.ErrExists) {
		r, err = Open(ctx, store) // another writer created it meanwhile
		return r, false, err
	}
	if err != nil {
		return nil, false, err
	}
	return r, true, nil
}

// Config returns the repository's configuration.
func (r *Repo) Config() Config { return r.cfg }
