package edge

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/outpost-edge/outpost/internal/http1"
	"github.com/outpost-edge/outpost/internal/http2"
)

// fastFront puts internal/http1 in front of NewServer's server in the
// plain-HTTP/1.1 test servers, as the node does by default (fast_http1).
var fastFront bool

// startFast serves ts's Config through the fast path on ts's listener and
// returns what stops it (ts.Close alone does not: ts was never started).
func startFast(t *testing.T, ts *httptest.Server) func() {
	f := http1.New(ts.Config)
	ts.URL = "http://" + ts.Listener.Addr().String()
	go func() { _ = f.Serve(ts.Listener) }()
	t.Cleanup(func() { _ = f.Close() })
	return func() { _ = f.Close() }
}

// The server-level guarantees — send and body timeouts, hostile requests
// refused, slowloris bounded — hold with the fast path in front too. The
// tests are run again, not copied.
func TestFastHTTP1KeepsServerGuarantees(t *testing.T) {
	fastFront = true
	defer func() { fastFront = false }()
	for name, test := range map[string]func(*testing.T){
		"send timeout":           TestSendTimeoutReleasesStalledReader,
		"body timeout":           TestClientBodyTimeoutReleasesStalledUpload,
		"send timeout keepalive": TestSendTimeoutAcrossKeepAlive,
		"hostile requests":       TestServerRejectsHostileRequests,
		"read header timeout":    TestServerReadHeaderTimeout,
		"slowloris":              TestStalledHandshakesAndSlowlorisAreBounded,
	} {
		t.Run(name, test)
	}
}

// fastH2 serves the HTTPS test servers' HTTP/2 with internal/http2, as the
// node does by default (fast_http2).
var fastH2 bool

// fastH2Conns counts the connections it served: proof the tests ran on it.
var fastH2Conns atomic.Int32

// useFastH2 makes ts's server hand HTTP/2 connections to internal/http2.
func useFastH2(t *testing.T, ts *httptest.Server) {
	h2 := http2.New(ts.Config)
	ts.Config.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){
		"h2": func(_ *http.Server, c *tls.Conn, _ http.Handler) {
			fastH2Conns.Add(1)
			h2.ServeConn(c)
		},
	}
	t.Cleanup(func() { _ = h2.Close() })
}

// The same guarantees over HTTP/2 with the edge's own server: stalled
// readers and uploads cut by send_timeout and client_body_timeout, pauses
// spared, a connection that takes nothing closed, rapid reset bounded.
func TestFastHTTP2KeepsServerGuarantees(t *testing.T) {
	fastH2 = true
	defer func() { fastH2 = false }()
	for name, test := range map[string]func(*testing.T){
		"send timeout":  TestSendTimeoutReleasesStalledReader,
		"body timeout":  TestClientBodyTimeoutReleasesStalledUpload,
		"pauses spared": TestProgressTimeoutsSparePauses,
		"stalled conn":  TestSendTimeoutClosesStalledHTTP2Connection,
		"rapid reset":   TestHTTP2RapidReset,
	} {
		before := fastH2Conns.Load()
		t.Run(name, test)
		if fastH2Conns.Load() == before {
			t.Errorf("%s: no connection reached internal/http2", name)
		}
	}
}
