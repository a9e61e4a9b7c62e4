package cdn

import (
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/units"
)

// verbatim is an upstream that relays the origin's response header as
// received, hop-by-hop fields included. The reverse proxy the edge uses
// strips Connection-listed fields itself; this lets tests check that the
// cache does not rely on that.
func verbatim(t *testing.T, originURL string) http.Handler {
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out, err := http.NewRequestWithContext(r.Context(), r.Method, originURL+r.URL.RequestURI(), nil)
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		out.Header = r.Header.Clone()
		res, err := tr.RoundTrip(out)
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		defer res.Body.Close()
		for k, v := range res.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(res.StatusCode)
		io.Copy(w, res.Body)
	})
}

// TestConnectionListedNotStoredOverSocket: fields the origin names in
// Connection reach the cache (through an upstream that keeps them) but are
// never stored, so no later hit replays them.
func TestConnectionListedNotStoredOverSocket(t *testing.T) {
	org := newOrigin(t, static("x", "Cache-Control: max-age=60", "Connection: X-Secret", "X-Secret: v"))
	var reached, checked atomic.Bool
	e := newEnv(t, nil, withUpstream(func(http.Handler) http.Handler {
		up := verbatim(t, org.srv.URL)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			up.ServeHTTP(w, r)
			reached.Store(w.Header().Get("X-Secret") == "v" && w.Header().Get("Connection") == "X-Secret")
			checked.Store(true)
		})
	}))
	first := e.get("/conn")
	if first.Header.Get("X-Cache") != "MISS" {
		t.Fatalf("first: %q", first.Header.Get("X-Cache"))
	}
	// The MISS is forwarded as clean as the HIT will be.
	hdrAbsent("X-Secret")(t, first)
	// The client may have the whole body before the upstream returns.
	waitFor(t, "the upstream to return", checked.Load)
	if !reached.Load() {
		t.Fatal("Connection and X-Secret did not reach the cache")
	}
	r := e.get("/conn")
	if r.Header.Get("X-Cache") != "HIT" || r.body != "x" {
		t.Fatalf("second: %q %q", r.Header.Get("X-Cache"), r.body)
	}
	hdrAbsent("X-Secret")(t, r)
	if org.hits.Load() != 1 {
		t.Fatalf("origin hits %d", org.hits.Load())
	}
}

// TestOverrideWarnedOnce: a rule storing what the origin marked private is
// worth one warning per route and rule, not one per response.
func TestOverrideWarnedOnce(t *testing.T) {
	rules := []TTLRule{{Paths: []string{"/fp/*"}, Override: units.Duration(5 * time.Minute), OverridePrivate: true}}
	e := newEnv(t, static("x", "Cache-Control: private, no-store"), withRoute(func(rc *RouteConfig) { rc.TTLRules = rules }))
	e.cache.Close()
	var logs logCapture
	e.open(Options{Logger: logs.logger()})
	// Two responses the rule overrides (two URLs, so both are fetched and
	// both go through the storing decision).
	for _, p := range []string{"/fp/a", "/fp/b"} {
		if r := e.get(p); r.Header.Get("X-Cache") != "MISS" {
			t.Fatalf("%s: %q", p, r.Header.Get("X-Cache"))
		}
		if r := e.get(p); r.Header.Get("X-Cache") != "HIT" {
			t.Fatalf("%s not stored despite the override: %q", p, r.Header.Get("X-Cache"))
		}
	}
	if e.hits() != 2 {
		t.Fatalf("origin hits %d", e.hits())
	}
	recs := logs.records(t, "ttl rule overrides origin no-store/private")
	if len(recs) != 1 {
		t.Fatalf("%d warnings, want 1", len(recs))
	}
	if r := recs[0]; r["level"] != "WARN" || r["route"] != "test" || r["rule"] != 0.0 {
		t.Fatalf("warning: %v", r)
	}
}

// TestPurgeByCacheTag: tags come from Cache-Tag (comma separated) as well
// as Surrogate-Key (space separated).
func TestPurgeByCacheTag(t *testing.T) {
	cases := []struct {
		name string
		hdr  []string
		tag  string
	}{
		{"Cache-Tag list", []string{"Cache-Tag: news, sports"}, "sports"},
		{"Cache-Tag without spaces", []string{"Cache-Tag: news,sports"}, "news"},
		{"Cache-Tag beside Surrogate-Key", []string{"Surrogate-Key: a b", "Cache-Tag: c"}, "c"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/tagged" {
					static("t", tc.hdr...)(w, r)
					return
				}
				w.Header().Set("Cache-Tag", "unrelated")
				io.WriteString(w, "u")
			}, withRoute(func(rc *RouteConfig) { rc.DefaultTTL = units.Duration(time.Hour) }))
			e.get("/tagged")
			e.get("/other")
			res, err := e.cache.Purge(t.Context(), PurgeRequest{Tags: []string{tc.tag}})
			if err != nil || res.Purged != 1 {
				t.Fatalf("purge %q: %v %v", tc.tag, res, err)
			}
			if r := e.get("/tagged"); r.Header.Get("X-Cache") != "MISS" {
				t.Fatalf("tagged object survived: %q", r.Header.Get("X-Cache"))
			}
			if r := e.get("/other"); r.Header.Get("X-Cache") != "HIT" {
				t.Fatalf("untagged object purged: %q", r.Header.Get("X-Cache"))
			}
		})
	}
}
