package uploader_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kbak/kbak/uploader"
	"github.com/kbak/kbak/uploader/uploadertest"
)

func TestFileStoreConformance(t *testing.T) {
	uploadertest.RunConformance(t, func(t *testing.T) uploader.Store {
		s, err := uploader.Open(t.Context(), "file://"+t.TempDir(), uploader.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestS3StoreConformance(t *testing.T) {
	for _, start := range []func(testing.TB) *uploadertest.Server{uploadertest.StartVersityGW, uploadertest.StartMinIO} {
		srv := start(t)
		t.Run(srv.Name, func(t *testing.T) {
			uploadertest.RunConformance(t, func(t *testing.T) uploader.Store {
				opts := srv.Options()
				opts.PartSize = uploader.MinPartSize
				s, err := uploader.Open(t.Context(), srv.URL("repo/"+prefixFor(t)), opts)
				if err != nil {
					t.Fatal(err)
				}
				if _, ok := s.(interface {
					IncompleteUploads(context.Context, string) ([]uploader.IncompleteUpload, error)
				}); !ok {
					t.Fatalf("%T cannot list incomplete uploads, which the suite checks", s)
				}
				return s
			})
		})
		// Every store used a prefix of its own under repo/: nothing may
		// have leaked outside one.
		var stray []string
		s, err := uploader.Open(t.Context(), srv.URL(""), srv.Options())
		if err != nil {
			t.Fatal(err)
		}
		s.List(t.Context(), "", func(oi uploader.ObjectInfo) error {
			if !strings.HasPrefix(oi.Key, "repo/") {
				stray = append(stray, oi.Key)
			}
			return nil
		})
		if len(stray) > 0 {
			t.Errorf("%s: objects outside the stores' prefixes: %q", srv.Name, stray)
		}
	}
}

var unsafeChars = regexp.MustCompile(`[^a-zA-Z0-9-]+`)

func prefixFor(t *testing.T) string {
	return strings.Trim(unsafeChars.ReplaceAllString(t.Name(), "-"), "-")
}

// A failed Put into a file store leaves no temporary file behind.
func TestFileStoreNoTempLeft(t *testing.T) {
	dir := t.TempDir()
	s, err := uploader.NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	broken := errors.New("broken source")
	if err := s.Put(t.Context(), "a/b/c", &errReader{broken}, -1); !errors.Is(err, broken) {
		t.Fatalf("Put: err = %v, want %v", err, broken)
	}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			t.Errorf("file left behind: %s", p)
		}
		return err
	})
	// The key is stored at the path it names, so that a person can find it.
	if err := s.Put(t.Context(), "x/y.json", bytes.NewReader([]byte("{}")), 2); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "x", "y.json")); err != nil || string(b) != "{}" {
		t.Errorf("x/y.json on disk = %q, %v", b, err)
	}
}

type errReader struct{ err error }

func (e *errReader) Read([]byte) (int, error) { return 0, e.err }
