// Package archive is the byte path of the pipeline: a directory tree becomes a
// tar (PAX) stream compressed with zstd, or a recipe for a deduplicating
// repository, and back. It knows nothing of Kubernetes or of stores; callers
// hash, chunk and upload what it writes.
//
// # Stream format
//
// One zstd frame holding a PAX tar stream (the tar stream alone with
// WriteOptions.Plain). The first entry, "./", is the
// archived directory itself (owner, mode, mtime and xattrs of the volume
// root); every other name is relative, without a "./" prefix, in depth-first
// lexical order, so the same tree gives the same bytes. Entries keep numeric
// uid/gid (no user names), the full mode with setuid, setgid and sticky bits,
// mtimes to the nanosecond, and xattrs of every namespace as
// SCHILY.xattr.<name> records. The second and later names of an inode are
// tar hard links to the first. Fifos and device nodes are headers only;
// sockets are left out and counted in Stats.Skipped.
//
// Sparse files (holes found with SEEK_DATA/SEEK_HOLE) are regular entries
// whose content is only the data regions, back to back, with two PAX records:
// KBAK.sparse.map = "offset:length,..." and KBAK.sparse.size = apparent size.
// archive/tar can read GNU sparse entries but not write them; these records
// are simple to check and leave the entry readable by any tar (which shows
// the packed data under the entry's name). Extract writes each region at its
// offset and truncates to the apparent size, so holes stay holes.
//
// # Recipes
//
// Write with WriteOptions.Content and Plain makes a recipe: the same PAX tar
// stream, not compressed, in which each regular file's data (its data
// regions, for a sparse file) is replaced by an opaque reference the
// ContentFunc returns, a list of chunk ids for instance, and a
// KBAK.content.size record gives the size of the data it stands for. All else
// (owners, modes, mtimes, xattrs, links, sparse records, special files) is as
// in an archive; the caller chunks and compresses the recipe. The ContentFunc
// gets a reader that touches the file only when read, so a file the caller
// knows unchanged is not read at all. A recipe's files are handed to the
// ContentFunc by several readers at once (WriteOptions.Readers) while one
// writer puts the entries into the stream in walk order, so the recipe is
// the same whatever the readers' timing. Rehydrate turns a recipe back into the
// plain stream Write makes without Content, asking the caller for each file's
// data, and ExtractTar or VerifyTar read that. ExtractRecipe extracts a
// recipe straight away: the caller writes each file's data into the file,
// and small files are created and written by a few writers at once.
// Extract and Verify refuse a recipe entry: its reference is not the file's
// data.
//
// # Memory
//
// Write holds the sorted names and an open descriptor of one directory per
// level of the current path, and one record per multiply-linked inode until
// its last name is met; a recipe writer also holds up to 128 queued entries
// and their open files.
// Extract holds one small record per directory (path, owner, mode, mtime,
// xattrs) until the end, because directory metadata is applied after their
// contents. Neither keeps a list of files. Rehydrate holds one content
// reference at a time, at most MaxRefSize bytes; ExtractRecipe one too, and
// the data of at most 2*fileWriters+1 small files.
//
// # Extraction safety
//
// Names with ".." components or a leading "/" are refused. Parent directories
// and hard link targets are resolved beneath the target without following any
// symlink (openat2 with RESOLVE_NO_SYMLINKS|RESOLVE_BENEATH, or a component
// by component O_NOFOLLOW walk where openat2 is missing); a symlink in the
// archive is created as a symlink and never written through. An existing
// non-directory is replaced only with ExtractOptions.Overwrite; an existing
// directory is reused for a directory entry and never replaced.
//
// What an archive holds is not trusted to grant privileges: by default
// Extract creates no character or block device nodes (fifos it does) and
// restores files without their setuid and setgid bits and file
// capabilities, counting what it left out (Stats.DevicesSkipped,
// Stats.SetIDCleared, ExtractOptions.Withheld names the first ones).
// ExtractOptions.Devices and SetID restore them, for a caller that trusts
// the archive and has the capabilities (CAP_MKNOD; CAP_FSETID and
// CAP_SETFCAP).
package archive
