package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
)

// DataKeyID names a data key.
type DataKeyID [16]byte

// DataKey seals blobs: a random key of one writer, stored in the repository
// only sealed to the read keys, so that the writer, once done, cannot open
// what it wrote.
type DataKey struct {
	ID   DataKeyID
	aead cipher.AEAD
}

// NewDataKey returns a random data key and its raw bytes (to be sealed to
// the read keys).
func NewDataKey() (*DataKey, []byte, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, nil, err
	}
	var id DataKeyID
	if _, err := rand.Read(id[:]); err != nil {
		return nil, nil, err
	}
	k, err := DataKeyFrom(id, raw)
	return k, raw, err
}

// DataKeyFrom rebuilds a data key from its id and raw bytes.
func DataKeyFrom(id DataKeyID, raw []byte) (*DataKey, error) {
	// AES-256-GCM: with the AES instructions of every server CPU it costs
	// about half of what ChaCha20-Poly1305 does. Random 96-bit nonces are
	// safe for far more blobs than one writer ever seals under its key.
	var aead cipher.AEAD
	block, err := aes.NewCipher(raw)
	if err == nil {
		aead, err = cipher.NewGCM(block)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: data key %x: %v", ErrTampered, id, err)
	}
	return &DataKey{ID: id, aead: aead}, nil
}

// BlobOverhead is what sealing adds to a blob.
const BlobOverhead = len(DataKeyID{}) + nonceSize + 16

const nonceSize = 12

// Seal appends to dst the sealed blob of plain: the key's id, a random
// nonce and AES-256-GCM of plain with ad (the chunk's id, so a blob
// cannot be passed off as another).
func (k *DataKey) Seal(dst, plain, ad []byte) ([]byte, error) {
	dst = append(dst, k.ID[:]...)
	n := len(dst)
	dst = append(dst, make([]byte, nonceSize)...)
	if _, err := rand.Read(dst[n:]); err != nil {
		return nil, err
	}
	return k.aead.Seal(dst, dst[n:], plain, ad), nil
}

// BlobKeyID returns the id of the data key that sealed blob.
func BlobKeyID(blob []byte) (DataKeyID, error) {
	var id DataKeyID
	if len(blob) < BlobOverhead {
		return id, fmt.Errorf("%w: a sealed blob of %d bytes", ErrTampered, len(blob))
	}
	copy(id[:], blob)
	return id, nil
}

// OpenInPlace returns the plain bytes of a blob k sealed with ad. It
// decrypts into blob's own memory, whose bytes it overwrites (also when the
// blob does not authenticate), and returns a part of it: a restore saves a
// copy of every blob.
func (k *DataKey) OpenInPlace(blob, ad []byte) ([]byte, error) {
	if len(blob) < BlobOverhead {
		return nil, fmt.Errorf("%w: a sealed blob of %d bytes", ErrTampered, len(blob))
	}
	nonce := blob[len(k.ID) : len(k.ID)+nonceSize]
	sealed := blob[len(k.ID)+nonceSize:]
	// sealed[:0] is the one overlap of output and input AEAD.Open allows.
	out, err := k.aead.Open(sealed[:0], nonce, sealed, ad)
	if err != nil {
		return nil, fmt.Errorf("%w: blob of data key %x", ErrTampered, k.ID)
	}
	return out, nil
}
