package cdn

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/configerr"
	"github.com/outpost-edge/outpost/internal/units"
)

func TestTTLRules(t *testing.T) {
	rules := []TTLRule{
		{Paths: []string{"/static/**"}, ContentTypes: []string{"text/css"}, Class: "long"},
		{Paths: []string{"/feed"}, Class: "short"},
		{Paths: []string{"/capped"}, Max: units.Duration(time.Hour)},
		{Paths: []string{"/raised"}, Min: units.Duration(time.Minute)},
		{Paths: []string{"/forced"}, Override: units.Duration(5 * time.Minute)},
		{Paths: []string{"/forced-private"}, Override: units.Duration(5 * time.Minute), OverridePrivate: true},
		{ContentTypes: []string{"image/*"}, Default: units.Duration(2 * time.Hour)},
		{Paths: []string{"*.css"}, Class: "long"},
	}
	cases := []struct {
		path, ct, cc string
		advance      time.Duration
		hit          bool
	}{
		{"/static/a/b.css", "text/css", "", 23 * time.Hour, true},
		{"/static/a/b.css", "text/css", "", 25 * time.Hour, false},
		{"/feed", "application/json", "", 59 * time.Second, true},
		{"/feed", "application/json", "max-age=3600", 61 * time.Second, false}, // class max caps
		{"/capped", "text/plain", "max-age=86400", 59 * time.Minute, true},
		{"/capped", "text/plain", "max-age=86400", 61 * time.Minute, false},
		{"/raised", "text/plain", "max-age=10", 30 * time.Second, true},
		{"/forced", "text/plain", "max-age=1", 4 * time.Minute, true},
		{"/forced", "text/plain", "max-age=1", 6 * time.Minute, false},
		{"/forced", "text/plain", "no-store", 0, false}, // origin no-store wins
		{"/forced-private", "text/plain", "private", 4 * time.Minute, true},
		{"/pic", "image/png", "", 90 * time.Minute, true},
		{"/pic", "image/png", "", 3 * time.Hour, false},
		{"/other", "text/plain", "", 0, false}, // no rule, no freshness
		// Cache deception: a *.css rule never stores a private page.
		{"/account/profile/x.css", "text/html", "private", 0, false},
		{"/account/profile/x.css", "text/html", "no-store", 0, false},
		{"/account/profile/y.css", "text/css", "", time.Hour, true},
	}
	for _, tc := range cases {
		t.Run(tc.path+"/"+tc.cc+"/"+tc.advance.String(), func(t *testing.T) {
			e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.ct)
				if tc.cc != "" {
					w.Header().Set("Cache-Control", tc.cc)
				}
				io.WriteString(w, "body")
			}, withRoute(func(rc *RouteConfig) { rc.TTLRules = rules }))
			e.get(tc.path)
			e.clock.Advance(tc.advance)
			r := e.get(tc.path)
			if hit := r.Header.Get("X-Cache") == "HIT"; hit != tc.hit {
				t.Fatalf("hit=%v want %v (%s)", hit, tc.hit, r.Header.Get("Cache-Status"))
			}
		})
	}
}

// TestPoisoning: unkeyed request headers never shape a stored response.
func TestPoisoning(t *testing.T) {
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		// A careless origin reflecting override headers into the page.
		io.WriteString(w, "host="+r.Header.Get("X-Forwarded-Host")+" url="+r.Header.Get("X-Original-URL")+
			" rw="+r.Header.Get("X-Rewrite-URL")+" m="+r.Header.Get("X-HTTP-Method-Override")+" p="+r.Header.Get("X-Forwarded-Proto"))
	})
	r := e.get("/page", "X-Forwarded-Host: evil.example", "X-Original-URL: /admin", "X-Rewrite-URL: /admin",
		"X-HTTP-Method-Override: DELETE", "X-Forwarded-Proto: https")
	if strings.Contains(r.body, "evil") || strings.Contains(r.body, "admin") || strings.Contains(r.body, "DELETE") {
		t.Fatalf("override reached the origin on a fill: %q", r.body)
	}
	clean := e.get("/page")
	if clean.Header.Get("X-Cache") != "HIT" || clean.body != r.body {
		t.Fatalf("victim got %q (%s)", clean.body, clean.Header.Get("X-Cache"))
	}
	// The Host is keyed: another host is another object.
	other := e.get("/page", "Host: other.example")
	if other.Header.Get("X-Cache") != "MISS" {
		t.Fatal("host not keyed")
	}
	// Scheme comes from the connection, never a header.
	if k, _ := cacheKey(mustReq(t, "http://a.example/x", "X-Forwarded-Proto", "https")); k != "http://a.example/x" {
		t.Fatalf("key %q", k)
	}
}

func mustReq(t *testing.T, u string, kv ...string) *http.Request {
	r, err := http.NewRequest("GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		r.Header.Set(kv[i], kv[i+1])
	}
	return r
}

func TestCacheKey(t *testing.T) {
	cases := []struct {
		url, host string
		want      string
		ok        bool
	}{
		{"http://x/a?b=1", "WWW.Example.COM", "http://www.example.com/a?b=1", true},
		{"http://x/a", "www.example.com:80", "http://www.example.com/a", true},
		{"http://x/a", "www.example.com:8080", "http://www.example.com:8080/a", true},
		{"http://x/a", "www.example.com.", "http://www.example.com/a", true},
		{"http://x/a", "[::1]:80", "http://[::1]/a", true},
		{"http://x/a%20b", "h", "http://h/a%20b", true},
		{"http://x/", "", "", false},
		{"http://x/", "a/b", "", false},
		{"http://x/", "a\x00b", "", false},
		{"http://x/", "h:port", "", false},
		// Empty labels make no host (found by FuzzCacheKey: ".." became
		// ".", whose key was not its own normal form).
		{"http://x/", "..", "", false},
		{"http://x/", ".", "", false},
		{"http://x/", ".example.com", "", false},
		{"http://x/", "www..example.com", "", false},
		{"http://x/", "www.example.com..", "", false},
	}
	for _, tc := range cases {
		r := mustReq(t, tc.url)
		r.Host = tc.host
		got, ok := cacheKey(r)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s host %q: %q %v, want %q %v", tc.url, tc.host, got, ok, tc.want, tc.ok)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	var c Config
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	bad := c
	bad.Eviction = "random"
	bad.MaxObjects = -1
	bad.Compression.Encodings = []string{"br", "lzma"}
	bad.Compression.Level = 12
	err := bad.Validate()
	want := map[string]string{
		"eviction":                 "unknown policy \"random\" (want s3fifo, lru)",
		"max_objects":              "must be >= 1, got -1",
		"compression.encodings[1]": "unknown encoding \"lzma\" (want br, zstd, gzip)",
		"compression.level":        "must be between 1 and 9, got 12",
	}
	got := map[string]string{}
	for _, fe := range configerr.Fields(err) {
		got[fe.Path] = fe.Msg
	}
	for p, m := range want {
		if got[p] != m {
			t.Errorf("%s: got %q, want %q", p, got[p], m)
		}
	}
	rc := RouteConfig{TTLRules: []TTLRule{
		{Class: "eternal"},
		{Paths: []string{""}, ContentTypes: []string{"css"}},
		{Min: units.Duration(time.Hour), Max: units.Duration(time.Minute)},
		{OverridePrivate: true},
	}}
	rc.SetDefaults()
	got = map[string]string{}
	for _, fe := range configerr.Fields(rc.Validate()) {
		got[fe.Path] = fe.Msg
	}
	for _, p := range []string{"ttl_rules[0].class", "ttl_rules[1].paths[0]", "ttl_rules[1].content_types[0]", "ttl_rules[2].min", "ttl_rules[3].override_private"} {
		if got[p] == "" {
			t.Errorf("no error at %s (got %v)", p, got)
		}
	}
	rc = RouteConfig{TTLRules: []TTLRule{{Class: "medium"}}}
	rc.SetDefaults()
	if rc.TTLRules[0].Default.D() != 10*time.Minute || rc.TTLRules[0].Max.D() != 15*time.Minute {
		t.Errorf("medium class: %v", rc.TTLRules[0])
	}
}

// TestHandlerRebuild: handlers are rebuilt on reload without registering
// metrics again, and share the store.
func TestHandlerRebuild(t *testing.T) {
	e := newEnv(t, static("x", "Cache-Control: max-age=60"))
	e.get("/rb")
	for i := 0; i < 3; i++ {
		h := e.cache.Handler("test", e.rc, e.upstream())
		e.h.Store(&h)
	}
	if r := e.get("/rb"); r.Header.Get("X-Cache") != "HIT" {
		t.Fatal("store not shared across rebuilds")
	}
	if e.metric("outpost_cache_requests_total", "result", "hit") != 1 {
		t.Fatal("hit metric")
	}
}

func TestGlob(t *testing.T) {
	cases := []struct {
		pat, path string
		want      bool
	}{
		{"*.css", "/a/b/c.css", true},
		{"*.css", "/a/b/c.js", false},
		{"/static/*", "/static/a.css", true},
		{"/static/*", "/static/a/b.css", false},
		{"/static/**", "/static/a/b.css", true},
		{"/img/?.png", "/img/a.png", true},
		{"/a.b", "/axb", false},
	}
	for _, tc := range cases {
		re, err := compileGlob(tc.pat)
		if err != nil {
			t.Fatal(err)
		}
		if got := re.MatchString(tc.path); got != tc.want {
			t.Errorf("%q ~ %q = %v", tc.pat, tc.path, got)
		}
	}
}
