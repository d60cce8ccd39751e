package mover

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/kbak/kbak/internal/archive"
	"github.com/kbak/kbak/internal/repo"
	"github.com/kbak/kbak/uploader"
)

// uploadTree stores opts.Source in the deduplicating repository: the file
// data and the recipe (the archive stream with every file's data replaced by
// its chunk list) go into chunks, then the file cache, then the tree, then
// the result. Nothing the upload wrote is referenced until the tree exists:
// a failed upload leaves only packs that no backup names, which gc removes.
func uploadTree(ctx context.Context, store Store, opts UploadOptions, level int, ev *Emitter) (Result, error) {
	res := Result{Key: opts.Key, Format: repo.FormatVersion, Compression: fmt.Sprintf("zstd:%d", level), Started: time.Now().UTC()}
	r, _, err := repo.OpenOrInit(ctx, store, opts.RepoKey, repo.InitOptions{KbakVersion: opts.KbakVersion})
	if err != nil {
		return Result{}, err
	}
	match := opts.ParentMatch
	if match == "" {
		match = ParentMatchStrict
	}
	if match != ParentMatchStrict && match != ParentMatchSizeMTime {
		return Result{}, fmt.Errorf("parent match %q: use %s or %s", match, ParentMatchStrict, ParentMatchSizeMTime)
	}
	// The shared lock keeps prune from removing chunks this upload finds in
	// the index and reuses; prune holding its lock makes the upload wait.
	lctx, cancel := context.WithTimeout(ctx, lockWait)
	lock, err := r.LockWait(lctx, repo.LockShared, "upload of "+opts.Key, 10*time.Second)
	cancel()
	if err != nil {
		return Result{}, fmt.Errorf("upload %s: %w", opts.Key, err)
	}
	defer lock.Unlock(ctx)
	var parent *repo.FileCache
	if opts.Parent != "" {
		parent, err = r.OpenFileCache(ctx, repo.FileCacheKey(opts.Parent), opts.TempDir)
		switch {
		case errors.Is(err, uploader.ErrNotFound):
			parent = nil // pruned meanwhile: every file is read
		case err != nil:
			return Result{}, fmt.Errorf("parent %s: %w", opts.Parent, err)
		default:
			defer parent.Close()
			res.Parent, res.ParentMatch = opts.Parent, match
		}
	}
	w, err := r.NewWriter(ctx, repo.WriterOptions{Level: level, Workers: opts.Concurrency, TempDir: opts.TempDir})
	if err != nil {
		return Result{}, err
	}
	files, err := r.NewFileCacheWriter(opts.TempDir)
	if err != nil {
		w.Abort(err)
		return Result{}, err
	}
	defer files.Close()

	var counters archive.Counters
	var skippedFiles, skippedBytes atomic.Int64
	estimate := SourceEstimate(opts.Source, opts.SizeHint)
	stop := ev.every(func() Progress {
		return Progress{RawBytes: counters.RawBytes.Load(), Files: counters.Files.Load(),
			StoredBytes: w.Stats().StoredBytes, TotalBytes: max(opts.SizeHint, 0), EstimateBytes: estimate}
	})
	defer stop()

	// The archive hands several files at once to content. Files of more
	// than one chunk are stored one at a time all the same, so that each
	// one's chunks lie together in the packs, in order, and a restore reads
	// them with few requests; files of one chunk go at once.
	oneChunk := int64(r.Config().Chunker.MinSize)
	large := make(chan struct{}, 1)
	content := func(ctx context.Context, f archive.FileInfo, data io.Reader) ([]byte, error) {
		if old, ok := unchanged(parent, r, f, match, w); ok {
			skippedFiles.Add(1)
			skippedBytes.Add(f.DataSize)
			return repo.AppendRefs(nil, old.Refs), nil
		}
		if f.DataSize > oneChunk {
			select {
			case large <- struct{}{}:
			case <-ctx.Done():
				return nil, context.Cause(ctx)
			}
			defer func() { <-large }()
		}
		refs, err := w.WriteSized(ctx, data, f.DataSize)
		if err != nil {
			return nil, fmt.Errorf("store %s: %w", f.Name, err)
		}
		return repo.AppendRefs(nil, refs), nil
	}
	// The file cache lists the files in recipe order: a restore reads it
	// to know which chunks come next.
	written := func(f archive.FileInfo, ref []byte) error {
		refs, err := repo.DecodeRefs(ref)
		if err != nil {
			return err
		}
		if err := files.Add(fileEntry(r, f, refs)); err != nil {
			return fmt.Errorf("write file cache: %w", err)
		}
		return nil
	}

	g, gctx := errgroup.WithContext(ctx)
	pr, pw := io.Pipe()
	var recipe []repo.Ref
	g.Go(func() error {
		var err error
		recipe, err = w.WriteStream(gctx, pr)
		pr.CloseWithError(errors.Join(err, io.ErrClosedPipe)) // unblock the archiver if the recipe failed
		return err
	})
	var stats archive.Stats
	var unreadable []string
	g.Go(func() error {
		var err error
		stats, err = archive.Write(gctx, opts.Source, pw, archive.WriteOptions{Plain: true, Content: content, Written: written, Progress: &counters, Unreadable: &unreadable})
		if err != nil {
			err = fmt.Errorf("archive %s: %w", opts.Source, err)
		}
		pw.CloseWithError(err)
		return err
	})
	if err := g.Wait(); err != nil {
		w.Abort(err)
		return Result{}, err
	}
	if err := w.Close(ctx); err != nil {
		return Result{}, fmt.Errorf("store %s: %w", opts.Key, err)
	}
	cacheBytes, err := files.Store(ctx, repo.FileCacheKey(opts.Key))
	if err != nil {
		return Result{}, err
	}
	treeBytes, treeSum, err := r.PutTree(ctx, opts.Key, recipe)
	if err != nil {
		return Result{}, err
	}
	res.SHA256 = treeSum // the manifest records it; a restore checks the tree by it
	ws := w.Stats()
	res.RawBytes, res.Files, res.ReadBytes = stats.RawBytes, stats.Files, stats.ReadBytes
	res.setUnreadable(stats, unreadable)
	res.SkippedFiles, res.SkippedBytes = skippedFiles.Load(), skippedBytes.Load()
	// What the upload added: new blobs, and the volume's own tree and file
	// cache, which every backup writes anew.
	res.Chunks, res.NewChunks, res.NewBytes = ws.Chunks, ws.NewChunks, ws.NewBytes
	res.StoredBytes = ws.StoredBytes + cacheBytes + treeBytes
	res.Finished = time.Now().UTC()
	return res, writeResult(ctx, store, opts.ResultKey, res)
}

// lockWait bounds how long an upload waits for a prune to finish.
const lockWait = 15 * time.Minute

func fileEntry(r *repo.Repo, f archive.FileInfo, refs []repo.Ref) repo.FileEntry {
	return repo.FileEntry{Path: r.PathID(f.Name), Size: f.Size, DataSize: f.DataSize,
		ModTime: f.ModTime.UnixNano(), ChangeTime: f.ChangeTime.UnixNano(), Inode: f.Inode, Refs: refs}
}

// unchanged returns the parent's entry of a file that has not changed since,
// when every chunk it lists is still in the repository.
func unchanged(parent *repo.FileCache, r *repo.Repo, f archive.FileInfo, match string, w *repo.Writer) (repo.FileEntry, bool) {
	if parent == nil {
		return repo.FileEntry{}, false
	}
	e := fileEntry(r, f, nil)
	old, ok := parent.Lookup(e.Path)
	if !ok || old.Size != e.Size || old.DataSize != e.DataSize || old.ModTime != e.ModTime {
		return repo.FileEntry{}, false
	}
	if match == ParentMatchStrict && (old.ChangeTime != e.ChangeTime || old.Inode != e.Inode) {
		return repo.FileEntry{}, false
	}
	var total int64
	for _, ref := range old.Refs {
		if !w.Known(ref.ID) {
			return repo.FileEntry{}, false // pruned since: read the file again
		}
		total += int64(ref.Size)
	}
	return old, total == e.DataSize
}

// downloadTree restores a volume of the deduplicating repository. The file
// cache tells the reader which chunks come next, so it fetches them ahead;
// archive.ExtractRecipe writes the chunks straight into the files the
// recipe names (a verify without a target rebuilds the archive stream for
// archive.VerifyTar). Every chunk is checked against its id before its
// bytes reach the extractor.
func downloadTree(ctx context.Context, store Store, opts DownloadOptions, ev *Emitter) (Result, error) {
	res := Result{Key: opts.Key, Format: repo.FormatVersion, Compression: DefaultCompression, Started: time.Now().UTC()}
	r, err := repo.Open(ctx, store, opts.RepoKey)
	if err != nil {
		return Result{}, err
	}
	if !r.CanRead() {
		return Result{}, fmt.Errorf("download %s: %w", opts.Key, r.NeedRead("a restore"))
	}
	// A tree of another digest than the backup recorded is refused before
	// anything is extracted.
	recipe, treeSum, err := r.OpenTree(ctx, opts.Key, opts.SHA256)
	if err != nil {
		return Result{}, fmt.Errorf("download %s: %w", opts.Key, err)
	}
	res.SHA256 = treeSum
	rd, err := r.NewVolumeReader(ctx, opts.Key)
	if err != nil {
		return Result{}, fmt.Errorf("download %s: %w", opts.Key, err)
	}
	var counters archive.Counters
	var fetched atomic.Int64
	stop := ev.every(func() Progress {
		return Progress{RawBytes: counters.RawBytes.Load(), Files: counters.Files.Load(), StoredBytes: fetched.Load()}
	})
	defer stop()

	g, gctx := errgroup.WithContext(ctx)
	// The chunks of every file, in recipe order: the file cache lists the
	// files in the order they were archived, so it tells the reader what
	// comes next without a second walk of the recipe. The rebuild checks
	// every chunk against the recipe's own list.
	refs := make(chan repo.Ref, 256)
	g.Go(func() error {
		defer close(refs)
		return r.ForEachFile(gctx, repo.FileCacheKey(opts.Key), func(e repo.FileEntry) error {
			for _, r := range e.Refs {
				select {
				case refs <- r:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
			return nil
		})
	})
	type chunk struct {
		ref  repo.Ref
		data []byte
	}
	// Fetch uses a chunk's memory again once its function returns: it
	// waits until the extractor has written the chunk.
	chunks := make(chan chunk)
	written := make(chan struct{})
	g.Go(func() error {
		defer close(chunks)
		return rd.Fetch(gctx, refs, func(ref repo.Ref, b []byte) error {
			fetched.Add(int64(len(b)))
			select {
			case chunks <- chunk{ref, b}:
			case <-gctx.Done():
				return gctx.Err()
			}
			select {
			case <-written:
				return nil
			case <-gctx.Done():
				return gctx.Err()
			}
		})
	})
	data := func(ctx context.Context, ref []byte, size int64, w io.Writer) error {
		list, err := repo.DecodeRefs(ref)
		if err != nil {
			return err
		}
		for _, want := range list {
			var c chunk
			var ok bool
			select {
			case c, ok = <-chunks:
			case <-ctx.Done():
				return ctx.Err()
			}
			if !ok {
				return errors.New("chunk stream ended early")
			}
			if c.ref.ID != want.ID {
				return fmt.Errorf("%w: recipe walks disagree at chunk %s", repo.ErrCorrupt, want.ID.Short())
			}
			_, err := w.Write(c.data)
			select {
			case written <- struct{}{}:
			case <-ctx.Done():
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	var stats archive.Stats
	var withheld archive.Withheld
	g.Go(func() error {
		rs := recipeStream(gctx, g, rd, recipe)
		var err error
		if opts.Target != "" {
			// The chunks go straight from the fetch into the files.
			stats, err = archive.ExtractRecipe(gctx, rs, opts.Target, opts.extractOptions(&counters, &withheld), data)
		} else {
			pr, pw := io.Pipe()
			go func() {
				pw.CloseWithError(archive.Rehydrate(gctx, rs, pw, data))
			}()
			stats, err = archive.VerifyTar(gctx, pr, &counters)
			pr.CloseWithError(cmp.Or(err, io.ErrClosedPipe))
		}
		// A restore that stopped early (a chunk failed) reads no more of
		// the recipe: let its writer go.
		rs.CloseWithError(cmp.Or(err, io.ErrClosedPipe))
		return err
	})
	if err := g.Wait(); err != nil {
		return Result{}, fmt.Errorf("restore %s: %w", opts.Key, err)
	}
	res.RawBytes, res.Files, res.StoredBytes = stats.RawBytes, stats.Files, fetched.Load()
	res.setWithheld(stats, &withheld)
	res.Finished = time.Now().UTC()
	return res, nil
}

// recipeStream returns the recipe's bytes, fetched in the group g.
func recipeStream(ctx context.Context, g *errgroup.Group, rd *repo.Reader, recipe []repo.Ref) *io.PipeReader {
	pr, pw := io.Pipe()
	refs := make(chan repo.Ref)
	go func() {
		defer close(refs)
		for _, r := range recipe {
			select {
			case refs <- r:
			case <-ctx.Done():
				return
			}
		}
	}()
	g.Go(func() error {
		err := rd.Fetch(ctx, refs, func(_ repo.Ref, b []byte) error {
			_, err := pw.Write(b)
			return err
		})
		pw.CloseWithError(err)
		if errors.Is(err, io.ErrClosedPipe) {
			return nil // the reader stopped early; its own error tells why
		}
		return err
	})
	return pr
}

// writeResult stores res at key, when one is given: after everything it
// describes.
func writeResult(ctx context.Context, store Store, key string, res Result) error {
	if key == "" {
		return nil
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := store.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
		return fmt.Errorf("write result %s: %w", key, err)
	}
	return nil
}
