package http1

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
)

// Bodies written after a buffered head in pieces larger and smaller than
// the buffer's room (the head and the piece leave in one writev) arrive
// whole and in order, framed by Content-Length or chunked.
func TestVectoredBodyWrites(t *testing.T) {
	pieces := []int{100 << 10, 10, 3 << 10, 200 << 10, 5 << 10, 64 << 10}
	var want bytes.Buffer
	for _, n := range pieces {
		for range n {
			want.WriteByte(byte(want.Len() % 251)) // a shifted byte shows
		}
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain") // the head is not held back to sniff one
		if r.URL.Path == "/sized" {
			w.Header().Set("Content-Length", strconv.Itoa(want.Len()))
		}
		b := want.Bytes()
		for _, n := range pieces {
			w.Write(b[:n])
			b = b[n:]
		}
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
	for _, tc := range []struct {
		name string
		c    net.Conn
		want *net.TCPConn
	}{
		{"tcp", tcp, tcp},
		{"wrapped", wrapped{tcp}, tcp},
		{"tls", tls.Client(tcp, &tls.Config{}), nil},
		{"wrapped tls", wrapped{tls.Client(tcp, &tls.Config{})}, nil},
		{"pipe", func() net.Conn { a, _ := net.Pipe(); return a }(), nil},
	} {
		if got := plainTCP(tc.c); got != tc.want {
			t.Errorf("%s: plainTCP = %v, want %v", tc.name, got, tc.want)
		}
	}
}
