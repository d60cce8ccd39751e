package backup

import (
	"testing"
	"time"
)

func TestSpreadOf(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC)
	tests := []struct {
		times []time.Time
		want  time.Duration
	}{
		{nil, 0},
		{[]time.Time{t0}, 0},
		{[]time.Time{t0.Add(3 * time.Second), t0, t0.Add(time.Second)}, 3 * time.Second},
	}
	for _, tt := range tests {
		if got := spreadOf(tt.times); got != tt.want {
			t.Errorf("spreadOf(%v) = %s, want %s", tt.times, got, tt.want)
		}
	}
}
