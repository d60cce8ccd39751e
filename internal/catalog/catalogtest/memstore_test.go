package catalogtest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/kbak/kbak/uploader"
)

func TestMemStoreKeepsTheStoreContract(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	s := NewMemStore(func() time.Time { return now })
	for _, k := range []string{"b/2", "a/1", "b/10", "c"} {
		if err := s.Put(ctx, k, bytes.NewReader([]byte(k)), int64(len(k))); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	if err := s.List(ctx, "b/", func(o uploader.ObjectInfo) error { got = append(got, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"b/10", "b/2"}; !slices.Equal(got, want) {
		t.Errorf("List(b/) = %q, want %q", got, want)
	}
	stop := errors.New("stop")
	if err := s.List(ctx, "", func(uploader.ObjectInfo) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("List returned %v, want fn's error", err)
	}
	info, err := s.Stat(ctx, "b/10")
	if err != nil || info.Size != 4 || !info.ModTime.Equal(now) {
		t.Errorf("Stat = %+v, %v", info, err)
	}
	rc, err := s.Get(ctx, "a/1")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(rc)
	if string(data) != "a/1" {
		t.Errorf("Get = %q", data)
	}
	if err := s.Put(ctx, "broken", io.MultiReader(bytes.NewReader([]byte("x")), errReader{}), -1); err == nil {
		t.Error("Put from a failing reader succeeded")
	}
	for _, k := range []string{"broken", "missing"} {
		if _, err := s.Get(ctx, k); !errors.Is(err, uploader.ErrNotFound) {
			t.Errorf("Get(%s) = %v, want ErrNotFound", k, err)
		}
		if _, err := s.Stat(ctx, k); !errors.Is(err, uploader.ErrNotFound) {
			t.Errorf("Stat(%s) = %v, want ErrNotFound", k, err)
		}
		if err := s.Delete(ctx, k); err != nil {
			t.Errorf("Delete(%s) = %v, want nil", k, err)
		}
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }
