package identity

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestIssuerIsSigned: an identity with an issuer is signed as v3, over the
// issuer too; one without is still v2, byte for byte what origins built
// against v2 verify. Neither can be turned into the other, or into another
// issuer's caller, without the secret.
func TestIssuerIsSigned(t *testing.T) {
	secret := []byte("gateway-secret-for-tests")
	now := time.Unix(1_800_000_000, 0)
	req := func() *http.Request {
		r, _ := http.NewRequest(http.MethodGet, "http://origin/v1/posts?page=2", nil)
		return r
	}
	withIss := &Identity{User: "alice", Issuer: "https://partner.test", Scopes: []string{"posts:read"}, Tier: "pro"}
	noIss := &Identity{User: "alice", Scopes: []string{"posts:read"}, Tier: "pro"}

	r := req()
	Sign(r, withIss, secret, now)
	if sig := r.Header.Get(HeaderSignature); !strings.HasPrefix(sig, "v3=") {
		t.Fatalf("signature %q, want v3", sig)
	}
	id, err := Verify(r, secret, now, time.Minute)
	if err != nil || id.User != "alice" || id.Issuer != "https://partner.test" {
		t.Fatalf("verify: %+v, %v", id, err)
	}

	r = req()
	Sign(r, noIss, secret, now)
	if sig := r.Header.Get(HeaderSignature); !strings.HasPrefix(sig, "v2=") || r.Header.Get(HeaderIssuer) != "" {
		t.Fatalf("no issuer: signature %q, issuer header %q", r.Header.Get(HeaderSignature), r.Header.Get(HeaderIssuer))
	}
	if id, err := Verify(r, secret, now, time.Minute); err != nil || id.Issuer != "" {
		t.Fatalf("verify v2: %+v, %v", id, err)
	}
	// The v2 text is the one origins built before issuers existed.
	want := mac(secret, noIss, "v2\nGET\n/v1/posts\npage=2\n1800000000\nalice\n\nposts:read\n\npro")
	if got := r.Header.Get(HeaderSignature); got != want {
		t.Fatalf("v2 signature changed: %q, want %q", got, want)
	}

	for _, tc := range []struct {
		name string
		edit func(h http.Header)
	}{
		{"issuer removed", func(h http.Header) { h.Del(HeaderIssuer) }},
		{"issuer changed", func(h http.Header) { h.Set(HeaderIssuer, "https://auth.demo.test") }},
		{"v3 relabelled v2", func(h http.Header) {
			h.Del(HeaderIssuer)
			h.Set(HeaderSignature, "v2="+strings.TrimPrefix(h.Get(HeaderSignature), "v3="))
		}},
	} {
		r := req()
		Sign(r, withIss, secret, now)
		tc.edit(r.Header)
		if _, err := Verify(r, secret, now, time.Minute); err != ErrForged {
			t.Errorf("%s: err %v, want ErrForged", tc.name, err)
		}
	}
	// An issuer added to a v2 identity does not verify either.
	r = req()
	Sign(r, noIss, secret, now)
	r.Header.Set(HeaderIssuer, "https://partner.test")
	if _, err := Verify(r, secret, now, time.Minute); err != ErrForged {
		t.Errorf("issuer added: err %v, want ErrForged", err)
	}
}
