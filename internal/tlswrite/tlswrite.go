// Package tlswrite sends the TLS records of one large write in one system
// call.
//
// crypto/tls cuts a write into records of at most 16 KiB and hands each to
// the connection on its own: a 32 KiB body chunk costs two write(2) calls,
// a 100 KiB response seven. On loopback and fast links each call costs
// about as much as the bytes it carries. Wrap the raw connection before
// tls.Server, then write through Writer: a write longer than a record is
// encrypted into a buffer and leaves in one call. Writes of a record or
// less, and every write the TLS layer makes on its own (handshake, alerts,
// session tickets), go straight through.
package tlswrite

import (
	"crypto/tls"
	"io"
	"net"
	"sync"
)

// maxRecord is the plaintext a TLS record carries at most.
const maxRecord = 16 << 10

// Conn is a raw connection that can hold the records of one write.
type Conn struct {
	net.Conn
	mu     sync.Mutex
	corked bool
	buf    []byte
	pooled *[]byte
}

// Wrap returns c ready to batch records.
func Wrap(c net.Conn) *Conn { return &Conn{Conn: c} }

var pool = sync.Pool{New: func() any { b := make([]byte, 0, 80<<10); return &b }}

// Write sends p, or holds it while a batched write is under way. The TLS
// layer writes under its own lock, so records arrive in order; the mutex
// keeps a record written from another goroutine (an alert from a read)
// from racing the flush.
func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.corked {
		return c.Conn.Write(p)
	}
	if len(c.buf)+len(p) > cap(c.buf) {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) > cap(c.buf) {
			return c.Conn.Write(p)
		}
	}
	c.buf = append(c.buf, p...)
	return len(p), nil
}

func (c *Conn) cork() {
	c.mu.Lock()
	c.corked = true
	if c.pooled == nil {
		c.pooled = pool.Get().(*[]byte)
		c.buf = (*c.pooled)[:0]
	}
	c.mu.Unlock()
}

// uncork sends what the write left in the buffer.
func (c *Conn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	err := c.flushLocked()
	*c.pooled = c.buf[:0]
	pool.Put(c.pooled)
	c.pooled, c.buf = nil, nil
	return err
}

func (c *Conn) flushLocked() error {
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	return err
}

// Writer returns what to write tc's application data through: tc itself
// unless its connection is a *Conn.
func Writer(tc *tls.Conn) io.Writer {
	c, ok := tc.NetConn().(*Conn)
	if !ok {
		return tc
	}
	return &writer{tc: tc, c: c}
}

type writer struct {
	tc *tls.Conn
	c  *Conn
}

func (w *writer) Write(p []byte) (int, error) {
	if len(p) <= maxRecord {
		return w.tc.Write(p)
	}
	w.c.cork()
	n, err := w.tc.Write(p)
	if uerr := w.c.uncork(); err == nil && uerr != nil {
		err = uerr
		n = 0
	}
	return n, err
}
