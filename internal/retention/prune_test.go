package retention

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/repo"
	"github.com/kbak/kbak/uploader"
)

type fakeCatalog struct {
	list    []catalog.Summary
	deleted []string
	failOn  string
	// locked: Delete returns this error (and, unless the backup is kept
	// whole, its manifest).
	locked map[string]error
}

var _ Catalog = &fakeCatalog{}

func (f *fakeCatalog) SweepData(context.Context, repo.SweepOptions) (*repo.SweepResult, error) {
	return nil, nil
}

func (f *fakeCatalog) List(context.Context, catalog.Filter) ([]catalog.Summary, error) {
	return f.list, nil
}

func (f *fakeCatalog) Delete(_ context.Context, id string) (*catalog.Manifest, error) {
	if id == f.failOn {
		return nil, errors.New("boom")
	}
	if err, ok := f.locked[id]; ok {
		var lb *catalog.LockedBackup
		if errors.As(err, &lb) && lb.Listed {
			return nil, err
		}
		f.deleted = append(f.deleted, id)
		return &catalog.Manifest{ID: id}, err
	}
	f.deleted = append(f.deleted, id)
	return &catalog.Manifest{ID: id}, nil
}

func summary(ns, sts, id string, hoursAgo int, status catalog.Status) catalog.Summary {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	return catalog.Summary{ID: id, Namespace: ns, StatefulSet: sts, Created: now.Add(-time.Duration(hoursAgo) * time.Hour), Status: status}
}

func TestPruneGroupsByStatefulSet(t *testing.T) {
	cat := &fakeCatalog{list: []catalog.Summary{
		summary("shop", "db", "db-3", 1, catalog.StatusCompleted),
		summary("shop", "db", "db-2", 2, catalog.StatusCompleted),
		summary("shop", "db", "db-1", 3, catalog.StatusPartiallyFailed),
		summary("shop", "cache", "cache-2", 5, catalog.StatusCompleted),
		summary("shop", "cache", "cache-1", 6, catalog.StatusCompleted),
		{ID: "bad-1", Namespace: "shop", StatefulSet: "db", Error: "corrupt manifest"},
	}}
	res, err := Prune(context.Background(), cat, catalog.Filter{}, Policy{KeepLast: 1}, false)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(cat.deleted)
	if want := []string{"cache-1", "db-1", "db-2"}; !slices.Equal(cat.deleted, want) {
		t.Errorf("deleted %v, want %v", cat.deleted, want)
	}
	if len(res.Keep) != 2 || len(res.Deleted) != 3 {
		t.Errorf("keep %d deleted %d, want 2 and 3", len(res.Keep), len(res.Deleted))
	}
}

func TestPruneDryRunDeletesNothing(t *testing.T) {
	cat := &fakeCatalog{list: []catalog.Summary{
		summary("shop", "db", "db-2", 1, catalog.StatusCompleted),
		summary("shop", "db", "db-1", 2, catalog.StatusCompleted),
	}}
	res, err := Prune(context.Background(), cat, catalog.Filter{}, Policy{KeepLast: 1}, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(cat.deleted) != 0 || len(res.Remove) != 1 || res.Remove[0].Item.ID != "db-1" {
		t.Errorf("dry run deleted %v, remove %+v", cat.deleted, res.Remove)
	}
}

func TestPruneGoesOnPastErrors(t *testing.T) {
	cat := &fakeCatalog{failOn: "db-2", list: []catalog.Summary{
		summary("shop", "db", "db-3", 1, catalog.StatusCompleted),
		summary("shop", "db", "db-2", 2, catalog.StatusCompleted),
		summary("shop", "db", "db-1", 3, catalog.StatusCompleted),
	}}
	_, err := Prune(context.Background(), cat, catalog.Filter{}, Policy{KeepLast: 1}, false)
	if err == nil || !slices.Equal(cat.deleted, []string{"db-1"}) {
		t.Errorf("err %v, deleted %v: want an error and db-1 deleted", err, cat.deleted)
	}
}

func TestPruneRejectsEmptyPolicy(t *testing.T) {
	cat := &fakeCatalog{list: []catalog.Summary{summary("shop", "db", "db-1", 1, catalog.StatusCompleted)}}
	if _, err := Prune(context.Background(), cat, catalog.Filter{}, Policy{}, false); err == nil {
		t.Fatal("empty policy accepted")
	}
	if len(cat.deleted) != 0 {
		t.Errorf("deleted %v with an invalid policy", cat.deleted)
	}
}

// Backups that Object Lock keeps are no error: they are reported, and only
// those deleted from the listing count as deleted.
func TestPruneSkipsLockedBackups(t *testing.T) {
	until := time.Date(2026, 12, 22, 12, 0, 0, 0, time.UTC)
	cat := &fakeCatalog{list: []catalog.Summary{
		summary("shop", "db", "db-4", 1, catalog.StatusCompleted),
		summary("shop", "db", "db-3", 2, catalog.StatusCompleted),
		summary("shop", "db", "db-2", 3, catalog.StatusCompleted),
		summary("shop", "db", "db-1", 4, catalog.StatusCompleted),
	}, locked: map[string]error{
		"db-3": &catalog.LockedBackup{ID: "db-3", Listed: true, LockedObjects: repo.LockedObjects{Objects: 5, Until: until}},
		"db-2": &catalog.LockedBackup{ID: "db-2", LockedObjects: repo.LockedObjects{Objects: 2, Until: until}},
		"db-1": fmt.Errorf("delete backup db-1: delete x: %w", &uploader.LockedError{Key: "x", Until: until}),
	}}
	res, err := Prune(context.Background(), cat, catalog.Filter{}, Policy{KeepLast: 1}, false)
	if err != nil {
		t.Fatalf("prune with locked backups: %v, want no error", err)
	}
	if len(res.Locked) != 3 {
		t.Fatalf("locked %+v, want db-1, db-2 and db-3", res.Locked)
	}
	if lb, ok := res.LockedBackup("db-3"); !ok || !lb.Listed || lb.Objects != 5 || !lb.Until.Equal(until) {
		t.Errorf("db-3: %+v, want it kept whole", lb)
	}
	if lb, ok := res.LockedBackup("db-1"); !ok || lb.Listed || lb.Objects != 1 || !lb.Until.Equal(until) {
		t.Errorf("db-1: %+v, want one object kept", lb)
	}
	var deleted []string
	for _, m := range res.Deleted {
		deleted = append(deleted, m.ID)
	}
	slices.Sort(deleted)
	if !slices.Equal(deleted, []string{"db-1", "db-2"}) {
		t.Errorf("deleted %v, want db-1 and db-2 (db-3 stays listed)", deleted)
	}
}
