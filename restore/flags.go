package restore

import (
	"fmt"
	"strconv"
	"strings"
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
			return nil, fmt.Errorf("%w: --ordinals %q: %q is not an ordinal: give non-negative numbers separated by commas, e.g. 0,2", ErrUsage, s, f)
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
			return nil, fmt.Errorf("%w: --storage-class-map %q: write OLD=NEW, e.g. gp2=gp3 (an empty OLD maps claims without a class)", ErrUsage, p)
		}
		if prev, dup := out[from]; dup && prev != to {
			return nil, fmt.Errorf("%w: --storage-class-map maps %s twice (to %s and %s): give it once", ErrUsage, displayClass(from), prev, to)
		}
		out[from] = to
	}
	return out, nil
}
