package origin

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/origin/identity"
)

func TestVerifierOverHTTP(t *testing.T) {
	secret := []byte("gateway-secret-for-tests")
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	v := NewVerifier(secret, time.Minute, func() time.Time { return now }, nil)

	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := IdentityFrom(r.Context())
		out := map[string]any{"anonymous": id == nil}
		if id != nil {
			out["user"] = id.User
			out["scopes"] = id.Scopes
			out["tier"] = id.Tier
		}
		_ = json.NewEncoder(w).Encode(out)
	})
	mux := http.NewServeMux()
	mux.Handle("/private", v.Require(echo))
	mux.Handle("/public", v.Allow(echo))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	alice := &identity.Identity{User: "u1", Scopes: []string{"tweets:write", "profile:read"}, Roles: []string{"user"}, Tier: "pro"}
	tests := []struct {
		name     string
		path     string
		prepare  func(r *http.Request)
		want     int
		wantUser string
		wantMsg  string
	}{
		{name: "valid", path: "/private", prepare: func(r *http.Request) { identity.Sign(r, alice, secret, now) }, want: 200, wantUser: "u1"},
		{name: "valid within skew", path: "/private", prepare: func(r *http.Request) { identity.Sign(r, alice, secret, now.Add(-50*time.Second)) }, want: 200, wantUser: "u1"},
		{name: "missing", path: "/private", prepare: func(*http.Request) {}, want: 401, wantMsg: "missing gateway identity"},
		{name: "forged secret", path: "/private", prepare: func(r *http.Request) { identity.Sign(r, alice, []byte("attacker"), now) }, want: 401, wantMsg: "invalid gateway identity"},
		{name: "tampered user", path: "/private", prepare: func(r *http.Request) {
			identity.Sign(r, alice, secret, now)
			r.Header.Set(identity.HeaderUser, "u2")
		}, want: 401, wantMsg: "invalid gateway identity"},
		{name: "signed for another path", path: "/private", prepare: func(r *http.Request) {
			other := r.Clone(r.Context())
			other.URL.Path = "/elsewhere"
			identity.Sign(other, alice, secret, now)
			for _, k := range identity.Headers {
				r.Header.Set(k, other.Header.Get(k))
			}
		}, want: 401, wantMsg: "invalid gateway identity"},
		{name: "valid with query", path: "/private?page=2&a=b", prepare: func(r *http.Request) { identity.Sign(r, alice, secret, now) }, want: 200, wantUser: "u1"},
		// The query is signed: one signed request's identity does not
		// carry over to the same path with other parameters.
		{name: "query changed after signing", path: "/private?page=2", prepare: func(r *http.Request) {
			identity.Sign(r, alice, secret, now)
			r.URL.RawQuery = "page=3"
		}, want: 401, wantMsg: "invalid gateway identity"},
		{name: "query added after signing", path: "/private", prepare: func(r *http.Request) {
			identity.Sign(r, alice, secret, now)
			r.URL.RawQuery = "delete=all"
		}, want: 401, wantMsg: "invalid gateway identity"},
		{name: "expired", path: "/private", prepare: func(r *http.Request) { identity.Sign(r, alice, secret, now.Add(-2*time.Minute)) }, want: 401, wantMsg: "expired gateway identity"},
		{name: "from the future", path: "/private", prepare: func(r *http.Request) { identity.Sign(r, alice, secret, now.Add(2*time.Minute)) }, want: 401, wantMsg: "expired gateway identity"},
		{name: "public anonymous", path: "/public", prepare: func(*http.Request) {}, want: 200},
		{name: "public signed", path: "/public", prepare: func(r *http.Request) { identity.Sign(r, alice, secret, now) }, want: 200, wantUser: "u1"},
		{name: "public spoofed unsigned user", path: "/public", prepare: func(r *http.Request) { r.Header.Set(identity.HeaderUser, "u1") }, want: 401, wantMsg: "missing gateway identity"},
		{name: "public forged", path: "/public", prepare: func(r *http.Request) { identity.Sign(r, alice, []byte("attacker"), now) }, want: 401, wantMsg: "invalid gateway identity"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, srv.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			tc.prepare(req)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, body)
			}
			if tc.want == 401 {
				var e struct {
					Error struct {
						Status  int    `json:"status"`
						Code    string `json:"code"`
						Message string `json:"message"`
					} `json:"error"`
				}
				if err := json.Unmarshal(body, &e); err != nil {
					t.Fatalf("401 body is not JSON: %s", body)
				}
				if e.Error.Code != "unauthorized" || e.Error.Message != tc.wantMsg || e.Error.Status != 401 {
					t.Fatalf("error body %+v, want unauthorized/%q", e.Error, tc.wantMsg)
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
					t.Fatalf("content-type %q", ct)
				}
				return
			}
			var got struct {
				Anonymous bool     `json:"anonymous"`
				User      string   `json:"user"`
				Scopes    []string `json:"scopes"`
				Tier      string   `json:"tier"`
			}
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatal(err)
			}
			if got.User != tc.wantUser || got.Anonymous != (tc.wantUser == "") {
				t.Fatalf("got %+v, want user %q", got, tc.wantUser)
			}
			if tc.wantUser != "" && (got.Tier != "pro" || len(got.Scopes) != 2) {
				t.Fatalf("identity fields lost: %+v", got)
			}
		})
	}
}

func TestVerifierEmptySecretRejectsEverything(t *testing.T) {
	now := time.Now()
	v := NewVerifier(nil, 0, func() time.Time { return now }, nil)
	r := httptest.NewRequest(http.MethodGet, "/x", nil)
	identity.Sign(r, &identity.Identity{User: "u1"}, nil, now)
	if _, err := v.Verify(r); err == nil {
		t.Fatal("empty secret accepted a signature made with the empty secret")
	}
}
