package repo

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/klauspost/compress/zstd"
)

// A file cache lists, for every regular file of a backed-up volume, a keyed
// hash of its path, its size, times and inode, and its chunks. The next
// backup of the volume skips a file whose entry still matches, without
// reading it; prune reads the chunk lists to know what a backup holds. The
// object is a zstd stream of "KBAKFC2\n" and length-prefixed entries, in the
// order the files were archived.
const fileCacheMagic = "KBAKFC2\n"

// FileEntry is one file of a file cache.
type FileEntry struct {
	Path       ID    // PathID of the file's archive name
	Size       int64 // apparent size
	DataSize   int64 // bytes of data regions, what the chunks hold
	ModTime    int64 // ns since the epoch
	ChangeTime int64 // ns since the epoch
	Inode      uint64
	Refs       []Ref
}

func (e *FileEntry) append(b []byte) []byte {
	b = append(b, e.Path[:]...)
	b = binary.AppendUvarint(b, uint64(e.Size))
	b = binary.AppendUvarint(b, uint64(e.DataSize))
	b = binary.AppendVarint(b, e.ModTime)
	b = binary.AppendVarint(b, e.ChangeTime)
	b = binary.AppendUvarint(b, e.Inode)
	return AppendRefs(b, e.Refs)
}

func decodeFileEntry(b []byte) (FileEntry, error) {
	var e FileEntry
	if len(b) < len(e.Path) {
		return e, errors.New("short entry")
	}
	copy(e.Path[:], b)
	b = b[len(e.Path):]
	var v [6]uint64
	for i := range 5 {
		var k int
		if i == 2 || i == 3 {
			var s int64
			s, k = binary.Varint(b)
			v[i] = uint64(s)
		} else {
			v[i], k = binary.Uvarint(b)
		}
		if k <= 0 {
			return e, errors.New("bad entry")
		}
		b = b[k:]
	}
	e.Size, e.DataSize, e.ModTime, e.ChangeTime, e.Inode = int64(v[0]), int64(v[1]), int64(v[2]), int64(v[3]), v[4]
	refs, err := DecodeRefs(b)
	e.Refs = refs
	return e, err
}

// PathID is the keyed hash that stands for a path in a file cache, so that
// the cache names no file.
func (r *Repo) PathID(name string) ID {
	h := r.paths.Load()
	if h == nil || !bytes.Equal(h.key, r.idKey()) { // first, or the keys came since
		h = newHasher(r.idKey())
		r.paths.Store(h)
	}
	return h.id([]byte("path\x00" + name))
}

// FileCacheWriter writes a file cache to a temporary file as entries come,
// and stores it in one Put at the end.
type FileCacheWriter struct {
	r   *Repo
	f   *os.File
	sw  io.WriteCloser // seals, in an encrypted repository
	enc *zstd.Encoder
	bw  *bufio.Writer
	buf []byte
}

// NewFileCacheWriter starts a file cache in dir (TMPDIR when empty).
func (r *Repo) NewFileCacheWriter(dir string) (*FileCacheWriter, error) {
	f, err := os.CreateTemp(dir, "kbak-files-*")
	if err != nil {
		return nil, fmt.Errorf("create file cache: %w", err)
	}
	os.Remove(f.Name())
	sw, err := r.sealMeta(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	enc, err := zstd.NewWriter(sw, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true), zstd.WithWindowSize(smallWindow))
	if err != nil {
		f.Close()
		return nil, err
	}
	w := &FileCacheWriter{r: r, f: f, sw: sw, enc: enc, bw: bufio.NewWriterSize(enc, 256<<10)}
	w.bw.WriteString(fileCacheMagic)
	return w, nil
}

// Add appends one file's entry.
func (w *FileCacheWriter) Add(e FileEntry) error {
	w.buf = e.append(w.buf[:0])
	var n [binary.MaxVarintLen64]byte
	w.bw.Write(n[:binary.PutUvarint(n[:], uint64(len(w.buf)))])
	_, err := w.bw.Write(w.buf)
	return err
}

// Store finishes the cache, puts it at key and returns its stored size.
func (w *FileCacheWriter) Store(ctx context.Context, key string) (int64, error) {
	if err := w.bw.Flush(); err != nil {
		return 0, fmt.Errorf("write file cache: %w", err)
	}
	if err := w.enc.Close(); err != nil {
		return 0, fmt.Errorf("write file cache: %w", err)
	}
	if err := w.sw.Close(); err != nil {
		return 0, fmt.Errorf("write file cache: %w", err)
	}
	size, err := w.f.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, err
	}
	if err := w.r.store.Put(ctx, key, io.NewSectionReader(w.f, 0, size), size); err != nil {
		return 0, fmt.Errorf("store file cache: %w", err)
	}
	return size, nil
}

// Close releases the temporary file.
func (w *FileCacheWriter) Close() error { return w.f.Close() }

// readFileCache streams the entries of the file cache at key to fn; raw
// gets each entry's encoded bytes too.
func (r *Repo) readFileCache(ctx context.Context, key string, fn func(raw []byte) error) error {
	rc, err := r.store.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("read file cache %s: %w", key, err)
	}
	defer rc.Close()
	plain, err := r.openMeta(rc)
	if err != nil {
		return fmt.Errorf("file cache %s: %w", key, err)
	}
	dec, err := zstd.NewReader(plain, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(8<<20))
	if err != nil {
		return err
	}
	defer dec.Close()
	br := bufio.NewReaderSize(dec, 256<<10)
	magic := make([]byte, len(fileCacheMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != fileCacheMagic {
		return fmt.Errorf("%w: %s is not a file cache", ErrCorrupt, key)
	}
	var buf []byte
	for {
		n, err := binary.ReadUvarint(br)
		if err == io.EOF {
			return nil
		}
		if err != nil || n > 128<<20 {
			return fmt.Errorf("%w: file cache %s: bad entry length", ErrCorrupt, key)
		}
		buf = slices.Grow(buf[:0], int(n))[:n]
		if _, err := io.ReadFull(br, buf); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w: file cache %s cut short: %v", ErrCorrupt, key, err)
		}
		if err := fn(buf); err != nil {
			return err
		}
	}
}

// ForEachFile calls fn for every entry of the file cache at key.
func (r *Repo) ForEachFile(ctx context.Context, key string, fn func(FileEntry) error) error {
	return r.readFileCache(ctx, key, func(raw []byte) error {
		e, err := decodeFileEntry(raw)
		if err != nil {
			return fmt.Errorf("%w: file cache %s: %v", ErrCorrupt, key, err)
		}
		return fn(e)
	})
}

// FileCache is a parent backup's file cache opened for lookups: its entries
// in an unlinked temporary file, and 16 bytes of memory a file to find them.
type FileCache struct {
	f    *os.File
	keys []cacheKey
}

type cacheKey struct {
	h   uint64
	off int64
}

// OpenFileCache downloads the file cache at key into dir (TMPDIR when
// empty). A missing cache gives an error wrapping uploader.ErrNotFound.
func (r *Repo) OpenFileCache(ctx context.Context, key, dir string) (*FileCache, error) {
	f, err := os.CreateTemp(dir, "kbak-parent-*")
	if err != nil {
		return nil, fmt.Errorf("open parent file cache: %w", err)
	}
	os.Remove(f.Name())
	fc := &FileCache{f: f}
	bw := bufio.NewWriterSize(f, 256<<10)
	var off int64
	var n [binary.MaxVarintLen64]byte
	err = r.readFileCache(ctx, key, func(raw []byte) error {
		if len(raw) < len(ID{}) {
			return fmt.Errorf("%w: file cache %s: short entry", ErrCorrupt, key)
		}
		fc.keys = append(fc.keys, cacheKey{h: binary.BigEndian.Uint64(raw), off: off})
		k := binary.PutUvarint(n[:], uint64(len(raw)))
		bw.Write(n[:k])
		bw.Write(raw)
		off += int64(k + len(raw))
		return nil
	})
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	slices.SortFunc(fc.keys, func(a, b cacheKey) int { return cmp.Compare(a.h, b.h) })
	return fc, nil
}

// Lookup returns the entry of the file whose PathID is path.
func (fc *FileCache) Lookup(path ID) (FileEntry, bool) {
	h := binary.BigEndian.Uint64(path[:])
	i, _ := slices.BinarySearchFunc(fc.keys, h, func(k cacheKey, h uint64) int { return cmp.Compare(k.h, h) })
	for ; i < len(fc.keys) && fc.keys[i].h == h; i++ {
		e, err := fc.read(fc.keys[i].off)
		if err == nil && e.Path == path {
			return e, true
		}
	}
	return FileEntry{}, false
}

func (fc *FileCache) read(off int64) (FileEntry, error) {
	var hdr [binary.MaxVarintLen64]byte
	n, _ := fc.f.ReadAt(hdr[:], off)
	size, k := binary.Uvarint(hdr[:n])
	if k <= 0 {
		return FileEntry{}, errors.New("bad entry")
	}
	buf := make([]byte, size)
	if _, err := fc.f.ReadAt(buf, off+int64(k)); err != nil {
		return FileEntry{}, err
	}
	return decodeFileEntry(buf)
}

// Len is the number of files in the cache.
func (fc *FileCache) Len() int { return len(fc.keys) }

// Close releases the temporary file.
func (fc *FileCache) Close() error { return fc.f.Close() }
