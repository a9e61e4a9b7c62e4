package store

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

type factory func(t *testing.T) Store

func boltFactory(t *testing.T) Store {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "svc.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	s, err := NewBolt(db)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestBolt(t *testing.T) { runConformance(t, boltFactory) }

func runConformance(t *testing.T, mk factory) {
	t.Run("users", func(t *testing.T) { testUsers(t, mk(t)) })
	t.Run("follows", func(t *testing.T) { testFollows(t, mk(t)) })
	t.Run("tweets", func(t *testing.T) { testTweets(t, mk(t)) })
	t.Run("notifications", func(t *testing.T) { testNotifications(t, mk(t)) })
	t.Run("media", func(t *testing.T) { testMedia(t, mk(t)) })
	t.Run("concurrent signups", func(t *testing.T) { testConcurrentSignup(t, mk(t)) })
	t.Run("concurrent updates", func(t *testing.T) { testConcurrentUpdates(t, mk(t)) })
}

// testConcurrentUpdates: updates of one user racing each other each read
// the value the previous one wrote; none is lost.
func testConcurrentUpdates(t *testing.T, s Store) {
	ctx := context.Background()
	u := mustUser(t, s, "racer")
	const n = 24
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, err := s.UpdateUser(ctx, u.ID, func(u *User) error {
				u.Bio += string(rune('a' + i))
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	got, err := s.UserByID(ctx, u.ID)
	if err != nil || len(got.Bio) != n {
		t.Fatalf("bio %q (%d of %d updates kept), %v", got.Bio, len(got.Bio), n, err)
	}
}

func mustUser(t *testing.T, s Store, name string) User {
	t.Helper()
	u, err := s.CreateUser(context.Background(), User{Username: name, DisplayName: name, Roles: []string{"user"}, Tier: "free"})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func testUsers(t *testing.T, s Store) {
	ctx := context.Background()
	a := mustUser(t, s, "Alice")
	if a.ID == "" || a.Username != "alice" {
		t.Fatalf("created %+v", a)
	}
	if _, err := s.CreateUser(ctx, User{Username: "ALICE"}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate: %v", err)
	}
	b := mustUser(t, s, "bob")
	if b.ID == a.ID {
		t.Fatal("same id twice")
	}
	got, err := s.UserByName(ctx, "aLiCe")
	if err != nil || got.ID != a.ID || got.Tier != "free" || len(got.Roles) != 1 {
		t.Fatalf("by name: %+v %v", got, err)
	}
	updated, err := s.UpdateUser(ctx, a.ID, func(u *User) error {
		u.Bio = "hello"
		u.Username, u.ID = "mallory", "u999"
		return nil
	})
	if err != nil || updated.Bio != "hello" || updated.Username != "alice" || updated.ID != a.ID {
		t.Fatalf("update: %+v %v", updated, err)
	}
	got, err = s.UserByID(ctx, a.ID)
	if err != nil || got.Bio != "hello" || got.Username != "alice" {
		t.Fatalf("after update: %+v %v", got, err)
	}
	refused := errors.New("refused")
	if _, err := s.UpdateUser(ctx, a.ID, func(u *User) error { u.Bio = "lost"; return refused }); err != refused {
		t.Fatalf("a change's error: got %v, want it as returned", err)
	}
	if got, _ := s.UserByID(ctx, a.ID); got.Bio != "hello" {
		t.Fatalf("a refused change was stored: bio %q", got.Bio)
	}
	for _, id := range []string{"", "u999", "x\x00y"} {
		if _, err := s.UserByID(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("UserByID(%q) = %v", id, err)
		}
	}
	if _, err := s.UserByName(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("UserByName: %v", err)
	}
	if _, err := s.UpdateUser(ctx, "u999", func(*User) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Errorf("UpdateUser unknown: %v", err)
	}
}

func testFollows(t *testing.T, s Store) {
	ctx := context.Background()
	a, b, c := mustUser(t, s, "alice"), mustUser(t, s, "bob"), mustUser(t, s, "carol")
	// Ten more users so that "u1" and "u10" coexist as prefixes.
	for _, n := range []string{"d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8", "d9", "d10"} {
		mustUser(t, s, n)
	}
	ok, err := s.Follow(ctx, a.ID, b.ID)
	if err != nil || !ok {
		t.Fatalf("follow: %v %v", ok, err)
	}
	if ok, _ := s.Follow(ctx, a.ID, b.ID); ok {
		t.Fatal("second follow reported created")
	}
	_, _ = s.Follow(ctx, c.ID, b.ID)
	_, _ = s.Follow(ctx, a.ID, c.ID)
	if _, err := s.Follow(ctx, a.ID, "u999"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("follow unknown: %v", err)
	}
	fol, _ := s.Followers(ctx, b.ID)
	if len(fol) != 2 {
		t.Fatalf("followers of bob: %v", fol)
	}
	ing, _ := s.Following(ctx, a.ID)
	if len(ing) != 2 {
		t.Fatalf("alice follows %v", ing)
	}
	st, err := s.Stats(ctx, a.ID)
	if err != nil || st.Following != 2 || st.Followers != 0 {
		t.Fatalf("stats %+v %v", st, err)
	}
	if ok, _ := s.Unfollow(ctx, a.ID, b.ID); !ok {
		t.Fatal("unfollow reported nothing removed")
	}
	if ok, _ := s.Unfollow(ctx, a.ID, b.ID); ok {
		t.Fatal("second unfollow reported removed")
	}
	fol, _ = s.Followers(ctx, b.ID)
	if len(fol) != 1 || fol[0] != c.ID {
		t.Fatalf("followers of bob after unfollow: %v", fol)
	}
	if _, err := s.Stats(ctx, "u999"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("stats unknown: %v", err)
	}
}

func testTweets(t *testing.T, s Store) {
	ctx := context.Background()
	var users []User
	for _, n := range []string{"a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9", "a10", "a11"} {
		users = append(users, mustUser(t, s, n))
	}
	u1, u10 := users[0], users[9]
	var mine []Tweet
	for i := range 5 {
		tw, err := s.CreateTweet(ctx, Tweet{AuthorID: u1.ID, Text: "hello " + string(rune('a'+i)), CreatedAt: time.Unix(int64(i), 0).UTC()})
		if err != nil {
			t.Fatal(err)
		}
		mine = append(mine, tw)
		if _, err := s.CreateTweet(ctx, Tweet{AuthorID: u10.ID, Text: "other"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.CreateTweet(ctx, Tweet{AuthorID: "u999"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("tweet by unknown author: %v", err)
	}
	list, err := s.TweetsByUser(ctx, u1.ID, 3)
	if err != nil || len(list) != 3 {
		t.Fatalf("list: %d %v", len(list), err)
	}
	if list[0].ID != mine[4].ID || list[2].ID != mine[2].ID {
		t.Fatalf("order: got %s,%s want %s,%s", list[0].ID, list[2].ID, mine[4].ID, mine[2].ID)
	}
	for _, tw := range list {
		if tw.AuthorID != u1.ID {
			t.Fatalf("u1 list has %+v", tw)
		}
	}
	last, _ := s.TweetsByUser(ctx, users[10].ID, 10)
	if len(last) != 0 {
		t.Fatalf("user without tweets: %v", last)
	}
	got, err := s.Tweet(ctx, mine[1].ID)
	if err != nil || got.Text != mine[1].Text {
		t.Fatalf("get: %+v %v", got, err)
	}
	if err := s.DeleteTweet(ctx, mine[1].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Tweet(ctx, mine[1].ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted: %v", err)
	}
	if err := s.DeleteTweet(ctx, mine[1].ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	st, _ := s.Stats(ctx, u1.ID)
	if st.Tweets != 4 {
		t.Fatalf("tweet count %d", st.Tweets)
	}
	for _, id := range []string{"", "0", "01", "-1", "abc", "99999999999999999999999"} {
		if _, err := s.Tweet(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Tweet(%q) = %v", id, err)
		}
	}
}

func testNotifications(t *testing.T, s Store) {
	ctx := context.Background()
	a, b := mustUser(t, s, "alice"), mustUser(t, s, "bob")
	for i := range 4 {
		kind := KindFollow
		if i%2 == 1 {
			kind = KindMention
		}
		if _, err := s.AddNotification(ctx, Notification{UserID: a.ID, Kind: kind, ActorID: b.ID}); err != nil {
			t.Fatal(err)
		}
	}
	_, _ = s.AddNotification(ctx, Notification{UserID: b.ID, Kind: KindFollow, ActorID: a.ID})
	list, err := s.Notifications(ctx, a.ID, 10)
	if err != nil || len(list) != 4 || list[0].Kind != KindMention || list[3].Kind != KindFollow {
		t.Fatalf("list %+v %v", list, err)
	}
	list, _ = s.Notifications(ctx, b.ID, 10)
	if len(list) != 1 || list[0].ActorID != a.ID {
		t.Fatalf("bob's list %+v", list)
	}
}

func testMedia(t *testing.T, s Store) {
	ctx := context.Background()
	m := Media{Name: "abc.png", ContentType: "image/png", Size: 3, OwnerID: "u1"}
	created, err := s.PutMedia(ctx, m, []byte{1, 2, 3})
	if err != nil || !created {
		t.Fatalf("put: %v %v", created, err)
	}
	created, err = s.PutMedia(ctx, m, []byte{9})
	if err != nil || created {
		t.Fatalf("second put: %v %v", created, err)
	}
	got, data, err := s.Media(ctx, "abc.png")
	if err != nil || got.ContentType != "image/png" || string(data) != "\x01\x02\x03" {
		t.Fatalf("get: %+v %v %v", got, data, err)
	}
	if _, _, err := s.Media(ctx, "nope.png"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
}

func testConcurrentSignup(t *testing.T, s Store) {
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.CreateUser(ctx, User{Username: "race"})
			if err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			} else if !errors.Is(err, ErrExists) {
				t.Errorf("signup: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d signups won the same username", wins)
	}
}
