package restore

import (
	"strconv"
	"strings"

	"github.com/kbak/kbak/internal/hint"
)

// ParseOrdinals reads a comma-separated list of ordinals, e.g. "0,2".
func ParseOrdinals(s string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 {
			return nil, hint.Errorf("%w: %s %q: %q is not an ordinal: give non-negative numbers separated by commas, e.g. 0,2", ErrUsage, hint.Of(hint.Ordinals), s, f)
		}
		out = append(out, n)
	}
	return out, nil
}

// ParseStorageClassMap reads OLD=NEW pairs; an empty OLD stands for claims
// that named no storage class.
func ParseStorageClassMap(pairs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, p := range pairs {
		from, to, ok := strings.Cut(p, "=")
		from, to = strings.TrimSpace(from), strings.TrimSpace(to)
		if !ok || to == "" {
			return nil, hint.Errorf("%w: %s %q: write OLD=NEW, e.g. gp2=gp3 (an empty OLD maps claims without a class)", ErrUsage, hint.Of(hint.StorageClassMap), p)
		}
		if prev, dup := out[from]; dup && prev != to {
			return nil, hint.Errorf("%w: %s maps %s twice (to %s and %s): give it once", ErrUsage, hint.Of(hint.StorageClassMap), displayClass(from), prev, to)
		}
		out[from] = to
	}
	return out, nil
}
