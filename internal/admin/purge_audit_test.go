package admin

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/cdn"
	"github.com/outpost-edge/outpost/internal/cluster"
)

const auditToken = "audit-token-0123456789"

// serveOn serves h on a fresh port of ip (127.0.0.x).
func serveOn(t *testing.T, ip string, h http.Handler) *httptest.Server {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Skipf("cannot listen on %s: %v", ip, err)
	}
	s := &httptest.Server{Listener: ln, Config: &http.Server{Handler: h}}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func testCache(t *testing.T) *cdn.Cache {
	t.Helper()
	cfg := cdn.Config{Dir: filepath.Join(t.TempDir(), "cache")}
	cfg.SetDefaults()
	c, err := cdn.New(cfg, cdn.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// counting counts the requests that reach h.
func counting(n *atomic.Int32, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h.ServeHTTP(w, r)
	})
}

// purgeNode is one node's admin API with a cache and a fan-out to peers.
type purgeNode struct {
	srv  *httptest.Server
	hits atomic.Int32 // purge requests that reached this node
	h    http.Handler
}

func (p *purgeNode) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.h.ServeHTTP(w, r) }

func purge(t *testing.T, url, body string) (int, PurgeResponse, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url+"/v1/purge", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+auditToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var pr PurgeResponse
	_ = json.Unmarshal(raw, &pr)
	return resp.StatusCode, pr, string(raw)
}

// Two nodes on 127.0.0.1 and 127.0.0.2 purge each other: a purge through
// one reaches the other once, and the pushed purge is not sent back.
// Requests the cache cannot key (a host it would never store) are refused
// with 400 before any node is touched, and hostile bodies are 400s.
func TestPurgeFanoutTwoNodes(t *testing.T) {
	a, b := &purgeNode{}, &purgeNode{}
	a.srv = serveOn(t, "127.0.0.1", a)
	b.srv = serveOn(t, "127.0.0.2", b)
	for _, n := range []struct {
		self, peer string
		node, to   *purgeNode
	}{{"a", "b", a, b}, {"b", "a", b, a}} {
		fan, err := cluster.NewFanout(n.self, []cluster.Peer{{Name: n.peer, Admin: n.to.srv.URL}}, auditToken, filepath.Join(t.TempDir(), "q.db"), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { fan.Close() })
		srv := New(auditToken, slog.New(slog.DiscardHandler))
		srv.Handle("POST /v1/purge", counting(&n.node.hits, PurgeHandler([]PurgeTarget{{Node: n.self, Cache: testCache(t)}}, fan)))
		n.node.h = srv
	}

	status, pr, raw := purge(t, a.srv.URL, `{"urls":["http://www.example.com/x"],"tags":["t"]}`)
	if status != 200 || !pr.Nodes["a"].Applied || !pr.Nodes["b"].Applied {
		t.Fatalf("purge: %d %s", status, raw)
	}
	if a.hits.Load() != 1 || b.hits.Load() != 1 {
		t.Errorf("a got %d, b got %d purge requests; want 1 each (no loop)", a.hits.Load(), b.hits.Load())
	}

	for _, c := range []struct{ name, body string }{
		{"huge", `{"tags":["` + strings.Repeat("x", 2<<20) + `"]}`}, // 413, checked below
		{"host the cache never keys", `{"urls":["http://a*b.example/x"]}`},
		{"prefix with a bad host", `{"prefixes":["http://ex%21ample.com/"]}`},
		{"relative", `{"urls":["/x"]}`},
		{"NUL", `{"urls":["http://www.example.com/\u0000"]}`},
		{"CRLF", `{"urls":["http://www.example.com/\r\nX-Injected: 1"]}`},
		{"not http(s)", `{"urls":["file:///etc/passwd"]}`},
		{"unknown field", `{"all":true,"everything":true}`},
		{"trailing data", `{"tags":["t"]} {"all":true}`},
		{"not an object", `["all"]`},
		{"invalid JSON", `{"all":`},
		{"empty", ``},
	} {
		a.hits.Store(0)
		b.hits.Store(0)
		status, _, raw := purge(t, a.srv.URL, c.body)
		want, code := 400, `"bad_request"`
		if c.name == "huge" {
			want, code = 413, `"body_too_large"`
		}
		if status != want || !strings.Contains(raw, code) {
			t.Errorf("%s: %d %.200s, want %d %s", c.name, status, raw, want, code)
		}
		if b.hits.Load() != 0 {
			t.Errorf("%s: sent to the peer", c.name)
		}
	}

	// Odd but valid input is applied everywhere: non-UTF-8 and long tags,
	// a path with dot segments (cache keys are never file names).
	status, _, raw = purge(t, a.srv.URL, "{\"tags\":[\"\xff\xfe\",\""+strings.Repeat("t", 4096)+"\"],\"urls\":[\"http://www.example.com/../../etc/passwd\"]}")
	if status != 200 {
		t.Errorf("odd but valid purge: %d %s", status, raw)
	}
}

// A peer that took the pushed purge but could not apply it (it answered
// 207 with its node not applied) is reported as not applied, with its
// error, not as applied.
func TestPurgePeerThatDidNotApply(t *testing.T) {
	peer := serveOn(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusMultiStatus, PurgeResponse{Nodes: map[string]NodePurge{"b": {Error: "disk on fire"}}})
	}))
	fan, err := cluster.NewFanout("a", []cluster.Peer{{Name: "b", Admin: peer.URL}}, auditToken, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fan.Close()
	srv := New(auditToken, slog.New(slog.DiscardHandler))
	srv.Handle("POST /v1/purge", PurgeHandler([]PurgeTarget{{Node: "a", Cache: testCache(t)}}, fan))
	node := serveOn(t, "127.0.0.1", srv)
	status, pr, raw := purge(t, node.URL, `{"all":true}`)
	if status != 207 || pr.Nodes["b"].Applied || !strings.Contains(pr.Nodes["b"].Error, "disk on fire") {
		t.Errorf("%d %s; want 207 with b not applied, naming its error", status, raw)
	}
}

// Authorization is a singleton field: a request carrying it twice is
// refused whichever copy holds the token, so a proxy that appends its own
// credential cannot turn a bad request into a good one (or the reverse).
func TestAuthorizationHeaderTwice(t *testing.T) {
	a := New(auditToken, slog.New(slog.DiscardHandler))
	a.Handle("GET /v1/status", JSONHandler(func() any { return "ok" }))
	srv := serveOn(t, "127.0.0.1", a)
	for _, pair := range [][]string{
		{"Bearer " + auditToken, "Bearer wrong-token-0123456789"},
		{"Bearer wrong-token-0123456789", "Bearer " + auditToken},
		{"Bearer " + auditToken, "Bearer " + auditToken},
	} {
		req, _ := http.NewRequest("GET", srv.URL+"/v1/status", nil)
		req.Header["Authorization"] = pair
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Errorf("%q: %d, want 401", pair, resp.StatusCode)
		}
	}
}

// A client that announces a body and never sends it must not hold a
// server goroutine and connection after an answer that did not need the
// body: without a token (401), or on the public health endpoints. Go's
// server would otherwise wait, with no deadline, to drain the body before
// even writing the answer.
func TestUnreadBodyDoesNotHoldTheConnection(t *testing.T) {
	a := New(auditToken, slog.New(slog.DiscardHandler))
	a.HandlePublic("GET /healthz", JSONHandler(func() any { return "ok" }))
	a.Handle("POST /v1/purge", PurgeHandler(nil, nil))
	srv := serveOn(t, "127.0.0.1", a)
	for _, c := range []struct{ req, want string }{
		{"POST /v1/purge HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n{\"all\"", "HTTP/1.1 401"},
		{"POST /v1/nope HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"all", "HTTP/1.1 401"},
		{"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\nabc", "HTTP/1.1 200"},
	} {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(3 * time.Second))
		io.WriteString(conn, c.req)
		got, err := bufio.NewReader(conn).ReadString('\n')
		if !strings.HasPrefix(got, c.want) {
			t.Errorf("%q: got %q (%v), want %s at once", strings.Fields(c.req)[1], got, err, c.want)
		}
		conn.Close()
	}
}
