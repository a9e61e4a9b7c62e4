package tlsedge

import (
	"context"
	"crypto/tls"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// 0-RTT data can be replayed by anyone who captured it, and the handler
// cannot tell: HTTP/3 resumes sessions but refuses early data (nginx's
// ssl_early_data is off by default too).
func TestHTTP3Refuses0RTT(t *testing.T) {
	e, roots := newInternal(t, nil)
	tc := &tls.Config{RootCAs: roots, ServerName: "demo.test", NextProtos: []string{http3.NextProtoH3},
		ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	// A first connection and request leave a session ticket in the cache.
	tr := &http3.Transport{TLSClientConfig: tc,
		Dial: func(ctx context.Context, _ string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
			return quic.DialAddrEarly(ctx, e.tlsAddr, tc, qc)
		}}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://demo.test/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	time.Sleep(100 * time.Millisecond) // the ticket follows the handshake
	_ = tr.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := quic.DialAddrEarly(ctx, e.tlsAddr, tc, &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseWithError(0, "")
	select {
	case <-conn.HandshakeComplete():
	case <-ctx.Done():
		t.Fatal("handshake did not complete")
	}
	st := conn.ConnectionState()
	if !st.TLS.DidResume {
		t.Fatal("the session was not resumed: the test proves nothing")
	}
	if st.Used0RTT {
		t.Error("the server accepted 0-RTT (replayable) data")
	}
}

// HTTP/3 holds requests to edge.max_header_bytes as HTTP/1.1 and HTTP/2
// do (quic-go's own default is 1MiB), and closes connections idle for
// edge.idle_timeout even while the client keeps QUIC alive.
func TestHTTP3Limits(t *testing.T) {
	e, roots := newInternal(t, nil)
	h3, err := e.m.ListenHTTP3("127.0.0.1:0", hello, HTTP3Limits{MaxHeaderBytes: 8 << 10, IdleTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer h3.Close()
	addr := h3.Addr().String()
	c := h3ClientFor(t, roots, addr)

	req, _ := http.NewRequest("GET", "https://demo.test/", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 64<<10))
	if resp, err := c.Do(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Errorf("a 64KiB header passed an 8KiB limit: %d", resp.StatusCode)
		}
	}
	if resp, _ := fetch(t, c, "https://demo.test/ok"); resp.StatusCode != http.StatusOK {
		t.Fatalf("normal request after the oversized one: %d", resp.StatusCode)
	}

	tc := &tls.Config{RootCAs: roots, ServerName: "demo.test", NextProtos: []string{http3.NextProtoH3}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, addr, tc, &quic.Config{KeepAlivePeriod: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseWithError(0, "")
	select {
	case <-conn.Context().Done():
	case <-ctx.Done():
		t.Fatal("an idle HTTP/3 connection kept alive by PINGs was still open after 5s (idle timeout 300ms)")
	}
}

// Past h3RetryRate handshakes a second from unvalidated addresses, HTTP/3
// asks for a Retry (address validation) before it keeps any handshake
// state; real clients go through it.
func TestHTTP3RetriesBeyondRate(t *testing.T) {
	old := h3RetryRate
	h3RetryRate = 2
	defer func() { h3RetryRate = old }()
	e, roots := newInternal(t, nil)
	h3, err := e.m.ListenHTTP3("127.0.0.1:0", hello, HTTP3Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer h3.Close()
	for i := range 6 {
		c := h3ClientFor(t, roots, h3.Addr().String()) // a new connection each
		if resp, _ := fetch(t, c, "https://demo.test/"); resp.StatusCode != http.StatusOK {
			t.Fatalf("client %d: %d", i, resp.StatusCode)
		}
	}
	if n := h3.gate.retried.Load(); n < 3 {
		t.Errorf("%d of 6 handshakes within a second were asked for a Retry with a rate of 2/s", n)
	}
}
