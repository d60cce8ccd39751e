package catalog

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLayoutKeys(t *testing.T) {
	l, err := NewLayout("shop", "mariadb", "mariadb-20261120T101500Z-0a1f", FormatArchive)
	if err != nil {
		t.Fatal(err)
	}
	const dir = "kbak/v1/shop/mariadb/mariadb-20261120T101500Z-0a1f/"
	for _, c := range []struct{ got, want string }{
		{l.Dir(), dir},
		{l.ManifestKey(), dir + "manifest.json"},
		{l.VolumeKey("data-mariadb-0"), dir + "volumes/data-mariadb-0.tar.zst"},
		{l.ResultKey("data-mariadb-0"), dir + "volumes/data-mariadb-0.json"},
		{strings.Join(ListPrefixes(Filter{}), " "), "kbak/v1/ kbak/v2/backups/"},
		{strings.Join(ListPrefixes(Filter{StatefulSet: "mariadb"}), " "), "kbak/v1/ kbak/v2/backups/"},
		{strings.Join(ListPrefixes(Filter{Namespace: "shop"}), " "), "kbak/v1/shop/ kbak/v2/backups/shop/"},
		{strings.Join(ListPrefixes(Filter{Namespace: "shop", StatefulSet: "mariadb"}), " "), "kbak/v1/shop/mariadb/ kbak/v2/backups/shop/mariadb/"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

// The deduplicating repository's backups live under their own root; every
// key of one parses back to its layout and kind.
func TestLayoutRepoFormat(t *testing.T) {
	l, err := NewLayout("shop", "mariadb", "mariadb-20261120T101500Z-0a1f", FormatRepo)
	if err != nil {
		t.Fatal(err)
	}
	const dir = "kbak/v2/backups/shop/mariadb/mariadb-20261120T101500Z-0a1f/"
	for _, c := range []struct {
		key  string
		want string
		kind Kind
	}{
		{l.ManifestKey(), dir + "manifest.json", KindManifest},
		{l.VolumeKey("data-mariadb-0"), dir + "volumes/data-mariadb-0.tree", KindVolume},
		{l.ResultKey("data-mariadb-0"), dir + "volumes/data-mariadb-0.json", KindResult},
		{dir + "volumes/data-mariadb-0.files", dir + "volumes/data-mariadb-0.files", KindOther},
	} {
		if c.key != c.want {
			t.Errorf("key %q, want %q", c.key, c.want)
		}
		k, err := ParseKey(c.key)
		if err != nil || k.Layout != l || k.Kind != c.kind {
			t.Errorf("ParseKey(%q) = %+v, %v; want layout %+v kind %v", c.key, k, err, l, c.kind)
		}
	}
}

func TestNewLayoutRejects(t *testing.T) {
	tests := []struct {
		name, ns, sts, id, wantErr string
	}{
		{"upper-case namespace", "Shop", "db", "db-20261120T101500Z-0a1f", "invalid namespace"},
		{"slash in namespace", "a/b", "db", "db-20261120T101500Z-0a1f", "invalid namespace"},
		{"empty statefulset", "shop", "", "db-20261120T101500Z-0a1f", "invalid StatefulSet name"},
		{"id of another statefulset", "shop", "db", "web-20261120T101500Z-0a1f", `belongs to StatefulSet "web"`},
		{"garbage id", "shop", "db", "latest", "invalid backup id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewLayout(tt.ns, tt.sts, tt.id, FormatArchive)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewLayout(%q, %q, %q) = %v, want an error containing %q", tt.ns, tt.sts, tt.id, err, tt.wantErr)
			}
		})
	}
}

func TestParseKey(t *testing.T) {
	l := Layout{Namespace: "shop", StatefulSet: "my.db", ID: "my.db-20261120T101500Z-0a1f"}
	tests := []struct {
		key  string
		want Key
	}{
		{l.ManifestKey(), Key{Layout: l, Kind: KindManifest}},
		{l.VolumeKey("data-my.db-0"), Key{Layout: l, Kind: KindVolume, PVC: "data-my.db-0"}},
		{l.ResultKey("data-my.db-0"), Key{Layout: l, Kind: KindResult, PVC: "data-my.db-0"}},
		// A PVC may be called "manifest": its result is not the backup's manifest.
		{l.ResultKey("manifest"), Key{Layout: l, Kind: KindResult, PVC: "manifest"}},
		{l.Dir() + "notes.txt", Key{Layout: l, Kind: KindOther}},
		{l.Dir() + "volumes/Bad_Name.tar.zst", Key{Layout: l, Kind: KindOther}},
		{l.Dir() + "volumes/a/b.tar.zst", Key{Layout: l, Kind: KindOther}},
	}
	for _, tt := range tests {
		got, err := ParseKey(tt.key)
		if err != nil {
			t.Errorf("ParseKey(%q): %v", tt.key, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseKey(%q) = %+v, want %+v", tt.key, got, tt.want)
		}
	}
}

func TestParseKeyRejects(t *testing.T) {
	for _, key := range []string{
		"",
		"kbak/v2/shop/db/db-20261120T101500Z-0a1f/manifest.json",
		"other/kbak/v1/shop/db/db-20261120T101500Z-0a1f/manifest.json",
		"kbak/v1/shop/db/manifest.json",
		"kbak/v1/shop/db/db-20261120T101500Z-0a1f", // the directory itself
		"kbak/v1/Shop/db/db-20261120T101500Z-0a1f/manifest.json",
		"kbak/v1/shop/db/web-20261120T101500Z-0a1f/manifest.json",
		"kbak/v1/shop//db-20261120T101500Z-0a1f/manifest.json",
	} {
		if k, err := ParseKey(key); !errors.Is(err, ErrNotKbakKey) {
			t.Errorf("ParseKey(%q) = %+v, %v; want an error wrapping ErrNotKbakKey", key, k, err)
		}
	}
}

func TestNewID(t *testing.T) {
	now := time.Date(2026, 11, 20, 11, 15, 0, 999, time.FixedZone("CET", 3600))
	id, err := NewID("mariadb", now, bytes.NewReader([]byte{0x0a, 0x1f}))
	if err != nil {
		t.Fatal(err)
	}
	if want := "mariadb-20261120T101500Z-0a1f"; id != want {
		t.Fatalf("NewID = %q, want %q", id, want)
	}
	sts, created, err := ParseID(id)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 11, 20, 10, 15, 0, 0, time.UTC); sts != "mariadb" || !created.Equal(want) {
		t.Errorf("ParseID(%q) = %q, %v; want mariadb, %v", id, sts, created, want)
	}
	if _, err := NewLayout("shop", "mariadb", id, FormatArchive); err != nil {
		t.Errorf("NewLayout with a fresh id: %v", err)
	}
}

func TestNewIDErrors(t *testing.T) {
	now := time.Date(2026, 11, 20, 10, 15, 0, 0, time.UTC)
	if _, err := NewID("db", now, bytes.NewReader([]byte{1})); err == nil {
		t.Error("NewID with one random byte succeeded")
	}
	if _, err := NewID("Bad", now, bytes.NewReader([]byte{1, 2})); err == nil {
		t.Error("NewID with an invalid StatefulSet name succeeded")
	}
	long := strings.Repeat("a", 240)
	if _, err := NewID(long, now, bytes.NewReader([]byte{1, 2})); err == nil || !strings.Contains(err.Error(), "too long") {
		t.Errorf("NewID with a %d-character name = %v, want a too-long error", len(long), err)
	}
}

func TestIDsSortByTime(t *testing.T) {
	base := time.Date(2026, 1, 31, 23, 59, 59, 0, time.UTC)
	var ids []string
	var times []time.Time
	for i, d := range []time.Duration{0, time.Second, time.Hour, 40 * 24 * time.Hour, 400 * 24 * time.Hour} {
		// Random parts descending, so only the time can give the order.
		id, err := NewID("db", base.Add(d), bytes.NewReader([]byte{byte(0xff - i), 0}))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		times = append(times, base.Add(d))
	}
	shuffled := []string{ids[3], ids[0], ids[4], ids[2], ids[1]}
	slices.Sort(shuffled)
	if !slices.Equal(shuffled, ids) {
		t.Fatalf("sorted ids %v, want time order %v", shuffled, ids)
	}
	for i, id := range ids {
		if _, got, err := ParseID(id); err != nil || !got.Equal(times[i]) {
			t.Errorf("ParseID(%q) = %v, %v; want %v", id, got, err, times[i])
		}
	}
}

func TestParseIDRejects(t *testing.T) {
	for _, id := range []string{
		"",
		"latest",
		"20261120T101500Z-0a1f",
		"-20261120T101500Z-0a1f",
		"db-20261120T101500Z-0A1F",
		"db-20261120T101500Z-0a1",
		"db-20261320T101500Z-0a1f",
		"db_20261120T101500Z_0a1f",
		"db-20261120T101500-0a1ff",
		"Db-20261120T101500Z-0a1f",
		"db/x-20261120T101500Z-0a1f",
	} {
		if sts, tm, err := ParseID(id); err == nil {
			t.Errorf("ParseID(%q) = %q, %v; want an error", id, sts, tm)
		} else if !strings.Contains(err.Error(), "kbak list") {
			t.Errorf("ParseID(%q) error %q does not say how to find ids", id, err)
		}
	}
}
