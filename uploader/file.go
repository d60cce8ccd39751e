package uploader

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// tmpPrefix names the temporary files of unfinished Puts; List skips them
// and keys may not use it.
const tmpPrefix = ".kbak-tmp-"

// FileStore keeps objects as files under a directory, one file per key at
// the path the key names, so that a person can find them. Unlike S3 it
// cannot hold both "a" and "a/b" (a file and a directory of one name); kbak's
// layout never needs that, and the Put that would is refused.
type FileStore struct {
	dir string
}

var _ Store = (*FileStore)(nil)

// NewFileStore returns a store rooted at dir, which must exist.
func NewFileStore(dir string) (*FileStore, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("resolve directory %s: %w", dir, err)
	}
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, &openError{kind: ErrNoBucket, cause: err,
			msg: fmt.Sprintf("directory %s does not exist: create it or fix --repo", abs)}
	case errors.Is(err, fs.ErrPermission):
		return nil, &openError{kind: ErrAccessDenied, cause: err,
			msg: fmt.Sprintf("access denied to directory %s: check its permissions", abs)}
	case err != nil:
		return nil, &openError{kind: ErrUnreachable, cause: err,
			msg: fmt.Sprintf("cannot reach directory %s: %v", abs, err)}
	case !fi.IsDir():
		return nil, &openError{kind: ErrNoBucket,
			msg: fmt.Sprintf("%s is not a directory: fix --repo", abs)}
	}
	return &FileStore{dir: abs}, nil
}

func (s *FileStore) path(key string) (string, error) {
	if err := validateKey(key); err != nil {
		return "", fmt.Errorf("key %q: %w", key, err)
	}
	return filepath.Join(s.dir, filepath.FromSlash(key)), nil
}

// Put writes to a temporary file in the destination directory, syncs it and
// renames it into place, so readers see the old object or the whole new one.
func (s *FileStore) Put(ctx context.Context, key string, r io.Reader, size int64) (err error) {
	return s.put(ctx, key, r, false)
}

// Create is Put for a key that must not exist yet: a link, not a rename,
// makes the object appear, and fails when another got there first.
func (s *FileStore) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.put(ctx, key, r, true)
}

func (s *FileStore) put(ctx context.Context, key string, r io.Reader, exclusive bool) (err error) {
	p, err := s.path(key)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	f, err := os.CreateTemp(dir, tmpPrefix+"*")
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := io.Copy(f, ctxReader{ctx, r}); err != nil {
		return fmt.Errorf("put %s: write: %w", key, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("put %s: sync: %w", key, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("put %s: close: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if exclusive {
		err := os.Link(f.Name(), p)
		os.Remove(f.Name())
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create %s: %w", key, ErrExists)
		}
		if err != nil {
			return fmt.Errorf("create %s: %w", key, err)
		}
	} else if err := os.Rename(f.Name(), p); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	// The rename is durable only once the directory is synced.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// ctxReader stops a copy when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func (s *FileStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, notFound(err))
	}
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		f.Close()
		return nil, fmt.Errorf("get %s: %w", key, ErrNotFound)
	}
	return f, nil
}

func (s *FileStore) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	if off < 0 || length <= 0 {
		return nil, fmt.Errorf("get %s: invalid range at %d of %d bytes", key, off, length)
	}
	rc, err := s.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	f := rc.(*os.File)
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(f, off, length), f}, nil
}

func (s *FileStore) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	p, err := s.path(key)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("stat %s: %w", key, err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("stat %s: %w", key, notFound(err))
	}
	if fi.IsDir() {
		return ObjectInfo{}, fmt.Errorf("stat %s: %w", key, ErrNotFound)
	}
	return ObjectInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// notFound makes a missing file (or a file where a directory was expected)
// wrap ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNotDirSys) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

// List walks only the directories that can hold keys with the prefix. Within
// a directory it visits entries in the order of their keys, a directory
// "a" sorting as "a/", which yields lexical key order without collecting all
// keys first.
func (s *FileStore) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	// The walk starts at the deepest directory the prefix names in full.
	base := ""
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		base = prefix[:i]
		if err := validateKey(base); err != nil {
			return fmt.Errorf("list %s: prefix: %w", prefix, err)
		}
	}
	err := s.walk(ctx, base, prefix, fn)
	if err != nil {
		return fmt.Errorf("list %s: %w", prefix, err)
	}
	return nil
}

func (s *FileStore) walk(ctx context.Context, dirKey, prefix string, fn func(ObjectInfo) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	entries, err := os.ReadDir(filepath.Join(s.dir, filepath.FromSlash(dirKey)))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNotDirSys) {
		return nil
	}
	if err != nil {
		return err
	}
	type entry struct {
		key   string // the entry's key, with a trailing slash for a directory
		isDir bool
	}
	list := make([]entry, 0, len(entries))
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, tmpPrefix) {
			continue
		}
		k := name
		if dirKey != "" {
			k = dirKey + "/" + name
		}
		if e.IsDir() {
			k += "/"
		} else if !e.Type().IsRegular() {
			continue
		}
		// A directory whose key is a prefix of the prefix, or the reverse,
		// may hold matches.
		if !strings.HasPrefix(k, prefix) && !(e.IsDir() && strings.HasPrefix(prefix, k)) {
			continue
		}
		list = append(list, entry{k, e.IsDir()})
	}
	slices.SortFunc(list, func(a, b entry) int { return cmp.Compare(a.key, b.key) })
	for _, e := range list {
		if e.isDir {
			if err := s.walk(ctx, strings.TrimSuffix(e.key, "/"), prefix, fn); err != nil {
				return err
			}
			continue
		}
		fi, err := os.Stat(filepath.Join(s.dir, filepath.FromSlash(e.key)))
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted while listing
		}
		if err != nil {
			return err
		}
		if err := fn(ObjectInfo{Key: e.key, Size: fi.Size(), ModTime: fi.ModTime()}); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes the file and then the directories it leaves empty, up to
// the store's root.
func (s *FileStore) Delete(ctx context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNotDirSys) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if fi.IsDir() {
		return nil // not an object
	}
	if err := os.Remove(p); errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("delete %s: %w: %w", key, ErrAccessDenied, err)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	for d := filepath.Dir(p); d != s.dir && strings.HasPrefix(d, s.dir); d = filepath.Dir(d) {
		if os.Remove(d) != nil {
			break // not empty, or gone
		}
	}
	return nil
}
