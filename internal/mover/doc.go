// Package mover is what runs inside a mover pod (and in `kbak mover` on a
// workstation): it streams one directory to one object of the store, or one
// object back into a directory, reporting progress as JSON lines and ending
// with a result object.
package mover
