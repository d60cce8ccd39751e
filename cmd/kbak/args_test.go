package main

import (
	"io"
	"slices"
	"testing"
)

func TestPermuteArgs(t *testing.T) {
	app := newApp(io.Discard, io.Discard)
	tests := []struct {
		in, want []string
	}{
		{[]string{"kbak"}, []string{"kbak"}},
		{[]string{"kbak", "list"}, []string{"kbak", "list"}},
		{[]string{"kbak", "describe", "db-1", "-o", "json"}, []string{"kbak", "describe", "-o", "json", "--", "db-1"}},
		{[]string{"kbak", "describe", "-o=json", "db-1"}, []string{"kbak", "describe", "-o=json", "--", "db-1"}},
		{[]string{"kbak", "delete", "db-1", "--yes"}, []string{"kbak", "delete", "--yes", "--", "db-1"}},
		{[]string{"kbak", "schedule", "create", "nightly", "sts/db", "--cron", "@daily"},
			[]string{"kbak", "schedule", "create", "--cron", "@daily", "--", "nightly", "sts/db"}},
		{[]string{"kbak", "schedule", "create", "nightly", "sts/db", "--dry-run", "-o", "json"},
			[]string{"kbak", "schedule", "create", "--dry-run=client", "-o", "json", "--", "nightly", "sts/db"}},
		{[]string{"kbak", "prune", "--dry-run", "--keep-last", "1"}, []string{"kbak", "prune", "--dry-run", "--keep-last", "1"}},
		{[]string{"kbak", "describe", "--", "-odd"}, []string{"kbak", "describe", "--", "-odd"}},
		{[]string{"kbak", "nosuch", "-x"}, []string{"kbak", "nosuch", "-x"}},
	}
	for _, tt := range tests {
		if got := permuteArgs(app, tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("permuteArgs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
