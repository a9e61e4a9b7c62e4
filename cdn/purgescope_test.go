package cdn

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// gatedObj is an origin whose n-th fetch answers objBody(n), tagged
// "site-tag". Its first fetch is held open until release is closed, after
// closing started: mid-body, or with beforeHeader before any response
// header (so the fill's tags are not known yet while it is held).
type gatedObj struct {
	started, release chan struct{}
	fetches          atomic.Int32
	beforeHeader     bool
	open             func() // closes release (once); set by startFill
}

func newGatedObj(beforeHeader bool) *gatedObj {
	return &gatedObj{started: make(chan struct{}), release: make(chan struct{}), beforeHeader: beforeHeader}
}

func objBody(n int32) string { return strings.Repeat(fmt.Sprintf("v%d.", n), 25000) }

func (g *gatedObj) serve(w http.ResponseWriter, r *http.Request) {
	n := g.fetches.Add(1)
	if n == 1 && g.beforeHeader {
		close(g.started)
		<-g.release
	}
	body := objBody(n)
	w.Header().Set("Cache-Control", "max-age=60")
	w.Header().Set("Surrogate-Key", "site-tag")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	io.WriteString(w, body[:30000])
	w.(http.Flusher).Flush()
	if n == 1 && !g.beforeHeader {
		close(g.started)
		<-g.release
	}
	io.WriteString(w, body[30000:])
}

// fillFate is what a purge during a fill does to that fill.
type fillFate int

const (
	fillKept        fillFate = iota // stored fresh: the next request is a HIT
	fillInvalidated                 // stored stale: the next request is STALE
	fillKeptOut                     // not stored: the next request fetches anew
)

func (f fillFate) String() string {
	return [...]string{"kept", "invalidated", "kept out"}[f]
}

const objPath = "/site/obj"

// heldFill is the first request for objPath, its fill held at the origin.
type heldFill struct {
	body chan string   // the client's body
	done chan struct{} // closed when the request's handler returned (commit included)
}

// startFill sends the first request for objPath and returns once its fill
// is held at the origin: with the response header through to the client
// (so its tags are known) unless the origin holds it before the header.
func startFill(t *testing.T, e *env, g *gatedObj) *heldFill {
	t.Helper()
	var once sync.Once
	g.open = func() { once.Do(func() { close(g.release) }) }
	t.Cleanup(g.open) // a failed test must not leave the origin (and its Close) hanging
	hf := &heldFill{body: make(chan string, 1), done: make(chan struct{})}
	inner := *e.h.Load()
	var n atomic.Int32
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		first := n.Add(1) == 1
		inner.ServeHTTP(w, r)
		if first {
			close(hf.done)
		}
	})
	e.h.Store(&h)
	gotHeader := make(chan struct{})
	go func() {
		defer close(hf.body)
		res, err := e.client.Get(e.front.URL + objPath)
		close(gotHeader)
		if err != nil {
			t.Error(err)
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		hf.body <- string(b)
	}()
	<-g.started
	if !g.beforeHeader {
		<-gotHeader
	}
	return hf
}

// checkFate lets the held fill finish and asserts what became of it.
func checkFate(t *testing.T, e *env, g *gatedObj, hf *heldFill, want fillFate) {
	t.Helper()
	g.open()
	if b := <-hf.body; b != objBody(1) {
		t.Fatalf("first client: %d bytes, not the whole body it started", len(b))
	}
	<-hf.done
	r := e.get(objPath)
	switch want {
	case fillKept:
		if r.Header.Get("X-Cache") != resHit || r.body != objBody(1) || e.hits() != 1 {
			t.Fatalf("want the fill kept: X-Cache %q, %d origin fetches", r.Header.Get("X-Cache"), e.hits())
		}
	case fillInvalidated:
		if r.Header.Get("X-Cache") != resStale || r.body != objBody(1) {
			t.Fatalf("want the fill stored invalidated: X-Cache %q", r.Header.Get("X-Cache"))
		}
	case fillKeptOut:
		if r.body != objBody(2) || e.hits() != 2 {
			t.Fatalf("want the fill kept out: X-Cache %q, %d origin fetches, body of fetch %q",
				r.Header.Get("X-Cache"), e.hits(), r.body[:3])
		}
	}
}

// requestDuringFill sends a request for objPath after a purge, while the
// held fill is still running: it must fetch anew when the purge keeps the
// fill out, and follow the fill otherwise. The returned func checks the
// follower's body once the fill is let go.
func requestDuringFill(t *testing.T, e *env, fate fillFate) func() {
	t.Helper()
	if fate == fillKeptOut {
		if r := e.get(objPath); r.body != objBody(2) {
			t.Fatalf("request after the purge: X-Cache %q, not fetched anew", r.Header.Get("X-Cache"))
		}
		return func() {}
	}
	follower := make(chan string, 1)
	go func() { follower <- e.get(objPath).body }()
	waitFor(t, "follower", func() bool { return e.metric("outpost_cache_coalesced_total") == 1 })
	return func() {
		if b := <-follower; b != objBody(1) {
			t.Errorf("follower: %d bytes, not the fill's body", len(b))
		}
	}
}

// TestPurgeDuringFillScope: a purge during a fill affects that fill only
// when it selects the object. A matching purge of any kind keeps the fill
// out (hard; later requests fetch anew rather than follow it) or stores it
// invalidated (soft), as every purge used to; an unrelated one leaves the
// fill alone, and requests after it still follow the fill.
func TestPurgeDuringFillScope(t *testing.T) {
	kinds := []struct {
		name             string
		match, unrelated func(base string) PurgeRequest // base is the front URL
	}{
		{"url",
			func(b string) PurgeRequest { return PurgeRequest{URLs: []string{b + objPath}} },
			func(b string) PurgeRequest { return PurgeRequest{URLs: []string{b + "/site/other"}} }},
		{"prefix",
			func(b string) PurgeRequest { return PurgeRequest{Prefixes: []string{b + "/site/"}} },
			func(b string) PurgeRequest { return PurgeRequest{Prefixes: []string{b + "/news/"}} }},
		{"tag",
			func(string) PurgeRequest { return PurgeRequest{Tags: []string{"site-tag"}} },
			func(string) PurgeRequest { return PurgeRequest{Tags: []string{"other-tag"}} }},
		// A host is purged as the prefix of its root.
		{"host",
			func(b string) PurgeRequest { return PurgeRequest{Prefixes: []string{b + "/"}} },
			func(string) PurgeRequest { return PurgeRequest{Prefixes: []string{"http://other.example/"}} }},
		{"all", func(string) PurgeRequest { return PurgeRequest{All: true} }, nil},
	}
	type tcase struct {
		name string
		req  func(string) PurgeRequest
		soft bool
		want fillFate
	}
	var cases []tcase
	for _, k := range kinds {
		for _, soft := range []bool{false, true} {
			mode, want := "hard", fillKeptOut
			if soft {
				mode, want = "soft", fillInvalidated
			}
			cases = append(cases, tcase{k.name + "/" + mode + "/matching", k.match, soft, want})
			if k.unrelated != nil {
				cases = append(cases, tcase{k.name + "/" + mode + "/unrelated", k.unrelated, soft, fillKept})
			}
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := newGatedObj(false)
			e := newEnv(t, g.serve)
			hf := startFill(t, e, g)
			req := tc.req(e.front.URL)
			req.Soft = tc.soft
			if _, err := e.cache.Purge(t.Context(), req); err != nil {
				t.Fatal(err)
			}
			defer requestDuringFill(t, e, tc.want)()
			checkFate(t, e, g, hf, tc.want)
		})
	}
}

// TestTagPurgeBeforeHeaders: a tag purge that lands before the fill's
// response header (so before its tags are known) is matched against the
// tags once they arrive. Until then a hard one may cover the fill, so
// requests after it fetch anew rather than follow (even when the tags
// turn out unrelated, which costs a fetch).
func TestTagPurgeBeforeHeaders(t *testing.T) {
	cases := []struct {
		name string
		req  PurgeRequest
		want fillFate
	}{
		{"hard/matching", PurgeRequest{Tags: []string{"site-tag"}}, fillKeptOut},
		{"soft/matching", PurgeRequest{Tags: []string{"site-tag"}, Soft: true}, fillInvalidated},
		{"hard/unrelated", PurgeRequest{Tags: []string{"other-tag"}}, fillKept},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := newGatedObj(true)
			e := newEnv(t, g.serve)
			hf := startFill(t, e, g)
			if _, err := e.cache.Purge(t.Context(), tc.req); err != nil {
				t.Fatal(err)
			}
			if tc.want == fillKeptOut {
				// (A follower of a fill held before its header shows in no
				// metric until the header, so only this case is checked.)
				requestDuringFill(t, e, tc.want)()
			}
			checkFate(t, e, g, hf, tc.want)
		})
	}
}

// TestPurgeLogOverflowDuringFill: when more purges ran during a fill than
// the purge log keeps, the forgotten ones are taken to match the fill (as
// every purge did before the log), and a selection too big to log is
// taken to match everything.
func TestPurgeLogOverflowDuringFill(t *testing.T) {
	// unrelated returns n purges of other URLs.
	unrelated := func(base string, n int, soft bool) []PurgeRequest {
		out := make([]PurgeRequest, n)
		for i := range out {
			out[i] = PurgeRequest{URLs: []string{base + "/news/" + strconv.Itoa(i)}, Soft: soft}
		}
		return out
	}
	cases := []struct {
		name string
		reqs func(base string) []PurgeRequest
		want fillFate
	}{
		{"full log, all unrelated hard", func(b string) []PurgeRequest {
			return unrelated(b, purgeLogLen, false)
		}, fillKept},
		{"overflow, soft forgotten", func(b string) []PurgeRequest {
			return unrelated(b, purgeLogLen+1, true)
		}, fillInvalidated},
		{"overflow, hard forgotten", func(b string) []PurgeRequest {
			return append(unrelated(b, 1, false), unrelated(b, purgeLogLen, true)...)
		}, fillKeptOut},
		{"overflow, unrelated hard remembered", func(b string) []PurgeRequest {
			return append(unrelated(b, purgeLogLen, true), unrelated(b, 1, false)...)
		}, fillInvalidated},
		{"selection too big to log", func(b string) []PurgeRequest {
			var r PurgeRequest
			for _, u := range unrelated(b, 200, false) {
				r.URLs = append(r.URLs, u.URLs...)
			}
			return []PurgeRequest{r}
		}, fillKeptOut},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := newGatedObj(false)
			e := newEnv(t, g.serve)
			hf := startFill(t, e, g)
			for _, req := range tc.reqs(e.front.URL) {
				if _, err := e.cache.Purge(t.Context(), req); err != nil {
					t.Fatal(err)
				}
			}
			checkFate(t, e, g, hf, tc.want)
		})
	}
}
