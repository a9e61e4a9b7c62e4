//go:build !linux

package rawsock

import "net"

// Supported reports whether this system has Conns (Linux); elsewhere Wrap
// returns its argument.
const Supported = false

// Conn exists here so that code using it builds; Wrap never makes one.
type Conn struct{ *net.TCPConn }

// Wrap returns c: raw system calls are made on Linux only.
func Wrap(c net.Conn) net.Conn { return c }

// WriteBuffers writes a and then b.
func (c *Conn) WriteBuffers(a, b []byte) (int64, error) {
	bufs := net.Buffers{a, b}
	return bufs.WriteTo(c.TCPConn)
}
