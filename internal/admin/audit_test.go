package admin

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Without a token the API is open to local tools, not to web pages: a page
// on any site can POST to http://127.0.0.1:9090 (CSRF) or reach it under
// its own name after a DNS rebind, so such requests are refused.
func TestOpenAdminRefusesBrowsersAndRebinding(t *testing.T) {
	hit := 0
	a := New("", slog.New(slog.DiscardHandler))
	a.HandlePublic("GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	a.Handle("POST /v1/reload", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hit++ }))
	for _, c := range []struct {
		name, host string
		hdr        map[string]string
		status     int
	}{
		{"curl on loopback", "127.0.0.1:9090", nil, 200},
		{"localhost", "localhost:9090", nil, 200},
		{"ipv6 loopback", "[::1]:9090", nil, 200},
		{"rebound name", "evil.example:9090", nil, 403},
		{"cross-site page", "127.0.0.1:9090", map[string]string{"Origin": "https://evil.example"}, 403},
		{"fetch metadata", "127.0.0.1:9090", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"null origin", "127.0.0.1:9090", map[string]string{"Origin": "null"}, 403},
	} {
		r := httptest.NewRequest("POST", "/v1/reload", strings.NewReader(`{}`))
		r.Host = c.host
		r.RemoteAddr = "127.0.0.1:5555"
		for k, v := range c.hdr {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		a.ServeHTTP(w, r)
		if w.Code != c.status {
			t.Errorf("%s: status %d, want %d", c.name, w.Code, c.status)
		}
	}
	if hit != 3 {
		t.Errorf("handler ran %d times, want 3", hit)
	}
	// Health stays public whatever the Host.
	r := httptest.NewRequest("GET", "/healthz", nil)
	r.Host = "evil.example"
	w := httptest.NewRecorder()
	a.ServeHTTP(w, r)
	if w.Code != 200 {
		t.Errorf("healthz: %d", w.Code)
	}
}

// RFC 9110 §11.1: the auth scheme is case-insensitive.
func TestBearerSchemeCaseInsensitive(t *testing.T) {
	const token = "s3cret-token-0123456789"
	a := New(token, slog.New(slog.DiscardHandler))
	a.Handle("GET /v1/status", JSONHandler(func() any { return "ok" }))
	for _, auth := range []string{"Bearer " + token, "bearer " + token, "BEARER  " + token} {
		r := httptest.NewRequest("GET", "/v1/status", nil)
		r.Header.Set("Authorization", auth)
		w := httptest.NewRecorder()
		a.ServeHTTP(w, r)
		if w.Code != 200 {
			t.Errorf("%q: %d", auth, w.Code)
		}
	}
	for _, auth := range []string{"Bearer", "Bearer ", "Bearer " + token + "x", "Bearer" + token, token} {
		r := httptest.NewRequest("GET", "/v1/status", nil)
		r.Header.Set("Authorization", auth)
		w := httptest.NewRecorder()
		a.ServeHTTP(w, r)
		if w.Code != 401 {
			t.Errorf("%q: %d, want 401", auth, w.Code)
		}
	}
}

// A 401 must not echo the presented credential anywhere, and the admin log
// must not carry it either.
func TestTokenNeverEchoed(t *testing.T) {
	var log bytes.Buffer
	a := New("s3cret-token-0123456789", slog.New(slog.NewJSONHandler(&log, nil)))
	a.Handle("GET /v1/status", JSONHandler(func() any { return "ok" }))
	r := httptest.NewRequest("GET", "/v1/status", nil)
	r.Header.Set("Authorization", "Bearer s3cret-token-0123456789-WRONG")
	w := httptest.NewRecorder()
	a.ServeHTTP(w, r)
	if strings.Contains(w.Body.String()+log.String(), "s3cret") {
		t.Errorf("credential echoed: %s %s", w.Body, log.String())
	}
	for k, v := range w.Header() {
		if strings.Contains(strings.Join(v, " "), "s3cret") {
			t.Errorf("credential in response header %s", k)
		}
	}
}
