package edge

import (
	"io"
	"net"
	"sync"
)

// CopyBodies wraps a plain-HTTP listener so that its connections copy
// file bodies (cache hits) through a buffer — a read of the file, a write
// to the socket — instead of handing them to sendfile(2): edge.sendfile
// false, nginx's `sendfile off`. sendfile costs the server far less CPU
// per byte and stays the default; copying is for file systems whose
// sendfile is broken or slow (some network and FUSE mounts) and, measured
// on loopback, gives a client on the same machine its bytes cheaper (see
// docs/cache.md). TLS listeners need no wrapper: TLS never sends a file
// with sendfile.
func CopyBodies(ln net.Listener) net.Listener { return copyListener{ln} }

type copyListener struct{ net.Listener }

func (l copyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &copyConn{Conn: c}, nil
}

// copyConn is a connection whose ReadFrom never reaches the socket's
// (sendfile, splice).
type copyConn struct{ net.Conn }

// copyBufSize is the copy buffer: large enough that a 10 MiB body takes
// 40 reads and writes, small enough that 50 clients of a 1 GiB object
// hold 12.5 MiB of buffers.
const copyBufSize = 256 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// ReadFrom copies r to the connection through a pooled buffer. Both
// sides are hidden behind plain interfaces, or io.CopyBuffer would find
// the file's WriteTo (sendfile again) or this very method.
func (c *copyConn) ReadFrom(r io.Reader) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	return io.CopyBuffer(struct{ io.Writer }{c.Conn}, struct{ io.Reader }{r}, *bp)
}

// CloseWrite keeps net/http's half-close (see limitConn.CloseWrite).
func (c *copyConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// NetConn is the connection c wraps: the HTTP/1.1 server still sends a
// head and an in-memory body in one writev.
func (c *copyConn) NetConn() net.Conn { return c.Conn }
