// Package hinttest spells settings for the tests of the packages that
// advise, as the command line does, so that they can check the words a
// person at the command line reads; cmd/kbak's tests hold its own spelling
// to this one.
package hinttest

import "github.com/kbak/kbak/internal/hint"

// Flags spells r as the command line's flag.
func Flags(r hint.Ref) string {
	flag := "--" + string(r.Setting)
	if r.Setting == hint.Namespace {
		flag = "-n"
	}
	if r.Value == "" {
		return flag
	}
	return flag + " " + r.Value
}
