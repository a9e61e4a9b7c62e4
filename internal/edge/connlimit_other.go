//go:build !unix

package edge

// autoMaxConns: no open-file limit to derive from.
func autoMaxConns() int { return 0 }
