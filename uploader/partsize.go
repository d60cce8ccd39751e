package uploader

// S3 multipart limits and kbak's choices within them.
const (
	MiB = 1 << 20
	GiB = 1 << 30
	TiB = 1 << 40

	// MinPartSize is the smallest part S3 accepts (except the last one).
	MinPartSize = 5 * MiB
	// MaxPartSize is the largest part S3 accepts.
	MaxPartSize = 5 * GiB
	// MaxParts is the most parts one multipart upload may have.
	MaxParts = 10000
	// MaxObjectSize is the largest S3 object.
	MaxObjectSize = 5 * TiB

	// DefaultPartSize is used for objects whose expected size fits in
	// MaxParts parts of it: large enough to keep request overhead low,
	// small enough that PartSize x (Concurrency+1) stays modest in a mover
	// pod.
	DefaultPartSize = 16 * MiB
	// UnknownSizePartSize is used when the caller does not know the size.
	// Parts must be the same size (except the last) on some servers, so the
	// size cannot grow as the stream goes on; 64 MiB parts allow objects up
	// to 625 GiB at 320 MiB of buffers with 4 parts in flight. Callers that
	// can (a volume's capacity) pass a size hint instead.
	UnknownSizePartSize = 64 * MiB
)

// PartSize returns the multipart part size for an object of expectedSize
// bytes (-1 when unknown), given the configured part size (0 for automatic).
//
// The expected size is a hint (a compressed archive may come out larger than
// the volume it was made from), so the choice keeps 1/8 headroom: an object
// up to 9/8 of the hint still fits in MaxParts parts. A configured part size
// is raised when it would not fit, and never goes below MinPartSize.
func PartSize(expectedSize, configured int64) int64 {
	ps := configured
	if ps <= 0 {
		ps = DefaultPartSize
		if expectedSize < 0 {
			ps = UnknownSizePartSize
		}
	}
	if expectedSize > 0 {
		e := min(expectedSize, MaxObjectSize)
		withHeadroom := e + e/8
		need := (withHeadroom + MaxParts - 1) / MaxParts
		if need > ps {
			ps = need
		}
	}
	ps = max(ps, MinPartSize)
	ps = (ps + MiB - 1) / MiB * MiB
	return min(ps, MaxPartSize)
}
