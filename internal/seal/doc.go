// Package seal holds the cryptography of encrypted repositories, all of it
// from well-kept libraries (age, x/crypto): the write secret and what
// derives from it, the meta key that seals what writers read back, the data
// keys that seal blobs so that only read keys open them, and key files.
//
// The roles: a write key (the write secret) backs up, deduplicates, lists
// and prunes; it cannot open data, recipes or StatefulSet specs, which are
// sealed to the read keys (age recipients) through per-writer data keys.
// A read key (an age identity) opens everything, the write secret included.
package seal
