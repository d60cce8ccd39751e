package uploader_test

import (
	"testing"

	"github.com/kbak/kbak/uploader"
)

func TestPartSize(t *testing.T) {
	const MiB, GiB, TiB = uploader.MiB, uploader.GiB, uploader.TiB
	tests := []struct {
		size, configured int64
	}{
		{0, 0}, {1, 0}, {5 * MiB, 0}, {16*MiB - 1, 0}, {16 * MiB, 0}, {1 * GiB, 0},
		{100 * GiB, 0}, {140 * GiB, 0}, {160 * GiB, 0}, {200 * GiB, 0}, {1 * TiB, 0},
		{3*TiB + 12345, 0}, {5*TiB - 1, 0}, {5 * TiB, 0},
		{-1, 0}, {-1, 5 * MiB}, {-1, 1}, {-1, 100*MiB + 1},
		{40 * MiB, 5 * MiB}, {5 * TiB, 5 * MiB}, {1 * TiB, 1}, {10 * GiB, 7*MiB + 3},
	}
	for _, tc := range tests {
		ps := uploader.PartSize(tc.size, tc.configured)
		if ps < uploader.MinPartSize || ps > uploader.MaxPartSize {
			t.Errorf("PartSize(%d, %d) = %d, outside [%d, %d]", tc.size, tc.configured, ps, uploader.MinPartSize, uploader.MaxPartSize)
		}
		if ps%MiB != 0 {
			t.Errorf("PartSize(%d, %d) = %d, not a whole number of MiB", tc.size, tc.configured, ps)
		}
		if tc.size >= 0 {
			// The object, and one 1/8 larger than announced, fit in MaxParts.
			for _, n := range []int64{tc.size, tc.size + tc.size/8} {
				if parts := (n + ps - 1) / ps; parts > uploader.MaxParts {
					t.Errorf("PartSize(%d, %d) = %d: %d bytes need %d parts, more than %d", tc.size, tc.configured, ps, n, parts, uploader.MaxParts)
				}
			}
		}
		switch {
		case tc.configured >= uploader.MinPartSize && ps < tc.configured:
			t.Errorf("PartSize(%d, %d) = %d, below the configured size", tc.size, tc.configured, ps)
		case tc.configured == 0 && tc.size >= 0 && ps < uploader.DefaultPartSize:
			t.Errorf("PartSize(%d, 0) = %d, below the default %d", tc.size, ps, uploader.DefaultPartSize)
		case tc.configured == 0 && tc.size < 0 && ps != uploader.UnknownSizePartSize:
			t.Errorf("PartSize(-1, 0) = %d, want %d", ps, uploader.UnknownSizePartSize)
		}
		// The configured or default size is kept when it is enough: no
		// part is larger than it must be, rounded up to the next MiB.
		base := max(tc.configured, uploader.MinPartSize)
		if tc.configured == 0 {
			base = uploader.DefaultPartSize
			if tc.size < 0 {
				base = uploader.UnknownSizePartSize
			}
		}
		if tc.size >= 0 {
			need := (tc.size + tc.size/8 + uploader.MaxParts - 1) / uploader.MaxParts
			if want := (max(base, need) + MiB - 1) / MiB * MiB; ps != want {
				t.Errorf("PartSize(%d, %d) = %d, want %d", tc.size, tc.configured, ps, want)
			}
		}
	}
}
