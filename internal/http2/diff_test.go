package http2

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The differential tests send the same requests through Go's HTTP/2
// client to net/http's own HTTP/2 server (the reference) and to ours,
// with the same handler, and compare what the client got and what the
// handler saw.

// seen is what a handler saw of its request.
type seen struct {
	Method, URL, RequestURI, Host, Proto string
	ProtoMajor, ProtoMinor               int
	Header, Trailer                      http.Header
	ContentLength                        int64
	Body                                 string // summarized if long
	BodyErr                              bool
	TLS                                  bool
	RemoteAddr                           bool   // non-empty
	remote                               string // the address itself (differs between servers: not compared)
}

// outcome is what one case produced against one server.
type outcome struct {
	Status  int
	Proto   string
	Header  http.Header // without Date
	Body    string      // summarized if long
	Trailer http.Header
	Err     string // where the client saw an error: "roundtrip" or "body"
	Seen    []seen
	Extra   []string // observations particular to the case
}

// summarize returns s, or its length and hash when s is long.
func summarize(s string) string {
	if len(s) <= 512 {
		return s
	}
	return fmt.Sprintf("<%d bytes, sha256 %x>", len(s), sha256.Sum256([]byte(s)))
}

func summarizeHeader(h http.Header) http.Header {
	if h == nil {
		return nil
	}
	out := make(http.Header, len(h))
	for k, vv := range h {
		for _, v := range vv {
			out[k] = append(out[k], summarize(v))
		}
	}
	return out
}

// diffEnv is one server of the pair, with its client and what its
// handler recorded.
type diffEnv struct {
	name   string
	base   string // https://127.0.0.1:port
	client *http.Client
	file   string // a 10 MiB file for io.Copy

	running *gauge // handlers running

	mu      sync.Mutex
	seen    []seen
	logBuf  bytes.Buffer // the server's ErrorLog
	logSig  chan struct{}
	gates   map[string]chan struct{} // by X-Gate: opened by the test
	signals map[string]chan string   // by X-Gate: sent to by handlers
	barrier struct {
		n, want int
		all     chan struct{}
	}
}

func (e *diffEnv) Write(p []byte) (int, error) { // the ErrorLog
	e.mu.Lock()
	defer e.mu.Unlock()
	e.logBuf.Write(p)
	select {
	case e.logSig <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (e *diffEnv) logged() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.logBuf.String()
}

// waitLogged waits until the ErrorLog contains s.
func (e *diffEnv) waitLogged(t *testing.T, s string) {
	t.Helper()
	timeout := time.After(testTimeout)
	for !strings.Contains(e.logged(), s) {
		select {
		case <-e.logSig:
		case <-timeout:
			t.Fatalf("%s: ErrorLog never had %q; it has %q", e.name, s, e.logged())
		}
	}
}

// gate returns a channel the handler with X-Gate: name waits on, and one
// it reports on.
func (e *diffEnv) gate(name string) (open chan struct{}, signal chan string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	open, signal = make(chan struct{}), make(chan string, 4)
	e.gates[name], e.signals[name] = open, signal
	return open, signal
}

func (e *diffEnv) gateOf(r *http.Request) (chan struct{}, chan string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	name := r.Header.Get("X-Gate")
	return e.gates[name], e.signals[name]
}

func (e *diffEnv) url(path string) string { return e.base + path }

// takeSeen waits for the handlers to return and takes what they saw.
func (e *diffEnv) takeSeen(t *testing.T) []seen {
	t.Helper()
	if !e.running.waitZero() {
		t.Fatalf("%s: handlers still running", e.name)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.seen
	e.seen = nil
	return s
}

const bigSize = 10 << 20

// bigBody is bigSize bytes of a pattern that is not all one byte.
var bigBody = sync.OnceValue(func() []byte {
	b := make([]byte, bigSize)
	for i := range b {
		b[i] = byte(i*7 + i>>10)
	}
	return b
})

func diffHandler(e *diffEnv) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.running.inc()
		defer e.running.dec()
		body, err := io.ReadAll(r.Body)
		s := seen{Method: r.Method, URL: r.URL.String(), RequestURI: r.RequestURI, Host: r.Host,
			Proto: r.Proto, ProtoMajor: r.ProtoMajor, ProtoMinor: r.ProtoMinor,
			Header: summarizeHeader(r.Header), Trailer: summarizeHeader(r.Trailer), ContentLength: r.ContentLength,
			Body: summarize(string(body)), BodyErr: err != nil, TLS: r.TLS != nil, RemoteAddr: r.RemoteAddr != "", remote: r.RemoteAddr}
		e.mu.Lock()
		e.seen = append(e.seen, s)
		e.mu.Unlock()
		q := r.URL.Query()
		switch r.URL.Path {
		case "/echo":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintf(w, "%s %s %d bytes", r.Method, r.URL.RawQuery, len(body))
		case "/sum":
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprintf(w, "%x", sha256.Sum256(body))
		case "/big":
			w.Header().Set("Content-Type", "application/octet-stream")
			switch q.Get("how") {
			case "writes":
				b := bigBody()
				for len(b) > 0 {
					n := min(len(b), 32<<10)
					if _, err := w.Write(b[:n]); err != nil {
						return
					}
					b = b[n:]
				}
			case "copy":
				f, err := os.Open(e.file)
				if err != nil {
					http.Error(w, err.Error(), 500)
					return
				}
				defer f.Close()
				io.Copy(w, f)
			}
		case "/sniff":
			switch q.Get("kind") {
			case "html":
				io.WriteString(w, "<!DOCTYPE html><html><body>hi</body></html>")
			case "binary":
				w.Write([]byte{0x00, 0x01, 0x02, 0xff, 0xfe, 'P', 'K'})
			case "gif":
				io.WriteString(w, "GIF89a....")
			}
		case "/sized":
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Content-Length", "11")
			io.WriteString(w, "hello world")
		case "/nothing":
			w.Header().Set("X-Only", "headers")
			if c, _ := strconv.Atoi(q.Get("code")); c != 0 {
				w.WriteHeader(c)
			}
		case "/nobody":
			code, _ := strconv.Atoi(q.Get("code"))
			w.Header().Set("Etag", `"v1"`)
			w.WriteHeader(code)
			_, err := io.WriteString(w, "must not be sent")
			if errors.Is(err, http.ErrBodyNotAllowed) {
				w.Header().Set("X-Ignored", "set after WriteHeader")
				e.note(r, "write: ErrBodyNotAllowed")
			} else {
				e.note(r, fmt.Sprintf("write: %v", err))
			}
		case "/cookies":
			http.SetCookie(w, &http.Cookie{Name: "a", Value: "1", Path: "/"})
			http.SetCookie(w, &http.Cookie{Name: "b", Value: "2", HttpOnly: true})
			w.Header().Add("Set-Cookie", "c=3; Secure")
			io.WriteString(w, r.Header.Get("Cookie"))
		case "/trailers":
			switch q.Get("how") {
			case "declared":
				w.Header().Set("Trailer", "X-Sum, X-Count")
				w.Header().Set("Content-Type", "text/plain")
				io.WriteString(w, "body with trailers")
				w.Header().Set("X-Sum", "abc")
				w.Header().Set("X-Count", "3")
			case "forbidden":
				// Fields that may not be trailers are dropped, declared
				// or set by prefix.
				w.Header().Set("Trailer", "X-Sum, Authorization, If-Match")
				io.WriteString(w, "body")
				w.Header().Set("X-Sum", "abc")
				w.Header().Set("Authorization", "secret")
				w.Header().Set("If-Match", "x")
				w.Header().Set(http.TrailerPrefix+"Host", "h")
			case "prefix":
				w.Header().Set("Content-Type", "text/plain")
				io.WriteString(w, "body")
				w.(http.Flusher).Flush()
				w.Header().Set(http.TrailerPrefix+"X-Late", "late value")
			}
		case "/early":
			w.Header().Set("Link", "</style.css>; rel=preload; as=style")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("X-Final", "yes")
			w.WriteHeader(http.StatusOK)
			io.WriteString(w, "final")
		case "/flush":
			open, _ := e.gateOf(r)
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "first")
			w.(http.Flusher).Flush()
			select {
			case <-open:
			case <-r.Context().Done():
				return
			}
			io.WriteString(w, "second")
		case "/panic":
			if q.Get("when") == "after" {
				io.WriteString(w, "partial")
				w.(http.Flusher).Flush()
			}
			panic("boom-" + q.Get("id"))
		case "/abort":
			if q.Get("when") == "after" {
				io.WriteString(w, "partial")
				w.(http.Flusher).Flush()
			}
			panic(http.ErrAbortHandler)
		case "/bighdr":
			w.Header().Set("X-Big", strings.Repeat("0123456789abcdef", 1300)) // 20800 bytes
			w.Header().Set("X-Small", "s")
			io.WriteString(w, "ok")
		case "/concurrent":
			e.mu.Lock()
			e.barrier.n++
			if e.barrier.n == e.barrier.want {
				close(e.barrier.all)
			}
			all := e.barrier.all
			e.mu.Unlock()
			select {
			case <-all:
			case <-r.Context().Done():
				http.Error(w, "barrier not reached", 500)
				return
			}
			io.WriteString(w, "stream "+q.Get("i"))
		case "/block":
			_, signal := e.gateOf(r)
			signal <- "started"
			<-r.Context().Done()
			signal <- "done: " + r.Context().Err().Error()
		case "/rc":
			rc := http.NewResponseController(w)
			w.Header().Set("Content-Type", "text/plain")
			e1 := rc.SetWriteDeadline(time.Now().Add(time.Minute))
			e2 := rc.SetReadDeadline(time.Now().Add(time.Minute))
			io.WriteString(w, "a")
			e3 := rc.Flush()
			fmt.Fprintf(w, " write deadline: %v, read deadline: %v, flush: %v", e1, e2, e3)
		default:
			http.NotFound(w, r)
		}
	})
}

// note records an observation of the handler of r, as a seen entry of
// method NOTE after the request's own.
func (e *diffEnv) note(r *http.Request, s string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seen = append(e.seen, seen{Method: "NOTE", URL: s})
}

// newDiffEnvs starts net/http's HTTP/2 server and ours with the same
// handler.
func newDiffEnvs(t *testing.T) []*diffEnv {
	file := filepath.Join(t.TempDir(), "big.bin")
	if err := os.WriteFile(file, bigBody(), 0o644); err != nil {
		t.Fatal(err)
	}
	mk := func(name string) *diffEnv {
		return &diffEnv{name: name, file: file, running: newGauge(), logSig: make(chan struct{}, 1),
			gates: map[string]chan struct{}{}, signals: map[string]chan string{}}
	}
	ref, ours := mk("nethttp"), mk("ours")

	s := httptest.NewUnstartedServer(diffHandler(ref))
	s.EnableHTTP2 = true
	s.Config.ErrorLog = log.New(ref, "", 0)
	s.StartTLS()
	t.Cleanup(s.Close)
	ref.base = "https://" + s.Listener.Addr().String()
	ref.client = h2Client(t)

	addr, client, _, _ := startServer(t, diffHandler(ours), func(s *http.Server) { s.ErrorLog = log.New(ours, "", 0) })
	ours.base = "https://" + addr
	ours.client = client
	return []*diffEnv{ref, ours}
}

// do sends req and returns what came back; the body is read whole.
func (e *diffEnv) do(t *testing.T, req *http.Request) outcome {
	t.Helper()
	var o outcome
	resp, err := e.client.Do(req)
	if err != nil {
		o.Err = "roundtrip"
		o.Seen = e.takeSeen(t)
		return o
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		o.Err = "body"
	}
	o.Status, o.Proto, o.Body = resp.StatusCode, resp.Proto, summarize(string(body))
	o.Header = summarizeHeader(resp.Header)
	delete(o.Header, "Date")
	o.Trailer = summarizeHeader(resp.Trailer)
	o.Seen = e.takeSeen(t)
	return o
}

func newReq(t *testing.T, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "diff.example" // the same :authority for both servers
	return req
}

// onlyReader hides everything but Read, so the client cannot know the
// length: the body is streamed without content-length.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

type diffCase struct {
	name string
	run  func(t *testing.T, e *diffEnv) outcome
	// check, if set, holds expectations on either server's outcome.
	check func(t *testing.T, o outcome)
}

func simple(method, path string, body func() io.Reader) func(t *testing.T, e *diffEnv) outcome {
	return func(t *testing.T, e *diffEnv) outcome {
		var b io.Reader
		if body != nil {
			b = body()
		}
		return e.do(t, newReq(t, method, e.url(path), b))
	}
}

func wantStatus(code int) func(t *testing.T, o outcome) {
	return func(t *testing.T, o outcome) {
		t.Helper()
		if o.Status != code || o.Err != "" {
			t.Errorf("status %d err %q, want %d", o.Status, o.Err, code)
		}
	}
}

var diffCases = []diffCase{
	{name: "GET with query", run: simple("GET", "/echo?a=1&b=two+words&c=%2F%3F", nil), check: wantStatus(200)},
	{name: "GET escaped path", run: simple("GET", "/nothere/%7Euser/a%20b", nil), check: wantStatus(404)},
	{name: "HEAD", run: simple("HEAD", "/echo?x=y", nil), check: func(t *testing.T, o outcome) {
		if o.Status != 200 || o.Body != "" {
			t.Errorf("status %d body %q", o.Status, o.Body)
		}
	}},
	{name: "POST with content-length", run: simple("POST", "/echo", func() io.Reader { return strings.NewReader("a small body") }),
		check: func(t *testing.T, o outcome) {
			if len(o.Seen) != 1 || o.Seen[0].ContentLength != 12 || o.Seen[0].Body != "a small body" {
				t.Errorf("seen %+v", o.Seen)
			}
		}},
	{name: "POST streamed without content-length", run: func(t *testing.T, e *diffEnv) outcome {
		pr, pw := io.Pipe()
		go func() {
			for i := 0; i < 20; i++ {
				fmt.Fprintf(pw, "chunk %02d;", i)
			}
			pw.Close()
		}()
		return e.do(t, newReq(t, "POST", e.url("/echo"), onlyReader{pr}))
	}, check: func(t *testing.T, o outcome) {
		if len(o.Seen) != 1 || o.Seen[0].ContentLength != -1 || len(o.Seen[0].Body) != 180 {
			t.Errorf("seen %+v", o.Seen)
		}
	}},
	{name: "POST 5 MiB", run: func(t *testing.T, e *diffEnv) outcome {
		return e.do(t, newReq(t, "POST", e.url("/sum"), bytes.NewReader(bigBody()[:5<<20])))
	}, check: func(t *testing.T, o outcome) {
		want := fmt.Sprintf("%x", sha256.Sum256(bigBody()[:5<<20]))
		if o.Body != want || len(o.Seen) != 1 || o.Seen[0].ContentLength != 5<<20 {
			t.Errorf("body %q, want %q; seen length %v", o.Body, want, o.Seen)
		}
	}},
	{name: "POST 5 MiB streamed", run: func(t *testing.T, e *diffEnv) outcome {
		return e.do(t, newReq(t, "POST", e.url("/sum"), onlyReader{bytes.NewReader(bigBody()[:5<<20])}))
	}, check: func(t *testing.T, o outcome) {
		if want := fmt.Sprintf("%x", sha256.Sum256(bigBody()[:5<<20])); o.Body != want {
			t.Errorf("body %q, want %q", o.Body, want)
		}
	}},
	{name: "10 MiB response in 32 KiB writes", run: simple("GET", "/big?how=writes", nil), check: wantBig},
	{name: "10 MiB response by io.Copy from a file", run: simple("GET", "/big?how=copy", nil), check: wantBig},
	{name: "sniffed HTML", run: simple("GET", "/sniff?kind=html", nil), check: wantType("text/html; charset=utf-8")},
	{name: "sniffed binary", run: simple("GET", "/sniff?kind=binary", nil), check: wantType("application/octet-stream")},
	{name: "sniffed GIF", run: simple("GET", "/sniff?kind=gif", nil), check: wantType("image/gif")},
	{name: "handler sets Content-Length", run: simple("GET", "/sized", nil), check: func(t *testing.T, o outcome) {
		if o.Header.Get("Content-Length") != "11" || o.Body != "hello world" {
			t.Errorf("header %v body %q", o.Header, o.Body)
		}
	}},
	{name: "handler writes nothing", run: simple("GET", "/nothing", nil), check: wantStatus(200)},
	{name: "handler writes only a status", run: simple("GET", "/nothing?code=202", nil), check: wantStatus(202)},
	{name: "204 with a write", run: simple("GET", "/nobody?code=204", nil), check: wantNoBody(204)},
	{name: "304 with a write", run: simple("GET", "/nobody?code=304", nil), check: wantNoBody(304)},
	{name: "multiple Set-Cookie", run: simple("GET", "/cookies", nil), check: func(t *testing.T, o outcome) {
		if got := o.Header["Set-Cookie"]; len(got) != 3 {
			t.Errorf("Set-Cookie %q", got)
		}
	}},
	{name: "request cookies", run: func(t *testing.T, e *diffEnv) outcome {
		req := newReq(t, "GET", e.url("/cookies"), nil)
		req.AddCookie(&http.Cookie{Name: "a", Value: "1"})
		req.AddCookie(&http.Cookie{Name: "b", Value: "2"}) // one field: "a=1; b=2"
		req.Header.Add("Cookie", "c=3; d=4")               // and a second field
		return e.do(t, req)
	}, check: func(t *testing.T, o outcome) {
		// The client sends each cookie-pair as its own field (RFC 9113
		// 8.2.3); the server joins them with "; " into one header.
		if len(o.Seen) != 1 || !slices.Equal(o.Seen[0].Header["Cookie"], []string{"a=1; b=2; c=3; d=4"}) {
			t.Errorf("seen %+v", o.Seen)
		}
	}},
	{name: "trailers declared in Trailer", run: simple("GET", "/trailers?how=declared", nil), check: func(t *testing.T, o outcome) {
		if o.Trailer.Get("X-Sum") != "abc" || o.Trailer.Get("X-Count") != "3" {
			t.Errorf("trailer %v", o.Trailer)
		}
	}},
	{name: "trailers that may not be trailers", run: simple("GET", "/trailers?how=forbidden", nil), check: func(t *testing.T, o outcome) {
		if o.Trailer.Get("X-Sum") != "abc" || len(o.Trailer) != 1 {
			t.Errorf("trailer %v, want X-Sum alone", o.Trailer)
		}
	}},
	{name: "trailers by TrailerPrefix", run: simple("GET", "/trailers?how=prefix", nil), check: func(t *testing.T, o outcome) {
		if o.Trailer.Get("X-Late") != "late value" {
			t.Errorf("trailer %v", o.Trailer)
		}
	}},
	{name: "request trailers", run: func(t *testing.T, e *diffEnv) outcome {
		req := newReq(t, "POST", e.url("/echo"), onlyReader{strings.NewReader("body")})
		req.Trailer = http.Header{"X-Req-Trailer": {"tv"}}
		return e.do(t, req)
	}, check: func(t *testing.T, o outcome) {
		if len(o.Seen) != 1 || o.Seen[0].Trailer.Get("X-Req-Trailer") != "tv" {
			t.Errorf("seen %+v", o.Seen)
		}
	}},
	{name: "103 Early Hints then 200", run: func(t *testing.T, e *diffEnv) outcome {
		var mu sync.Mutex
		var early []string
		trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			mu.Lock()
			early = append(early, fmt.Sprintf("%d %v", code, h))
			mu.Unlock()
			return nil
		}}
		req := newReq(t, "GET", e.url("/early"), nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
		o := e.do(t, req)
		mu.Lock()
		o.Extra = early
		mu.Unlock()
		return o
	}, check: func(t *testing.T, o outcome) {
		if len(o.Extra) != 1 || !strings.HasPrefix(o.Extra[0], "103 ") || !strings.Contains(o.Extra[0], "style.css") ||
			o.Status != 200 || o.Body != "final" {
			t.Errorf("1xx %q, status %d, body %q", o.Extra, o.Status, o.Body)
		}
	}},
	{name: "Flush mid-body", run: func(t *testing.T, e *diffEnv) outcome {
		open, _ := e.gate("flush")
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		req := newReq(t, "GET", e.url("/flush"), nil).WithContext(ctx)
		req.Header.Set("X-Gate", "flush")
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		// The handler is held until we have read its first chunk: the
		// chunk must arrive while the handler runs.
		first := make([]byte, 5)
		_, err = io.ReadFull(resp.Body, first)
		close(open)
		if err != nil {
			t.Fatalf("%s: first chunk: %v", e.name, err)
		}
		rest, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return outcome{Status: resp.StatusCode, Body: string(first) + "|" + string(rest), Seen: e.takeSeen(t)}
	}, check: func(t *testing.T, o outcome) {
		if o.Body != "first|second" {
			t.Errorf("body %q", o.Body)
		}
	}},
	{name: "panic before the response", run: panicCase("/panic?when=before&id=1", "boom-1"), check: wantFailed("roundtrip", false)},
	{name: "panic after part of the body", run: panicCase("/panic?when=after&id=2", "boom-2"), check: wantFailed("body", false)},
	{name: "ErrAbortHandler before the response", run: abortCase("/abort?when=before"), check: wantFailed("roundtrip", true)},
	{name: "ErrAbortHandler after part of the body", run: abortCase("/abort?when=after"), check: wantFailed("body", true)},
	{name: "response header over 16 KiB", run: simple("GET", "/bighdr", nil), check: func(t *testing.T, o outcome) {
		if o.Status != 200 || o.Header.Get("X-Small") != "s" || !strings.HasPrefix(o.Header.Get("X-Big"), "<20800 bytes") {
			t.Errorf("status %d header %v", o.Status, o.Header)
		}
	}},
	{name: "request with many headers", run: func(t *testing.T, e *diffEnv) outcome {
		req := newReq(t, "GET", e.url("/echo"), nil)
		for i := 0; i < 200; i++ {
			req.Header.Add(fmt.Sprintf("X-Header-%03d", i), strings.Repeat("v", i))
		}
		req.Header.Add("X-Multi", "one")
		req.Header.Add("X-Multi", "two")
		return e.do(t, req)
	}, check: func(t *testing.T, o outcome) {
		if len(o.Seen) != 1 || len(o.Seen[0].Header) < 201 || len(o.Seen[0].Header["X-Multi"]) != 2 {
			t.Errorf("status %d, seen %+v", o.Status, o.Seen)
		}
	}},
	{name: "100 concurrent streams on one connection", run: concurrentCase, check: func(t *testing.T, o outcome) {
		if o.Err != "" || len(o.Extra) != 2 || o.Extra[0] != "100 responses" || o.Extra[1] != "1 connection" {
			t.Errorf("%v %q", o.Err, o.Extra)
		}
	}},
	{name: "client cancels: request context done", run: func(t *testing.T, e *diffEnv) outcome {
		_, signal := e.gate("block")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req := newReq(t, "GET", e.url("/block"), nil).WithContext(ctx)
		req.Header.Set("X-Gate", "block")
		errc := make(chan error, 1)
		go func() {
			resp, err := e.client.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			errc <- err
		}()
		started := recv(t, signal, e.name+" handler start")
		cancel()
		done := recv(t, signal, e.name+" handler's context done")
		err := recv(t, errc, e.name+" client")
		return outcome{Extra: []string{started, done, fmt.Sprint(errors.Is(err, context.Canceled))}, Seen: e.takeSeen(t)}
	}, check: func(t *testing.T, o outcome) {
		if !slices.Equal(o.Extra, []string{"started", "done: context canceled", "true"}) {
			t.Errorf("%q", o.Extra)
		}
	}},
	{name: "ResponseController deadlines and Flush", run: simple("GET", "/rc", nil), check: func(t *testing.T, o outcome) {
		if o.Body != "a write deadline: <nil>, read deadline: <nil>, flush: <nil>" {
			t.Errorf("body %q", o.Body)
		}
	}},
}

// wantFailed: the client saw the stream fail (at "roundtrip" or in the
// "body"), and the next request got its answer on the same connection.
func wantFailed(where string, abort bool) func(t *testing.T, o outcome) {
	return func(t *testing.T, o outcome) {
		t.Helper()
		want := []string{`next: 200 "GET after=panic 0 bytes"`, "same connection: true"}
		if abort {
			want = []string{`logged for the abort: ""`, `next: 200 "GET after=abort 0 bytes"`, "same connection: true"}
		}
		if o.Err != where || !slices.Equal(o.Extra, want) {
			t.Errorf("client error at %q, want %q; %q, want %q", o.Err, where, o.Extra, want)
		}
		if where == "body" && (o.Status != 200 || o.Body != "partial") {
			t.Errorf("status %d body %q", o.Status, o.Body)
		}
	}
}

func wantBig(t *testing.T, o outcome) {
	t.Helper()
	if want := summarize(string(bigBody())); o.Status != 200 || o.Body != want || o.Err != "" {
		t.Errorf("status %d err %q body %s, want %s", o.Status, o.Err, o.Body, want)
	}
}

func wantType(ct string) func(t *testing.T, o outcome) {
	return func(t *testing.T, o outcome) {
		t.Helper()
		if got := o.Header.Get("Content-Type"); got != ct {
			t.Errorf("Content-Type %q, want %q", got, ct)
		}
	}
}

func wantNoBody(code int) func(t *testing.T, o outcome) {
	return func(t *testing.T, o outcome) {
		t.Helper()
		if o.Status != code || o.Body != "" || o.Header.Get("X-Ignored") != "" {
			t.Errorf("status %d body %q header %v", o.Status, o.Body, o.Header)
		}
		if n := len(o.Seen); n != 2 || o.Seen[1].URL != "write: ErrBodyNotAllowed" {
			t.Errorf("handler saw %+v", o.Seen)
		}
	}
}

// panicCase: the client sees the stream fail, the panic is logged, and
// the next request is served on the same connection.
func panicCase(path, value string) func(t *testing.T, e *diffEnv) outcome {
	return func(t *testing.T, e *diffEnv) outcome {
		o := e.do(t, newReq(t, "GET", e.url(path), nil))
		e.waitLogged(t, value)
		next := e.do(t, newReq(t, "GET", e.url("/echo?after=panic"), nil))
		o.Extra = append(o.Extra, fmt.Sprintf("next: %d %q", next.Status, next.Body), "same connection: "+sameConn(o, next))
		return o
	}
}

var markers atomic.Int64

// abortCase: like panicCase, and nothing is logged for the abort.
func abortCase(path string) func(t *testing.T, e *diffEnv) outcome {
	return func(t *testing.T, e *diffEnv) outcome {
		before := e.logged()
		o := e.do(t, newReq(t, "GET", e.url(path), nil))
		// A panic after the abort, on the same connection, is logged; the
		// abort, handled first, must not have been.
		id := fmt.Sprint(markers.Add(1))
		e.do(t, newReq(t, "GET", e.url("/panic?id=marker"+id), nil))
		e.waitLogged(t, "boom-marker"+id)
		logged := strings.TrimPrefix(e.logged(), before)
		if i := strings.Index(logged, "boom-marker"+id); i >= 0 {
			// Keep what was logged before the marker's panic message line.
			logged = logged[:strings.LastIndex(logged[:i], "\n")+1]
		}
		next := e.do(t, newReq(t, "GET", e.url("/echo?after=abort"), nil))
		o.Extra = append(o.Extra, fmt.Sprintf("logged for the abort: %q", logged),
			fmt.Sprintf("next: %d %q", next.Status, next.Body), "same connection: "+sameConn(o, next))
		return o
	}
}

// sameConn tells whether the requests of a and b were served on one
// connection: their handlers saw the same RemoteAddr.
func sameConn(a, b outcome) string {
	return fmt.Sprint(len(a.Seen) >= 1 && len(b.Seen) >= 1 && a.Seen[0].remote == b.Seen[0].remote)
}

// concurrentCase sends 100 requests at once on one connection; each
// handler waits until all 100 are running.
func concurrentCase(t *testing.T, e *diffEnv) outcome {
	const n = 100
	// One request first, so the connection and its SETTINGS are there
	// before the burst (else the client may dial more than one).
	warm := e.do(t, newReq(t, "GET", e.url("/echo?warm"), nil))
	if warm.Status != 200 {
		t.Fatalf("%s: warm-up %d %q", e.name, warm.Status, warm.Err)
	}
	e.mu.Lock()
	e.barrier.n, e.barrier.want, e.barrier.all = 0, n, make(chan struct{})
	e.mu.Unlock()
	var conns sync.Map
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	trace := &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) { conns.Store(ci.Conn.LocalAddr().String(), true) }}
	ctx = httptrace.WithClientTrace(ctx, trace)
	var wg sync.WaitGroup
	bodies := make([]string, n)
	var failed []string
	var mu sync.Mutex
	for i := range n {
		req := newReq(t, "GET", e.url(fmt.Sprintf("/concurrent?i=%d", i)), nil).WithContext(ctx)
		wg.Go(func() {
			resp, err := e.client.Do(req)
			if err != nil {
				mu.Lock()
				failed = append(failed, err.Error())
				mu.Unlock()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			bodies[i] = fmt.Sprintf("%d %s", resp.StatusCode, b)
		})
	}
	wg.Wait()
	got := 0
	for i, b := range bodies {
		if b == fmt.Sprintf("200 stream %d", i) {
			got++
		}
	}
	nconns := 0
	conns.Range(func(any, any) bool { nconns++; return true })
	e.takeSeen(t)
	o := outcome{Extra: []string{fmt.Sprintf("%d responses", got), fmt.Sprintf("%d connection", nconns)}}
	if len(failed) > 0 {
		o.Err = failed[0]
	}
	return o
}

func TestDifferential(t *testing.T) {
	envs := newDiffEnvs(t)
	for _, tc := range diffCases {
		t.Run(tc.name, func(t *testing.T) {
			var outs []outcome
			for _, e := range envs {
				o := tc.run(t, e)
				if tc.check != nil {
					t.Run(e.name, func(t *testing.T) { tc.check(t, o) })
				}
				outs = append(outs, o)
			}
			a, _ := json.MarshalIndent(outs[0], "", "  ")
			b, _ := json.MarshalIndent(outs[1], "", "  ")
			if !bytes.Equal(a, b) {
				t.Errorf("net/http and ours differ:\n%s", lineDiff(string(a), string(b)))
			}
		})
	}
}

// lineDiff shows a line diff of a (nethttp, "-") and b (ours, "+"),
// with two lines of context around each change.
func lineDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	// Longest common subsequence, by dynamic programming: the outcomes
	// are a few hundred lines at most.
	lcs := make([][]int, len(al)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(bl)+1)
	}
	for i := len(al) - 1; i >= 0; i-- {
		for j := len(bl) - 1; j >= 0; j-- {
			if al[i] == bl[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	type line struct {
		op   byte
		text string
	}
	var lines []line
	i, j := 0, 0
	for i < len(al) || j < len(bl) {
		switch {
		case i < len(al) && j < len(bl) && al[i] == bl[j]:
			lines = append(lines, line{' ', al[i]})
			i, j = i+1, j+1
		case j < len(bl) && (i == len(al) || lcs[i][j+1] >= lcs[i+1][j]):
			lines = append(lines, line{'+', bl[j]})
			j++
		default:
			lines = append(lines, line{'-', al[i]})
			i++
		}
	}
	var out strings.Builder
	out.WriteString("  (- nethttp, + ours)\n")
	for k, l := range lines {
		near := false
		for d := -2; d <= 2; d++ {
			if k+d >= 0 && k+d < len(lines) && lines[k+d].op != ' ' {
				near = true
			}
		}
		if near {
			fmt.Fprintf(&out, "  %c %s\n", l.op, l.text)
		}
	}
	return out.String()
}
