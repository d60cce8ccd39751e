// Package uploader is the end of the backup pipeline and the start of the
// restore pipeline: the Store interface and its implementations (S3 and a
// local directory), with streaming multipart uploads.
//
// It knows nothing of Kubernetes or of kbak's repository layout: keys come
// from the caller (see internal/catalog for the one type that derives them).
package uploader
