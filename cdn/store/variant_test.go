package store

import (
	"net/http"
	"testing"
)

func TestVariantKey(t *testing.T) {
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			out.Add(kv[i], kv[i+1])
		}
		return out
	}
	tests := []struct {
		name string
		vary []string
		a, b http.Header
		same bool
	}{
		{"encoding order and case", []string{"Accept-Encoding"}, h("Accept-Encoding", "gzip, br"), h("Accept-Encoding", "BR,gzip"), true},
		{"encoding split over lines", []string{"Accept-Encoding"}, h("Accept-Encoding", "gzip", "Accept-Encoding", "br"), h("Accept-Encoding", "br, gzip"), true},
		{"language case", []string{"Accept-Language"}, h("Accept-Language", "en-US"), h("Accept-Language", "en-us"), true},
		{"different encodings", []string{"Accept-Encoding"}, h("Accept-Encoding", "gzip"), h("Accept-Encoding", "br"), false},
		{"cookie case matters", []string{"Cookie"}, h("Cookie", "session=AbC"), h("Cookie", "session=abc"), false},
		{"cookie order matters", []string{"Cookie"}, h("Cookie", "a=1, b=2"), h("Cookie", "b=2, a=1"), false},
		{"token case matters", []string{"X-Api-Key"}, h("X-Api-Key", "Key1"), h("X-Api-Key", "key1"), false},
		{"token surrounding space", []string{"X-Api-Key"}, h("X-Api-Key", " key1 "), h("X-Api-Key", "key1"), true},
		{"absent vs empty", []string{"X-Api-Key"}, h(), h("X-Api-Key", ""), true},
		{"absent vs empty encoding", []string{"Accept-Encoding"}, h(), h("Accept-Encoding", ""), false},
		{"absent vs empty language", []string{"Accept-Language"}, h(), h("Accept-Language", " "), false},
		{"two fields", []string{"Accept-Encoding", "X-Tenant"}, h("Accept-Encoding", "br", "X-Tenant", "A"), h("Accept-Encoding", "br", "X-Tenant", "a"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ka, kb := VariantKey(tc.vary, tc.a), VariantKey(tc.vary, tc.b)
			if (ka == kb) != tc.same {
				t.Errorf("VariantKey %q vs %q: same=%v, want %v", ka, kb, ka == kb, tc.same)
			}
		})
	}
}
