package repo

import (
	"encoding/hex"
	"strings"

	"github.com/kbak/kbak/internal/seal"
)

// Root is the key prefix of every object of the v2 repository.
const Root = "kbak/v2/"

// keys derives the keys of the repository's shared objects; it is the only
// place that builds them.
type keys struct{}

// Keys derives every key of the repository's shared objects.
var Keys keys

func (keys) Config() string      { return Root + "config" }
func (keys) PackPrefix() string  { return Root + "data/" }
func (keys) IndexPrefix() string { return Root + "index/" }
func (keys) LockPrefix() string  { return Root + "locks/" }

// Keys of an encrypted repository (see crypt.go).
func (keys) KeyPrefix() string            { return Root + "keys/" }
func (k keys) WriteSecret() string        { return k.KeyPrefix() + "write" }
func (k keys) RecipientPrefix() string    { return k.KeyPrefix() + "recipients/" }
func (k keys) Recipient(id string) string { return k.RecipientPrefix() + id }
func (k keys) DataKeyPrefix() string      { return k.KeyPrefix() + "data/" }
func (k keys) DataKey(id seal.DataKeyID) string {
	return k.DataKeyPrefix() + hex.EncodeToString(id[:])
}
func (k keys) PassphrasePrefix() string       { return k.KeyPrefix() + "passphrase/" }
func (k keys) PassphraseKey(id string) string { return k.PassphrasePrefix() + id }

// Pack is the key of pack id: spread over 256 prefixes, as S3 likes.
func (k keys) Pack(id PackID) string {
	h := hex.EncodeToString(id[:])
	return k.PackPrefix() + h[:2] + "/" + h
}

// Index is the key of index object id.
func (k keys) Index(id PackID) string { return k.IndexPrefix() + hex.EncodeToString(id[:]) }

// Lock is the key of lock object name.
func (k keys) Lock(name string) string { return k.LockPrefix() + name }

// ParsePack returns the pack id of a pack key.
func (k keys) ParsePack(key string) (PackID, bool) {
	rest, ok := strings.CutPrefix(key, k.PackPrefix())
	if !ok || len(rest) != 3+2*len(PackID{}) || rest[2] != '/' || rest[:2] != rest[3:5] {
		return PackID{}, false
	}
	return parsePackID(rest[3:])
}

// ParseIndex returns the id of an index key.
func (k keys) ParseIndex(key string) (PackID, bool) {
	rest, ok := strings.CutPrefix(key, k.IndexPrefix())
	if !ok {
		return PackID{}, false
	}
	return parsePackID(rest)
}

func parsePackID(h string) (PackID, bool) {
	var id PackID
	if len(h) != 2*len(id) {
		return id, false
	}
	if _, err := hex.Decode(id[:], []byte(h)); err != nil {
		return id, false
	}
	return id, true
}

// Tree and file cache keys of a volume are derived from its tree key, which
// internal/catalog chooses (it ends in TreeSuffix).
const (
	TreeSuffix      = ".tree"
	fileCacheSuffix = ".files"
)

// FileCacheKey is the key of the file cache that belongs to a volume's tree.
func FileCacheKey(treeKey string) string {
	return strings.TrimSuffix(treeKey, TreeSuffix) + fileCacheSuffix
}
