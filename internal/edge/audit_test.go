package edge

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/outpost-edge/outpost/internal/reqinfo"
)

func named(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Route", name)
		w.Header().Set("X-Seen-Request-ID", r.Header.Get("X-Request-ID"))
		_, _ = w.Write([]byte(name))
	})
}

func testHandler(t *testing.T, log *bytes.Buffer) *Handler {
	t.Helper()
	rt := NewRouter()
	rt.Handle("public", nil, "/", named("public"))
	rt.Handle("admin", nil, "/admin/", named("admin"))
	h := &Handler{Node: "n1", Router: rt, Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	if log != nil {
		h.AccessLog = slog.New(slog.NewJSONHandler(log, nil))
	}
	return h
}

// A path with dot segments must not reach a route other than the one its
// normalized form names: "/x/../admin/secret" resolves to /admin/secret at
// most origins but would match the "/" route's prefix (and skip the
// /admin/ route's gateway policy).
func TestDotSegmentsDoNotBypassRoutes(t *testing.T) {
	h := testHandler(t, nil)
	for _, target := range []string{
		"/x/../admin/secret",
		"/x/%2e%2e/admin/secret",
		"/x/%2E%2E/admin/secret",
		"/./admin/secret",
		"/admin/..",
		"/x%2F..%2Fadmin/secret",
	} {
		r := httptest.NewRequest("GET", "http://example.com"+target, nil)
		r.RemoteAddr = "192.0.2.1:1234"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusBadRequest {
			t.Errorf("%s: status %d (route %q), want 400", target, w.Code, w.Header().Get("X-Route"))
		}
	}
	// Dots inside a segment are ordinary.
	for _, target := range []string{"/a..b/c", "/.well-known/x", "/file.tar.gz", "/..foo"} {
		r := httptest.NewRequest("GET", "http://example.com"+target, nil)
		r.RemoteAddr = "192.0.2.1:1234"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			t.Errorf("%s: status %d, want 200", target, w.Code)
		}
	}
}

func TestRequestIDTrustedOnlyFromTrustedProxies(t *testing.T) {
	h := testHandler(t, nil)
	for _, tc := range []struct {
		peer, id string
		keep     bool
	}{
		{"192.0.2.1:1", "client-chosen-id", false},
		{"10.1.2.3:1", "proxy-chosen-id", true},
		{"10.1.2.3:1", "bad id\"with junk", false},
		{"10.1.2.3:1", strings.Repeat("a", 129), false},
	} {
		r := httptest.NewRequest("GET", "http://example.com/", nil)
		r.RemoteAddr = tc.peer
		r.Header.Set("X-Request-ID", tc.id)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		got := w.Header().Get("X-Request-ID")
		seen := w.Header().Get("X-Seen-Request-ID")
		if got != seen {
			t.Errorf("%s %q: response id %q, upstream saw %q", tc.peer, tc.id, got, seen)
		}
		if (got == tc.id) != tc.keep {
			t.Errorf("%s %q: got id %q, keep=%v", tc.peer, tc.id, got, tc.keep)
		}
		if !validRequestID(got) {
			t.Errorf("generated id %q is not well-formed", got)
		}
	}
}

func TestForwardedHeadersFromUntrustedPeerIgnored(t *testing.T) {
	rt := NewRouter()
	var info *reqinfo.Info
	rt.Handle("r", nil, "/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info = reqinfo.From(r.Context())
	}))
	h := &Handler{Router: rt, Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	r := httptest.NewRequest("GET", "http://example.com/", nil)
	r.RemoteAddr = "192.0.2.7:1"
	r.Header.Set("X-Forwarded-For", "1.2.3.4")
	r.Header.Set("X-Forwarded-Proto", "https")
	h.ServeHTTP(httptest.NewRecorder(), r)
	if info.Trusted || info.TLS || info.ClientIP != netip.MustParseAddr("192.0.2.7") {
		t.Fatalf("untrusted peer's headers believed: %+v", info)
	}
	// An IPv4-mapped peer address matches an IPv4 trusted prefix.
	r = httptest.NewRequest("GET", "http://example.com/", nil)
	r.RemoteAddr = "[::ffff:10.0.0.9]:1"
	r.Header.Set("X-Forwarded-For", "1.2.3.4")
	h.ServeHTTP(httptest.NewRecorder(), r)
	if !info.Trusted || info.ClientIP != netip.MustParseAddr("1.2.3.4") {
		t.Fatalf("trusted mapped peer: %+v", info)
	}
}

func TestPanicBecomes500AndIsCounted(t *testing.T) {
	rt := NewRouter()
	rt.Handle("boom", nil, "/", http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }))
	reg := prometheus.NewRegistry()
	var log bytes.Buffer
	h := &Handler{Node: "n1", Router: rt, Metrics: NewMetrics(reg), AccessLog: slog.New(slog.NewJSONHandler(&log, nil))}
	r := httptest.NewRequest("GET", "http://example.com/", nil)
	r.RemoteAddr = "192.0.2.1:1"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 500 || !strings.Contains(w.Body.String(), `"internal_error"`) {
		t.Fatalf("got %d %s", w.Code, w.Body)
	}
	if n := testutil.ToFloat64(h.Metrics.requests.WithLabelValues("boom", "500")); n != 1 {
		t.Errorf("requests_total{boom,500} = %v", n)
	}
	if n := testutil.ToFloat64(h.Metrics.inflight); n != 0 {
		t.Errorf("in-flight after panic = %v", n)
	}
	if strings.Contains(w.Body.String(), "boom") {
		t.Errorf("panic value leaked to client: %s", w.Body)
	}
}

// The access log carries the fields and never the query string or
// credentials.
func TestAccessLogFieldsAndNoSecrets(t *testing.T) {
	var buf bytes.Buffer
	h := testHandler(t, &buf)
	r := httptest.NewRequest("GET", "http://Example.com/admin/x?api_key=SECRET1", nil)
	r.RemoteAddr = "192.0.2.1:1"
	r.Header.Set("Authorization", "Bearer SECRET2")
	r.Header.Set("Cookie", "session=SECRET3")
	h.ServeHTTP(httptest.NewRecorder(), r)
	line := buf.String()
	for _, s := range []string{"SECRET1", "SECRET2", "SECRET3"} {
		if strings.Contains(line, s) {
			t.Errorf("access log leaks %s: %s", s, line)
		}
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"time", "node", "route", "method", "host", "path", "status", "bytes", "duration_ms", "request_id"} {
		if _, ok := m[k]; !ok {
			t.Errorf("access log lacks %q: %s", k, line)
		}
	}
	if m["route"] != "admin" || m["path"] != "/admin/x" {
		t.Errorf("route/path = %v %v", m["route"], m["path"])
	}
}

// Repeated slashes are merged for routing (origins read "//admin/x" as
// /admin/x), so they cannot skip a more specific route's policy.
func TestRepeatedSlashesMatchTheirRoute(t *testing.T) {
	h := testHandler(t, nil)
	for target, want := range map[string]string{
		"//admin/secret":   "admin",
		"///admin//secret": "admin",
		"/admin//secret":   "admin",
		"//public//x":      "public",
		"/":                "public",
		"/adminx//y":       "public",
		"//%61dmin/secret": "admin", // decoded before matching
		"/static/a//b.css": "public",
		"//admin":          "public", // "/admin" is not under the "/admin/" prefix
	} {
		r := httptest.NewRequest("GET", "http://example.com"+target, nil)
		r.RemoteAddr = "192.0.2.1:1234"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if got := w.Header().Get("X-Route"); got != want {
			t.Errorf("%s: route %q (status %d), want %q", target, got, w.Code, want)
		}
	}
}
