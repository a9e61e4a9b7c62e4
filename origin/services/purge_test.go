package services

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/outpost-edge/outpost/internal/httperr"
	"github.com/outpost-edge/outpost/origin"
)

// TestPurgeOnWriteThroughAdminAPI wires the real PurgeClient to a stand-in
// admin API over HTTP: a write is followed by POST /v1/purge with the
// bearer token and the tags, and an admin API that is down does not fail
// the write.
func TestPurgeOnWriteThroughAdminAPI(t *testing.T) {
	var mu sync.Mutex
	var bodies []origin.PurgeRequest
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "POST" || r.URL.Path != "/v1/purge" || r.Header.Get("Authorization") != "Bearer admin-token" {
			httperr.Write(w, r, http.StatusUnauthorized, "unauthorized", "no")
			return
		}
		var req origin.PurgeRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			httperr.Write(w, r, http.StatusBadRequest, "bad_request", "json")
			return
		}
		mu.Lock()
		bodies = append(bodies, req)
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	defer admin.Close()
	pc, err := origin.NewPurgeClient(admin.URL, "admin-token", admin.Client())
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, 1, func(c *Config) { c.Purger = pc })
	alice := e.user("alice")

	mu.Lock()
	if len(bodies) != 0 {
		t.Fatalf("seeding sent purges: %+v", bodies)
	}
	mu.Unlock()
	r := e.must(e.do(0, "POST", "/api/tweets", alice, map[string]string{"text": "purge me"}), 201)
	var tw TweetView
	r.json(t, &tw)
	e.must(e.do(0, "DELETE", tw.URL, alice, nil), 204)

	mu.Lock()
	got := append([]origin.PurgeRequest(nil), bodies...)
	mu.Unlock()
	want := [][]string{
		{"user-" + alice.User, "user-" + alice.User + "-tweets"},
		{"user-" + alice.User, "user-" + alice.User + "-tweets"},
		{"tweet-" + tw.ID},
	}
	if len(got) != len(want) {
		t.Fatalf("admin API saw %d purges: %+v", len(got), got)
	}
	for i := range want {
		if len(got[i].Tags) != len(want[i]) || got[i].Soft || got[i].All {
			t.Fatalf("purge %d: %+v, want tags %v", i, got[i], want[i])
		}
		for j := range want[i] {
			if got[i].Tags[j] != want[i][j] {
				t.Fatalf("purge %d: %+v, want tags %v", i, got[i], want[i])
			}
		}
	}

	admin.Close()
	e.must(e.do(0, "POST", "/api/tweets", alice, map[string]string{"text": "admin API is down"}), 201)
}
