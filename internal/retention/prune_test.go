package retention

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/repo"
)

type fakeCatalog struct {
	list    []catalog.Summary
	deleted []string
	failOn  string
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
