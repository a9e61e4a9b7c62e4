package services

import (
	"context"
	"errors"
	"fmt"

	"github.com/outpost-edge/outpost/origin/store"
)

// DemoAccount is a seeded user with a known password.
type DemoAccount struct {
	Username    string
	Password    string
	DisplayName string
	Tier        string // "free" or "pro": the gateway's rate-limit tier
	Roles       []string
}

// DemoAccounts lists the seeded users. alice is a "pro" admin, bob and
// carol are "free" users.
func DemoAccounts() []DemoAccount {
	return []DemoAccount{
		{Username: "alice", Password: "alice-password", DisplayName: "Alice Liddell", Tier: "pro", Roles: []string{"user", "admin"}},
		{Username: "bob", Password: "bob-password", DisplayName: "Bob Builder", Tier: "free", Roles: []string{"user"}},
		{Username: "carol", Password: "carol-password", DisplayName: "Carol Danvers", Tier: "free", Roles: []string{"user"}},
	}
}

// SeedResult says what Seed left in the store.
type SeedResult struct {
	Accounts []DemoAccount
	UserIDs  map[string]string // username → id
	MediaURL string            // the seeded image, under /static/media/
	Created  bool              // false when the data was already there
}

// Seed fills the store with demo data: alice, bob and carol (DemoAccounts),
// follows (alice ↔ bob, carol → alice, carol → bob), a few tweets with a
// mention and an image, and the notifications these produce. It is
// idempotent: accounts that exist are kept, follows are set-like, and
// tweets are only written for a seeded user who has none. Seeding sends
// no purges, so it may run before the admin API is listening.
func (a *App) Seed(ctx context.Context) (SeedResult, error) {
	ctx = context.WithValue(ctx, noPurgeKey{}, true)
	res := SeedResult{Accounts: DemoAccounts(), UserIDs: map[string]string{}}
	for _, acc := range res.Accounts {
		u, err := a.store.UserByName(ctx, acc.Username)
		if errors.Is(err, store.ErrNotFound) {
			u, err = a.createUser(ctx, acc.Username, acc.Password, acc.DisplayName, acc.Roles, acc.Tier)
			if errors.Is(err, store.ErrExists) {
				// Another instance seeded concurrently.
				u, err = a.store.UserByName(ctx, acc.Username)
			} else if err == nil {
				res.Created = true
			}
		}
		if err != nil {
			return res, fmt.Errorf("services: seed user %s: %w", acc.Username, err)
		}
		res.UserIDs[acc.Username] = u.ID
	}
	id := res.UserIDs
	for _, f := range [][2]string{{"alice", "bob"}, {"bob", "alice"}, {"carol", "alice"}, {"carol", "bob"}} {
		if _, err := a.doFollow(ctx, id[f[0]], id[f[1]]); err != nil {
			return res, fmt.Errorf("services: seed follow %s→%s: %w", f[0], f[1], err)
		}
	}

	img, err := DemoImagePNG()
	if err != nil {
		return res, err
	}
	mv, err := a.storeMedia(ctx, id["carol"], img)
	if err != nil {
		return res, fmt.Errorf("services: seed media: %w", err)
	}
	res.MediaURL = mv.URL

	tweets := []struct {
		by string
		in tweetInput
	}{
		{"bob", tweetInput{Text: "Hello from the origin! This tweet came through the gateway and the load balancer."}},
		{"alice", tweetInput{Text: "Static assets are cached at the edge nearest to you. Try a purge, @bob!"}},
		{"carol", tweetInput{Text: "Sunset over the sea, served from /static/media/ with an immutable URL.", Media: []string{mv.URL}}},
		{"alice", tweetInput{Text: "Timelines are cached for 30 s at the origin and refreshed when someone you follow posts. @carol"}},
	}
	// Decide per author before writing, so an author with two seed tweets
	// gets both on the first run and none on the next.
	hasTweets := map[string]bool{}
	for _, acc := range res.Accounts {
		have, err := a.store.TweetsByUser(ctx, id[acc.Username], 1)
		if err != nil {
			return res, err
		}
		hasTweets[acc.Username] = len(have) > 0
	}
	for _, t := range tweets {
		if hasTweets[t.by] {
			continue
		}
		res.Created = true
		if _, err := a.postTweet(ctx, id[t.by], t.in); err != nil {
			return res, fmt.Errorf("services: seed tweet by %s: %w", t.by, err)
		}
	}
	a.log.Info("demo data ready", "users", len(res.Accounts), "created", res.Created)
	return res, nil
}
