//go:build !linux

package cdn

import (
	"io/fs"
	"os"
)

// openFile opens a stored body for reading; a symlink is refused, as
// O_NOFOLLOW does on Linux.
func openFile(path string) (*os.File, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return nil, &os.PathError{Op: "open", Path: path, Err: fs.ErrInvalid}
	}
	return os.Open(path)
}
