// Command rawproxy is NOT a proxy anyone should run: it is the least
// HTTP/1.1 pass-through Go can do — bodiless requests only, no validation,
// no error handling beyond closing — kept as a measuring stick for
// bench/http/passthrough.sh (CEILING=1). It shows what a goroutine-per-
// connection proxy costs in Go when net/http and httputil.ReverseProxy are
// left out, so the gap between Outpost and HAProxy can be split into "Go"
// and "our HTTP stack".
//
// By default each client connection has its own connection to each
// backend and nothing is added to the request. With --shared it does the
// parts a real proxy cannot leave out and that cost something in Go: one
// backend connection pool shared by all clients (a mutex, LIFO, as
// Outpost's), a read deadline on both sockets and a write deadline on the
// client's for every request, and X-Forwarded-For and Via added to each
// request head.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"io"
	"log"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

type bconn struct {
	c net.Conn
	r *bufio.Reader
}

// pool is one backend's idle connections, shared by every client (--shared).
type pool struct {
	addr string
	mu   sync.Mutex
	idle []*bconn
}

func (p *pool) get() (*bconn, error) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		b := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return b, nil
	}
	p.mu.Unlock()
	return dial(p.addr)
}

func (p *pool) put(b *bconn) {
	p.mu.Lock()
	p.idle = append(p.idle, b)
	p.mu.Unlock()
}

func dial(addr string) (*bconn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &bconn{c, bufio.NewReaderSize(c, 4096)}, nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:18090", "")
	b1 := flag.String("b1", "127.0.0.1:18082", "")
	b2 := flag.String("b2", "127.0.0.1:18083", "")
	shared := flag.Bool("shared", false, "share one backend pool among clients, set deadlines, add X-Forwarded-For and Via")
	flag.Parse()
	pools := []*pool{{addr: *b1}, {addr: *b2}}
	var rr atomic.Uint32
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			continue
		}
		go serve(c, pools, &rr, *shared)
	}
}

func serve(c net.Conn, pools []*pool, rr *atomic.Uint32, shared bool) {
	defer c.Close()
	cr := bufio.NewReaderSize(c, 4096)
	cw := bufio.NewWriterSize(c, 8192)
	own := map[*pool]*bconn{} // without --shared
	var req bytes.Buffer
	for {
		if shared {
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
		}
		req.Reset()
		for {
			line, err := cr.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(line) <= 2 && shared {
				req.WriteString("X-Forwarded-For: 127.0.0.1\r\nVia: 1.1 rawproxy\r\n")
			}
			req.Write(line)
			if len(line) <= 2 {
				break
			}
		}
		p := pools[rr.Add(1)%uint32(len(pools))]
		var b *bconn
		var err error
		if shared {
			b, err = p.get()
		} else if b = own[p]; b == nil {
			b, err = dial(p.addr)
			own[p] = b
		}
		if err != nil {
			return
		}
		if shared {
			b.c.SetReadDeadline(time.Now().Add(30 * time.Second))
		}
		if _, err := b.c.Write(req.Bytes()); err != nil {
			return
		}
		cl := -1
		for {
			line, err := b.r.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(line) > 16 && (line[0] == 'C' || line[0] == 'c') && bytes.EqualFold(line[:15], []byte("Content-Length:")) {
				cl, _ = strconv.Atoi(string(bytes.TrimSpace(line[15:])))
			}
			cw.Write(line)
			if len(line) <= 2 {
				break
			}
		}
		if cl > 0 {
			if _, err := io.CopyN(cw, b.r, int64(cl)); err != nil {
				return
			}
		}
		if shared {
			b.c.SetReadDeadline(time.Time{})
			p.put(b)
			c.SetWriteDeadline(time.Now().Add(60 * time.Second))
		}
		if err := cw.Flush(); err != nil {
			return
		}
	}
}
