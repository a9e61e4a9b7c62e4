package gateway

import (
	"testing"
)

// A path that no pattern of the route matches is "no route" (404) whatever
// the method: a 405 would claim the resource exists.
func TestAuditUnmatchedPathIs404EvenWithWrongMethod(t *testing.T) {
	e := newEnv(t, envOpts{route: RouteConfig{
		Methods: []string{"GET"},
		Paths:   []string{"/api/users/{id}"},
		Auth:    AuthConfig{Mode: ModeNone},
	}})
	r := e.do("DELETE", "/api/other", nil, nil)
	if r.StatusCode != 404 || errCode(t, r) != "no_route" {
		t.Fatalf("DELETE on an unmatched path: %d %s, want 404 no_route", r.StatusCode, bodyOf(r))
	}
	r = e.do("DELETE", "/api/users/1", nil, nil)
	if r.StatusCode != 405 || r.Header.Get("Allow") != "GET, HEAD" {
		t.Fatalf("DELETE on a matched path: %d Allow %q, want 405", r.StatusCode, r.Header.Get("Allow"))
	}
}
