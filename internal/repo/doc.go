// Package repo is the deduplicating repository (format v2) that movers write
// volumes into and read them back from.
//
// A volume's data is cut into content-defined chunks (restic's Rabin
// chunker, about 1 MiB on average, with a polynomial of the repository's
// own), each named by a keyed hash of its content, compressed with zstd and
// appended to pack objects of about 16 MiB. Index objects say in which pack,
// at which offset, each chunk lies. A chunk the repository already holds is
// never stored again: across backups, ordinals and claims.
//
// Objects, all under kbak/v2/ (Keys derives every key):
//
//	config                     format, chunker parameters, encryption scheme
//	data/<2 hex>/<32 hex>      packs: blobs back to back
//	index/<32 hex>             which blob is where (written after its packs)
//	locks/<id>                 who is using the repository (see Lock)
//
// A volume of a backup is a tree object (the ordered chunks of its recipe
// and the sorted set of every chunk it references, which is all prune
// needs) and a file cache (keyed hashes of paths with size, times, inode
// and chunks, so the next backup skips unchanged files without reading
// them). The recipe itself is an archive.Write stream in recipe form, stored
// as chunks like any data.
//
// The package knows nothing of Kubernetes; keys of backups (manifests,
// volumes) are derived by internal/catalog.
package repo
