// Package e2e holds kbak's end-to-end tests, run with the build tag e2e
// against a real single-node cluster and a real S3 server that the scripts in
// this folder start on the local machine (make e2e).
package e2e
