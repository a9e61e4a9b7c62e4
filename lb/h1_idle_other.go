//go:build !unix

package lb

import "net"

// idleCheck cannot peek here; bytes buffered at the end of a response are
// still caught by h1Body.Close.
func idleCheck(net.Conn) func() bool { return nil }
