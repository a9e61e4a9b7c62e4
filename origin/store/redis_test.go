package store

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/redistest"
)

func TestRedis(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	runConformance(t, func(t *testing.T) Store {
		// A prefix per subtest keeps them apart on one server.
		return NewRedis(rdb, "test:"+strings.ReplaceAll(t.Name(), "/", ":")+":")
	})
}

// TestRedisSharedAndDown: two Store values on one server see the same
// data; a stopped server gives errors, never wrong answers.
func TestRedisSharedAndDown(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	a, b := NewRedis(srv.Client(), ""), NewRedis(srv.Client(), "")
	u, err := a.CreateUser(ctx, User{Username: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	tw, err := a.CreateTweet(ctx, Tweet{AuthorID: u.ID, Text: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.Tweet(ctx, tw.ID); err != nil || got.Text != "hi" {
		t.Fatalf("instance b: %+v %v", got, err)
	}
	srv.Stop()
	if _, err := b.UserByName(ctx, "alice"); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("redis down: %v, want a backend error distinct from not-found", err)
	}
}
