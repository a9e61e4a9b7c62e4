package services

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/outpost-edge/outpost/internal/httperr"
	"github.com/outpost-edge/outpost/origin"
	"github.com/outpost-edge/outpost/origin/store"
)

// TweetView is the public shape of a tweet.
type TweetView struct {
	ID        string    `json:"id"`
	Author    UserRef   `json:"author"`
	Text      string    `json:"text"`
	Media     []string  `json:"media"`
	Mentions  []string  `json:"mentions"`
	CreatedAt time.Time `json:"created_at"`
	URL       string    `json:"url"`
}

const (
	maxTweetRunes = 280
	maxTweetMedia = 4
	listLimit     = 50
)

func (a *App) tweetView(ctx context.Context, refs *userRefs, t store.Tweet) (TweetView, error) {
	author, err := refs.get(ctx, t.AuthorID)
	if err != nil {
		return TweetView{}, err
	}
	v := TweetView{ID: t.ID, Author: author, Text: t.Text, Media: t.Media, Mentions: t.Mentions,
		CreatedAt: t.CreatedAt, URL: "/api/tweets/" + t.ID}
	if v.Media == nil {
		v.Media = []string{}
	}
	if v.Mentions == nil {
		v.Mentions = []string{}
	}
	return v, nil
}

func (a *App) tweetViews(ctx context.Context, tweets []store.Tweet) ([]TweetView, error) {
	refs := a.refs()
	out := make([]TweetView, 0, len(tweets))
	for _, t := range tweets {
		v, err := a.tweetView(ctx, refs, t)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// mentionedNames extracts @username tokens in order, without duplicates.
func mentionedNames(text string) []string {
	var out []string
	seen := map[string]bool{}
	for i := 0; i < len(text); i++ {
		if text[i] != '@' || (i > 0 && isNameByte(text[i-1])) {
			continue
		}
		j := i + 1
		for j < len(text) && isNameByte(text[j]) {
			j++
		}
		name := strings.ToLower(text[i+1 : j])
		if validUsername(name) && !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
		i = j - 1
	}
	return out
}

func isNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

type tweetInput struct {
	Text  string   `json:"text"`
	Media []string `json:"media,omitempty"`
}

// postTweet validates and stores a tweet by author, notifies mentioned
// users, and invalidates the timelines of the author's followers (and the
// author's own), which is the "invalidated when a followed user posts" rule.
func (a *App) postTweet(ctx context.Context, author string, in tweetInput) (store.Tweet, error) {
	text := strings.TrimSpace(in.Text)
	if text == "" || !utf8.ValidString(text) || utf8.RuneCountInString(text) > maxTweetRunes {
		return store.Tweet{}, errBadInput("text must be 1-280 characters")
	}
	if len(in.Media) > maxTweetMedia {
		return store.Tweet{}, errBadInput("at most 4 media per tweet")
	}
	for _, m := range in.Media {
		name, ok := strings.CutPrefix(m, mediaPrefix)
		if !ok || !validMediaName(name) {
			return store.Tweet{}, errBadInput("media must be URLs returned by POST /api/media")
		}
		if _, _, err := a.store.Media(ctx, name); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return store.Tweet{}, errBadInput("unknown media " + m)
			}
			return store.Tweet{}, err
		}
	}
	var mentions []store.User
	var names []string
	for _, n := range mentionedNames(text) {
		u, err := a.store.UserByName(ctx, n)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return store.Tweet{}, err
		}
		mentions = append(mentions, u)
		names = append(names, u.Username)
	}
	t, err := a.store.CreateTweet(ctx, store.Tweet{AuthorID: author, Text: text, Media: in.Media, Mentions: names,
		CreatedAt: a.now().UTC()})
	if err != nil {
		return store.Tweet{}, err
	}
	for _, u := range mentions {
		if u.ID == author {
			continue
		}
		if _, err := a.store.AddNotification(ctx, store.Notification{UserID: u.ID, Kind: store.KindMention,
			ActorID: author, TweetID: t.ID, CreatedAt: t.CreatedAt}); err != nil {
			return t, err
		}
	}
	a.authorChanged(ctx, author)
	return t, nil
}

// authorChanged invalidates what depends on author's tweets.
func (a *App) authorChanged(ctx context.Context, author string) {
	keys := []string{timelineKey(author)}
	if followers, err := a.store.Followers(ctx, author); err == nil {
		for _, f := range followers {
			keys = append(keys, timelineKey(f))
		}
	} else {
		a.log.Warn("listing followers for invalidation failed", "err", err.Error())
	}
	a.invalidate(ctx, keys...)
	a.purge(ctx, tagUser(author), tagUserTweets(author))
}

func (a *App) createTweet(w http.ResponseWriter, r *http.Request) {
	uid, ok := requireUser(w, r)
	if !ok {
		return
	}
	var in tweetInput
	if !readJSON(w, r, &in) {
		return
	}
	t, err := a.postTweet(r.Context(), uid, in)
	if err != nil {
		a.failInput(w, r, err, "user")
		return
	}
	v, err := a.tweetView(r.Context(), a.refs(), t)
	if err != nil {
		a.fail(w, r, err, "tweet")
		return
	}
	origin.SetPrivate(w.Header())
	w.Header().Set("Location", v.URL)
	writeJSON(w, http.StatusCreated, v)
}

func (a *App) getTweet(w http.ResponseWriter, r *http.Request) {
	t, err := a.store.Tweet(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err, "tweet")
		return
	}
	v, err := a.tweetView(r.Context(), a.refs(), t)
	if err != nil {
		a.fail(w, r, err, "tweet")
		return
	}
	origin.SetCache(w.Header(), origin.Medium)
	origin.SetSurrogateKeys(w.Header(), "tweets", tagTweet(t.ID), tagUser(t.AuthorID))
	writeJSON(w, http.StatusOK, v)
}

// deleteTweet is authorization at the origin: the gateway vouched for who
// the caller is, only the origin knows who owns the tweet.
func (a *App) deleteTweet(w http.ResponseWriter, r *http.Request) {
	uid, ok := requireUser(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	t, err := a.store.Tweet(ctx, r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err, "tweet")
		return
	}
	if t.AuthorID != uid {
		httperr.Write(w, r, http.StatusForbidden, "forbidden", "only the author can delete this tweet")
		return
	}
	if err := a.store.DeleteTweet(ctx, t.ID); err != nil {
		a.fail(w, r, err, "tweet")
		return
	}
	a.authorChanged(ctx, uid)
	a.purge(ctx, tagTweet(t.ID))
	w.WriteHeader(http.StatusNoContent)
}

func (a *App) listUserTweets(w http.ResponseWriter, r *http.Request) {
	u, ok := a.lookupName(w, r)
	if !ok {
		return
	}
	tweets, err := a.store.TweetsByUser(r.Context(), u.ID, listLimit)
	if err != nil {
		a.fail(w, r, err, "user")
		return
	}
	views, err := a.tweetViews(r.Context(), tweets)
	if err != nil {
		a.fail(w, r, err, "tweet")
		return
	}
	origin.SetCache(w.Header(), origin.Short)
	origin.SetSurrogateKeys(w.Header(), "tweets", tagUserTweets(u.ID))
	writeJSON(w, http.StatusOK, map[string]any{"user": u.Username, "tweets": views})
}

func timelineKey(userID string) string { return "timeline:" + userID }

// TimelineView is the home timeline.
type TimelineView struct {
	User        string      `json:"user"`
	GeneratedAt time.Time   `json:"generated_at"`
	Tweets      []TweetView `json:"tweets"`
}

// buildTimeline merges the newest tweets of the user and everyone they
// follow. Tweet ids are global sequence numbers, so id order is time order.
func (a *App) buildTimeline(ctx context.Context, uid string) ([]byte, error) {
	authors, err := a.store.Following(ctx, uid)
	if err != nil {
		return nil, err
	}
	authors = append(authors, uid)
	var all []store.Tweet
	for _, au := range authors {
		ts, err := a.store.TweetsByUser(ctx, au, listLimit)
		if err != nil {
			return nil, err
		}
		all = append(all, ts...)
	}
	sort.Slice(all, func(i, j int) bool {
		if len(all[i].ID) != len(all[j].ID) {
			return len(all[i].ID) > len(all[j].ID)
		}
		return all[i].ID > all[j].ID
	})
	if len(all) > listLimit {
		all = all[:listLimit]
	}
	views, err := a.tweetViews(ctx, all)
	if err != nil {
		return nil, err
	}
	return json.Marshal(TimelineView{User: uid, GeneratedAt: a.now().UTC(), Tweets: views})
}

// timeline serves the home timeline through the read-through cache. The
// X-Origin-Cache header says whether this answer came from the cache
// (HIT), was built and stored (MISS), or was built with the cache down
// (BYPASS/LOADONLY).
func (a *App) timeline(w http.ResponseWriter, r *http.Request) {
	uid, ok := requireUser(w, r)
	if !ok {
		return
	}
	body, st, err := a.cache.Get(r.Context(), timelineKey(uid), TimelineTTL, func(ctx context.Context) ([]byte, error) {
		return a.buildTimeline(ctx, uid)
	})
	if err != nil {
		a.fail(w, r, err, "user")
		return
	}
	origin.SetPrivate(w.Header())
	w.Header().Set("X-Origin-Cache", string(st))
	writeRawJSON(w, http.StatusOK, body)
}

// NotificationView is one notification.
type NotificationView struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"` // "follow" or "mention"
	Actor     UserRef   `json:"actor"`
	TweetID   string    `json:"tweet_id,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

func (a *App) notifications(w http.ResponseWriter, r *http.Request) {
	uid, ok := requireUser(w, r)
	if !ok {
		return
	}
	list, err := a.store.Notifications(r.Context(), uid, listLimit)
	if err != nil {
		a.fail(w, r, err, "user")
		return
	}
	refs := a.refs()
	out := make([]NotificationView, 0, len(list))
	for _, n := range list {
		actor, err := refs.get(r.Context(), n.ActorID)
		if err != nil {
			a.fail(w, r, err, "user")
			return
		}
		out = append(out, NotificationView{ID: n.ID, Kind: n.Kind, Actor: actor, TweetID: n.TweetID, CreatedAt: n.CreatedAt})
	}
	origin.SetPrivate(w.Header())
	writeJSON(w, http.StatusOK, map[string]any{"notifications": out})
}
