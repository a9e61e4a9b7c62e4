package proxy

import (
	"bufio"
	"bytes"
	"net/http"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/http1"
	"github.com/outpost-edge/outpost/internal/reqinfo"
)

// passField (what consistent_hash and sticky cookies read on the lane) and
// writePassFields (what the backend is sent) state the same rewrite twice;
// they must agree on every field: those the client sent, dropped or kept,
// and those the rewrite sets.
func TestPassFieldMatchesWrittenHead(t *testing.T) {
	for _, tc := range []struct {
		name string
		tls  bool
		hdr  http.Header
	}{
		{"plain", false, http.Header{"Accept": {"*/*"}, "Cookie": {"a=1", "b=2"}, "X-Tenant": {"t1"}}},
		{"forwarding and hop fields sent by the client", true, http.Header{
			"X-Forwarded-For": {"6.6.6.6"}, "X-Forwarded-Host": {"evil"}, "X-Forwarded-Proto": {"ftp"},
			"Forwarded": {"for=6.6.6.6"}, "X-Real-Ip": {"6.6.6.6"}, "X-Request-Id": {"client-id"},
			"Keep-Alive": {"timeout=5"}, "Proxy-Connection": {"keep-alive"}, "Te": {"trailers"},
			"Via": {"1.0 upstream"}, "Content-Length": {"0"}, "User-Agent": {"ua"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &http1.Pass{Method: "GET", Target: "/x", Host: "app.test", Header: tc.hdr,
				RemoteAddr: "192.0.2.7:4242", Peer: netip.MustParseAddr("192.0.2.7"), TLS: tc.tls}
			info := &reqinfo.Info{PeerIP: p.Peer, ClientIP: p.Peer, ID: "edge-id"}
			var buf bytes.Buffer
			bw := bufio.NewWriter(&buf)
			bw.WriteString("GET /x HTTP/1.1\r\n")
			writePassFields(bw, p, info, "1.1 edge")
			bw.Flush()
			req, err := http.ReadRequest(bufio.NewReader(&buf))
			if err != nil {
				t.Fatal(err)
			}
			names := map[string]bool{"Host": true}
			for k := range req.Header {
				names[k] = true
			}
			for k := range tc.hdr {
				names[k] = true
			}
			for k := range names {
				got, want := passField(p, info, "1.1 edge", k), req.Header[k]
				if k == "Host" {
					want = nil // the request's, not a field
				}
				if len(got) == 0 && len(want) == 0 {
					continue
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s: passField %q, written %q", k, got, want)
				}
			}
			if req.Host != "app.test" || !strings.Contains(req.Header.Get("Via"), "1.1 edge") {
				t.Errorf("written head: host %q, Via %q", req.Host, req.Header.Get("Via"))
			}
		})
	}
}
