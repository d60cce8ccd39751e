//go:build !linux

package mover

// fsUsage is known on Linux only, where movers run.
func fsUsage(string) (size, used int64, ok bool) { return 0, 0, false }
