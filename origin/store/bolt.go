package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// Bolt is the bbolt Store. Layout (one bucket each):
//
//	users:        id → User JSON
//	usernames:    username → id
//	following:    follower 0x00 followee → ""
//	followers:    followee 0x00 follower → ""
//	tweets:       be64(seq) → Tweet JSON
//	user_tweets:  author 0x00 be64(seq) → ""
//	notes:        user 0x00 be64(seq) → Notification JSON
//	media:        name → Media JSON
//	media_data:   name → bytes
//
// User ids are "u" + sequence, so they never contain the 0x00 separator.
type Bolt struct {
	db *bolt.DB
}

var _ Store = (*Bolt)(nil)

var (
	bUsers      = []byte("svc_users")
	bUsernames  = []byte("svc_usernames")
	bFollowing  = []byte("svc_following")
	bFollowers  = []byte("svc_followers")
	bTweets     = []byte("svc_tweets")
	bUserTweets = []byte("svc_user_tweets")
	bNotes      = []byte("svc_notifications")
	bMedia      = []byte("svc_media")
	bMediaData  = []byte("svc_media_data")
)

// NewBolt returns a Store in db, creating its buckets. db may be shared
// with other users (bucket names are prefixed "svc_") and by several
// service instances.
func NewBolt(db *bolt.DB) (*Bolt, error) {
	err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bUsers, bUsernames, bFollowing, bFollowers, bTweets, bUserTweets, bNotes, bMedia, bMediaData} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: create buckets: %w", err)
	}
	return &Bolt{db: db}, nil
}

func be64(n uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], n)
	return b[:]
}

func pair(a string, b []byte) []byte {
	k := make([]byte, 0, len(a)+1+len(b))
	k = append(k, a...)
	k = append(k, 0)
	return append(k, b...)
}

// parseSeq turns a decimal id into its sequence number; anything else is
// simply not found.
func parseSeq(id string) (uint64, bool) {
	if id == "" || len(id) > 20 || id[0] == '0' {
		return 0, false
	}
	n, err := strconv.ParseUint(id, 10, 64)
	return n, err == nil
}

func getJSON(b *bolt.Bucket, k []byte, v any) error {
	raw := b.Get(k)
	if raw == nil {
		return ErrNotFound
	}
	// Unmarshal copies out of the mmap before the transaction ends.
	return json.Unmarshal(raw, v)
}

func putJSON(b *bolt.Bucket, k []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, raw)
}

// CreateUser implements Store.
func (s *Bolt) CreateUser(ctx context.Context, u User) (User, error) {
	u.Username = strings.ToLower(u.Username)
	err := s.db.Update(func(tx *bolt.Tx) error {
		names := tx.Bucket(bUsernames)
		if names.Get([]byte(u.Username)) != nil {
			return ErrExists
		}
		users := tx.Bucket(bUsers)
		seq, err := users.NextSequence()
		if err != nil {
			return err
		}
		u.ID = "u" + strconv.FormatUint(seq, 10)
		if err := names.Put([]byte(u.Username), []byte(u.ID)); err != nil {
			return err
		}
		return putJSON(users, []byte(u.ID), u)
	})
	if err != nil {
		return User{}, err
	}
	return u, nil
}

// UpdateUser implements Store: bbolt's single writer makes the read and
// the write one transaction.
func (s *Bolt) UpdateUser(ctx context.Context, id string, change func(*User) error) (User, error) {
	var u User
	err := s.db.Update(func(tx *bolt.Tx) error {
		users := tx.Bucket(bUsers)
		if err := getJSON(users, []byte(id), &u); err != nil {
			return err
		}
		var err error
		if u, err = applyChange(u, change); err != nil {
			return err
		}
		return putJSON(users, []byte(u.ID), u)
	})
	if ce := (changeError{}); errors.As(err, &ce) {
		return User{}, ce.err
	}
	if err != nil {
		return User{}, err
	}
	return u, nil
}

// UserByID implements Store.
func (s *Bolt) UserByID(ctx context.Context, id string) (User, error) {
	var u User
	err := s.db.View(func(tx *bolt.Tx) error {
		return getJSON(tx.Bucket(bUsers), []byte(id), &u)
	})
	return u, err
}

// UserByName implements Store.
func (s *Bolt) UserByName(ctx context.Context, username string) (User, error) {
	var u User
	err := s.db.View(func(tx *bolt.Tx) error {
		id := tx.Bucket(bUsernames).Get([]byte(strings.ToLower(username)))
		if id == nil {
			return ErrNotFound
		}
		return getJSON(tx.Bucket(bUsers), id, &u)
	})
	return u, err
}

func countPrefix(b *bolt.Bucket, prefix []byte) int {
	n := 0
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, _ = c.Next() {
		n++
	}
	return n
}

func hasPrefix(k, p []byte) bool {
	return len(k) >= len(p) && string(k[:len(p)]) == string(p)
}

// Stats implements Store.
func (s *Bolt) Stats(ctx context.Context, userID string) (Stats, error) {
	var st Stats
	err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bUsers).Get([]byte(userID)) == nil {
			return ErrNotFound
		}
		p := pair(userID, nil)
		st.Followers = countPrefix(tx.Bucket(bFollowers), p)
		st.Following = countPrefix(tx.Bucket(bFollowing), p)
		st.Tweets = countPrefix(tx.Bucket(bUserTweets), p)
		return nil
	})
	return st, err
}

// Follow implements Store.
func (s *Bolt) Follow(ctx context.Context, follower, followee string) (bool, error) {
	created := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		users := tx.Bucket(bUsers)
		if users.Get([]byte(follower)) == nil || users.Get([]byte(followee)) == nil {
			return ErrNotFound
		}
		k := pair(follower, []byte(followee))
		if tx.Bucket(bFollowing).Get(k) != nil {
			return nil
		}
		created = true
		if err := tx.Bucket(bFollowing).Put(k, []byte{}); err != nil {
			return err
		}
		return tx.Bucket(bFollowers).Put(pair(followee, []byte(follower)), []byte{})
	})
	return created, err
}

// Unfollow implements Store.
func (s *Bolt) Unfollow(ctx context.Context, follower, followee string) (bool, error) {
	removed := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		k := pair(follower, []byte(followee))
		if tx.Bucket(bFollowing).Get(k) == nil {
			return nil
		}
		removed = true
		if err := tx.Bucket(bFollowing).Delete(k); err != nil {
			return err
		}
		return tx.Bucket(bFollowers).Delete(pair(followee, []byte(follower)))
	})
	return removed, err
}

func (s *Bolt) listPrefix(bucket []byte, id string) ([]string, error) {
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		p := pair(id, nil)
		c := tx.Bucket(bucket).Cursor()
		for k, _ := c.Seek(p); k != nil && hasPrefix(k, p); k, _ = c.Next() {
			out = append(out, string(k[len(p):]))
		}
		return nil
	})
	return out, err
}

// Followers implements Store.
func (s *Bolt) Followers(ctx context.Context, userID string) ([]string, error) {
	return s.listPrefix(bFollowers, userID)
}

// Following implements Store.
func (s *Bolt) Following(ctx context.Context, userID string) ([]string, error) {
	return s.listPrefix(bFollowing, userID)
}

// CreateTweet implements Store.
func (s *Bolt) CreateTweet(ctx context.Context, t Tweet) (Tweet, error) {
	err := s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bUsers).Get([]byte(t.AuthorID)) == nil {
			return ErrNotFound
		}
		tweets := tx.Bucket(bTweets)
		seq, err := tweets.NextSequence()
		if err != nil {
			return err
		}
		t.ID = strconv.FormatUint(seq, 10)
		if err := putJSON(tweets, be64(seq), t); err != nil {
			return err
		}
		return tx.Bucket(bUserTweets).Put(pair(t.AuthorID, be64(seq)), []byte{})
	})
	if err != nil {
		return Tweet{}, err
	}
	return t, nil
}

// Tweet implements Store.
func (s *Bolt) Tweet(ctx context.Context, id string) (Tweet, error) {
	seq, ok := parseSeq(id)
	if !ok {
		return Tweet{}, ErrNotFound
	}
	var t Tweet
	err := s.db.View(func(tx *bolt.Tx) error {
		return getJSON(tx.Bucket(bTweets), be64(seq), &t)
	})
	return t, err
}

// DeleteTweet implements Store.
func (s *Bolt) DeleteTweet(ctx context.Context, id string) error {
	seq, ok := parseSeq(id)
	if !ok {
		return ErrNotFound
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		tweets := tx.Bucket(bTweets)
		var t Tweet
		if err := getJSON(tweets, be64(seq), &t); err != nil {
			return err
		}
		if err := tweets.Delete(be64(seq)); err != nil {
			return err
		}
		return tx.Bucket(bUserTweets).Delete(pair(t.AuthorID, be64(seq)))
	})
}

// TweetsByUser implements Store.
func (s *Bolt) TweetsByUser(ctx context.Context, userID string, limit int) ([]Tweet, error) {
	var out []Tweet
	err := s.db.View(func(tx *bolt.Tx) error {
		p := pair(userID, nil)
		tweets := tx.Bucket(bTweets)
		c := tx.Bucket(bUserTweets).Cursor()
		// Walk the user's keys backwards: seek past the prefix, then step back.
		k, _ := c.Seek(pair(userID, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}))
		if k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
		for ; k != nil && hasPrefix(k, p) && len(out) < limit; k, _ = c.Prev() {
			var t Tweet
			if err := getJSON(tweets, k[len(p):], &t); err != nil {
				return err
			}
			out = append(out, t)
		}
		return nil
	})
	return out, err
}

// AddNotification implements Store.
func (s *Bolt) AddNotification(ctx context.Context, n Notification) (Notification, error) {
	err := s.db.Update(func(tx *bolt.Tx) error {
		notes := tx.Bucket(bNotes)
		seq, err := notes.NextSequence()
		if err != nil {
			return err
		}
		n.ID = strconv.FormatUint(seq, 10)
		return putJSON(notes, pair(n.UserID, be64(seq)), n)
	})
	if err != nil {
		return Notification{}, err
	}
	return n, nil
}

// Notifications implements Store.
func (s *Bolt) Notifications(ctx context.Context, userID string, limit int) ([]Notification, error) {
	var out []Notification
	err := s.db.View(func(tx *bolt.Tx) error {
		p := pair(userID, nil)
		c := tx.Bucket(bNotes).Cursor()
		var k, v []byte
		if k, _ = c.Seek(pair(userID, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})); k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
		for ; k != nil && hasPrefix(k, p) && len(out) < limit; k, v = c.Prev() {
			var n Notification
			if err := json.Unmarshal(v, &n); err != nil {
				return err
			}
			out = append(out, n)
		}
		return nil
	})
	return out, err
}

// PutMedia implements Store.
func (s *Bolt) PutMedia(ctx context.Context, m Media, data []byte) (bool, error) {
	created := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bMedia).Get([]byte(m.Name)) != nil {
			return nil
		}
		created = true
		if err := putJSON(tx.Bucket(bMedia), []byte(m.Name), m); err != nil {
			return err
		}
		return tx.Bucket(bMediaData).Put([]byte(m.Name), data)
	})
	return created, err
}

// Media implements Store.
func (s *Bolt) Media(ctx context.Context, name string) (Media, []byte, error) {
	var m Media
	var data []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		if err := getJSON(tx.Bucket(bMedia), []byte(name), &m); err != nil {
			return err
		}
		data = append([]byte(nil), tx.Bucket(bMediaData).Get([]byte(name))...)
		return nil
	})
	return m, data, err
}
