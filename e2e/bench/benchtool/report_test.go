package main

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestAdvantage(t *testing.T) {
	for _, tc := range []struct {
		name        string
		kbak, other float64
		higher      bool
		want        float64
		wantOK      bool
	}{
		{"rate: kbak twice as fast", 200, 100, true, 2, true},
		{"seconds: kbak twice as fast", 1, 2, false, 2, true},
		{"bytes: kbak adds a quarter", 10, 40, false, 4, true},
		{"kbak adds nothing", 0, 40, false, 0, false},
		{"other rate zero", 10, 0, true, 0, false},
	} {
		got, ok := advantage(tc.kbak, tc.other, tc.higher)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("%s: advantage = %v, %v; want %v, %v", tc.name, got, ok, tc.want, tc.wantOK)
		}
	}
}

func TestSummarizeTargets(t *testing.T) {
	s := samples{"gw": {
		"full.mbps":     {"kbak": {300, 310, 290}, "kbak-plain": {320, 330, 310}, "restic": {150, 140, 160}, "kopia": {200, 220, 210}},
		"unchanged.pct": {"kbak": {0.5}},
	}}
	res := summarize(s, []string{"gw"}, map[string]any{})
	rows := res.Servers[0].Rows
	if len(rows) != 2 {
		t.Fatalf("got %d rows, want 2", len(rows))
	}
	full := rows[0]
	if full.Median["kbak"] != 300 || full.KbakVs["restic"] != 2 {
		t.Errorf("full backup: median %v, kbak vs %v; want kbak 300 and 2x restic", full.Median, full.KbakVs)
	}
	if full.Met == nil || !*full.Met {
		t.Errorf("full backup: 2.0x restic, 1.43x kopia and 0.94x kbak-plain should meet the target")
	}
	// Encryption costing more than a tenth misses the target.
	s["gw"]["full.mbps"]["kbak-plain"] = []float64{400, 400, 400}
	if full := summarize(s, []string{"gw"}, map[string]any{}).Servers[0].Rows[0]; full.Met == nil || *full.Met {
		t.Errorf("full backup at 0.75x kbak-plain should miss the target")
	}
	if rows[1].Met == nil || !*rows[1].Met {
		t.Errorf("unchanged: 0.5 %% should meet the target")
	}
}

func TestSmallFilesDeterministic(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	for _, dir := range []string{a, b} {
		if err := smallFilesCmd(t.Context(), []string{"--out", dir, "--count", "1500", "--seed", "7"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"t00/m0/f000000.txt", "t00/m1/f001499.txt"} {
		x, err := os.ReadFile(filepath.Join(a, name))
		if err != nil {
			t.Fatal(err)
		}
		y, err := os.ReadFile(filepath.Join(b, name))
		if err != nil {
			t.Fatal(err)
		}
		if string(x) != string(y) || len(x) < smallMin || len(x) > smallMax {
			t.Errorf("%s: %d and %d bytes, want the same content of %d to %d bytes", name, len(x), len(y), smallMin, smallMax)
		}
	}
}

func TestRowTextLength(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 100, 8192} {
		if got := len(rowText(rng, n)); got != n {
			t.Errorf("rowText(%d) has %d bytes", n, got)
		}
	}
}
