// Command kbak backs up and restores the volumes of Kubernetes StatefulSets
// to an S3-compatible store.
//
// This is the only package that imports urfave/cli: every command here parses
// flags, builds its dependencies and calls one library function. Errors map to
// exit codes in one table (exitcode.go).
package main
