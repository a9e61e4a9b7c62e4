package origin

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"
)

// Session is server-side state for a logged-in user. Stateless service
// instances keep it in a store they share, so any instance can serve any
// request (no sticky sessions needed).
type Session struct {
	ID        string            `json:"id"`
	UserID    string            `json:"user_id"`
	Data      map[string]string `json:"data,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
	ExpiresAt time.Time         `json:"expires_at"`
}

// ErrSessionNotFound is returned for unknown and expired sessions alike.
var ErrSessionNotFound = errors.New("origin: session not found")

// SessionStore keeps sessions. Implementations are safe for concurrent use.
type SessionStore interface {
	// Create stores a new session for userID that expires after ttl.
	Create(ctx context.Context, userID string, data map[string]string, ttl time.Duration) (Session, error)
	// Get returns a live session or ErrSessionNotFound.
	Get(ctx context.Context, id string) (Session, error)
	// Delete removes a session; deleting an unknown one is not an error.
	Delete(ctx context.Context, id string) error
}

// sessionIDBytes is the entropy of a session id (256 bits).
const sessionIDBytes = 32

func newSessionID(r io.Reader) (string, error) {
	b := make([]byte, sessionIDBytes)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("origin: session id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// validSessionID rejects ids that could not have come from newSessionID
// before they reach a store key.
func validSessionID(id string) bool {
	if len(id) != base64.RawURLEncoding.EncodedLen(sessionIDBytes) {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(id)
	return err == nil
}

// SessionOptions are the injected clock and randomness of a session store.
type SessionOptions struct {
	Now  func() time.Time // nil: time.Now
	Rand io.Reader        // nil: crypto/rand.Reader
}

func (o SessionOptions) fill() SessionOptions {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	return o
}

func newSession(o SessionOptions, userID string, data map[string]string, ttl time.Duration) (Session, error) {
	if ttl <= 0 {
		return Session{}, errors.New("origin: session ttl must be > 0")
	}
	id, err := newSessionID(o.Rand)
	if err != nil {
		return Session{}, err
	}
	now := o.Now().UTC()
	return Session{ID: id, UserID: userID, Data: data, CreatedAt: now, ExpiresAt: now.Add(ttl)}, nil
}

// BoltSessions keeps sessions in a bbolt bucket: the embedded default for a
// single process (several service instances in one process may share it).
type BoltSessions struct {
	db   *bolt.DB
	opts SessionOptions
}

var _ SessionStore = (*BoltSessions)(nil)

var sessionBucket = []byte("origin_sessions")

// NewBoltSessions returns a store in db, creating its bucket.
func NewBoltSessions(db *bolt.DB, opts SessionOptions) (*BoltSessions, error) {
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(sessionBucket)
		return err
	}); err != nil {
		return nil, fmt.Errorf("origin: sessions bucket: %w", err)
	}
	return &BoltSessions{db: db, opts: opts.fill()}, nil
}

// Create implements SessionStore.
func (s *BoltSessions) Create(ctx context.Context, userID string, data map[string]string, ttl time.Duration) (Session, error) {
	sess, err := newSession(s.opts, userID, data, ttl)
	if err != nil {
		return Session{}, err
	}
	v, err := json.Marshal(sess)
	if err != nil {
		return Session{}, err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(sessionBucket).Put([]byte(sess.ID), v)
	})
	if err != nil {
		return Session{}, fmt.Errorf("origin: session create: %w", err)
	}
	return sess, nil
}

// Get implements SessionStore. An expired session is reported missing; it
// is removed by Sweep.
func (s *BoltSessions) Get(ctx context.Context, id string) (Session, error) {
	if !validSessionID(id) {
		return Session{}, ErrSessionNotFound
	}
	var sess Session
	found := false
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(sessionBucket).Get([]byte(id))
		if v == nil {
			return nil
		}
		found = true
		// Unmarshal copies out of the mmap before the transaction ends.
		return json.Unmarshal(v, &sess)
	})
	if err != nil {
		return Session{}, fmt.Errorf("origin: session get: %w", err)
	}
	if !found || !s.opts.Now().Before(sess.ExpiresAt) {
		return Session{}, ErrSessionNotFound
	}
	return sess, nil
}

// Delete implements SessionStore.
func (s *BoltSessions) Delete(ctx context.Context, id string) error {
	if !validSessionID(id) {
		return nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(sessionBucket).Delete([]byte(id))
	})
	if err != nil {
		return fmt.Errorf("origin: session delete: %w", err)
	}
	return nil
}

// Sweep deletes expired sessions and returns how many it removed. Call it
// periodically; bbolt has no expiry of its own.
func (s *BoltSessions) Sweep(ctx context.Context) (int, error) {
	now := s.opts.Now()
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(sessionBucket)
		var dead [][]byte
		err := b.ForEach(func(k, v []byte) error {
			var sess Session
			if json.Unmarshal(v, &sess) != nil || !now.Before(sess.ExpiresAt) {
				dead = append(dead, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range dead {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(dead)
		return nil
	})
	return n, err
}

// RunSweeper calls Sweep every interval until ctx is done, logging
// failures to logger (nil: slog.Default()). Run it in its own goroutine.
func (s *BoltSessions) RunSweeper(ctx context.Context, every time.Duration, logger *slog.Logger) {
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("component", "origin.sessions")
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
				logger.Warn("session sweep failed", "err", err.Error())
			}
		}
	}
}

// RedisSessions keeps sessions in Redis with native expiry: the store for
// service instances spread over several processes or hosts.
type RedisSessions struct {
	rdb    redis.UniversalClient
	prefix string
	opts   SessionOptions
}

var _ SessionStore = (*RedisSessions)(nil)

// NewRedisSessions returns a store using keys prefix+id (prefix "" means
// "outpost:session:").
func NewRedisSessions(rdb redis.UniversalClient, prefix string, opts SessionOptions) *RedisSessions {
	if prefix == "" {
		prefix = "outpost:session:"
	}
	return &RedisSessions{rdb: rdb, prefix: prefix, opts: opts.fill()}
}

// Create implements SessionStore.
func (s *RedisSessions) Create(ctx context.Context, userID string, data map[string]string, ttl time.Duration) (Session, error) {
	sess, err := newSession(s.opts, userID, data, ttl)
	if err != nil {
		return Session{}, err
	}
	v, err := json.Marshal(sess)
	if err != nil {
		return Session{}, err
	}
	if err := s.rdb.Set(ctx, s.prefix+sess.ID, v, ttl).Err(); err != nil {
		return Session{}, fmt.Errorf("origin: session create: %w", err)
	}
	return sess, nil
}

// Get implements SessionStore.
func (s *RedisSessions) Get(ctx context.Context, id string) (Session, error) {
	if !validSessionID(id) {
		return Session{}, ErrSessionNotFound
	}
	v, err := s.rdb.Get(ctx, s.prefix+id).Bytes()
	if errors.Is(err, redis.Nil) {
		return Session{}, ErrSessionNotFound
	}
	if err != nil {
		return Session{}, fmt.Errorf("origin: session get: %w", err)
	}
	var sess Session
	if err := json.Unmarshal(v, &sess); err != nil {
		return Session{}, fmt.Errorf("origin: session get: %w", err)
	}
	// Redis expires the key; the check also covers an injected test clock.
	if !s.opts.Now().Before(sess.ExpiresAt) {
		return Session{}, ErrSessionNotFound
	}
	return sess, nil
}

// Delete implements SessionStore.
func (s *RedisSessions) Delete(ctx context.Context, id string) error {
	if !validSessionID(id) {
		return nil
	}
	if err := s.rdb.Del(ctx, s.prefix+id).Err(); err != nil {
		return fmt.Errorf("origin: session delete: %w", err)
	}
	return nil
}
