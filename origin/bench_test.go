package origin

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/origin/identity"
)

func BenchmarkVerifierRequire(b *testing.B) {
	secret := []byte("bench-secret-0123456789abcdef")
	now := time.Now()
	v := NewVerifier(secret, time.Minute, func() time.Time { return now }, nil)
	h := v.Require(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	r := httptest.NewRequest(http.MethodGet, "/api/timeline", nil)
	identity.Sign(r, &identity.Identity{User: "u1", Scopes: []string{"tweets:write"}, Tier: "pro"}, secret, now)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}

func BenchmarkReadThroughMemoryHit(b *testing.B) {
	rt := NewReadThrough(NewMemoryCache(0, nil), ReadThroughOptions{})
	ctx := context.Background()
	load := func(context.Context) ([]byte, error) { return make([]byte, 2048), nil }
	_, _, _ = rt.Get(ctx, "k", time.Hour, load)
	b.ReportAllocs()
	for b.Loop() {
		if _, st, _ := rt.Get(ctx, "k", time.Hour, load); st != StatusHit {
			b.Fatal(st)
		}
	}
}
