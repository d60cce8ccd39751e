//go:build !linux

package archive

import (
	"context"
	"errors"
	"io"
)

// Write needs Linux file calls (SEEK_DATA, xattrs); movers run on Linux.
func Write(ctx context.Context, dir string, w io.Writer, opts WriteOptions) (Stats, error) {
	return Stats{}, errors.ErrUnsupported
}

// Extract needs Linux file calls (openat2, *at syscalls); movers run on Linux.
func Extract(ctx context.Context, r io.Reader, dir string, opts ExtractOptions) (Stats, error) {
	return Stats{}, errors.ErrUnsupported
}

// ExtractTar needs Linux file calls (openat2, *at syscalls); movers run on Linux.
func ExtractTar(ctx context.Context, r io.Reader, dir string, opts ExtractOptions) (Stats, error) {
	return Stats{}, errors.ErrUnsupported
}

// ExtractRecipe needs Linux file calls (openat2, *at syscalls); movers run on Linux.
func ExtractRecipe(ctx context.Context, recipe io.Reader, dir string, opts ExtractOptions, data DataFunc) (Stats, error) {
	return Stats{}, errors.ErrUnsupported
}
