package http1

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tlsServer serves h over TLS through the fast path, with httptest's
// certificate; the client trusts it. handed counts connections Std took.
func tlsServer(t *testing.T, h http.Handler) (addr string, client *http.Client, conf *tls.Config, handed *atomic.Int32) {
	t.Helper()
	cert := httptest.NewUnstartedServer(nil)
	cert.EnableHTTP2 = true
	cert.StartTLS()
	client = cert.Client()
	conf = cert.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	certs := cert.TLS.Certificates
	cert.Close()

	handed = new(atomic.Int32)
	std := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ErrorLog: discardLog(),
		TLSConfig: &tls.Config{Certificates: certs, NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12},
		ConnState: func(c net.Conn, st http.ConnState) {
			if st == http.StateNew {
				handed.Add(1)
			}
		}}
	s := New(std)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.ServeTLS(ln)
	t.Cleanup(func() { s.Close() })
	return ln.Addr().String(), client, conf, handed
}

func tlsInfo(w http.ResponseWriter, r *http.Request) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
	}
	if r.TLS == nil {
		fmt.Fprintf(w, "%s no-tls", r.Proto)
		return
	}
	fmt.Fprintf(w, "%s tls %x %s", r.Proto, r.TLS.Version, r.TLS.NegotiatedProtocol)
}

// HTTP/1.1 over TLS is served on the fast path with the connection's TLS
// state; HTTP/2 goes to net/http whole after the handshake.
func TestServeTLS(t *testing.T) {
	addr, client, _, handed := tlsServer(t, http.HandlerFunc(tlsInfo))
	get := func(c *http.Client) string {
		resp, err := c.Get("https://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	h1 := &http.Client{Transport: &http.Transport{TLSClientConfig: client.Transport.(*http.Transport).TLSClientConfig.Clone()}}
	h1.Transport.(*http.Transport).TLSClientConfig.NextProtos = []string{"http/1.1"}
	if got := get(h1); got != "HTTP/1.1 tls 304 http/1.1" || handed.Load() != 0 {
		t.Errorf("HTTP/1.1: %q (handed %d)", got, handed.Load())
	}
	if got := get(client); got != "HTTP/2.0 tls 304 h2" || handed.Load() != 1 {
		t.Errorf("HTTP/2: %q (handed %d)", got, handed.Load())
	}
}

// A TLS connection handed to net/http after fast-path requests keeps its
// TLS state in the requests net/http serves.
func TestServeTLSHandOffKeepsTLS(t *testing.T) {
	addr, _, conf, handed := tlsServer(t, http.HandlerFunc(tlsInfo))
	conf.NextProtos = []string{"http/1.1"}
	c, err := tls.Dial("tcp", addr, conf)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n")
	br := bufio.NewReader(c)
	for i := 0; i < 2; i++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if !strings.HasPrefix(string(b), "HTTP/1.1 tls 304") {
			t.Errorf("request %d: %q", i, b)
		}
	}
	if handed.Load() != 1 {
		t.Errorf("handed %d, want 1 (the chunked request)", handed.Load())
	}
}

// Plain HTTP to the TLS port gets net/http's answer.
func TestServeTLSPlainRequest(t *testing.T) {
	addr, _, _, _ := tlsServer(t, http.HandlerFunc(tlsInfo))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	b, _ := io.ReadAll(c)
	if !strings.HasPrefix(string(b), "HTTP/1.0 400 Bad Request") || !strings.Contains(string(b), "HTTP request to an HTTPS server") {
		t.Fatalf("%q", b)
	}
}

// OnHandOff names why each connection went to net/http.
func TestOnHandOffReasons(t *testing.T) {
	var mu sync.Mutex
	var reasons []string
	record := func(why string) {
		mu.Lock()
		reasons = append(reasons, why)
		mu.Unlock()
	}
	std := &http.Server{Handler: http.HandlerFunc(tlsInfo), ErrorLog: discardLog()}
	s := New(std)
	s.OnHandOff = record
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	defer s.Close()
	for _, raw := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n", // fast: not counted
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nCookie: " + strings.Repeat("c", 9<<10) + "\r\n\r\n",
	} {
		resps, _, _ := exchange(t, ln.Addr().String(), raw, 1)
		if len(resps) != 1 {
			t.Fatalf("%.40q: no response", raw)
		}
	}
	mu.Lock()
	got := strings.Join(reasons, ",")
	mu.Unlock()
	if got != "request,head_size" {
		t.Fatalf("reasons %q", got)
	}
}
