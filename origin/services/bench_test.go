package services

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/outpost-edge/outpost/origin/identity"
)

// BenchmarkTimelineHit measures a cached home timeline through the whole
// handler (identity verification, read-through hit, write), no network.
func BenchmarkTimelineHit(b *testing.B) {
	e := newEnv(b, 1, nil)
	h := e.apps[0].Handler()
	bob := e.user("bob")
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodGet, "/api/timeline", nil)
		identity.Sign(r, bob, testSecret, e.clk.Now())
		w.Body.Reset()
		h.ServeHTTP(w, r)
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}

// BenchmarkProfile measures an uncached public profile read from bbolt.
func BenchmarkProfile(b *testing.B) {
	e := newEnv(b, 1, nil)
	h := e.apps[0].Handler()
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodGet, "/api/users/alice", nil)
		w.Body.Reset()
		h.ServeHTTP(w, r)
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}
