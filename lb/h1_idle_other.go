//go:build !unix

package lb

import "net"

// spokeWhileIdle cannot peek here; bytes buffered at the end of a
// response are still caught by h1Body.Close.
func spokeWhileIdle(net.Conn) bool { return false }
