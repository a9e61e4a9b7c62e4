package cdn

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestParseDirectives(t *testing.T) {
	cases := []struct {
		in   string
		want func(d directives) bool
	}{
		{"max-age=60", func(d directives) bool { return d.maxAge == time.Minute && d.sMaxAge == -1 }},
		{"MAX-AGE = 60", func(d directives) bool { return d.maxAge == time.Minute }},
		{`max-age="30"`, func(d directives) bool { return d.maxAge == 30*time.Second }},
		{"max-age=-1", func(d directives) bool { return d.maxAge == 0 }},
		{"max-age=abc", func(d directives) bool { return d.maxAge == 0 }},
		{"max-age=99999999999999999999", func(d directives) bool { return d.maxAge == maxDelta }},
		{"s-maxage=10, public", func(d directives) bool { return d.sMaxAge == 10*time.Second && d.public }},
		{"no-store,no-cache,private", func(d directives) bool { return d.noStore && d.noCache && d.private }},
		{`no-cache="Set-Cookie, X-A"`, func(d directives) bool {
			return !d.noCache && len(d.noCacheFields) == 2 && d.noCacheFields[0] == "Set-Cookie" && d.noCacheFields[1] == "X-A"
		}},
		{`private="X-User"`, func(d directives) bool { return !d.private && d.privateFields[0] == "X-User" }},
		{"max-stale", func(d directives) bool { return d.maxStaleAny && d.maxStale == -1 }},
		{"max-stale=5, min-fresh=3", func(d directives) bool { return d.maxStale == 5*time.Second && d.minFresh == 3*time.Second }},
		{"stale-while-revalidate=30, stale-if-error=600", func(d directives) bool { return d.swr == 30*time.Second && d.sie == 10*time.Minute }},
		{"must-revalidate, proxy-revalidate, immutable, only-if-cached, no-transform", func(d directives) bool {
			return d.mustRevalidate && d.proxyRevalidate && d.immutable && d.onlyIfCached && d.noTransform
		}},
		{",,, ,foo=bar, max-age=5,", func(d directives) bool { return d.maxAge == 5*time.Second }},
		{"", func(d directives) bool { return d.maxAge == -1 && !d.noStore }},
	}
	for _, tc := range cases {
		if d := parseDirectives([]string{tc.in}); !tc.want(d) {
			t.Errorf("%q: %+v", tc.in, d)
		}
	}
}

func TestParseAge(t *testing.T) {
	cases := map[string]time.Duration{"": 0, "10": 10 * time.Second, " 7 ": 7 * time.Second, "-3": 0, "x": 0, "5, 9": 5 * time.Second, "1.5": 0}
	for in, want := range cases {
		h := http.Header{}
		if in != "" {
			h.Set("Age", in)
		}
		if got := parseAge(h); got != want {
			t.Errorf("Age %q: %v, want %v", in, got, want)
		}
	}
}

func TestNegotiate(t *testing.T) {
	prefs := []string{"br", "zstd", "gzip"}
	cases := map[string]string{
		"gzip":                "gzip",
		"GZIP":                "gzip",
		"br;q=0.9, gzip":      "gzip",
		"*;q=0.1":             "br",
		"*, br;q=0":           "zstd",
		"deflate":             "",
		"gzip;q=abc":          "",
		"zstd;q=1, br;q=1":    "br",
		"identity;q=1, *;q=0": "",
		// Checked against the first, allocating version over 1.3M fuzzed
		// inputs when it was rewritten.
		"gzip;q=0.5, gzip;q=0":           "",     // the last mention counts
		"br;q=0, br":                     "br",   // likewise
		" gzip ; Q = 0.4 ,zstd;q=0.3":    "gzip", // spaces, a capital Q
		",,gzip,,":                       "gzip", // empty members
		"gzip;level=9;q=0.2, br;q=0.1":   "gzip", // other parameters
		"zſtd, gſip":                     "",     // no folding beyond ASCII
		"*;q=0.5, gzip;q=0.4":            "br",   // the star for the unnamed
		"br;q=1.5, zstd;q=-1, gzip;q=.3": "gzip", // out of range: 0
	}
	for in, want := range cases {
		if got := negotiate(in, prefs); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

func FuzzParseDirectives(f *testing.F) {
	for _, s := range []string{"max-age=60", `no-cache="a,b", private`, "s-maxage=1,,max-stale", `x="\"`, "max-age=99999999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d := parseDirectives([]string{s})
		for _, v := range []time.Duration{d.maxAge, d.sMaxAge, d.swr, d.sie, d.maxStale, d.minFresh} {
			if v < -1 || v > maxDelta {
				t.Fatalf("%q: duration out of range %v", s, v)
			}
		}
		_ = parseAge(http.Header{"Age": {s}})
		_ = negotiate(s, []string{"br", "zstd", "gzip"})
	})
}

func FuzzCacheKey(f *testing.F) {
	f.Add("www.example.com", "/a/b?c=d")
	f.Add("[::1]:443", "/%2e%2e/x")
	f.Add("EXAMPLE.com.:80", "/")
	f.Fuzz(func(t *testing.T, host, target string) {
		r, err := http.NewRequest("GET", "http://placeholder"+target, nil)
		if err != nil || !strings.HasPrefix(target, "/") {
			return
		}
		r.Host = host
		k, ok := cacheKey(r)
		if !ok {
			return
		}
		if !strings.HasPrefix(k, "http://") || len(k) > maxKeyLen {
			t.Fatalf("bad key %q", k)
		}
		rest := strings.TrimPrefix(k, "http://")
		h, _, _ := strings.Cut(rest, "/")
		if strings.ContainsAny(h, "/\\\x00 ") || h != strings.ToLower(h) {
			t.Fatalf("bad host part %q in %q", h, k)
		}
		// Normalisation is idempotent.
		r2 := r.Clone(r.Context())
		r2.Host = h
		if k2, ok := cacheKey(r2); !ok || k2 != k {
			t.Fatalf("not idempotent: %q -> %q", k, k2)
		}
	})
}

// TestParseHTTPDate: the three HTTP-date forms exactly (RFC 9110 §5.6.7);
// what time.Parse also takes (one-digit hours, names in another case, extra
// spaces) is invalid, so an Expires written so is already expired (RFC 9111
// §5.3) and an If-Modified-Since so is ignored.
func TestParseHTTPDate(t *testing.T) {
	want := time.Date(2050, 8, 18, 2, 33, 16, 0, time.UTC)
	for v, valid := range map[string]bool{
		"Thu, 18 Aug 2050 02:33:16 GMT":    true,
		"Mon, 18 Aug 2050 02:33:16 GMT":    true, // weekday not checked against the date
		"Thursday, 18-Aug-50 02:33:16 GMT": true,
		"Thu Aug 18 02:33:16 2050":         true,
		"Thu, 18 Aug 2050 2:33:16 GMT":     false,
		"THU, 18 Aug 2050 02:33:16 GMT":    false,
		"thu, 18 aug 2050 02:33:16 GMT":    false,
		"Thu, 18 AUG 2050 02:33:16 GMT":    false,
		"Thu,  18 Aug 2050 02:33:16 GMT":   false,
		"Thu, 18 Aug 2050 02:33:16 UTC":    false,
		"Thu, 18 Aug 2050 02:33:16 gmt":    false,
		"Thursday, 18-Aug-50 02:33:16 PST": false,
		"Thu, 18 Aug 2050 02:33:16 GMT ":   false,
		"Thu Aug 18 2:33:16 2050":          false,
		"0":                                false,
		"":                                 false,
	} {
		got, ok := parseHTTPDate(v)
		if ok != valid || ok && !got.Equal(want) {
			t.Errorf("%q: %v %v, want valid=%v", v, got, ok, valid)
		}
	}
	if got, ok := parseHTTPDate("Sun Nov  6 08:49:37 1994"); !ok || got.Day() != 6 {
		t.Errorf("asctime with a one-digit day: %v %v", got, ok)
	}
}

func TestValidTargeted(t *testing.T) {
	for v, valid := range map[string]bool{
		"max-age=60": true,
		"  max-age=60, stale-while-revalidate=30  ": true,
		"no-store":                                   true,
		`no-cache="Set-Cookie", private`:             true,
		"max-age=60;a=1;b, foo=?1, bar=:aGk=:, n=-5": true,
		"k=1.5, t=tok/en:x, l=(a \"b\" 1);q, m=()":   true,
		"*x=1":                     true,
		"max-age=-1":               true, // an integer; read as 0
		"max-age=10000, &&&&&":     false,
		`max-age="10000"`:          false,
		"max-age":                  false,
		"max-age=1.5":              false,
		"max-age =100":             false,
		"max-age= 100":             false,
		"MaX-aGe=3600":             false,
		"max-age=60,":              false,
		",max-age=60":              false,
		"max-age=1234567890123456": false,
		`a="unterminated`:          false,
		"a=?2":                     false,
		"a=(1 2":                   false,
		"a=:not base64!:":          false,
	} {
		if got := validTargeted(v); got != valid {
			t.Errorf("%q: %v, want %v", v, got, valid)
		}
	}
}

func FuzzValidTargeted(f *testing.F) {
	for _, s := range []string{"max-age=60", `a=(1 "x";q);p, b=:aGk=:, c=?1`, "k=-1.25", "x=\"\\\"\""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if validTargeted(s) && strings.TrimSpace(s) == "" {
			t.Fatalf("%q: an empty value is valid", s)
		}
	})
}
