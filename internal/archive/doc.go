// Package archive is the byte path of the pipeline: a directory tree becomes a
// tar (PAX) stream compressed with zstd, and back. It knows nothing of
// Kubernetes or of stores; callers hash and upload what it writes.
package archive
