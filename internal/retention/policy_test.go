package retention

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kbak/kbak/internal/hint"
	"github.com/kbak/kbak/internal/hint/hinttest"
)

// at parses a UTC time in the layout 2006-01-02T15:04.
func at(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse("2006-01-02T15:04", s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

// ok and failed build items whose id is their time, for readable tables.
func ok(t *testing.T, s string) Item     { return Item{ID: s, Time: at(t, s), Successful: true} }
func failed(t *testing.T, s string) Item { return Item{ID: s, Time: at(t, s)} }

// render writes decisions as "id: reason; reason".
func render(ds []Decision) []string {
	out := make([]string, 0, len(ds))
	for _, d := range ds {
		out = append(out, d.Item.ID+": "+strings.Join(d.Reasons, "; "))
	}
	return out
}

func TestPolicyApply(t *testing.T) {
	minus5 := time.FixedZone("UTC-5", -5*3600)
	tests := []struct {
		name   string
		policy Policy
		items  func(t *testing.T) []Item
		keep   []string
		remove []string
	}{
		{
			name:   "keep last counts the newest",
			policy: Policy{KeepLast: 2},
			items: func(t *testing.T) []Item {
				return []Item{ok(t, "2026-11-20T10:00"), ok(t, "2026-11-20T11:00"), ok(t, "2026-11-20T12:00"), ok(t, "2026-11-20T13:00")}
			},
			keep: []string{
				"2026-11-20T13:00: newest successful; last 2",
				"2026-11-20T12:00: last 2",
			},
			remove: []string{
				"2026-11-20T11:00: no rule of policy last 2 keeps it",
				"2026-11-20T10:00: no rule of policy last 2 keeps it",
			},
		},
		{
			name:   "daily keeps the newest of each day",
			policy: Policy{Daily: 2},
			items: func(t *testing.T) []Item {
				return []Item{
					ok(t, "2026-11-18T10:00"), ok(t, "2026-11-18T20:00"),
					ok(t, "2026-11-19T08:00"),
					ok(t, "2026-11-20T09:00"), ok(t, "2026-11-20T18:00"),
				}
			},
			keep: []string{
				"2026-11-20T18:00: newest successful; daily 2026-11-20",
				"2026-11-19T08:00: daily 2026-11-19",
			},
			remove: []string{
				"2026-11-20T09:00: no rule of policy daily 2 keeps it",
				"2026-11-18T20:00: no rule of policy daily 2 keeps it",
				"2026-11-18T10:00: no rule of policy daily 2 keeps it",
			},
		},
		{
			name:   "days without backups do not use up the count",
			policy: Policy{Daily: 2},
			items: func(t *testing.T) []Item {
				return []Item{ok(t, "2026-11-01T01:00"), ok(t, "2026-11-05T01:00"), ok(t, "2026-11-10T01:00")}
			},
			keep: []string{
				"2026-11-10T01:00: newest successful; daily 2026-11-10",
				"2026-11-05T01:00: daily 2026-11-05",
			},
			remove: []string{"2026-11-01T01:00: no rule of policy daily 2 keeps it"},
		},
		{
			name:   "hourly",
			policy: Policy{Hourly: 2},
			items: func(t *testing.T) []Item {
				return []Item{ok(t, "2026-11-20T09:10"), ok(t, "2026-11-20T09:50"), ok(t, "2026-11-20T10:05"), ok(t, "2026-11-20T10:55")}
			},
			keep: []string{
				"2026-11-20T10:55: newest successful; hourly 2026-11-20T10",
				"2026-11-20T09:50: hourly 2026-11-20T09",
			},
			remove: []string{
				"2026-11-20T10:05: no rule of policy hourly 2 keeps it",
				"2026-11-20T09:10: no rule of policy hourly 2 keeps it",
			},
		},
		{
			name:   "weekly uses ISO weeks across the new year",
			policy: Policy{Weekly: 2},
			items: func(t *testing.T) []Item {
				// 2026-12-27 is a Sunday (week 52); 2026-12-28 to 2027-01-03 is 2026-W53.
				return []Item{ok(t, "2026-12-27T12:00"), ok(t, "2026-12-28T12:00"), ok(t, "2027-01-02T12:00")}
			},
			keep: []string{
				"2027-01-02T12:00: newest successful; weekly 2026-W53",
				"2026-12-27T12:00: weekly 2026-W52",
			},
			remove: []string{"2026-12-28T12:00: no rule of policy weekly 2 keeps it"},
		},
		{
			name:   "rules combine and every reason is given",
			policy: Policy{KeepLast: 1, Daily: 2, Monthly: 3},
			items: func(t *testing.T) []Item {
				return []Item{
					ok(t, "2026-09-15T00:00"), ok(t, "2026-10-31T23:00"),
					ok(t, "2026-11-19T06:00"), ok(t, "2026-11-20T06:00"), ok(t, "2026-11-20T07:00"),
				}
			},
			keep: []string{
				"2026-11-20T07:00: newest successful; last 1; daily 2026-11-20; monthly 2026-11",
				"2026-11-19T06:00: daily 2026-11-19",
				"2026-10-31T23:00: monthly 2026-10",
				"2026-09-15T00:00: monthly 2026-09",
			},
			remove: []string{"2026-11-20T06:00: no rule of policy last 1, daily 2, monthly 3 keeps it"},
		},
		{
			name:   "failures do not count and older ones go",
			policy: Policy{Daily: 2},
			items: func(t *testing.T) []Item {
				return []Item{
					ok(t, "2026-11-18T01:00"), failed(t, "2026-11-19T01:00"),
					ok(t, "2026-11-20T01:00"), failed(t, "2026-11-21T01:00"),
				}
			},
			keep: []string{
				"2026-11-21T01:00: not successful, newer than any successful backup",
				"2026-11-20T01:00: newest successful; daily 2026-11-20",
				"2026-11-18T01:00: daily 2026-11-18",
			},
			remove: []string{"2026-11-19T01:00: not successful, older than the newest successful backup"},
		},
		{
			name:   "keep last skips failures",
			policy: Policy{KeepLast: 2},
			items: func(t *testing.T) []Item {
				return []Item{ok(t, "2026-11-18T01:00"), ok(t, "2026-11-19T01:00"), failed(t, "2026-11-19T02:00"), ok(t, "2026-11-20T01:00")}
			},
			keep: []string{
				"2026-11-20T01:00: newest successful; last 2",
				"2026-11-19T01:00: last 2",
			},
			remove: []string{
				"2026-11-19T02:00: not successful, older than the newest successful backup",
				"2026-11-18T01:00: no rule of policy last 2 keeps it",
			},
		},
		{
			name:   "no successful backup removes nothing",
			policy: Policy{KeepLast: 1},
			items: func(t *testing.T) []Item {
				return []Item{failed(t, "2026-11-19T01:00"), failed(t, "2026-11-20T01:00")}
			},
			keep: []string{
				"2026-11-20T01:00: not successful, newer than any successful backup",
				"2026-11-19T01:00: not successful, newer than any successful backup",
			},
		},
		{
			name:   "an empty policy still keeps the newest successful",
			policy: Policy{},
			items: func(t *testing.T) []Item {
				return []Item{ok(t, "2026-11-19T01:00"), ok(t, "2026-11-20T01:00"), failed(t, "2026-11-20T02:00")}
			},
			keep: []string{
				"2026-11-20T02:00: not successful, newer than any successful backup",
				"2026-11-20T01:00: newest successful",
			},
			remove: []string{"2026-11-19T01:00: no rule of policy none keeps it"},
		},
		{
			name:   "days begin in the policy's location",
			policy: Policy{Daily: 2, Location: minus5},
			items: func(t *testing.T) []Item {
				// Two UTC days, but both on 2026-11-20 five hours west.
				return []Item{ok(t, "2026-11-20T23:30"), ok(t, "2026-11-21T00:30"), ok(t, "2026-11-19T12:00")}
			},
			keep: []string{
				"2026-11-21T00:30: newest successful; daily 2026-11-20",
				"2026-11-19T12:00: daily 2026-11-19",
			},
			remove: []string{"2026-11-20T23:30: no rule of policy daily 2 keeps it"},
		},
		{
			name:   "days are UTC without a location",
			policy: Policy{Daily: 2},
			items: func(t *testing.T) []Item {
				return []Item{ok(t, "2026-11-20T23:30"), ok(t, "2026-11-21T00:30"), ok(t, "2026-11-19T12:00")}
			},
			keep: []string{
				"2026-11-21T00:30: newest successful; daily 2026-11-21",
				"2026-11-20T23:30: daily 2026-11-20",
			},
			remove: []string{"2026-11-19T12:00: no rule of policy daily 2 keeps it"},
		},
		{
			name:   "equal times order by id",
			policy: Policy{KeepLast: 1},
			items: func(t *testing.T) []Item {
				tm := at(t, "2026-11-20T01:00")
				return []Item{{ID: "db-a", Time: tm, Successful: true}, {ID: "db-b", Time: tm, Successful: true}}
			},
			keep:   []string{"db-b: newest successful; last 1"},
			remove: []string{"db-a: no rule of policy last 1 keeps it"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			items := tt.items(t)
			for _, order := range []string{"given", "reversed"} {
				in := slices.Clone(items)
				if order == "reversed" {
					slices.Reverse(in)
				}
				keep, remove := tt.policy.Apply(in)
				if got := render(keep); !slices.Equal(got, tt.keep) {
					t.Errorf("%s order: keep\n got %q\nwant %q", order, got, tt.keep)
				}
				if got := render(remove); !slices.Equal(got, tt.remove) {
					t.Errorf("%s order: remove\n got %q\nwant %q", order, got, tt.remove)
				}
				if len(keep)+len(remove) != len(items) {
					t.Errorf("%s order: %d decisions for %d items", order, len(keep)+len(remove), len(items))
				}
			}
		})
	}
}

func TestPolicyApplyDoesNotReorderInput(t *testing.T) {
	items := []Item{ok(t, "2026-11-19T01:00"), ok(t, "2026-11-20T01:00")}
	before := slices.Clone(items)
	Policy{KeepLast: 1}.Apply(items)
	if !slices.Equal(items, before) {
		t.Errorf("Apply reordered its input: %v", items)
	}
}

func TestPolicyValidate(t *testing.T) {
	tests := []struct {
		name    string
		policy  Policy
		wantErr string
	}{
		{"keep last", Policy{KeepLast: 1}, ""},
		{"monthly only", Policy{Monthly: 12}, ""},
		{"empty", Policy{}, "retention policy keeps nothing: set at least one of --keep-last"},
		{"negative", Policy{Daily: 7, Weekly: -1}, "--keep-weekly is -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.policy.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			// As the command line shows it.
			case tt.wantErr != "" && (err == nil || !strings.Contains(hint.Render(err, hinttest.Flags), tt.wantErr)):
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}
