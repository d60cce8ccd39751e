package main

import "github.com/kbak/kbak/internal/hint"

// flagSpelling names a setting as the command line's flag. The libraries
// only name settings (package hint); the words that tell a person which
// flag to pass are this command's.
func flagSpelling(r hint.Ref) string {
	flag := "--" + string(r.Setting)
	if r.Setting == hint.Namespace {
		flag = "-n"
	}
	if r.Value == "" {
		return flag
	}
	return flag + " " + r.Value
}
