package origin

import (
	"net/http"
	"testing"
)

func TestCacheControlByClass(t *testing.T) {
	tests := []struct {
		class TTLClass
		want  string
	}{
		{NoStore, "no-store"},
		{Short, "public, max-age=30, s-maxage=60, stale-while-revalidate=30, stale-if-error=300"},
		{Medium, "public, max-age=300, s-maxage=900, stale-while-revalidate=60, stale-if-error=3600"},
		{Long, "public, max-age=86400, s-maxage=604800, stale-while-revalidate=3600, stale-if-error=604800"},
		{Immutable, "public, max-age=31536000, immutable"},
	}
	for _, tc := range tests {
		t.Run(tc.class.String(), func(t *testing.T) {
			h := http.Header{}
			SetCache(h, tc.class)
			if got := h.Get("Cache-Control"); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSetPrivate(t *testing.T) {
	h := http.Header{}
	SetCache(h, Long)
	SetPrivate(h)
	if got := h.Get("Cache-Control"); got != "private, no-store" {
		t.Fatalf("got %q", got)
	}
}

func TestSurrogateKeys(t *testing.T) {
	tests := []struct {
		name     string
		existing string
		keys     []string
		want     string
	}{
		{"simple", "", []string{"static", "static-app.css"}, "static static-app.css"},
		{"keeps existing and dedups", "user-u1", []string{"users", "user-u1"}, "user-u1 users"},
		{"drops hostile keys", "", []string{"ok", "a b", "c\nd", "", "q\"x", "x,y", "é"}, "ok"},
		{"nothing valid", "", []string{" "}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.existing != "" {
				h.Set(SurrogateKeyHeader, tc.existing)
			}
			SetSurrogateKeys(h, tc.keys...)
			if got := h.Get(SurrogateKeyHeader); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}
