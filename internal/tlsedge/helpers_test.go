package tlsedge

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// testLogger logs to the test output when -v is given, else discards.
func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// testEdge is a manager with its HTTPS, HTTP and HTTP/3 listeners running
// on 127.0.0.1, serving the node's handlers the way the wiring does.
type testEdge struct {
	m        *Manager
	httpsURL string // https://127.0.0.1:port
	httpAddr string
	tlsAddr  string
	h3       *HTTP3Server
}

// reserveListeners binds the HTTPS (TCP) and HTTP listeners first, so the
// config (and the ACME server's validation ports) know the real ports.
func reserveListeners(t *testing.T) (tlsLn, httpLn net.Listener) {
	t.Helper()
	var err error
	tlsLn, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpLn, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return tlsLn, httpLn
}

// startEdge serves m on the reserved listeners; app is the "edge chain".
func startEdge(t *testing.T, m *Manager, tlsLn, httpLn net.Listener, app http.Handler) *testEdge {
	t.Helper()
	e := &testEdge{m: m, httpsURL: "https://" + tlsLn.Addr().String(), httpAddr: httpLn.Addr().String(), tlsAddr: tlsLn.Addr().String()}
	httpsSrv := &http.Server{Handler: m.Headers(app), TLSConfig: m.TLSConfig(), ErrorLog: nil}
	httpSrv := &http.Server{Handler: m.HTTPHandler()}
	go func() { _ = httpsSrv.ServeTLS(tlsLn, "", "") }()
	go func() { _ = httpSrv.Serve(httpLn) }()
	if m.cfg.http3On() {
		h3, err := m.ListenHTTP3(tlsLn.Addr().String(), app, HTTP3Limits{})
		if err != nil {
			t.Fatalf("ListenHTTP3: %v", err)
		}
		e.h3 = h3
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = httpsSrv.Shutdown(ctx)
		_ = httpSrv.Shutdown(ctx)
		if e.h3 != nil {
			_ = e.h3.Close()
		}
		m.Stop()
	})
	return e
}

// hello is the app behind the edge: it reports the protocol it saw.
var hello = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, "hello "+r.Host+" over "+r.Proto)
})

// clientFor returns an HTTP/1.1 or HTTP/2 client that trusts roots and
// dials addr whatever the URL's host, so names need no resolver.
func clientFor(roots *x509.CertPool, addr string, h2 bool) *http.Client {
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
		ForceAttemptHTTP2: h2,
	}
	if !h2 {
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// h3ClientFor returns an HTTP/3 client trusting roots and dialing addr.
func h3ClientFor(t *testing.T, roots *x509.CertPool, addr string) *http.Client {
	tr := &http3.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		Dial: func(ctx context.Context, _ string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
			return quic.DialAddrEarly(ctx, addr, tc, qc)
		},
	}
	t.Cleanup(func() { _ = tr.Close() })
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// fetch GETs url and returns the response with its body read.
func fetch(t *testing.T, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp, string(b)
}

// assertServedBy checks the peer certificate covers name and chains to
// roots (the TLS stack verified it; this checks we got the one expected).
func assertServedBy(t *testing.T, resp *http.Response, name string, roots *x509.CertPool) {
	t.Helper()
	if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
		t.Fatalf("no TLS state on response")
	}
	leaf := resp.TLS.PeerCertificates[0]
	if err := leaf.VerifyHostname(name); err != nil {
		t.Fatalf("certificate does not cover %s: %v (SANs %v)", name, err, leaf.DNSNames)
	}
	inter := x509.NewCertPool()
	for _, c := range resp.TLS.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter}); err != nil {
		t.Fatalf("chain does not verify: %v", err)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// handshakeVersion tries a handshake at exactly version v.
func handshakeVersion(addr, name string, roots *x509.CertPool, v uint16) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{RootCAs: roots, ServerName: name, MinVersion: v, MaxVersion: v})
	if err != nil {
		return err
	}
	conn.Close()
	return nil
}

func isTLSVersionError(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "protocol version") || strings.Contains(err.Error(), "no supported versions"))
}

func randReader() io.Reader { return rand.Reader }
