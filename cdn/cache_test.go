package cdn

import (
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/reqinfo"
)

func TestBasicHitMiss(t *testing.T) {
	e := newEnv(t, static("hello", "Cache-Control: max-age=60", "Content-Type: text/plain"))
	r := e.get("/a")
	if r.StatusCode != 200 || r.body != "hello" || r.Header.Get("X-Cache") != "MISS" {
		t.Fatalf("first: %d %q %q", r.StatusCode, r.body, r.Header.Get("X-Cache"))
	}
	r = e.get("/a")
	if r.body != "hello" || r.Header.Get("X-Cache") != "HIT" {
		t.Fatalf("second: %q %q %v", r.body, r.Header.Get("X-Cache"), r.Header)
	}
	if e.hits() != 1 {
		t.Fatalf("origin hits %d", e.hits())
	}
	t.Log(r.Header)
}

// TestAccessLogField: the cache result reaches the access log through
// reqinfo, and the client through X-Cache and Cache-Status (RFC 9211).
func TestAccessLogField(t *testing.T) {
	e := newEnv(t, static("x", "Cache-Control: max-age=1, stale-while-revalidate=60"))
	steps := []struct {
		advance time.Duration
		method  string
		want    string
		status  string // exact Cache-Status
	}{
		{0, "GET", "MISS", "Outpost; fwd=miss; stored"},
		{0, "GET", "HIT", "Outpost; hit; ttl=1"},
		{5 * time.Second, "GET", "STALE", "Outpost; hit; detail=stale-while-revalidate; ttl=-4"},
		// RFC 9211 §2.2: fwd=method, the method's semantics require it.
		{0, "DELETE", "BYPASS", "Outpost; fwd=method"},
		{0, "OPTIONS", "BYPASS", "Outpost; fwd=method"},
	}
	for i, s := range steps {
		e.clock.Advance(s.advance)
		r := e.do(s.method, "/f")
		if got := e.lastInfo.Load().Get(reqinfo.FieldCache); got != s.want {
			t.Fatalf("step %d: cache field %q, want %q", i, got, s.want)
		}
		if got := r.Header.Get("X-Cache"); got != s.want {
			t.Fatalf("step %d: X-Cache %q, want %q", i, got, s.want)
		}
		if got := r.Header.Values("Cache-Status"); len(got) != 1 || got[0] != s.status {
			t.Fatalf("step %d: Cache-Status %q, want %q", i, got, s.status)
		}
	}
}

// TestSchemeIsKeyed: the same URL over TLS (as the listener reports it) is
// another object.
func TestSchemeIsKeyed(t *testing.T) {
	e := newEnv(t, static("x", "Cache-Control: max-age=60"))
	e.get("/s")
	if r := e.get("/s", "X-Test-TLS: 1"); r.Header.Get("X-Cache") != "MISS" {
		t.Fatal("https served the http object")
	}
	if r := e.get("/s", "X-Test-TLS: 1"); r.Header.Get("X-Cache") != "HIT" {
		t.Fatal("https object not stored")
	}
	res, err := e.cache.Purge(t.Context(), PurgeRequest{URLs: []string{e.front.URL + "/s"}})
	if err != nil || res.Purged != 2 {
		t.Fatalf("purge of both schemes: %v %v", res, err)
	}
}

// TestCoalesceWaitBound: a follower whose leader is slow to get headers
// goes to the origin itself after coalesce_wait.
func TestCoalesceWaitBound(t *testing.T) {
	release := make(chan struct{})
	var n atomic.Int64
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			<-release
		}
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "ok")
	}, withConfig(func(c *Config) { c.CoalesceWait = unitsDuration(20 * time.Millisecond) }))
	done := make(chan resp, 1)
	go func() { done <- e.get("/w") }()
	waitFor(t, "leader at origin", func() bool { return n.Load() == 1 })
	r := e.get("/w")
	if r.body != "ok" || e.hits() != 2 {
		t.Fatalf("follower: %q, origin hits %d", r.body, e.hits())
	}
	close(release)
	if r := <-done; r.body != "ok" {
		t.Fatalf("leader: %q", r.body)
	}
}
