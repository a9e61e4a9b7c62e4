package cdn

import (
	"net/http"
	"testing"
)

// TestVaryOnCaseSensitiveField: two requests whose varied field differs
// only in case are different variants (a Cookie or token is not
// case-insensitive), while Accept-Encoding members are.
func TestVaryOnCaseSensitiveField(t *testing.T) {
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=60")
		w.Header().Set("Vary", "X-Tenant")
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write([]byte("for " + r.Header.Get("X-Tenant")))
	})
	for i, tc := range []struct {
		tenant, body, xcache string
	}{
		{"Acme", "for Acme", "MISS"},
		{"acme", "for acme", "MISS"},
		{"Acme", "for Acme", "HIT"},
		{"acme", "for acme", "HIT"},
	} {
		r := e.get("/t", "X-Tenant: "+tc.tenant)
		if r.body != tc.body || r.Header.Get("X-Cache") != tc.xcache {
			t.Fatalf("request %d (%s): %q %s, want %q %s", i, tc.tenant, r.body, r.Header.Get("X-Cache"), tc.body, tc.xcache)
		}
	}
	if e.hits() != 2 {
		t.Fatalf("origin hits %d, want 2", e.hits())
	}
}

// TestVaryEmptyIsNotAbsent: a negotiation field sent empty is not the
// field absent (RFC 9111 §4.1): an empty Accept-Encoding accepts no coding,
// an absent one any, so a response chosen for one must not go to the other.
// (Other fields sent empty still share the absent variant.)
func TestVaryEmptyIsNotAbsent(t *testing.T) {
	for _, field := range []string{"Accept-Encoding", "Accept-Language"} {
		t.Run(field, func(t *testing.T) {
			e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", "max-age=60")
				w.Header().Set("Vary", field)
				w.Header().Set("Content-Type", "application/octet-stream")
				_, present := r.Header[field]
				if present {
					w.Write([]byte("present"))
				} else {
					w.Write([]byte("absent"))
				}
			})
			for i, tc := range []struct {
				hdr          []string
				body, xcache string
			}{
				{nil, "absent", "MISS"},
				{[]string{field + ":"}, "present", "MISS"},
				{nil, "absent", "HIT"},
				{[]string{field + ":"}, "present", "HIT"},
			} {
				r := e.get("/v", tc.hdr...)
				if r.body != tc.body || r.Header.Get("X-Cache") != tc.xcache {
					t.Fatalf("request %d: %q %s, want %q %s", i, r.body, r.Header.Get("X-Cache"), tc.body, tc.xcache)
				}
			}
		})
	}
}
