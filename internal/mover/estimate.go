package mover

// SourceEstimate is what an upload of dir is expected to read: the used
// bytes of the file system dir is on, when that file system is the
// volume's own. A file system more than twice capacity (the claim's
// size, 0 when unknown) also holds other things (a hostPath or
// local-path volume is a directory of the node's disk): its used bytes
// say nothing of the volume, and the estimate is 0, unknown.
func SourceEstimate(dir string, capacity int64) int64 {
	size, used, ok := fsUsage(dir)
	if !ok {
		return 0
	}
	return estimate(size, used, capacity)
}

func estimate(size, used, capacity int64) int64 {
	if used <= 0 || capacity > 0 && size > 2*capacity {
		return 0
	}
	return used
}
