//go:build !linux

package cdn

import "os"

func openFile(path string) (*os.File, error) { return os.Open(path) }
