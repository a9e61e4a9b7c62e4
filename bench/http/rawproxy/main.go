// Command rawproxy is NOT a proxy anyone should run: it is the least
// HTTP/1.1 pass-through Go can do — bodiless requests only, no header
// rewriting, no validation, no timeouts, one backend connection per client
// connection and backend — kept as a measuring stick for
// bench/http/passthrough.sh (CEILING=1). It shows what a goroutine-per-
// connection proxy costs in Go when net/http and httputil.ReverseProxy are
// left out, so the gap between Outpost and HAProxy can be split into "Go"
// and "our HTTP stack".
package main

import (
	"bufio"
	"bytes"
	"flag"
	"io"
	"log"
	"net"
	"strconv"
	"sync/atomic"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18090", "")
	b1 := flag.String("b1", "127.0.0.1:18082", "")
	b2 := flag.String("b2", "127.0.0.1:18083", "")
	flag.Parse()
	backs := []string{*b1, *b2}
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
		go serve(c, backs, &rr)
	}
}

func serve(c net.Conn, backs []string, rr *atomic.Uint32) {
	defer c.Close()
	cr := bufio.NewReaderSize(c, 4096)
	cw := bufio.NewWriterSize(c, 8192)
	type bconn struct {
		c net.Conn
		r *bufio.Reader
	}
	pool := map[string]*bconn{}
	var req bytes.Buffer
	for {
		req.Reset()
		for {
			line, err := cr.ReadSlice('\n')
			if err != nil {
				return
			}
			req.Write(line)
			if len(line) <= 2 {
				break
			}
		}
		addr := backs[rr.Add(1)%uint32(len(backs))]
		b := pool[addr]
		if b == nil {
			bc, err := net.Dial("tcp", addr)
			if err != nil {
				return
			}
			b = &bconn{bc, bufio.NewReaderSize(bc, 4096)}
			pool[addr] = b
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
		if err := cw.Flush(); err != nil {
			return
		}
	}
}
