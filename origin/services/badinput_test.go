package services

import (
	"bytes"
	"strings"
	"testing"
)

// TestBadJSONBodies sends hostile bodies to every JSON endpoint over a real
// server: each gets a 4xx in the JSON error shape, never a 500, and the
// client text names no Go types (internals stay in the log).
func TestBadJSONBodies(t *testing.T) {
	e := newEnv(t, 1, nil)
	alice := e.user("alice")
	huge := append([]byte(`{"text":"`), bytes.Repeat([]byte("a"), maxJSONBody+1)...)
	huge = append(huge, `"}`...)
	bodies := []struct {
		name       string
		body       []byte
		status     int
		code, hint string
	}{
		{"empty", []byte(""), 400, "bad_request", "empty"},
		{"malformed", []byte(`{"text":`), 400, "bad_request", "truncated"},
		{"syntax", []byte(`{"text" 1}`), 400, "bad_request", "malformed JSON at byte"},
		{"array", []byte(`[1,2]`), 400, "bad_request", "JSON object"},
		{"wrong type", nil, 400, "bad_request", "wrong type"}, // {"<the endpoint's field>":5}
		{"unknown field", []byte(`{"nope":1}`), 400, "bad_request", `unknown field "nope"`},
		{"trailing", []byte(`{} {}`), 400, "bad_request", "trailing"},
		{"huge", huge, 413, "too_large", "bytes"},
	}
	endpoints := []struct{ method, path, field string }{
		{"POST", "/api/users/signup", "username"},
		{"POST", "/api/users/login", "username"},
		{"POST", "/api/users/refresh", "refresh_token"},
		{"POST", "/api/users/logout", "refresh_token"},
		{"PATCH", "/api/users/me", "bio"},
		{"POST", "/api/tweets", "text"},
	}
	for _, ep := range endpoints {
		for _, b := range bodies {
			t.Run(ep.path+"/"+b.name, func(t *testing.T) {
				body := b.body
				if body == nil {
					body = []byte(`{"` + ep.field + `":5}`)
				}
				r := e.do(0, ep.method, ep.path, alice, body, "Content-Type", "application/json")
				var out struct {
					Error struct {
						Code    string   `json:"code"`
						Message string   `json:"message"`
						Details []string `json:"details"`
					} `json:"error"`
				}
				r.json(t, &out)
				text := out.Error.Message + " " + strings.Join(out.Error.Details, " ")
				if r.status != b.status || out.Error.Code != b.code || !strings.Contains(text, b.hint) {
					t.Errorf("%d %s %q, want %d %s mentioning %q", r.status, out.Error.Code, text, b.status, b.code, b.hint)
				}
				if strings.Contains(text, "Go value") || strings.Contains(text, "services.") {
					t.Errorf("client text leaks Go internals: %q", text)
				}
			})
		}
	}
}

// TestBadIDs sends ids and names that could not have been issued: each is
// a JSON 404 (a 405 for a method the path lacks), never a 500 or a panic.
func TestBadIDs(t *testing.T) {
	e := newEnv(t, 1, nil)
	alice := e.user("alice")
	long := strings.Repeat("9", 400)
	requests := []string{
		"GET /api/tweets/abc", "GET /api/tweets/0", "GET /api/tweets/-1", "GET /api/tweets/01",
		"GET /api/tweets/%2B1", "GET /api/tweets/1e3", "GET /api/tweets/%00",
		"GET /api/tweets/18446744073709551616", "GET /api/tweets/" + long,
		"DELETE /api/tweets/abc", "DELETE /api/tweets/%FF",
		"GET /api/users/%FF", "GET /api/users/%00admin", "GET /api/users/" + long,
		"GET /api/users/..%2Falice", "GET /api/users/nobody/tweets",
		"POST /api/users/%FF/follow", "DELETE /api/users/nobody/follow",
		"GET /static/media/..%2F..%2Fetc%2Fpasswd", "GET /static/%2E%2E",
		"PUT /api/tweets/1",
	}
	for _, req := range requests {
		t.Run(req, func(t *testing.T) {
			method, path, _ := strings.Cut(req, " ")
			want := 404
			if method == "PUT" {
				want = 405
			}
			r := e.do(0, method, path, alice, nil)
			var out struct {
				Error struct{ Status int } `json:"error"`
			}
			r.json(t, &out)
			if r.status != want || out.Error.Status != want {
				t.Errorf("%d (body status %d), want %d: %s", r.status, out.Error.Status, want, r.body)
			}
		})
	}
}
