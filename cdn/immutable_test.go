package cdn

import (
	"testing"
	"time"
)

// TestImmutableIgnoresReload: a browser reload (request no-cache or
// max-age=0) of a fresh immutable object is answered from the cache
// (RFC 8246); the same reload of a mutable object, or of an immutable one
// that has gone stale, goes to the origin.
func TestImmutableIgnoresReload(t *testing.T) {
	tests := []struct {
		name      string
		cc        string
		advance   time.Duration
		reload    string
		wantCache string
		wantHits  int64
	}{
		{"immutable, no-cache reload", "public, max-age=600, immutable", 0, "Cache-Control: no-cache", "HIT", 1},
		{"immutable, max-age=0 reload", "public, max-age=600, immutable", 0, "Cache-Control: max-age=0", "HIT", 1},
		{"mutable, no-cache reload", "public, max-age=600", 0, "Cache-Control: no-cache", "MISS", 2},
		{"immutable but stale", "public, max-age=600, immutable", 700 * time.Second, "Cache-Control: no-cache", "MISS", 2},
		{"immutable with no-cache response", "public, max-age=600, no-cache, immutable", 0, "Cache-Control: max-age=0", "MISS", 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, static("app-v1", "Cache-Control: "+tc.cc, "Content-Type: application/octet-stream"))
			if r := e.get("/app.js"); r.Header.Get("X-Cache") != "MISS" {
				t.Fatalf("first request: X-Cache %q", r.Header.Get("X-Cache"))
			}
			e.clock.Advance(tc.advance)
			r := e.get("/app.js", tc.reload)
			if r.body != "app-v1" || r.Header.Get("X-Cache") != tc.wantCache || e.hits() != tc.wantHits {
				t.Fatalf("reload: %q X-Cache %q origin hits %d; want X-Cache %q hits %d",
					r.body, r.Header.Get("X-Cache"), e.hits(), tc.wantCache, tc.wantHits)
			}
		})
	}
}
