// Package atomicfile replaces files so that readers, and the file system
// after a crash, see either the old content or the new, never a mix.
package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
)

// Write writes data to a temp file in path's directory, syncs it, renames
// it over path and syncs the directory, so the new content is durable once
// Write returns nil. The directory must exist. On error path is unchanged
// and the temp file is removed.
func Write(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, tempPrefix(path)+"*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op once renamed
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	// The rename lives in the directory: without this sync a crash can
	// bring back the old file even though Write reported success.
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func tempPrefix(path string) string { return "." + filepath.Base(path) + ".tmp" }

// RemoveTemps removes the temp files Write leaves beside path when the
// process dies between creating and renaming one, and returns how many
// went. Call it at start, from the one process that writes path.
func RemoveTemps(path string) (int, error) {
	ents, err := os.ReadDir(filepath.Dir(path))
	n := 0
	for _, e := range ents {
		if e.Type().IsRegular() && strings.HasPrefix(e.Name(), tempPrefix(path)) &&
			os.Remove(filepath.Join(filepath.Dir(path), e.Name())) == nil {
			n++
		}
	}
	return n, err
}
