package tlswrite

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// counting counts the writes that reach the socket.
type counting struct {
	net.Conn
	writes atomic.Int32
}

func (c *counting) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// pair returns a server TLS connection over Wrap (its socket writes
// counted) and the client end, handshake done.
func pair(t *testing.T) (srv *tls.Conn, raw *counting, cli *tls.Conn) {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	ts.StartTLS()
	certs := ts.TLS.Certificates
	ts.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc := <-accepted
	raw = &counting{Conn: sc}
	srv = tls.Server(Wrap(raw), &tls.Config{Certificates: certs})
	cli = tls.Client(cc, &tls.Config{InsecureSkipVerify: true})
	t.Cleanup(func() { srv.Close(); cli.Close() })
	deadline := time.Now().Add(10 * time.Second)
	srv.SetDeadline(deadline)
	cli.SetDeadline(deadline)
	done := make(chan error, 1)
	go func() { done <- srv.Handshake() }()
	if err := cli.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return srv, raw, cli
}

// A write of several records arrives whole and leaves in one socket
// write; small writes and the handshake go straight through.
func TestBatchesRecordsOfOneWrite(t *testing.T) {
	srv, raw, cli := pair(t)
	w := Writer(srv)
	if _, ok := w.(*writer); !ok {
		t.Fatalf("Writer over a wrapped connection is %T", w)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 100<<10/16) // 100 KiB: 7 records
	small := []byte("hello")
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(cli, int64(len(big)+len(small))))
		got <- b
	}()
	before := raw.writes.Load()
	if n, err := w.Write(big); err != nil || n != len(big) {
		t.Fatalf("Write: %d, %v", n, err)
	}
	if n := raw.writes.Load() - before; n != 2 {
		// 100 KiB of records (plus overhead) is over the 80 KiB buffer:
		// one flush when it fills, one at the end; without batching, 7.
		t.Errorf("100 KiB went out in %d socket writes, want 2", n)
	}
	before = raw.writes.Load()
	if _, err := w.Write(small); err != nil {
		t.Fatal(err)
	}
	if n := raw.writes.Load() - before; n != 1 {
		t.Errorf("a small write took %d socket writes", n)
	}
	b := <-got
	if !bytes.Equal(b, append(append([]byte{}, big...), small...)) {
		t.Fatalf("client read %d bytes, not what was written", len(b))
	}
}

// A connection that is not wrapped is written as it is.
func TestWriterWithoutWrap(t *testing.T) {
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	tc := tls.Server(c1, &tls.Config{})
	if w := Writer(tc); w != io.Writer(tc) {
		t.Fatalf("Writer over a plain connection is %T", w)
	}
}

// A socket error during the batched write is the write's error.
func TestBatchedWriteError(t *testing.T) {
	srv, raw, cli := pair(t)
	cli.Close()
	raw.Conn.Close()
	if _, err := Writer(srv).Write(make([]byte, 64<<10)); err == nil {
		t.Fatal("a write to a closed connection succeeded")
	}
}
