package http1

import (
	"crypto/tls"
	"net"

	"github.com/outpost-edge/outpost/internal/rawsock"
)

// vecWriter is what the buffered writer of a plain TCP connection flushes
// into. A body write larger than the buffer's room would go out in two
// system calls, the buffered head and then the body — two wake-ups of the
// client too — so the response hands the body over as tail, and the flush
// sends both in one writev.
type vecWriter struct {
	tcp  *net.TCPConn
	raw  *rawsock.Conn // instead of tcp
	tail []byte        // sent after the flushed bytes by the next Write; then nil
	sent int           // how much of the last tail went out
	// tailWrites counts the Writes with a tail (for tests: the head and
	// body left together).
	tailWrites int
}

func (v *vecWriter) Write(b []byte) (int, error) {
	var n int64
	var err error
	switch {
	case v.raw != nil:
		n, err = v.raw.WriteBuffers(b, v.tail) // writes all, or fails
	case v.tail == nil:
		return v.tcp.Write(b)
	default:
		bufs := net.Buffers{b, v.tail}
		n, err = bufs.WriteTo(v.tcp) // writes all, or fails
	}
	if v.tail == nil {
		return int(n), err
	}
	v.tailWrites++
	v.sent = int(max(n-int64(len(b)), 0))
	v.tail = nil
	return int(min(n, int64(len(b)))), err
}

// plainTCP is the vecWriter of the TCP connection c is, or wraps (a
// connection limit's wrapper, say: one with a NetConn method); false for
// others, and for TLS, whose bytes must not reach the socket unencrypted.
func plainTCP(c net.Conn) (vecWriter, bool) {
	for range 4 {
		switch x := c.(type) {
		case *net.TCPConn:
			return vecWriter{tcp: x}, true
		case *rawsock.Conn:
			return vecWriter{raw: x}, true
		case *tls.Conn:
			return vecWriter{}, false
		case interface{ NetConn() net.Conn }:
			c = x.NetConn()
		default:
			return vecWriter{}, false
		}
	}
	return vecWriter{}, false
}
