package tlsedge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/redis/go-redis/v9"
)

// RedisStorage is certmagic's Storage in Redis: the certificate storage a
// cluster shares (DESIGN §4). One node orders a certificate, under a lock
// every node honours, and every node loads it from here instead of
// ordering its own — without it a cluster of N nodes orders every name N
// times, and soon meets the CA's duplicate-certificate rate limits. The
// ACME account and HTTP-01 challenge state are shared too, so any node can
// answer a challenge another node's order started.
//
// Layout, under a prefix (default "{outpost-tls}:"; the braces are a Redis
// Cluster hash tag, which keeps every key in one slot so the scripts below
// may touch several):
//
//	<prefix>f/<key>     hash: v (the value), m (modified, Unix ns)
//	<prefix>idx         sorted set of every stored key (lexicographic),
//	                    which answers List, Exists and Delete for a
//	                    "directory" (a key prefix ending at a '/')
//	<prefix>lock/<name> a lock: SET NX with a random token and a TTL that
//	                    its holder renews; it expires when the holder dies
type RedisStorage struct {
	rdb     redis.UniversalClient
	prefix  string
	lockTTL time.Duration
	// poll is how often a waiting Lock tries again.
	poll time.Duration

	mu   sync.Mutex
	held map[string]*heldLock
}

// heldLock is a lock this process holds: its token, and the renewal loop
// to stop at Unlock.
type heldLock struct {
	token string
	stop  context.CancelFunc
	done  chan struct{}
}

// DefaultRedisPrefix namespaces the certificate storage in Redis.
const DefaultRedisPrefix = "{outpost-tls}:"

// defaultLockTTL bounds how long a dead node's lock holds the others off;
// the holder renews it every third of that.
const defaultLockTTL = 30 * time.Second

// NewRedisStorage returns the storage under prefix (DefaultRedisPrefix
// when empty) in rdb. lockTTL is how long a lock outlives a holder that
// stopped renewing it; 0 means 30s.
func NewRedisStorage(rdb redis.UniversalClient, prefix string, lockTTL time.Duration) *RedisStorage {
	if prefix == "" {
		prefix = DefaultRedisPrefix
	}
	if lockTTL <= 0 {
		lockTTL = defaultLockTTL
	}
	return &RedisStorage{rdb: rdb, prefix: prefix, lockTTL: lockTTL, poll: min(lockTTL/4, time.Second), held: map[string]*heldLock{}}
}

var (
	_ certmagic.Storage   = (*RedisStorage)(nil)
	_ certmagic.TryLocker = (*RedisStorage)(nil)
)

func (s *RedisStorage) fileKey(key string) string { return s.prefix + "f/" + key }
func (s *RedisStorage) index() string             { return s.prefix + "idx" }
func (s *RedisStorage) lockKey(name string) string {
	return s.prefix + "lock/" + name
}

// validKey checks a key has file semantics: not empty, no leading or
// trailing slash, no empty component.
func validKey(key string) error {
	if key == "" || key[0] == '/' || key[len(key)-1] == '/' || strings.Contains(key, "//") {
		return fmt.Errorf("tlsedge: invalid storage key %q", key)
	}
	return nil
}

// Store implements certmagic.Storage.
func (s *RedisStorage) Store(ctx context.Context, key string, value []byte) error {
	if err := validKey(key); err != nil {
		return err
	}
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, s.fileKey(key), "v", value, "m", strconv.FormatInt(time.Now().UnixNano(), 10))
		p.ZAdd(ctx, s.index(), redis.Z{Member: key})
		return nil
	})
	if err != nil {
		return fmt.Errorf("tlsedge: storing %q in redis: %w", key, err)
	}
	return nil
}

// Load implements certmagic.Storage: fs.ErrNotExist for a key never
// stored or deleted.
func (s *RedisStorage) Load(ctx context.Context, key string) ([]byte, error) {
	v, err := s.rdb.HGet(ctx, s.fileKey(key), "v").Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fs.ErrNotExist
	}
	if err != nil {
		return nil, fmt.Errorf("tlsedge: loading %q from redis: %w", key, err)
	}
	return v, nil
}

// below returns the stored keys strictly under dir ("" is the root), in
// order, at most limit of them (0: all). Every key under "a" is at least "a/" and less than "a0" ('0'
// follows '/').
func (s *RedisStorage) below(ctx context.Context, dir string, limit int64) ([]string, error) {
	by := &redis.ZRangeBy{Min: "-", Max: "+", Count: limit}
	if dir != "" {
		by.Min, by.Max = "["+dir+"/", "("+dir+"0"
	}
	keys, err := s.rdb.ZRangeByLex(ctx, s.index(), by).Result()
	if err != nil {
		return nil, fmt.Errorf("tlsedge: listing %q in redis: %w", dir, err)
	}
	return keys, nil
}

// deleteScript removes a key and every key under it, atomically:
// KEYS[1] the index, ARGV[1] the key, ARGV[2] the file-key prefix.
var deleteScript = redis.NewScript(`
local key = ARGV[1]
local under = redis.call("ZRANGEBYLEX", KEYS[1], "[" .. key .. "/", "(" .. key .. "0")
table.insert(under, key)
for _, k in ipairs(under) do
	redis.call("DEL", ARGV[2] .. k)
	redis.call("ZREM", KEYS[1], k)
end
return #under
`)

// Delete implements certmagic.Storage: the key and, for a directory,
// every key under it. A missing key is not an error.
func (s *RedisStorage) Delete(ctx context.Context, key string) error {
	if err := validKey(key); err != nil {
		return err
	}
	if err := deleteScript.Run(ctx, s.rdb, []string{s.index()}, key, s.prefix+"f/").Err(); err != nil {
		return fmt.Errorf("tlsedge: deleting %q in redis: %w", key, err)
	}
	return nil
}

// Exists implements certmagic.Storage: a stored key, or a directory of
// them. An error counts as absent.
func (s *RedisStorage) Exists(ctx context.Context, key string) bool {
	ok, _ := s.exists(ctx, key)
	return ok
}

// exists is Exists with the error that made it false, if any.
func (s *RedisStorage) exists(ctx context.Context, key string) (bool, error) {
	n, err := s.rdb.Exists(ctx, s.fileKey(key)).Result()
	if err != nil {
		return false, err
	}
	if n > 0 {
		return true, nil
	}
	under, err := s.below(ctx, key, 1)
	return len(under) > 0, err
}

// List implements certmagic.Storage as FileStorage lists a directory: the
// keys and directories just under dir, or, recursive, every key and
// directory below it, each directory before what it holds. A dir with
// nothing under it is fs.ErrNotExist, unless it is a stored key (FileStorage
// lists a file as empty).
func (s *RedisStorage) List(ctx context.Context, dir string, recursive bool) ([]string, error) {
	keys, err := s.below(ctx, dir, 0)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		n, err := s.rdb.Exists(ctx, s.fileKey(dir)).Result()
		if err != nil {
			return nil, fmt.Errorf("tlsedge: listing %q in redis: %w", dir, err)
		}
		if n == 0 || dir == "" {
			return nil, fs.ErrNotExist
		}
		return nil, nil
	}
	base := 0
	if dir != "" {
		base = len(dir) + 1
	}
	var out []string
	seen := map[string]bool{}
	add := func(k string) {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	for _, k := range keys {
		rest := k[base:]
		if !recursive {
			if i := strings.IndexByte(rest, '/'); i >= 0 {
				add(k[:base+i])
			} else {
				add(k)
			}
			continue
		}
		// Every directory on the way down, then the key itself.
		for i := 0; i < len(rest); i++ {
			if rest[i] == '/' {
				add(k[:base+i])
			}
		}
		add(k)
	}
	return out, nil
}

// Stat implements certmagic.Storage.
func (s *RedisStorage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	vals, err := s.rdb.HMGet(ctx, s.fileKey(key), "m", "v").Result()
	if err != nil {
		return certmagic.KeyInfo{}, fmt.Errorf("tlsedge: stat %q in redis: %w", key, err)
	}
	if m, ok := vals[0].(string); ok {
		ns, _ := strconv.ParseInt(m, 10, 64)
		v, _ := vals[1].(string)
		return certmagic.KeyInfo{Key: key, Modified: time.Unix(0, ns), Size: int64(len(v)), IsTerminal: true}, nil
	}
	under, err := s.below(ctx, key, 1)
	if err != nil {
		return certmagic.KeyInfo{}, err
	}
	if len(under) == 0 {
		return certmagic.KeyInfo{}, fs.ErrNotExist
	}
	return certmagic.KeyInfo{Key: key}, nil
}

// renewScript extends a lock its holder still holds: KEYS[1] the lock,
// ARGV[1] the token, ARGV[2] the TTL in ms.
var renewScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0
`)

// releaseScript deletes a lock only for its holder.
var releaseScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("DEL", KEYS[1])
end
return 0
`)

// Lock implements certmagic.Locker: it waits, polling, until the lock is
// free or ctx ends. A lock whose holder died frees itself after the TTL.
func (s *RedisStorage) Lock(ctx context.Context, name string) error {
	for {
		ok, err := s.TryLock(ctx, name)
		if err != nil || ok {
			return err
		}
		// Jittered, so nodes that wait together do not retry together.
		wait := s.poll/2 + mrand.N(s.poll)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// TryLock implements certmagic.TryLocker: one attempt.
func (s *RedisStorage) TryLock(ctx context.Context, name string) (bool, error) {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	token := hex.EncodeToString(b[:])
	ok, err := s.rdb.SetNX(ctx, s.lockKey(name), token, s.lockTTL).Result()
	if err != nil {
		return false, fmt.Errorf("tlsedge: lock %q in redis: %w", name, err)
	}
	if !ok {
		return false, nil
	}
	stopped, stop := context.WithCancel(context.Background())
	h := &heldLock{token: token, stop: stop, done: make(chan struct{})}
	s.mu.Lock()
	s.held[name] = h
	s.mu.Unlock()
	go s.renew(stopped, name, h)
	return true, nil
}

// renew keeps a held lock alive until Unlock stops it. A lock found lost
// (it expired while Redis was unreachable, and another node took it) is
// left to its new holder.
func (s *RedisStorage) renew(stopped context.Context, name string, h *heldLock) {
	defer close(h.done)
	t := time.NewTicker(s.lockTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-stopped.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(stopped, s.lockTTL/3)
		n, err := renewScript.Run(ctx, s.rdb, []string{s.lockKey(name)}, h.token, s.lockTTL.Milliseconds()).Int()
		cancel()
		if err == nil && n == 0 {
			return
		}
	}
}

// Unlock implements certmagic.Locker. A lock that expired and went to
// another holder is not released; that is reported.
func (s *RedisStorage) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	h := s.held[name]
	delete(s.held, name)
	s.mu.Unlock()
	if h == nil {
		return fmt.Errorf("tlsedge: unlock %q: not held by this node", name)
	}
	h.stop()
	<-h.done
	n, err := releaseScript.Run(ctx, s.rdb, []string{s.lockKey(name)}, h.token).Int()
	if err != nil {
		return fmt.Errorf("tlsedge: unlock %q in redis: %w", name, err)
	}
	if n == 0 {
		return fmt.Errorf("tlsedge: unlock %q: the lock had expired", name)
	}
	return nil
}

// String names the storage in certmagic's logs.
func (s *RedisStorage) String() string { return "redis:" + s.prefix }
