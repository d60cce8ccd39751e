package uploader

import (
	"fmt"
	"log/slog"
)

// Secret holds a credential. Every way of printing it (fmt verbs, slog,
// JSON) gives a placeholder; only an explicit string(s) conversion reveals it.
type Secret string

const redacted = "[REDACTED]"

func (s Secret) String() string   { return s.mask() }
func (s Secret) GoString() string { return `uploader.Secret("` + s.mask() + `")` }

// Format covers %v, %s, %q, %x and the rest, which would otherwise print the
// underlying string for some verbs.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(s.mask())) }

func (s Secret) LogValue() slog.Value { return slog.StringValue(s.mask()) }

func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + s.mask() + `"`), nil }

func (s Secret) MarshalText() ([]byte, error) { return []byte(s.mask()), nil }

func (s Secret) mask() string {
	if s == "" {
		return ""
	}
	return redacted
}
