package origin

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"
)

// CacheBackend stores byte values with a TTL. A miss is (nil, false, nil);
// an error means the backend itself failed (down, timeout).
type CacheBackend interface {
	Get(ctx context.Context, key string) ([]byte, bool, error)
	Set(ctx context.Context, key string, val []byte, ttl time.Duration) error
	Delete(ctx context.Context, keys ...string) error
}

// ReadThrough serves values from a CacheBackend and loads them from the
// database on a miss, storing them for the TTL given. When the backend
// fails, reads go straight to the loader and still succeed: the cache is an
// optimisation, never a dependency. After a failure the backend is left
// alone for a cool-down so that a dead Redis does not add a timeout to
// every request. Concurrent misses on one key share one load.
type ReadThrough struct {
	backend  CacheBackend
	log      *slog.Logger
	now      func() time.Time
	cooldown time.Duration
	group    singleflight.Group

	downUntil atomic.Int64 // unix nanos; the backend is skipped before it
	lastLog   atomic.Int64 // unix nanos of the last "cache down" log line

	// gens are invalidation generations, striped by key hash. A load that
	// overlapped an invalidation of its key must not leave its (possibly
	// pre-write) value in the cache; see Get. They belong to the backend
	// when it is shared in process (MemoryCache), so that an invalidation
	// through one ReadThrough is seen by a load running in another.
	gens *genTable
}

const genStripes = 64

// genTable is a set of invalidation generations, striped by key hash.
type genTable [genStripes]atomic.Uint64

// genSharer is implemented by backends that several ReadThroughs in one
// process may share; they all use the backend's generations.
type genSharer interface {
	invalidationGens() *genTable
}

func (c *ReadThrough) gen(key string) *atomic.Uint64 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return &c.gens[h.Sum32()%genStripes]
}

// ReadThroughOptions tune a ReadThrough.
type ReadThroughOptions struct {
	Logger   *slog.Logger     // nil: slog.Default()
	Now      func() time.Time // nil: time.Now
	Cooldown time.Duration    // how long to skip a failed backend; 0: 5s, < 0: never skip
}

// NewReadThrough returns a read-through cache over backend.
func NewReadThrough(backend CacheBackend, opts ReadThroughOptions) *ReadThrough {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Cooldown == 0 {
		opts.Cooldown = 5 * time.Second
	}
	gens := new(genTable)
	if gs, ok := backend.(genSharer); ok {
		gens = gs.invalidationGens()
	}
	return &ReadThrough{
		backend:  backend,
		log:      opts.Logger.With("component", "origin.readthrough"),
		now:      opts.Now,
		cooldown: opts.Cooldown,
		gens:     gens,
	}
}

// Status says where a value came from.
type Status string

// Statuses reported by Get.
const (
	StatusHit      Status = "HIT"      // from the cache backend
	StatusMiss     Status = "MISS"     // loaded and stored
	StatusBypass   Status = "BYPASS"   // loaded; the backend is down
	StatusLoadOnly Status = "LOADONLY" // loaded; storing it failed
)

// Get returns the value for key, calling load on a miss and storing its
// result for ttl. Load errors are returned as they are and never cached.
func (c *ReadThrough) Get(ctx context.Context, key string, ttl time.Duration, load func(context.Context) ([]byte, error)) ([]byte, Status, error) {
	if c.up() {
		v, ok, err := c.backend.Get(ctx, key)
		switch {
		case err != nil:
			c.markDown(err)
		case ok:
			return v, StatusHit, nil
		}
	}
	type result struct {
		v  []byte
		st Status
	}
	// The flight is keyed by the invalidation generation too, so a caller
	// arriving after an invalidation starts a fresh load instead of joining
	// one that may have read the database before the write.
	g := c.gen(key)
	gen := g.Load()
	flight := key + "\x00" + strconv.FormatUint(gen, 10)
	// Shared loads detach from the first caller's cancellation so one
	// client hanging up does not fail the others waiting on the same key.
	res, err, _ := c.group.Do(flight, func() (any, error) {
		lctx := context.WithoutCancel(ctx)
		v, err := load(lctx)
		if err != nil {
			return nil, err
		}
		st := StatusBypass
		if c.up() {
			st = StatusMiss
			if err := c.backend.Set(lctx, key, v, ttl); err != nil {
				c.markDown(err)
				st = StatusLoadOnly
			} else if g.Load() != gen {
				// An invalidation ran while we loaded: our value may predate
				// the write. Either its Delete comes after our Set, or we
				// see its generation here and undo the Set ourselves.
				_ = c.backend.Delete(lctx, key)
			}
		}
		return result{v, st}, nil
	})
	if err != nil {
		return nil, "", err
	}
	r := res.(result)
	return r.v, r.st, nil
}

// Invalidate removes keys so the next Get loads fresh values. It returns
// the backend's error (the caller may log it); while the backend is down
// values already in it live until their TTL ends.
func (c *ReadThrough) Invalidate(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	for _, k := range keys {
		c.gen(k).Add(1)
	}
	// Try even during the cool-down: a stale entry is worse than a slow
	// write, and writes are rare next to reads.
	if err := c.backend.Delete(ctx, keys...); err != nil {
		c.markDown(err)
		return fmt.Errorf("origin: cache invalidate: %w", err)
	}
	return nil
}

func (c *ReadThrough) up() bool {
	return c.now().UnixNano() >= c.downUntil.Load()
}

func (c *ReadThrough) markDown(err error) {
	now := c.now().UnixNano()
	if c.cooldown > 0 {
		c.downUntil.Store(now + int64(c.cooldown))
	}
	// One log line per cool-down period, not one per request.
	last := c.lastLog.Load()
	if now-last >= int64(max(c.cooldown, time.Second)) && c.lastLog.CompareAndSwap(last, now) {
		c.log.Warn("cache backend failed; reading from the database", "err", err.Error())
	}
}

// MemoryCache is an in-process CacheBackend. Several service instances in
// one process can share one MemoryCache, which keeps their invalidations
// coherent.
type MemoryCache struct {
	now        func() time.Time
	maxEntries int

	// gens are the invalidation generations of every ReadThrough over
	// this cache: two service instances in one process each have their
	// own ReadThrough, and one's invalidation must stop the other's
	// overlapping load from storing a pre-write value.
	gens genTable

	mu      sync.Mutex // mu guards entries
	entries map[string]memEntry
}

type memEntry struct {
	v       []byte
	expires time.Time
}

var (
	_ CacheBackend = (*MemoryCache)(nil)
	_ genSharer    = (*MemoryCache)(nil)
)

func (m *MemoryCache) invalidationGens() *genTable { return &m.gens }

// NewMemoryCache returns a cache holding at most maxEntries values
// (<= 0: 10000). now nil means time.Now.
func NewMemoryCache(maxEntries int, now func() time.Time) *MemoryCache {
	if maxEntries <= 0 {
		maxEntries = 10000
	}
	if now == nil {
		now = time.Now
	}
	return &MemoryCache{now: now, maxEntries: maxEntries, entries: make(map[string]memEntry)}
}

// Get implements CacheBackend. The returned slice is a copy.
func (m *MemoryCache) Get(_ context.Context, key string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[key]
	if !ok {
		return nil, false, nil
	}
	if !m.now().Before(e.expires) {
		delete(m.entries, key)
		return nil, false, nil
	}
	return append([]byte(nil), e.v...), true, nil
}

// Set implements CacheBackend.
func (m *MemoryCache) Set(_ context.Context, key string, val []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return nil
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.entries[key]; !ok && len(m.entries) >= m.maxEntries {
		m.evictLocked(now)
	}
	m.entries[key] = memEntry{v: append([]byte(nil), val...), expires: now.Add(ttl)}
	return nil
}

// evictLocked drops expired entries, or when none are, an arbitrary tenth
// of the map (map order): cheap, and enough for a cache in front of a
// database that can always answer.
func (m *MemoryCache) evictLocked(now time.Time) {
	for k, e := range m.entries {
		if !now.Before(e.expires) {
			delete(m.entries, k)
		}
	}
	if len(m.entries) < m.maxEntries {
		return
	}
	n := max(m.maxEntries/10, 1)
	for k := range m.entries {
		if n == 0 {
			break
		}
		delete(m.entries, k)
		n--
	}
}

// Delete implements CacheBackend.
func (m *MemoryCache) Delete(_ context.Context, keys ...string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		delete(m.entries, k)
	}
	return nil
}

// Len returns the number of stored entries (expired ones included until
// they are touched).
func (m *MemoryCache) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries)
}

// RedisCache is a CacheBackend in Redis, shared by every instance that
// points at the same server. Give its client short timeouts (for example
// DialTimeout and ReadTimeout of 200ms, MaxRetries -1: 0 means the
// default of 3 retries) so a dead server is
// noticed quickly.
type RedisCache struct {
	rdb    redis.UniversalClient
	prefix string
}

var _ CacheBackend = (*RedisCache)(nil)

// NewRedisCache returns a backend using keys prefix+key (prefix "" means
// "outpost:cache:").
func NewRedisCache(rdb redis.UniversalClient, prefix string) *RedisCache {
	if prefix == "" {
		prefix = "outpost:cache:"
	}
	return &RedisCache{rdb: rdb, prefix: prefix}
}

// Get implements CacheBackend.
func (r *RedisCache) Get(ctx context.Context, key string) ([]byte, bool, error) {
	v, err := r.rdb.Get(ctx, r.prefix+key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return v, true, nil
}

// Set implements CacheBackend.
func (r *RedisCache) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return nil
	}
	return r.rdb.Set(ctx, r.prefix+key, val, ttl).Err()
}

// Delete implements CacheBackend.
func (r *RedisCache) Delete(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = r.prefix + k
	}
	return r.rdb.Del(ctx, full...).Err()
}
