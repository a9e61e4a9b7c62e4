package edge

import (
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRouterMatch(t *testing.T) {
	rt := NewRouter()
	h := func(name string) http.Handler {
		return http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	}
	rt.Handle("any-root", nil, "/", h("any-root"))
	rt.Handle("any-api", nil, "/api/", h("any-api"))
	rt.Handle("www-static", []string{"www.example.com"}, "/static/", h("www-static"))
	rt.Handle("www-root", []string{"www.example.com"}, "/", h("www-root"))
	rt.Handle("wild", []string{"*.example.org"}, "/", h("wild"))
	rt.Handle("login", nil, "/api/users/login", h("login"))
	rt.Handle("users", nil, "/api/users/", h("users"))

	cases := []struct {
		host, path, want string
	}{
		{"www.example.com", "/static/app.css", "www-static"},
		{"WWW.Example.COM:8080", "/static/app.css", "www-static"},
		{"www.example.com.", "/index.html", "www-root"},
		{"www.example.com", "/api/x", "www-root"}, // a host's own routes win over any-host ones
		{"a.example.org", "/x", "wild"},
		{"a.b.example.org", "/x", "wild"},
		{"example.org", "/x", "any-root"}, // *.example.org does not cover the apex
		{"other.test", "/api/users/login", "login"},
		{"other.test", "/api/users/bob", "users"},
		{"other.test", "/api/tweets", "any-api"},
		{"", "/", "any-root"},
		{"[::1]:80", "/", "any-root"},
	}
	for _, c := range cases {
		name, _, ok := rt.Match(c.host, c.path)
		if !ok || name != c.want {
			t.Errorf("Match(%q, %q) = %q, %v; want %q", c.host, c.path, name, ok, c.want)
		}
	}
	empty := NewRouter()
	if _, _, ok := empty.Match("x", "/"); ok {
		t.Error("empty router matched")
	}
}

func TestForwardedClient(t *testing.T) {
	h := &Handler{Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32")}}
	peer := netip.MustParseAddr("10.0.0.1")
	cases := []struct {
		name   string
		values []string
		want   string
	}{
		{"no header", nil, "10.0.0.1"},
		{"one client", []string{"203.0.113.9"}, "203.0.113.9"},
		{"spoofed left part ignored", []string{"6.6.6.6, 203.0.113.9"}, "203.0.113.9"},
		{"trusted hops skipped", []string{"203.0.113.9, 10.1.1.1", "10.2.2.2"}, "203.0.113.9"},
		{"garbage stops the walk", []string{"203.0.113.9, not-an-ip, 10.1.1.1"}, "10.1.1.1"},
		{"ipv6", []string{"2001:db8::1"}, "2001:db8::1"},
		{"mapped v4", []string{"::ffff:203.0.113.9"}, "203.0.113.9"},
	}
	for _, c := range cases {
		if got := h.forwardedClient(c.values, peer); got.String() != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

func TestValidRequestID(t *testing.T) {
	for id, want := range map[string]bool{
		"abc-123":                              true,
		"0f8fad5b-d9cb-469f-a165-70867728950e": true,
		"trace:span.1_x":                       true,
		"":                                     false,
		"has space":                            false,
		"new\nline":                            false,
		"<script>":                             false,
		string(make([]byte, 129)):              false,
	} {
		if validRequestID(id) != want {
			t.Errorf("validRequestID(%q) = %v", id, !want)
		}
	}
}

func FuzzForwardedClient(f *testing.F) {
	f.Add("203.0.113.9, 10.0.0.1")
	f.Add("::1, , ,")
	f.Add("999.1.1.1")
	h := &Handler{Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	f.Fuzz(func(t *testing.T, v string) {
		got := h.forwardedClient([]string{v}, netip.MustParseAddr("10.0.0.1"))
		if !got.IsValid() {
			t.Fatalf("invalid client for %q", v)
		}
	})
}

// The cached per-route series count as WithLabelValues would: by route
// and code, statuses outside 100–599 included.
func TestMetricsObserveCachesSeries(t *testing.T) {
	m := NewMetrics(nil)
	for _, c := range []struct {
		route  string
		status int
	}{{"a", 200}, {"a", 200}, {"a", 404}, {"b", 200}, {"a", 999}} {
		m.observe(c.route, c.status, time.Millisecond)
	}
	for _, c := range []struct {
		route, code string
		want        float64
	}{{"a", "200", 2}, {"a", "404", 1}, {"b", "200", 1}, {"a", "999", 1}, {"b", "404", 0}} {
		if got := testutil.ToFloat64(m.requests.WithLabelValues(c.route, c.code)); got != c.want {
			t.Errorf("requests_total{%s,%s} = %v, want %v", c.route, c.code, got, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.duration); n != 2 {
		t.Errorf("%d duration series, want 2", n)
	}
}
