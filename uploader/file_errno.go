package uploader

import "syscall"

// errNotDirSys is what the system reports when a path goes through a file
// ("a/b" when "a" is a file): for a store, that key does not exist.
var errNotDirSys error = syscall.ENOTDIR
