package mover

import "golang.org/x/sys/unix"

// fsUsage returns the size and used bytes of the file system dir is on.
func fsUsage(dir string) (size, used int64, ok bool) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, false
	}
	bs := int64(st.Bsize)
	return int64(st.Blocks) * bs, int64(st.Blocks-st.Bfree) * bs, true
}
