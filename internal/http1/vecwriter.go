package http1

import (
	"crypto/tls"
	"net"
)

// vecWriter is what the buffered writer of a plain TCP connection flushes
// into. A body write larger than the buffer's room would go out in two
// system calls, the buffered head and then the body — two wake-ups of the
// client too — so the response hands the body over as tail, and the flush
// sends both in one writev.
type vecWriter struct {
	tcp  *net.TCPConn
	tail []byte // sent after the flushed bytes by the next Write; then nil
	sent int    // how much of the last tail went out
}

func (v *vecWriter) Write(b []byte) (int, error) {
	if v.tail == nil {
		return v.tcp.Write(b)
	}
	bufs := net.Buffers{b, v.tail}
	n, err := bufs.WriteTo(v.tcp) // writes all, or fails
	v.sent = int(max(n-int64(len(b)), 0))
	v.tail = nil
	return int(min(n, int64(len(b)))), err
}

// plainTCP is the TCP connection c is, or wraps (a connection limit's
// wrapper, say: one with a NetConn method), for writev; nil for others,
// and for TLS, whose bytes must not reach the socket unencrypted.
func plainTCP(c net.Conn) *net.TCPConn {
	for range 4 {
		switch x := c.(type) {
		case *net.TCPConn:
			return x
		case *tls.Conn:
			return nil
		case interface{ NetConn() net.Conn }:
			c = x.NetConn()
		default:
			return nil
		}
	}
	return nil
}
