package edge

import (
	"net/http/httptest"
	"testing"

	"github.com/outpost-edge/outpost/internal/http1"
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
