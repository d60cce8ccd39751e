// Command kbak backs up and restores the volumes of Kubernetes StatefulSets
// to an S3-compatible store.
//
// This is the only package that imports urfave/cli: every command here parses
// flags, builds its dependencies, calls library functions and prints what they
// return. Errors map to exit codes in one table (exitcode.go); the advice in
// them is spelled as this command's flags (advice.go).
package main
