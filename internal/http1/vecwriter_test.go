package http1

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/outpost-edge/outpost/internal/rawsock"
)

// Bodies written after a buffered head in pieces larger and smaller than
// the buffer's room (the head and the piece leave in one writev) arrive
// whole and in order, framed by Content-Length or chunked, over a
// connection with raw system calls (as the node's) and a plain one.
func TestVectoredBodyWrites(t *testing.T) {
	t.Run("raw", testVectoredBodyWrites)
	t.Run("plain", func(t *testing.T) {
		fastListener = func(ln net.Listener) net.Listener { return ln }
		defer func() { fastListener = rawsock.Listener }()
		testVectoredBodyWrites(t)
	})
}

func testVectoredBodyWrites(t *testing.T) {
	pieces := []int{100 << 10, 10, 3 << 10, 200 << 10, 5 << 10, 64 << 10}
	var want bytes.Buffer
	for _, n := range pieces {
		for range n {
			want.WriteByte(byte(want.Len() % 251)) // a shifted byte shows
		}
	}
	var vectored atomic.Int32 // writes of buffered bytes and a piece together
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain") // the head is not held back to sniff one
		if r.URL.Path == "/sized" {
			w.Header().Set("Content-Length", strconv.Itoa(want.Len()))
		}
		out := &w.(*response).c.out
		before := out.tailWrites
		b := want.Bytes()
		for _, n := range pieces {
			w.Write(b[:n])
			b = b[n:]
		}
		vectored.Add(int32(out.tailWrites - before))
	})
	_, fast, _ := servers(t, h, nil)
	c := dialServer(t, fast)
	br := bufio.NewReader(c)
	for _, path := range []string{"/sized", "/chunked", "/sized"} {
		io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: a\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		if err != nil || !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("%s: %d bytes (err %v), want the %d written", path, len(got), err, want.Len())
		}
	}
	// The head and the first large piece, and the small pieces buffered
	// before each later large one, leave together.
	if n := vectored.Load(); n == 0 {
		t.Errorf("no write sent buffered bytes and a piece together")
	}
}

type wrapped struct{ net.Conn }

func (w wrapped) NetConn() net.Conn { return w.Conn }

func TestPlainTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tcp := c.(*net.TCPConn)
	raw, _ := rawsock.Wrap(tcp).(*rawsock.Conn) // nil off Linux
	for _, tc := range []struct {
		name string
		c    net.Conn
		want vecWriter
		ok   bool
	}{
		{"tcp", tcp, vecWriter{tcp: tcp}, true},
		{"wrapped", wrapped{tcp}, vecWriter{tcp: tcp}, true},
		{"raw", raw, vecWriter{raw: raw}, raw != nil},
		{"wrapped raw", wrapped{raw}, vecWriter{raw: raw}, raw != nil},
		{"tls", tls.Client(tcp, &tls.Config{}), vecWriter{}, false},
		{"wrapped tls", wrapped{tls.Client(tcp, &tls.Config{})}, vecWriter{}, false},
		{"pipe", func() net.Conn { a, _ := net.Pipe(); return a }(), vecWriter{}, false},
	} {
		if raw == nil && strings.Contains(tc.name, "raw") {
			continue
		}
		got, ok := plainTCP(tc.c)
		if ok != tc.ok || ok && (got.tcp != tc.want.tcp || got.raw != tc.want.raw) {
			t.Errorf("%s: plainTCP = %+v, %v; want %+v, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}
