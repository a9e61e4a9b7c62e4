package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// The forwarder must do what httputil.ReverseProxy (the rp path) does for
// the requests it takes: each case runs through both, against the same
// origin, and compares what the origin received and what the client got.
func TestForwarderSameAsReverseProxy(t *testing.T) {
	var mu sync.Mutex
	var seen http.Header
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = r.Header.Clone()
		seen.Set("X-Seen-Host", r.Host)
		seen.Set("X-Seen-Uri", r.RequestURI)
		mu.Unlock()
		switch r.URL.Path {
		case "/hop":
			w.Header().Set("Connection", "X-Private")
			w.Header().Set("X-Private", "secret")
			w.Header().Set("Keep-Alive", "timeout=5")
			w.Header().Set("X-Public", "yes")
		case "/trailers":
			w.Header().Set("Trailer", "X-Sum")
			w.WriteHeader(200)
			io.WriteString(w, "body")
			w.Header().Set("X-Sum", "42")
			w.Header().Set(http.TrailerPrefix+"X-Late", "late")
			return
		case "/hints":
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
		case "/events":
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: 1\n\n")
			w.(http.Flusher).Flush()
			io.WriteString(w, "data: 2\n\n")
			return
		case "/multi":
			w.Header().Add("Set-Cookie", "a=1")
			w.Header().Add("Set-Cookie", "b=2")
			w.Header().Add("Via", "1.1 origin-cache")
		}
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "ok "+r.Method)
	}))
	defer origin.Close()
	target, _ := url.Parse(origin.URL + "/base")
	h := New(Options{Target: target, Transport: NewTransport(5 * time.Second), Via: "edge"}).(*forwarder)
	paths := map[string]http.Handler{"forwarder": h, "ReverseProxy": h.rp}

	cases := []struct {
		name, method, path string
		header             http.Header
		body               string
	}{
		{"get", "GET", "/x?q=1", nil, ""},
		{"head", "HEAD", "/x", nil, ""},
		{"post", "POST", "/x", http.Header{"Content-Type": {"text/plain"}}, "payload"},
		{"hop by hop request", "GET", "/x", http.Header{"Connection": {"X-Drop, keep-alive"}, "X-Drop": {"1"},
			"Keep-Alive": {"300"}, "Proxy-Authorization": {"Basic eA=="}, "Proxy-Connection": {"keep-alive"}, "X-Keep": {"1"}}, ""},
		{"client forwarding fields", "GET", "/x", http.Header{"X-Forwarded-For": {"6.6.6.6"}, "X-Forwarded-Host": {"evil"},
			"X-Forwarded-Proto": {"https"}, "Forwarded": {"for=1"}, "X-Real-Ip": {"1.1.1.1"}, "X_forwarded_for": {"2.2.2.2"}}, ""},
		{"no user agent", "GET", "/x", http.Header{"User-Agent": nil}, ""},
		{"via chain", "GET", "/multi", http.Header{"Via": {"1.0 client-proxy"}}, ""},
		{"hop by hop response", "GET", "/hop", nil, ""},
		{"trailers", "GET", "/trailers", nil, ""},
		{"early hints", "GET", "/hints", nil, ""},
		{"event stream", "GET", "/events", nil, ""},
		{"escaped path", "GET", "/a%2Fb/c", nil, ""},
	}
	type result struct {
		seen    http.Header
		status  int
		header  http.Header
		body    string
		trailer http.Header
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := map[string]result{}
			for name, hd := range paths {
				edge := httptest.NewServer(hd)
				req, _ := http.NewRequest(tc.method, edge.URL+tc.path, strings.NewReader(tc.body))
				if tc.body == "" {
					req.Body = nil
				}
				for k, v := range tc.header {
					req.Header[k] = v
				}
				resp, err := edge.Client().Do(req)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				edge.Close()
				resp.Header.Del("Date")
				mu.Lock()
				s := seen
				mu.Unlock()
				s.Del("Accept-Encoding")
				// Each path has its own edge listener: name its address alike.
				host := strings.TrimPrefix(edge.URL, "http://")
				for _, k := range []string{"X-Forwarded-Host", "X-Seen-Host"} {
					if s.Get(k) == host {
						s.Set(k, "EDGE")
					}
				}
				got[name] = result{s, resp.StatusCode, resp.Header, string(b), resp.Trailer}
			}
			f, r := got["forwarder"], got["ReverseProxy"]
			if !reflect.DeepEqual(f.seen, r.seen) {
				t.Errorf("origin saw\n forwarder:    %v\n ReverseProxy: %v", f.seen, r.seen)
			}
			if f.status != r.status || f.body != r.body || !reflect.DeepEqual(f.header, r.header) || !reflect.DeepEqual(f.trailer, r.trailer) {
				t.Errorf("client got\n forwarder:    %d %v %q %v\n ReverseProxy: %d %v %q %v", f.status, f.header, f.body, f.trailer,
					r.status, r.header, r.body, r.trailer)
			}
		})
	}
}

// A body the origin breaks off is not passed on as a complete response:
// the client's connection is cut.
func TestForwarderAbortsBrokenBody(t *testing.T) {
	edge := rawOriginEdge(t, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
	resp, err := http.Get(edge.URL + "/")
	if err != nil {
		return // cut before the head left the edge's buffer: not complete either
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Fatal("a broken body arrived as a complete response")
	}
}

// An origin that answers 101 to a request that asked for no upgrade gets
// a 502, not a hijacked connection.
func TestForwarderRefusesUnaskedSwitch(t *testing.T) {
	edge := rawOriginEdge(t, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	resp, err := http.Get(edge.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
}

// rawOriginEdge serves the proxy in front of an origin that answers every
// request with reply, as bytes, then holds the connection a moment.
func rawOriginEdge(t *testing.T, reply string) *httptest.Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				http.ReadRequest(bufio.NewReader(c))
				io.WriteString(c, reply)
				time.Sleep(200 * time.Millisecond)
			}()
		}
	}()
	target, _ := url.Parse("http://" + ln.Addr().String())
	edge := httptest.NewServer(New(Options{Target: target, Transport: NewTransport(5 * time.Second), Via: "edge"}))
	t.Cleanup(edge.Close)
	return edge
}

// The fields an origin's Connection field names belong to the connection,
// also when the same field says close (net/http's client drops such a
// Connection field, names and all, so single-upstream routes read the
// responses to requests without a body or with a small one themselves, as
// pools do).
func TestSingleUpstreamConnectionNamedFields(t *testing.T) {
	cases := []struct{ name, reply string }{
		{"close and a name", "HTTP/1.1 200 OK\r\nConnection: close, X-Secret\r\nX-Secret: hop-only\r\nContent-Length: 4\r\n\r\nbody"},
		{"a name, then close", "HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nConnection: close\r\nX-Secret: hop-only\r\nContent-Length: 4\r\n\r\nbody"},
		{"chunked", "HTTP/1.1 200 OK\r\nConnection: close, X-Secret\r\nX-Secret: hop-only\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\n"},
		{"until close", "HTTP/1.1 200 OK\r\nConnection: X-Secret, close\r\nX-Secret: hop-only\r\n\r\nbody"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			edge := rawOriginEdge(t, tc.reply)
			for _, method := range []string{"GET", "HEAD", "POST"} {
				var body io.Reader
				if method == "POST" {
					body = strings.NewReader("a small body")
				}
				req, _ := http.NewRequest(method, edge.URL+"/", body)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				want := "body"
				if method == "HEAD" {
					want = ""
				}
				if resp.StatusCode != 200 || resp.Header.Get("X-Secret") != "" || string(b) != want {
					t.Errorf("%s: %d %v %q; want 200, %q and no X-Secret", method, resp.StatusCode, resp.Header, b, want)
				}
			}
		})
	}
}
