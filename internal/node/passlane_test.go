package node

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// passBackend is a real backend that answers every request with what it
// received (method, target, Host and fields) as JSON, or with the shapes
// the pass lane must relay like the handler chain: Early Hints, a chunked
// body with a trailer, a 5xx, a 304.
func passBackend(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hints":
			w.Header().Set("Link", "</app.css>; rel=preload; as=style")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("Link")
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "after hints")
			return
		case "/chunked":
			w.Header().Set("Trailer", "X-Digest")
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "part one, ")
			w.(http.Flusher).Flush()
			io.WriteString(w, "part two")
			w.Header().Set("X-Digest", "abc")
			return
		case "/unavailable":
			w.Header().Set("Retry-After", "3")
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		case "/not-modified":
			w.Header().Set("ETag", `"v1"`)
			w.WriteHeader(http.StatusNotModified)
			return
		case "/fields":
			// Names the lane's field list must relay as the chain's
			// header map does: repeated, the edge's own, hop-by-hop.
			h := w.Header()
			h["X-Request-Id"] = []string{"backend-id"}
			h["Via"] = []string{"1.0 origin-a", "1.1 origin-b"}
			h["Set-Cookie"] = []string{"a=1", "b=2"}
			h.Set("Pragma", "no-cache")
			h.Set("Content-Type", "text/plain")
			h.Set("Keep-Alive", "timeout=3")
			io.WriteString(w, "fields")
			return
		case "/named":
			w.Header().Set("Connection", "X-Secret, Via")
			w.Header().Set("X-Secret", "s3cret")
			w.Header().Set("Via", "1.0 hidden")
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "named")
			return
		case "/close":
			w.Header().Set("Connection", "close")
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "closing")
			return
		case "/close-named", "/close-named-chunked":
			// A Connection field that says close and names a field:
			// the field is the connection's, as any it names.
			w.Header().Set("Connection", "close, X-Secret")
			w.Header().Set("X-Secret", "hop-only")
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "closing, ")
			if r.URL.Path == "/close-named-chunked" {
				w.(http.Flusher).Flush()
			}
			io.WriteString(w, "named")
			return
		case "/sniff":
			w.Header()["Content-Type"] = nil // sent without one
			io.WriteString(w, "<html><body>untyped</body></html>")
			return
		case "/events":
			w.Header().Set("Content-Type", "text/event-stream")
			w.Header().Set("Content-Length", "11")
			io.WriteString(w, "data: one\n\n")
			return
		case "/no-content":
			w.Header().Set("X-A", "1")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h := map[string][]string{}
		for k, v := range r.Header {
			h[k] = v
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=5")
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "backend-only")
		json.NewEncoder(w).Encode(map[string]any{"method": r.Method, "target": r.RequestURI, "host": r.Host, "header": h})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// passNodeConfig is a node with a pool route (the lane's) and a route to a
// pool whose only backend is gone.
// With tlsOn, the node also serves HTTPS (internal CA, node-wide HSTS,
// HTTP/3 advertised with Alt-Svc).
func passNodeConfig(t *testing.T, backend, fastHTTP1 string, tlsOn bool) string {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	return fmt.Sprintf(`node: lane
data_dir: %s
edge:
  listen: 127.0.0.1:0
  fast_http1: %s
  via: edge
pools:
  app:
    backends: [{id: a, url: %q}]
  gone:
    backends: [{id: g, url: "http://%s"}]
    retries: {max_tries: 1}
routes:
  - name: gone
    path_prefix: /gone/
    pool: gone
  - name: app
    pool: app
%s`, t.TempDir(), fastHTTP1, backend, deadAddr, tlsBlock(tlsOn))
}

func tlsBlock(on bool) string {
	if !on {
		return ""
	}
	return `tls:
  enabled: true
  mode: internal
  listen: 127.0.0.1:0
  http_listen: "off"
  names: [app.test]
  hsts: {enabled: true}
`
}

// laneClient is how a test reaches a node: its plain-HTTP base URL, or,
// for "https" and "h2", its HTTPS one and a transport that trusts the
// node's internal CA and speaks HTTP/1.1 or HTTP/2.
func laneClient(t *testing.T, n *Node, plain string, proto string) (string, http.RoundTripper) {
	if proto == "http" {
		return plain, http.DefaultTransport
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(n.TLSManager().RootPEM()) {
		t.Fatal("no internal root")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "app.test"}, ForceAttemptHTTP2: proto == "h2"}
	t.Cleanup(tr.CloseIdleConnections)
	return "https://" + n.HTTPSAddr().String(), h2Check{tr, proto == "h2"}
}

// h2Check fails a round trip made with the wrong protocol, so a test
// meant for HTTP/2 cannot pass over HTTP/1.1.
type h2Check struct {
	rt http.RoundTripper
	h2 bool
}

func (c h2Check) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.rt.RoundTrip(r)
	if err == nil && (resp.ProtoMajor == 2) != c.h2 {
		resp.Body.Close()
		return nil, fmt.Errorf("answered over %s", resp.Proto)
	}
	return resp, err
}

// exchange is what a client and the backend saw of one request.
type exchange struct {
	status  int
	header  http.Header // the client's, minus Date and the id's value
	body    string
	sent    map[string]any // the backend's echo, when it echoed
	hints   []string       // Link fields of 103 responses
	trailer http.Header
}

func doExchange(t *testing.T, rt http.RoundTripper, base, method, target string, hdr map[string]string) exchange {
	t.Helper()
	req, err := http.NewRequest(method, base+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "app.test"
	for k, v := range hdr {
		if k == "User-Agent" && v == "" {
			req.Header["User-Agent"] = nil
			continue
		}
		req.Header.Set(k, v)
	}
	var ex exchange
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		if code == http.StatusEarlyHints {
			ex.hints = append(ex.hints, h.Get("Link"))
		}
		return nil
	}}
	resp, err := rt.RoundTrip(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, target, err)
	}
	ex.status, ex.body, ex.trailer = resp.StatusCode, string(b), resp.Trailer
	ex.header = resp.Header.Clone()
	if ex.header.Get("X-Request-Id") == "" {
		t.Errorf("%s %s: no X-Request-Id", method, target)
	}
	for _, k := range []string{"Date", "X-Request-Id"} {
		ex.header.Del(k)
	}
	if v := ex.header.Get("Alt-Svc"); v != "" {
		// Each node advertises its own HTTP/3 port.
		ex.header.Set("Alt-Svc", altSvcPort.ReplaceAllString(v, `":PORT"`))
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") && resp.StatusCode == 200 && method == http.MethodGet {
		if err := json.Unmarshal(b, &ex.sent); err != nil {
			t.Fatalf("%s %s: echo: %v", method, target, err)
		}
		// The request id is new on every request; its presence is what
		// both lanes must agree on.
		h := ex.sent["header"].(map[string]any)
		if id, _ := h["X-Request-Id"].([]any); len(id) != 1 || id[0] == "spoofed" {
			t.Errorf("%s %s: backend got X-Request-Id %v", method, target, id)
		}
		delete(h, "X-Request-Id")
		ex.body = ""
	}
	if errorCodeOf(b) != "" {
		ex.body = errorCodeOf(b) // the JSON error's request id differs
	}
	return ex
}

var altSvcPort = regexp.MustCompile(`":[0-9]+"`)

func errorCodeOf(b []byte) string {
	var e struct {
		Error struct {
			Code      string `json:"code"`
			RequestID string `json:"request_id"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &e) != nil || e.Error.Code == "" || e.Error.RequestID == "" {
		return ""
	}
	return "error:" + e.Error.Code
}

// TestPassLaneMatchesChain: bodiless GETs and HEADs to a route that is
// only a pool take the pass lane, and what the backend receives and the
// client gets back is what the handler chain (net/http in front, the
// lane off) produces for the same requests: forwarding fields replaced,
// hop-by-hop fields dropped both ways, Via joined, Early Hints passed on
// with the final response keeping its X-Request-Id, trailers relayed,
// errors as the same JSON.
func TestPassLaneMatchesChain(t *testing.T) {
	for _, proto := range []string{"http", "https", "h2"} {
		t.Run(proto, func(t *testing.T) { testPassLaneMatchesChain(t, proto) })
	}
}

// testPassLaneMatchesChain compares the lane with the chain over plain
// HTTP, or over HTTPS (HTTP/1.1 or HTTP/2), where the lane also sets what
// the HTTPS listener's handler adds (Alt-Svc, HSTS) and the backend is
// told https.
func testPassLaneMatchesChain(t *testing.T, proto string) {
	tlsOn := proto != "http"
	backend := passBackend(t)
	lp := startLanePair(t, func(fast string) string { return passNodeConfig(t, backend.URL, fast, tlsOn) }, proto)
	lane, laneRT, chain, chainRT, reg := lp.lane, lp.laneRT, lp.chain, lp.chainRT, lp.reg

	hostile := map[string]string{
		"X-Forwarded-For": "6.6.6.6", "X-Real-Ip": "6.6.6.6", "Forwarded": "for=6.6.6.6",
		"X_Forwarded_Host": "evil.test", "X-Forwarded-Proto": "https", "X-Request-Id": "spoofed",
		"Via": "1.1 upstream-cdn", "Connection": "keep-alive", "Keep-Alive": "timeout=5",
		"Pragma": "no-cache", "User-Agent": "lane-test/1", "Accept": "*/*", "Cookie": "a=b",
		"Proxy-Authorization": "Basic c2VjcmV0",
	}
	cases := []struct {
		method, target string
		hdr            map[string]string
	}{
		{"GET", "/echo?x=1&y=%2F", hostile},
		{"GET", "/echo", map[string]string{"User-Agent": ""}},
		{"HEAD", "/echo", hostile},
		{"GET", "/hints", nil},
		{"GET", "/chunked", nil},
		{"GET", "/unavailable", nil},
		{"GET", "/not-modified", map[string]string{"If-None-Match": `"v1"`}},
		{"GET", "/fields", nil},
		{"HEAD", "/fields", nil},
		{"GET", "/named", nil},
		{"GET", "/close", nil},
		{"GET", "/close-named", nil},
		{"GET", "/close-named-chunked", nil},
		{"GET", "/sniff", nil},
		{"GET", "/events", nil},
		{"GET", "/no-content", nil},
		{"GET", "/gone/x", nil},
		{"HEAD", "/gone/x", nil},
	}
	for _, tc := range cases {
		got := doExchange(t, laneRT, lane, tc.method, tc.target, tc.hdr)
		want := doExchange(t, chainRT, chain, tc.method, tc.target, tc.hdr)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s %s:\n lane  %+v\n chain %+v", tc.method, tc.target, got, want)
		}
	}
	// The echo shows the rewrite itself, not only the agreement.
	ex := doExchange(t, laneRT, lane, "GET", "/echo?x=1", hostile)
	h := ex.sent["header"].(map[string]any)
	for _, k := range []string{"X-Real-Ip", "Forwarded", "X_forwarded_host", "Keep-Alive", "Proxy-Authorization", "Connection"} {
		if _, ok := h[textproto.CanonicalMIMEHeaderKey(k)]; ok {
			t.Errorf("backend got %s", k)
		}
	}
	scheme := "http"
	if tlsOn {
		scheme = "https"
	}
	if got, want := fmt.Sprintln(h["X-Forwarded-For"], h["X-Forwarded-Proto"], h["Via"], ex.sent["host"]), "[127.0.0.1] ["+scheme+"] [1.1 upstream-cdn, 1.1 edge] app.test\n"; got != want {
		t.Errorf("forwarding fields %s, want %s", got, want)
	}
	if ex.header.Get("X-Hop") != "" || ex.header.Get("Via") != "1.1 edge" {
		t.Errorf("response fields %v", ex.header)
	}
	for _, target := range []string{"/close-named", "/close-named-chunked"} {
		if ex := doExchange(t, laneRT, lane, "GET", target, nil); ex.header.Get("X-Secret") != "" || ex.body != "closing, named" {
			t.Errorf("%s: client got %v %q; want no field the backend's Connection named", target, ex.header, ex.body)
		}
	}
	if tlsOn && (ex.header.Get("Strict-Transport-Security") == "" || !strings.HasPrefix(ex.header.Get("Alt-Svc"), "h3=")) {
		t.Errorf("HTTPS response without HSTS or Alt-Svc: %v", ex.header)
	}

	// Every request the lane node served went through the lane.
	want := fmt.Sprintf(`
# HELP outpost_http_pass_lane_requests_total Edge requests served on the pass lane (bodiless GET and HEAD to a route that is only a pool, without the handler chain); they are counted in requests_total too.
# TYPE outpost_http_pass_lane_requests_total counter
outpost_http_pass_lane_requests_total %d
`, len(cases)+3)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "outpost_http_pass_lane_requests_total"); err != nil {
		t.Fatal(err)
	}
}

// TestPassLaneBodyTimeout: on the lane as in the chain, a backend that
// sends its header and then stalls mid-body is cut after the route's
// body_timeout (200ms here; the client waits 10s), and the client sees a
// broken response, not a hang.
func TestPassLaneBodyTimeout(t *testing.T) {
	stall := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		io.WriteString(w, "first bytes")
		w.(http.Flusher).Flush()
		<-stall
	}))
	t.Cleanup(backend.Close)
	t.Cleanup(func() { close(stall) }) // first: the handler returns, then the server closes
	_, base := startNode(t, fmt.Sprintf(`node: lane
data_dir: %s
edge: {listen: "127.0.0.1:0"}
pools:
  app: {backends: [{id: a, url: %q}]}
routes:
  - {name: app, pool: app, body_timeout: 200ms}
`, t.TempDir(), backend.URL))
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second)) // a hang fails, not the test run
	fmt.Fprint(conn, "GET /x HTTP/1.1\r\nHost: app.test\r\n\r\n")
	// The 11 bytes sent are still in the edge's buffer when the body
	// stalls (a sized response is not flushed piecemeal): the client gets
	// the connection closed, either before the head or mid-body, and
	// never a response passed off as complete.
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err == nil {
		var b []byte
		b, err = io.ReadAll(resp.Body)
		if err == nil {
			t.Fatalf("a stalled body read whole: %q", b)
		}
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the edge did not cut the stalled body: %v", err)
	}
}

// TestPassLaneSendTimeout: on the lane as in the chain, a client that
// stops reading a large response is cut after edge.send_timeout, and the
// backend connection it held is let go (the backend's writes fail) rather
// than held for as long as the client likes.
func TestPassLaneSendTimeout(t *testing.T) {
	const size = 64 << 20
	ended := make(chan error, 1)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(size))
		chunk := make([]byte, 64<<10)
		var err error
		for n := 0; n < size && err == nil; n += len(chunk) {
			_, err = w.Write(chunk)
		}
		ended <- err
	}))
	t.Cleanup(backend.Close)
	reg := prometheus.NewRegistry()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, base := startNodeWith(t, fmt.Sprintf(`node: lane
data_dir: %s
edge: {listen: "127.0.0.1:0", send_timeout: 300ms}
pools:
  app: {backends: [{id: a, url: %q}]}
routes:
  - {name: app, pool: app}
`, t.TempDir(), backend.URL), Options{EdgeListener: ln, Registerer: reg})
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.(*net.TCPConn).SetReadBuffer(4 << 10)
	fmt.Fprint(conn, "GET /big HTTP/1.1\r\nHost: app.test\r\n\r\n") // and never read
	select {
	case err := <-ended:
		if err == nil {
			t.Fatal("the backend wrote 64 MiB to a client that reads nothing")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the stalled client still holds the backend's response")
	}
	// Cut mid-body, it was still a lane request.
	want := `
# HELP outpost_http_pass_lane_requests_total Edge requests served on the pass lane (bodiless GET and HEAD to a route that is only a pool, without the handler chain); they are counted in requests_total too.
# TYPE outpost_http_pass_lane_requests_total counter
outpost_http_pass_lane_requests_total 1
`
	eventually := time.Now().Add(10 * time.Second)
	for {
		err := testutil.GatherAndCompare(reg, strings.NewReader(want), "outpost_http_pass_lane_requests_total")
		if err == nil {
			break
		}
		if time.Now().After(eventually) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lanePair starts a node with the lane (fast_http1: true) and one without,
// from cfg(fast_http1), and returns how to reach each over proto and the
// lane node's registry.
type lanePair struct {
	lane, chain     string
	laneRT, chainRT http.RoundTripper
	reg             *prometheus.Registry
}

func startLanePair(t *testing.T, cfg func(fast string) string, proto string) lanePair {
	t.Helper()
	lp := lanePair{reg: prometheus.NewRegistry()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	laneNode, lanePlain := startNodeWith(t, cfg("true"), Options{EdgeListener: ln, Registerer: lp.reg})
	chainNode, chainPlain := startNode(t, cfg("false"))
	lp.lane, lp.laneRT = laneClient(t, laneNode, lanePlain, proto)
	lp.chain, lp.chainRT = laneClient(t, chainNode, chainPlain, proto)
	return lp
}

// idPool starts n backends that answer with their id (b0, b1, …) and
// returns a node config with one route to pool app of them, the pool's
// other settings being policy (YAML lines, indented for the pool).
func idPool(t *testing.T, n int, policy string, tlsOn bool) func(fast string) string {
	var urls []string
	for i := range n {
		id := fmt.Sprint("b", i)
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, id) }))
		t.Cleanup(s.Close)
		urls = append(urls, fmt.Sprintf("{id: %s, url: %q}", id, s.URL))
	}
	return func(fast string) string {
		return fmt.Sprintf(`node: lane
data_dir: %s
edge: {listen: 127.0.0.1:0, fast_http1: %s, access_log: false}
pools:
  app:
%s    backends: [%s]
routes:
  - name: app
    pool: app
%s`, t.TempDir(), fast, policy, strings.Join(urls, ", "), tlsBlock(tlsOn))
	}
}

// TestPassLaneConsistentHash: a consistent_hash pool takes the lane, and
// every request goes to the backend the chain picks for it — by URI, by a
// header the client sends, by a cookie, and by a field the proxy rewrites
// (X-Forwarded-For: the client's address on both paths, never what the
// client claimed) — so cache affinity holds whichever path a request takes.
func TestPassLaneConsistentHash(t *testing.T) {
	for _, key := range []string{"uri", "header:X-Shard", "cookie:sid", "header:X-Forwarded-For"} {
		t.Run(key, func(t *testing.T) {
			lp := startLanePair(t, idPool(t, 4, fmt.Sprintf("    policy: consistent_hash\n    hash_key: %q\n", key), false), "http")
			lane, chain, reg := lp.lane, lp.chain, lp.reg
			picked := map[string]bool{}
			for i := range 40 {
				target := fmt.Sprintf("/obj/%d?v=%d", i, i%3)
				hdr := map[string]string{
					"X-Shard":         fmt.Sprint("shard-", i),
					"Cookie":          fmt.Sprintf("a=1; sid=s%d", i),
					"X-Forwarded-For": fmt.Sprint("10.0.0.", i), // a stranger's claim: rewritten
				}
				got := doExchange(t, http.DefaultTransport, lane, "GET", target, hdr)
				want := doExchange(t, http.DefaultTransport, chain, "GET", target, hdr)
				if got.body != want.body {
					t.Fatalf("%s: lane picked %s, chain %s", target, got.body, want.body)
				}
				picked[got.body] = true
			}
			spread := len(picked) > 1
			if key == "header:X-Forwarded-For" {
				spread = len(picked) == 1 // one client address: one backend
			}
			if !spread {
				t.Errorf("backends picked: %v", picked)
			}
			if v := passLaneCount(t, reg); v != 40 {
				t.Fatalf("%v requests on the lane, want 40", v)
			}
		})
	}
}

// passLaneCount is the node's pass-lane request count.
func passLaneCount(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "outpost_http_pass_lane_requests_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("no pass-lane counter")
	return 0
}

// TestPassLaneSticky: a pool with sticky cookies takes the lane, and the
// lane pins, honours and re-pins as the chain does: the same backend and
// the same Set-Cookie (Secure over HTTPS) for a client without a cookie,
// with a valid one, with a forged one, and with one pinning each backend
// in turn.
func TestPassLaneSticky(t *testing.T) {
	for _, proto := range []string{"http", "https", "h2"} {
		t.Run(proto, func(t *testing.T) { testPassLaneSticky(t, proto) })
	}
}

func testPassLaneSticky(t *testing.T, proto string) {
	tlsOn := proto != "http"
	lp := startLanePair(t, idPool(t, 3, "    policy: round_robin\n    sticky: {enabled: true, cookie: pin, secret: \"a-test-secret-of-32-bytes-length\"}\n", tlsOn), proto)
	lane, laneRT, chain, chainRT, reg := lp.lane, lp.laneRT, lp.chain, lp.chainRT, lp.reg
	requests := 0
	both := func(hdr map[string]string) exchange {
		t.Helper()
		requests++
		got := doExchange(t, laneRT, lane, "GET", "/x", hdr)
		want := doExchange(t, chainRT, chain, "GET", "/x", hdr)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("cookie %q:\n lane  %+v\n chain %+v", hdr["Cookie"], got, want)
		}
		return got
	}
	pins := map[string]string{} // backend → its cookie
	for range 3 {
		ex := both(nil)
		c := ex.header.Get("Set-Cookie")
		if c == "" {
			t.Fatal("no Set-Cookie for a client without a cookie")
		}
		if strings.Contains(c, "; Secure") != tlsOn {
			t.Fatalf("Set-Cookie %q over TLS %v", c, tlsOn)
		}
		pins[ex.body], _, _ = strings.Cut(c, ";")
	}
	if len(pins) != 3 {
		t.Fatalf("pins %v, want one per backend", pins)
	}
	for backend, cookie := range pins {
		for range 3 {
			if ex := both(map[string]string{"Cookie": "a=1; " + cookie}); ex.body != backend || ex.header.Get("Set-Cookie") != "" {
				t.Fatalf("pinned to %s: served by %s, Set-Cookie %q", backend, ex.body, ex.header.Get("Set-Cookie"))
			}
		}
	}
	forged := strings.Replace(pins["b0"], "b0.", "b1.", 1)
	if ex := both(map[string]string{"Cookie": forged}); ex.header.Get("Set-Cookie") == "" {
		t.Fatal("a forged cookie was honoured")
	}
	if v := passLaneCount(t, reg); v != float64(requests) {
		t.Fatalf("%v requests on the lane, want %d", v, requests)
	}
}

// A client that leaves ends the lane's backend request, whether it leaves
// while the backend is slow to send its head or while it streams its body
// (server-sent events, a long poll answered in parts): an HTTP/2 stream
// reset at once, an HTTP/1.1 connection closed once the request has
// waited 100 ms. A slow answer to a client that stays is answered. The
// backend is not blamed.
func TestPassLaneClientGone(t *testing.T) {
	for _, proto := range []string{"http", "https", "h2"} {
		t.Run(proto, func(t *testing.T) { testPassLaneClientGone(t, proto) })
	}
}

func testPassLaneClientGone(t *testing.T, proto string) {
	started := make(chan struct{}, 1)
	canceled := make(chan bool, 1)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/pause":
			time.Sleep(300 * time.Millisecond) // past the lane's watch delay
			io.WriteString(w, "ok")
			return
		case "/slow":
			started <- struct{}{}
		case "/stream":
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: first\n\n")
			w.(http.Flusher).Flush()
		default:
			io.WriteString(w, "ok")
			return
		}
		select {
		case <-r.Context().Done():
			canceled <- true
		case <-time.After(20 * time.Second):
			canceled <- false
			io.WriteString(w, "late")
		}
	}))
	t.Cleanup(backend.Close)
	reg := prometheus.NewRegistry()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n, plain := startNodeWith(t, passNodeConfig(t, backend.URL, "true", true), Options{EdgeListener: ln, Registerer: reg})
	base, rt := laneClient(t, n, plain, proto)

	if ex := doExchange(t, rt, base, "GET", "/pause", nil); ex.status != 200 || ex.body != "ok" {
		t.Fatalf("a slow answer: status %d, body %q", ex.status, ex.body)
	}
	for _, path := range []string{"/slow", "/stream"} {
		ctx, cancel := context.WithCancel(t.Context())
		req, _ := http.NewRequestWithContext(ctx, "GET", base+path, nil)
		req.Host = "app.test"
		done := make(chan error, 1)
		go func() {
			resp, err := rt.RoundTrip(req)
			if err == nil {
				// Only the stream answers: read its first event, then
				// leave mid-body.
				first := make([]byte, len("data: first\n\n"))
				if _, err = io.ReadFull(resp.Body, first); err == nil {
					started <- struct{}{}
				}
				<-ctx.Done()
				resp.Body.Close()
			}
			done <- err
		}()
		<-started
		cancel() // the transport resets the stream, or closes the connection
		err := <-done
		if path == "/slow" && err == nil {
			t.Fatal("the reset request got a response")
		}
		if !<-canceled {
			t.Fatalf("%s: the backend request ran on after the client left", path)
		}
	}
	if ex := doExchange(t, rt, base, "GET", "/ok", nil); ex.status != 200 {
		t.Fatalf("after the client left: status %d", ex.status)
	}
	// The lane counts an abandoned request once it has unwound, which
	// may be after the client's next request was answered.
	waitFor(t, "4 requests counted on the lane", func() bool { return passLaneCount(t, reg) == 4 })
	expectNotBlamed(t, reg)
}

// expectNotBlamed fails if the pool counted an error against a backend.
func expectNotBlamed(t *testing.T, reg *prometheus.Registry) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "outpost_lb_errors_total" {
			for _, m := range mf.GetMetric() {
				if m.GetCounter().GetValue() != 0 {
					t.Errorf("the backend was blamed for the client leaving: %v", m)
				}
			}
		}
	}
}

// TestPassLaneKeptState: the lane keeps its per-request state with the
// client connection (http1.Pass.Kept) and the parsed response with the
// backend connection, one request at a time. On one keep-alive client
// connection, requests that alternate between two pools and a dead one
// each get their own pool's answer, their own request id and their own
// error; and clients that share one backend connection between them (a
// pool of one idle connection) never see another's response. Run with
// -race, it also shows nothing of a request is touched after its
// connections went on to the next.
func TestPassLaneKeptState(t *testing.T) {
	backend := func(name string) string {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprintf(w, "%s %s %s", name, r.URL.Path, r.Header.Get("X-Request-Id"))
		}))
		t.Cleanup(s.Close)
		return s.URL
	}
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	cfg := fmt.Sprintf(`node: lane
data_dir: %s
edge: {listen: 127.0.0.1:0, access_log: false}
pools:
  a:
    backends: [{id: a, url: %q}]
    transport: {max_idle_per_backend: 1}
  b:
    backends: [{id: b, url: %q}]
  gone:
    backends: [{id: g, url: "http://%s"}]
    retries: {max_tries: 1}
routes:
  - {name: a, path_prefix: /a/, pool: a}
  - {name: b, path_prefix: /b/, pool: b}
  - {name: gone, path_prefix: /gone/, pool: gone}
`, t.TempDir(), backend("A"), backend("B"), deadAddr)
	reg := prometheus.NewRegistry()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, base := startNodeWith(t, cfg, Options{EdgeListener: ln, Registerer: reg})

	one := &http.Transport{MaxConnsPerHost: 1}
	t.Cleanup(one.CloseIdleConnections)
	client := &http.Client{Transport: one}
	seen := map[string]bool{}
	for i := range 30 {
		path := []string{"/a/", "/b/", "/gone/"}[i%3] + fmt.Sprint(i)
		resp, err := client.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		id := resp.Header.Get("X-Request-Id")
		if id == "" || seen[id] {
			t.Fatalf("%s: request id %q (new on every request)", path, id)
		}
		seen[id] = true
		switch path[1] {
		case 'a', 'b':
			want := fmt.Sprintf("%c %s %s", path[1]-'a'+'A', path, id)
			if resp.StatusCode != 200 || string(b) != want {
				t.Fatalf("%s: %d %q, want %q", path, resp.StatusCode, b, want)
			}
		default:
			if resp.StatusCode != http.StatusBadGateway && resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), id) {
				t.Fatalf("%s: %d %q, want the dead pool's error with id %s", path, resp.StatusCode, b, id)
			}
		}
	}

	errs := make(chan error, 8)
	for c := range 8 {
		go func() {
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			for i := range 40 {
				path := fmt.Sprintf("/a/%d-%d", c, i)
				resp, err := (&http.Client{Transport: tr}).Get(base + path)
				if err != nil {
					errs <- err
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if want := "A " + path + " " + resp.Header.Get("X-Request-Id"); string(b) != want {
					errs <- fmt.Errorf("%s: %q, want %q", path, b, want)
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if v := passLaneCount(t, reg); v != 30+8*40 {
		t.Fatalf("%v requests on the lane, want %d", v, 30+8*40)
	}
}
