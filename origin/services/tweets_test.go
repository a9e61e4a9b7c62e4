package services

import (
	"context"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/redistest"
	"github.com/outpost-edge/outpost/origin"
	"github.com/outpost-edge/outpost/origin/store"
)

func TestTweetCreateDeleteByAuthorOnly(t *testing.T) {
	e := newEnv(t, 1, nil)
	alice, bob := e.user("alice"), e.user("bob")

	e.purger.reset()
	r := e.must(e.do(0, "POST", "/api/tweets", alice, map[string]string{"text": "  edge caches all the way down  "}), 201)
	var tw TweetView
	r.json(t, &tw)
	if tw.Text != "edge caches all the way down" || tw.Author.Username != "alice" || r.header.Get("Location") != tw.URL {
		t.Fatalf("created %+v (Location %q)", tw, r.header.Get("Location"))
	}
	if !e.purger.has("user-"+alice.User+"-tweets") || !e.purger.has("user-"+alice.User) {
		t.Fatalf("create purged %v", e.purger.tags)
	}

	r = e.must(e.do(0, "GET", tw.URL, nil, nil), 200)
	if sk := r.header.Get("Surrogate-Key"); !strings.Contains(sk, "tweet-"+tw.ID) {
		t.Fatalf("tweet surrogate keys %q", sk)
	}
	if cc := r.header.Get("Cache-Control"); !strings.HasPrefix(cc, "public, max-age=300") {
		t.Fatalf("tweet cache-control %q", cc)
	}

	r = e.must(e.do(0, "DELETE", tw.URL, bob, nil), 403)
	if !strings.Contains(string(r.body), `"code":"forbidden"`) {
		t.Fatalf("403 body %s", r.body)
	}
	e.must(e.do(0, "GET", tw.URL, nil, nil), 200)
	e.must(e.do(0, "DELETE", tw.URL, nil, nil), 401)

	e.purger.reset()
	e.must(e.do(0, "DELETE", tw.URL, alice, nil), 204)
	if !e.purger.has("tweet-" + tw.ID) {
		t.Fatalf("delete purged %v", e.purger.tags)
	}
	e.must(e.do(0, "GET", tw.URL, nil, nil), 404)
	e.must(e.do(0, "DELETE", tw.URL, alice, nil), 404)

	tests := []struct {
		name string
		body any
	}{
		{"empty", map[string]string{"text": "   "}},
		{"too long", map[string]string{"text": strings.Repeat("é", 281)}},
		{"foreign media", map[string]any{"text": "x", "media": []string{"https://evil.example/x.png"}}},
		{"unknown media", map[string]any{"text": "x", "media": []string{"/static/media/" + strings.Repeat("0", 64) + ".png"}}},
		{"too much media", map[string]any{"text": "x", "media": []string{e.seed.MediaURL, e.seed.MediaURL, e.seed.MediaURL, e.seed.MediaURL, e.seed.MediaURL}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.must(e.do(0, "POST", "/api/tweets", alice, tc.body), 400)
		})
	}
	r = e.must(e.do(0, "POST", "/api/tweets", alice, map[string]any{"text": "with a picture", "media": []string{e.seed.MediaURL}}), 201)
	r.json(t, &tw)
	if len(tw.Media) != 1 || tw.Media[0] != e.seed.MediaURL {
		t.Fatalf("media tweet %+v", tw)
	}
	for _, id := range []string{"0", "abc", "99999", "-1"} {
		e.must(e.do(0, "GET", "/api/tweets/"+id, nil, nil), 404)
	}
}

func timelineOf(t *testing.T, e *env, inst int, name string) (TimelineView, string) {
	t.Helper()
	r := e.must(e.do(inst, "GET", "/api/timeline", e.user(name), nil), 200)
	if cc := r.header.Get("Cache-Control"); cc != "private, no-store" {
		t.Fatalf("timeline cache-control %q", cc)
	}
	var tl TimelineView
	r.json(t, &tl)
	return tl, r.header.Get("X-Origin-Cache")
}

func TestTimelineCachedAndInvalidated(t *testing.T) {
	e := newEnv(t, 1, nil)
	bob, alice, carol := e.user("bob"), e.user("alice"), e.user("carol")

	tl, st := timelineOf(t, e, 0, "bob")
	if st != "MISS" {
		t.Fatalf("first timeline: %s", st)
	}
	// bob follows alice: his own tweet and alice's two.
	if len(tl.Tweets) != 3 {
		t.Fatalf("bob's timeline has %d tweets", len(tl.Tweets))
	}
	for i := 1; i < len(tl.Tweets); i++ {
		if !tl.Tweets[i-1].CreatedAt.After(tl.Tweets[i].CreatedAt) && tl.Tweets[i-1].ID <= tl.Tweets[i].ID {
			t.Fatalf("timeline not newest first: %s then %s", tl.Tweets[i-1].ID, tl.Tweets[i].ID)
		}
	}
	if _, st := timelineOf(t, e, 0, "bob"); st != "HIT" {
		t.Fatalf("second timeline: %s", st)
	}

	// carol is not followed by bob: her post leaves bob's cache alone.
	e.must(e.do(0, "POST", "/api/tweets", carol, map[string]string{"text": "bob does not follow me"}), 201)
	if _, st := timelineOf(t, e, 0, "bob"); st != "HIT" {
		t.Fatalf("after an unfollowed post: %s", st)
	}

	// alice is followed by bob: her post invalidates his timeline.
	r := e.must(e.do(0, "POST", "/api/tweets", alice, map[string]string{"text": "fresh from alice"}), 201)
	var tw TweetView
	r.json(t, &tw)
	tl, st = timelineOf(t, e, 0, "bob")
	if st != "MISS" || tl.Tweets[0].ID != tw.ID {
		t.Fatalf("after alice posted: %s, first %+v", st, tl.Tweets[0])
	}

	// The TTL is 30 s.
	if _, st := timelineOf(t, e, 0, "bob"); st != "HIT" {
		t.Fatalf("%s", st)
	}
	e.clk.Advance(TimelineTTL)
	if _, st := timelineOf(t, e, 0, "bob"); st != "MISS" {
		t.Fatalf("after the TTL: %s", st)
	}

	// Following someone new changes the timeline at once.
	e.must(e.do(0, "POST", "/api/users/carol/follow", bob, nil), 200)
	tl, st = timelineOf(t, e, 0, "bob")
	if st != "MISS" || tl.Tweets[0].Author.Username != "alice" || len(tl.Tweets) != 6 {
		t.Fatalf("after following carol: %s, %d tweets", st, len(tl.Tweets))
	}

	// Deleting a followed author's tweet also refreshes.
	e.must(e.do(0, "DELETE", tw.URL, alice, nil), 204)
	tl, st = timelineOf(t, e, 0, "bob")
	if st != "MISS" || tl.Tweets[0].ID == tw.ID {
		t.Fatalf("after delete: %s, first %s", st, tl.Tweets[0].ID)
	}
}

// TestTimelineWithRedisDown runs the timeline on a real Redis cache, then
// stops Redis: timelines are still served, straight from the store.
func TestTimelineWithRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	e := newEnv(t, 2, func(c *Config) { c.Cache = origin.NewRedisCache(srv.Client(), "tl:") })
	if _, st := timelineOf(t, e, 0, "bob"); st != "MISS" {
		t.Fatalf("%s", st)
	}
	// The other instance reads the same Redis.
	if _, st := timelineOf(t, e, 1, "bob"); st != "HIT" {
		t.Fatalf("instance b: %s", st)
	}
	srv.Stop()
	tl, st := timelineOf(t, e, 0, "bob")
	if st == "HIT" || len(tl.Tweets) != 3 {
		t.Fatalf("redis down: %s, %d tweets", st, len(tl.Tweets))
	}
	// Writes still succeed; the invalidation failure is only logged.
	e.must(e.do(1, "POST", "/api/tweets", e.user("alice"), map[string]string{"text": "redis is down"}), 201)
	tl, _ = timelineOf(t, e, 1, "bob")
	if len(tl.Tweets) != 4 || tl.Tweets[0].Text != "redis is down" {
		t.Fatalf("after a write with redis down: %+v", tl.Tweets[0])
	}
}

func TestNotificationsOnFollowAndMention(t *testing.T) {
	e := newEnv(t, 1, nil)
	bob := e.user("bob")
	e.must(e.do(0, "POST", "/api/users/signup", nil, map[string]string{"username": "dave", "password": "dave-password"}), 201)
	dave := e.user("dave")

	e.must(e.do(0, "POST", "/api/users/bob/follow", dave, nil), 200)
	r := e.must(e.do(0, "POST", "/api/tweets", dave, map[string]string{"text": "hey @Bob and @bob and @nobody, meet @dave"}), 201)
	var tw TweetView
	r.json(t, &tw)
	if len(tw.Mentions) != 2 || tw.Mentions[0] != "bob" || tw.Mentions[1] != "dave" {
		t.Fatalf("mentions %v", tw.Mentions)
	}

	r = e.must(e.do(0, "GET", "/api/notifications", bob, nil), 200)
	var nl struct{ Notifications []NotificationView }
	r.json(t, &nl)
	if len(nl.Notifications) < 2 {
		t.Fatalf("bob's notifications %+v", nl.Notifications)
	}
	n0, n1 := nl.Notifications[0], nl.Notifications[1]
	if n0.Kind != "mention" || n0.Actor.Username != "dave" || n0.TweetID != tw.ID {
		t.Fatalf("newest notification %+v", n0)
	}
	if n1.Kind != "follow" || n1.Actor.Username != "dave" {
		t.Fatalf("second notification %+v", n1)
	}
	// Mentioning yourself notifies nobody.
	r = e.must(e.do(0, "GET", "/api/notifications", dave, nil), 200)
	r.json(t, &nl)
	if len(nl.Notifications) != 0 {
		t.Fatalf("dave's notifications %+v", nl.Notifications)
	}
}

func TestTwoInstancesShareOneStore(t *testing.T) {
	e := newEnv(t, 2, nil)
	e.must(e.do(0, "POST", "/api/users/signup", nil, map[string]string{"username": "dave", "password": "dave-password"}), 201)
	r := e.must(e.do(1, "POST", "/api/users/login", nil, map[string]string{"username": "dave", "password": "dave-password"}), 200)
	if r.header.Get("X-Origin-Instance") != "b" {
		t.Fatalf("instance header %q", r.header.Get("X-Origin-Instance"))
	}
	var tok TokenResponse
	r.json(t, &tok)
	// A refresh session made on b works on a.
	e.must(e.do(0, "POST", "/api/users/refresh", nil, map[string]string{"refresh_token": tok.RefreshToken}), 200)

	dave := e.user("dave")
	e.must(e.do(1, "POST", "/api/users/alice/follow", dave, nil), 200)
	if _, st := timelineOf(t, e, 0, "dave"); st != "MISS" {
		t.Fatal(st)
	}
	if _, st := timelineOf(t, e, 1, "dave"); st != "HIT" {
		t.Fatalf("shared cache: %s", st)
	}
	// alice posts on a; dave reads on b and sees it at once.
	r = e.must(e.do(0, "POST", "/api/tweets", e.user("alice"), map[string]string{"text": "written on a"}), 201)
	var tw TweetView
	r.json(t, &tw)
	tl, st := timelineOf(t, e, 1, "dave")
	if st != "MISS" || tl.Tweets[0].ID != tw.ID {
		t.Fatalf("b after a's write: %s %+v", st, tl.Tweets[0])
	}
	e.must(e.do(1, "GET", tw.URL, nil, nil), 200)
	e.must(e.do(1, "DELETE", tw.URL, e.user("bob"), nil), 403)
	e.must(e.do(1, "DELETE", tw.URL, e.user("alice"), nil), 204)
	e.must(e.do(0, "GET", tw.URL, nil, nil), 404)
}

func TestSeedIdempotent(t *testing.T) {
	e := newEnv(t, 1, nil)
	ctx := context.Background()
	count := func() (tweets, notes int) {
		for _, acc := range DemoAccounts() {
			id := e.seed.UserIDs[acc.Username]
			ts, _ := e.store.TweetsByUser(ctx, id, 100)
			ns, _ := e.store.Notifications(ctx, id, 100)
			tweets += len(ts)
			notes += len(ns)
		}
		return
	}
	t1, n1 := count()
	if t1 != 4 || !e.seed.Created || !strings.HasPrefix(e.seed.MediaURL, "/static/media/") {
		t.Fatalf("first seed: %d tweets, %+v", t1, e.seed)
	}
	// follows: bob←alice, alice←bob, alice←carol, bob←carol = 4; mentions: bob, carol = 2.
	if n1 != 6 {
		t.Fatalf("first seed: %d notifications, want 6", n1)
	}
	res, err := e.apps[0].Seed(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t2, n2 := count()
	if res.Created || t2 != t1 || n2 != n1 || res.MediaURL != e.seed.MediaURL {
		t.Fatalf("second seed changed data: created=%v tweets %d→%d notes %d→%d", res.Created, t1, t2, n1, n2)
	}
	// Every seeded password logs in.
	for _, acc := range DemoAccounts() {
		e.must(e.do(0, "POST", "/api/users/login", nil, map[string]string{"username": acc.Username, "password": acc.Password}), 200)
	}
}

// TestInstancesOnRedis runs two instances the way separate processes would:
// store, timeline cache and sessions all in one real Redis.
func TestInstancesOnRedis(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	e := newEnvStore(t, 2, store.NewRedis(rdb, "svc:"), func(c *Config) {
		c.Cache = origin.NewRedisCache(rdb, "cache:")
		c.Sessions = origin.NewRedisSessions(rdb, "sess:", origin.SessionOptions{Now: c.Clock})
	})
	r := e.must(e.do(0, "POST", "/api/users/login", nil, map[string]string{"username": "bob", "password": "bob-password"}), 200)
	var tok TokenResponse
	r.json(t, &tok)
	e.must(e.do(1, "POST", "/api/users/refresh", nil, map[string]string{"refresh_token": tok.RefreshToken}), 200)

	if _, st := timelineOf(t, e, 0, "bob"); st != "MISS" {
		t.Fatal(st)
	}
	if _, st := timelineOf(t, e, 1, "bob"); st != "HIT" {
		t.Fatalf("instance b: %s", st)
	}
	r = e.must(e.do(1, "POST", "/api/tweets", e.user("alice"), map[string]string{"text": "hello @bob via redis"}), 201)
	var tw TweetView
	r.json(t, &tw)
	tl, st := timelineOf(t, e, 0, "bob")
	if st != "MISS" || tl.Tweets[0].ID != tw.ID {
		t.Fatalf("instance a after b's write: %s %+v", st, tl.Tweets[0])
	}
	r = e.must(e.do(0, "GET", "/api/notifications", e.user("bob"), nil), 200)
	var nl struct{ Notifications []NotificationView }
	r.json(t, &nl)
	if len(nl.Notifications) == 0 || nl.Notifications[0].TweetID != tw.ID {
		t.Fatalf("bob's notifications %+v", nl.Notifications)
	}
	e.must(e.do(0, "DELETE", tw.URL, e.user("bob"), nil), 403)
	e.must(e.do(1, "GET", e.seed.MediaURL, nil, nil), 200)
}
