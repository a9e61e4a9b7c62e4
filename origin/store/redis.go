package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Redis is the Store for service instances in separate processes or on
// separate hosts. Keys (prefix p):
//
//	p seq:user|seq:tweet|seq:note   counters (INCR)
//	p user:<id>                     User JSON
//	p username:<name>               id
//	p following:<id> / followers:<id>  sets of ids
//	p tweet:<id>                    Tweet JSON
//	p utweets:<id>                  sorted set of tweet ids, score = id
//	p notes:<id>                    list of Notification JSON, newest first (capped)
//	p media:<name> / mediadata:<name>  Media JSON / bytes
//
// Multi-key writes are Lua scripts, so each method is atomic like Bolt's.
type Redis struct {
	rdb redis.UniversalClient
	p   string
	sc  scripts
}

// scripts return 1 on success, 0 on "already exists/nothing done" and -1
// when a referenced user is missing.
type scripts struct {
	createUser, follow, unfollow, createTweet, deleteTweet, putMedia *redis.Script
}

func newScripts() scripts {
	return scripts{
		createUser: redis.NewScript(`
if redis.call('SETNX', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
return 1`),
		follow: redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
if redis.call('SADD', KEYS[3], ARGV[2]) == 0 then return 0 end
redis.call('SADD', KEYS[4], ARGV[1])
return 1`),
		unfollow: redis.NewScript(`
if redis.call('SREM', KEYS[1], ARGV[2]) == 0 then return 0 end
redis.call('SREM', KEYS[2], ARGV[1])
return 1`),
		createTweet: redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[1], ARGV[1])
return 1`),
		deleteTweet: redis.NewScript(`
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
return 1`),
		putMedia: redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[1], ARGV[1])
return 1`),
	}
}

var _ Store = (*Redis)(nil)

// maxNotifications caps each user's notification list.
const maxNotifications = 1000

// NewRedis returns a Store using keys under prefix ("" means "outpost:svc:").
func NewRedis(rdb redis.UniversalClient, prefix string) *Redis {
	if prefix == "" {
		prefix = "outpost:svc:"
	}
	return &Redis{rdb: rdb, p: prefix, sc: newScripts()}
}

func (s *Redis) k(parts ...string) string { return s.p + strings.Join(parts, ":") }

func (s *Redis) getJSON(ctx context.Context, key string, v any) error {
	raw, err := s.rdb.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("store: redis: %w", err)
	}
	return json.Unmarshal(raw, v)
}

func (s *Redis) next(ctx context.Context, name string) (uint64, error) {
	n, err := s.rdb.Incr(ctx, s.k("seq", name)).Uint64()
	if err != nil {
		return 0, fmt.Errorf("store: redis: %w", err)
	}
	return n, nil
}

// CreateUser implements Store.
func (s *Redis) CreateUser(ctx context.Context, u User) (User, error) {
	u.Username = strings.ToLower(u.Username)
	seq, err := s.next(ctx, "user")
	if err != nil {
		return User{}, err
	}
	u.ID = "u" + strconv.FormatUint(seq, 10)
	raw, err := json.Marshal(u)
	if err != nil {
		return User{}, err
	}
	n, err := s.sc.createUser.Run(ctx, s.rdb, []string{s.k("username", u.Username), s.k("user", u.ID)}, u.ID, raw).Int()
	if err != nil {
		return User{}, fmt.Errorf("store: redis: %w", err)
	}
	if n == 0 {
		return User{}, ErrExists
	}
	return u, nil
}

// maxUpdateTries bounds UpdateUser's optimistic retries when other
// writers keep changing the same user. Every round one writer wins, so a
// writer among n concurrent ones fails at most n-1 times.
const maxUpdateTries = 64

// UpdateUser implements Store with an optimistic transaction: WATCH the
// user, read, change, and write in MULTI/EXEC; a concurrent write aborts
// the EXEC and the whole read-change-write runs again on the new value.
func (s *Redis) UpdateUser(ctx context.Context, id string, change func(*User) error) (User, error) {
	key := s.k("user", id)
	var u User
	txf := func(tx *redis.Tx) error {
		raw, err := tx.Get(ctx, key).Bytes()
		if errors.Is(err, redis.Nil) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		var old User
		if err := json.Unmarshal(raw, &old); err != nil {
			return err
		}
		if u, err = applyChange(old, change); err != nil {
			return err
		}
		out, err := json.Marshal(u)
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.SetXX(ctx, key, out, 0)
			return nil
		})
		return err
	}
	for range maxUpdateTries {
		err := s.rdb.Watch(ctx, txf, key)
		if errors.Is(err, redis.TxFailedErr) {
			continue // another writer won; read its value and change again
		}
		var ce changeError
		switch {
		case errors.As(err, &ce):
			return User{}, ce.err
		case errors.Is(err, ErrNotFound):
			return User{}, err
		case err != nil:
			return User{}, fmt.Errorf("store: redis: %w", err)
		}
		return u, nil
	}
	return User{}, fmt.Errorf("store: redis: user %s: too many concurrent updates", id)
}

// UserByID implements Store.
func (s *Redis) UserByID(ctx context.Context, id string) (User, error) {
	var u User
	err := s.getJSON(ctx, s.k("user", id), &u)
	return u, err
}

// UserByName implements Store.
func (s *Redis) UserByName(ctx context.Context, username string) (User, error) {
	id, err := s.rdb.Get(ctx, s.k("username", strings.ToLower(username))).Result()
	if errors.Is(err, redis.Nil) {
		return User{}, ErrNotFound
	}
	if err != nil {
		return User{}, fmt.Errorf("store: redis: %w", err)
	}
	return s.UserByID(ctx, id)
}

// Stats implements Store.
func (s *Redis) Stats(ctx context.Context, userID string) (Stats, error) {
	pipe := s.rdb.Pipeline()
	ex := pipe.Exists(ctx, s.k("user", userID))
	fo := pipe.SCard(ctx, s.k("followers", userID))
	fi := pipe.SCard(ctx, s.k("following", userID))
	tw := pipe.ZCard(ctx, s.k("utweets", userID))
	if _, err := pipe.Exec(ctx); err != nil {
		return Stats{}, fmt.Errorf("store: redis: %w", err)
	}
	if ex.Val() == 0 {
		return Stats{}, ErrNotFound
	}
	return Stats{Followers: int(fo.Val()), Following: int(fi.Val()), Tweets: int(tw.Val())}, nil
}

// Follow implements Store.
func (s *Redis) Follow(ctx context.Context, follower, followee string) (bool, error) {
	n, err := s.sc.follow.Run(ctx, s.rdb, []string{
		s.k("user", follower), s.k("user", followee), s.k("following", follower), s.k("followers", followee),
	}, follower, followee).Int()
	if err != nil {
		return false, fmt.Errorf("store: redis: %w", err)
	}
	if n < 0 {
		return false, ErrNotFound
	}
	return n == 1, nil
}

// Unfollow implements Store.
func (s *Redis) Unfollow(ctx context.Context, follower, followee string) (bool, error) {
	n, err := s.sc.unfollow.Run(ctx, s.rdb, []string{s.k("following", follower), s.k("followers", followee)},
		follower, followee).Int()
	if err != nil {
		return false, fmt.Errorf("store: redis: %w", err)
	}
	return n == 1, nil
}

func (s *Redis) members(ctx context.Context, key string) ([]string, error) {
	out, err := s.rdb.SMembers(ctx, key).Result()
	if err != nil {
		return nil, fmt.Errorf("store: redis: %w", err)
	}
	return out, nil
}

// Followers implements Store.
func (s *Redis) Followers(ctx context.Context, userID string) ([]string, error) {
	return s.members(ctx, s.k("followers", userID))
}

// Following implements Store.
func (s *Redis) Following(ctx context.Context, userID string) ([]string, error) {
	return s.members(ctx, s.k("following", userID))
}

// CreateTweet implements Store.
func (s *Redis) CreateTweet(ctx context.Context, t Tweet) (Tweet, error) {
	seq, err := s.next(ctx, "tweet")
	if err != nil {
		return Tweet{}, err
	}
	t.ID = strconv.FormatUint(seq, 10)
	raw, err := json.Marshal(t)
	if err != nil {
		return Tweet{}, err
	}
	n, err := s.sc.createTweet.Run(ctx, s.rdb, []string{s.k("user", t.AuthorID), s.k("tweet", t.ID), s.k("utweets", t.AuthorID)},
		t.ID, raw).Int()
	if err != nil {
		return Tweet{}, fmt.Errorf("store: redis: %w", err)
	}
	if n < 0 {
		return Tweet{}, ErrNotFound
	}
	return t, nil
}

// Tweet implements Store.
func (s *Redis) Tweet(ctx context.Context, id string) (Tweet, error) {
	if _, ok := parseSeq(id); !ok {
		return Tweet{}, ErrNotFound
	}
	var t Tweet
	err := s.getJSON(ctx, s.k("tweet", id), &t)
	return t, err
}

// DeleteTweet implements Store.
func (s *Redis) DeleteTweet(ctx context.Context, id string) error {
	t, err := s.Tweet(ctx, id)
	if err != nil {
		return err
	}
	n, err := s.sc.deleteTweet.Run(ctx, s.rdb, []string{s.k("tweet", id), s.k("utweets", t.AuthorID)}, id).Int()
	if err != nil {
		return fmt.Errorf("store: redis: %w", err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// TweetsByUser implements Store.
func (s *Redis) TweetsByUser(ctx context.Context, userID string, limit int) ([]Tweet, error) {
	if limit <= 0 {
		return nil, nil
	}
	ids, err := s.rdb.ZRevRange(ctx, s.k("utweets", userID), 0, int64(limit-1)).Result()
	if err != nil {
		return nil, fmt.Errorf("store: redis: %w", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = s.k("tweet", id)
	}
	vals, err := s.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, fmt.Errorf("store: redis: %w", err)
	}
	out := make([]Tweet, 0, len(vals))
	for _, v := range vals {
		str, ok := v.(string)
		if !ok {
			continue // deleted between the two reads
		}
		var t Tweet
		if err := json.Unmarshal([]byte(str), &t); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// AddNotification implements Store.
func (s *Redis) AddNotification(ctx context.Context, n Notification) (Notification, error) {
	seq, err := s.next(ctx, "note")
	if err != nil {
		return Notification{}, err
	}
	n.ID = strconv.FormatUint(seq, 10)
	raw, err := json.Marshal(n)
	if err != nil {
		return Notification{}, err
	}
	key := s.k("notes", n.UserID)
	pipe := s.rdb.TxPipeline()
	pipe.LPush(ctx, key, raw)
	pipe.LTrim(ctx, key, 0, maxNotifications-1)
	if _, err := pipe.Exec(ctx); err != nil {
		return Notification{}, fmt.Errorf("store: redis: %w", err)
	}
	return n, nil
}

// Notifications implements Store.
func (s *Redis) Notifications(ctx context.Context, userID string, limit int) ([]Notification, error) {
	if limit <= 0 {
		return nil, nil
	}
	vals, err := s.rdb.LRange(ctx, s.k("notes", userID), 0, int64(limit-1)).Result()
	if err != nil {
		return nil, fmt.Errorf("store: redis: %w", err)
	}
	out := make([]Notification, 0, len(vals))
	for _, v := range vals {
		var n Notification
		if err := json.Unmarshal([]byte(v), &n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// PutMedia implements Store.
func (s *Redis) PutMedia(ctx context.Context, m Media, data []byte) (bool, error) {
	raw, err := json.Marshal(m)
	if err != nil {
		return false, err
	}
	n, err := s.sc.putMedia.Run(ctx, s.rdb, []string{s.k("media", m.Name), s.k("mediadata", m.Name)}, raw, data).Int()
	if err != nil {
		return false, fmt.Errorf("store: redis: %w", err)
	}
	return n == 1, nil
}

// Media implements Store.
func (s *Redis) Media(ctx context.Context, name string) (Media, []byte, error) {
	vals, err := s.rdb.MGet(ctx, s.k("media", name), s.k("mediadata", name)).Result()
	if err != nil {
		return Media{}, nil, fmt.Errorf("store: redis: %w", err)
	}
	meta, ok1 := vals[0].(string)
	data, ok2 := vals[1].(string)
	if !ok1 || !ok2 {
		return Media{}, nil, ErrNotFound
	}
	var m Media
	if err := json.Unmarshal([]byte(meta), &m); err != nil {
		return Media{}, nil, err
	}
	return m, []byte(data), nil
}
