package edge

import (
	"io"
	"net"
	"sync"
)

// ConnLimit caps the connections open at once across the listeners it
// wraps (edge.max_connections), as HAProxy's maxconn does: at the cap a
// listener stops accepting and new connections wait in the kernel's
// backlog, so a flood of connections cannot take the descriptors the
// cache, the origin connections, DNS and the admin API need. A nil
// *ConnLimit wraps nothing.
type ConnLimit struct {
	sem chan struct{}
}

// NewConnLimit returns a limit of n connections; n <= 0: none (nil).
func NewConnLimit(n int) *ConnLimit {
	if n <= 0 {
		return nil
	}
	return &ConnLimit{sem: make(chan struct{}, n)}
}

// Listener wraps ln so its connections count against the limit.
func (l *ConnLimit) Listener(ln net.Listener) net.Listener {
	if l == nil {
		return ln
	}
	return &limitListener{Listener: ln, sem: l.sem, done: make(chan struct{})}
}

type limitListener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// Accept waits for a free slot, then for a connection.
func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

// Close also ends an Accept waiting for a slot.
func (l *limitListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.done) })
	return err
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// ReadFrom keeps the connection's sendfile path: net/http uses it only
// when the connection it holds has one.
func (c *limitConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// CloseWrite keeps net/http's half-close before closing a connection (so
// the client reads an error response before the reset).
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// NetConn is the connection c wraps (as tls.Conn's NetConn): the HTTP/1.1
// server writes a response's head and body to it in one writev.
func (c *limitConn) NetConn() net.Conn { return c.Conn }
