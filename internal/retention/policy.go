package retention

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kbak/kbak/internal/hint"
)

// Policy says which backups to keep, with restic's semantics: keep the last
// KeepLast successful backups, and the newest successful backup in each of the
// last Hourly hours, Daily days, Weekly ISO weeks and Monthly months that have
// one. A backup kept by several rules is kept once, with every reason.
type Policy struct {
	KeepLast int
	Hourly   int
	Daily    int
	Weekly   int
	Monthly  int
	// Location sets where hours, days, weeks and months begin; nil is UTC.
	Location *time.Location
}

// Item is one backup as retention sees it.
type Item struct {
	ID   string
	Time time.Time
	// Namespace and StatefulSet say whose backup it is, for the report;
	// the rules do not read them.
	Namespace, StatefulSet string
	// Successful is true for Completed backups. Only they count for the
	// rules: a run of failures must not push good backups out.
	Successful bool
}

// Decision is the verdict on one item and why.
type Decision struct {
	Item    Item
	Reasons []string
}

// Validate rejects policies that would keep nothing but the newest backup,
// which is almost always a mistake in a flag.
func (p Policy) Validate() error {
	for _, f := range []struct {
		setting hint.Setting
		n       int
	}{{hint.KeepLast, p.KeepLast}, {hint.KeepHourly, p.Hourly}, {hint.KeepDaily, p.Daily}, {hint.KeepWeekly, p.Weekly}, {hint.KeepMonthly, p.Monthly}} {
		if f.n < 0 {
			return hint.Errorf("retention policy: %s is %d, want 0 or more", hint.Of(f.setting), f.n)
		}
	}
	if p.KeepLast+p.Hourly+p.Daily+p.Weekly+p.Monthly == 0 {
		return hint.Errorf("retention policy keeps nothing: set at least one of %s, %s, %s, %s, %s",
			hint.Of(hint.KeepLast), hint.Of(hint.KeepHourly), hint.Of(hint.KeepDaily), hint.Of(hint.KeepWeekly), hint.Of(hint.KeepMonthly))
	}
	return nil
}

// String renders the policy as its non-zero rules, e.g. "last 3, daily 7".
func (p Policy) String() string {
	var parts []string
	for _, r := range p.rules() {
		if r.count > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", r.name, r.count))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

type rule struct {
	name   string
	count  int
	bucket func(time.Time) string // nil for keep-last: every backup is its own bucket
}

func (p Policy) rules() []rule {
	return []rule{
		{"last", p.KeepLast, nil},
		{"hourly", p.Hourly, func(t time.Time) string { return t.Format("2006-01-02T15") }},
		{"daily", p.Daily, func(t time.Time) string { return t.Format("2006-01-02") }},
		{"weekly", p.Weekly, func(t time.Time) string {
			y, w := t.ISOWeek()
			return fmt.Sprintf("%04d-W%02d", y, w)
		}},
		{"monthly", p.Monthly, func(t time.Time) string { return t.Format("2006-01") }},
	}
}

// Apply splits items into those to keep and those to remove, both newest
// first. It is a pure function of its input. The newest successful backup is
// always kept, whatever the policy. Unsuccessful backups newer than it are
// kept (they are the latest news, and may be retried); older ones are removed.
// With no successful backup at all, nothing is removed.
func (p Policy) Apply(items []Item) (keep, remove []Decision) {
	loc := p.Location
	if loc == nil {
		loc = time.UTC
	}
	sorted := slices.Clone(items)
	slices.SortStableFunc(sorted, func(a, b Item) int {
		if c := b.Time.Compare(a.Time); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})

	rules := p.rules()
	left := make([]int, len(rules))
	last := make([]string, len(rules))
	for i, r := range rules {
		left[i] = r.count
	}
	seenSuccess := false
	for _, it := range sorted {
		var reasons []string
		if !it.Successful {
			if seenSuccess {
				remove = append(remove, Decision{Item: it, Reasons: []string{"not successful, older than the newest successful backup"}})
			} else {
				keep = append(keep, Decision{Item: it, Reasons: []string{"not successful, newer than any successful backup"}})
			}
			continue
		}
		if !seenSuccess {
			reasons = append(reasons, "newest successful")
			seenSuccess = true
		}
		t := it.Time.In(loc)
		for i, r := range rules {
			if left[i] <= 0 {
				continue
			}
			if r.bucket == nil {
				reasons = append(reasons, fmt.Sprintf("last %d", r.count))
				left[i]--
				continue
			}
			b := r.bucket(t)
			if b == last[i] {
				continue // a newer backup already holds this bucket
			}
			last[i] = b
			left[i]--
			reasons = append(reasons, r.name+" "+b)
		}
		if len(reasons) > 0 {
			keep = append(keep, Decision{Item: it, Reasons: reasons})
		} else {
			remove = append(remove, Decision{Item: it, Reasons: []string{"no rule of policy " + p.String() + " keeps it"}})
		}
	}
	return keep, remove
}
