package origin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/outpost-edge/outpost/internal/httperr"
)

func TestPurgeClient(t *testing.T) {
	var mu sync.Mutex
	var got []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/purge" {
			httperr.Write(w, r, 404, "not_found", "no such endpoint")
			return
		}
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			httperr.Write(w, r, 401, "unauthorized", "bad token")
			return
		}
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			httperr.Write(w, r, 400, "bad_request", "bad json")
			return
		}
		mu.Lock()
		got = append(got, body)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"purged":1}`))
	}))
	defer srv.Close()

	c, err := NewPurgeClient(srv.URL+"/", "s3cret", srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	reqs := []struct {
		req  PurgeRequest
		want string
	}{
		{PurgeRequest{URLs: []string{"http://www.demo.test/static/app.css"}}, `{"urls":["http://www.demo.test/static/app.css"]}`},
		{PurgeRequest{Prefixes: []string{"/static/"}, Soft: true}, `{"prefixes":["/static/"],"soft":true}`},
		{PurgeRequest{Tags: []string{"user-u1", "tweets"}}, `{"tags":["user-u1","tweets"]}`},
		{PurgeRequest{All: true}, `{"all":true}`},
	}
	for _, r := range reqs {
		if err := c.Purge(ctx, r.req); err != nil {
			t.Fatalf("purge %+v: %v", r.req, err)
		}
	}
	if err := c.Purge(ctx, PurgeRequest{Soft: true}); err != nil {
		t.Fatalf("empty purge: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(reqs) {
		t.Fatalf("server saw %d purges, want %d (empty request must not be sent)", len(got), len(reqs))
	}
	for i, r := range reqs {
		b, _ := json.Marshal(got[i])
		if string(b) != r.want {
			t.Errorf("purge %d body %s, want %s", i, b, r.want)
		}
	}

	bad, _ := NewPurgeClient(srv.URL, "wrong", srv.Client())
	err = bad.Purge(ctx, PurgeRequest{All: true})
	if !IsPurgeStatus(err, 401) {
		t.Fatalf("wrong token: %v, want 401 PurgeError", err)
	}
	if pe := err.(*PurgeError); pe.Code != "unauthorized" {
		t.Fatalf("code %q", pe.Code)
	}
}

func TestPurgeClientBadURL(t *testing.T) {
	for _, u := range []string{"", "127.0.0.1:9090", "ftp://x", "http://"} {
		if _, err := NewPurgeClient(u, "t", nil); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
}

func TestPurgeClientUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	c, _ := NewPurgeClient(url, "tok-not-in-errors", nil)
	err := c.Purge(context.Background(), PurgeRequest{All: true})
	if err == nil {
		t.Fatal("purge to a closed port succeeded")
	}
	if want := "tok-not-in-errors"; strings.Contains(err.Error(), want) {
		t.Fatalf("error leaks the token: %v", err)
	}
}
