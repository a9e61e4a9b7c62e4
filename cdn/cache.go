// Package cdn is Outpost's shared HTTP cache (RFC 9111) for static assets:
// a handler in front of an upstream handler that stores responses on disk,
// serves them with correct freshness, validation, ranges and compression,
// collapses concurrent misses into one origin fetch, keeps serving stale
// content when the origin fails, and purges by URL, prefix, tag or all.
//
// A Cache is long-lived (it owns the disk store and the metrics); Handler is
// cheap and is rebuilt on every config reload.
package cdn

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost/cdn/store"
	"github.com/outpost-edge/outpost/internal/units"
	"github.com/prometheus/client_golang/prometheus"
)

// Options carries the dependencies of a Cache.
type Options struct {
	Logger     *slog.Logger          // nil discards
	Registerer prometheus.Registerer // nil registers nothing
	Clock      func() time.Time      // nil means time.Now
	// CreateTemp creates body temp files; nil means os.CreateTemp. Tests
	// inject disk-full and I/O errors through it.
	CreateTemp func(dir, pattern string) (store.File, error)
}

// Cache is the shared cache of one node.
type Cache struct {
	cfg   Config
	store *store.Store
	log   *slog.Logger
	now   func() time.Time
	m     *metrics
	enc   *encoders

	bufs sync.Pool // *[]byte copy buffers for bodies served from files

	fillMu sync.Mutex // guards fills
	fills  map[string]*fill

	// purgeMu orders purges against fill commits: a commit checks the
	// purge log and publishes under RLock, a purge logs itself and
	// selects under Lock, so a fill either sees the purge or is removed by
	// it (never published just after the purge looked).
	purgeMu  sync.RWMutex
	purgeSeq atomic.Uint64 // numbers purges; a fill notes it when it starts
	purgeLog purgeLog      // the recent purges a fill checks itself against; under purgeMu

	bgMu   sync.RWMutex   // orders bg.Add against Close's Wait
	bg     sync.WaitGroup // background refreshes
	closed atomic.Bool

	warnMu         sync.Mutex // guards overrideWarned
	overrideWarned map[string]bool
}

// New opens (or creates) the store in cfg.Dir, reconciling it with its
// index. cfg must have had SetDefaults and Validate applied.
func New(cfg Config, opts Options) (*Cache, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	c := &Cache{
		cfg:            cfg,
		log:            opts.Logger.With("component", "cdn"),
		now:            opts.Clock,
		fills:          make(map[string]*fill),
		overrideWarned: make(map[string]bool),
		enc:            newEncoders(cfg.Compression.Level),
	}
	c.bufs.New = func() any { b := make([]byte, 64<<10); return &b }
	st, err := store.Open(store.Options{
		Dir:           cfg.Dir,
		MaxSize:       cfg.MaxSize.Int64(),
		MaxObjects:    cfg.MaxObjects,
		MaxObjectSize: cfg.MaxObjectSize.Int64(),
		Policy:        cfg.Eviction,
		MemBudget:     memBudget(cfg.MemoryBodies),
		MemObjectMax:  cfg.MemoryBodyMax.Int64(),
		FlushInterval: cfg.AccessFlushInterval.D(),
		Clock:         opts.Clock,
		Logger:        c.log,
		CreateTemp:    opts.CreateTemp,
		OnEvict: func(n int, b int64) {
			if c.m != nil {
				c.m.evictions.Add(float64(n))
				c.m.evictedB.Add(float64(b))
			}
		},
	})
	if err != nil {
		return nil, err
	}
	c.store = st
	m, err := newMetrics(opts.Registerer,
		func() float64 { return float64(st.Objects()) },
		func() float64 { return float64(st.Bytes()) })
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("cdn: metrics: %w", err)
	}
	c.m = m
	return c, nil
}

// Objects returns the number of stored entries.
func (c *Cache) Objects() int64 { return c.store.Objects() }

// Bytes returns the stored body bytes.
func (c *Cache) Bytes() int64 { return c.store.Bytes() }

// Close waits for background refreshes and closes the store.
func (c *Cache) Close() error {
	c.bgMu.Lock()
	if !c.closed.CompareAndSwap(false, true) {
		c.bgMu.Unlock()
		return errors.New("cdn: already closed")
	}
	c.bgMu.Unlock()
	c.bg.Wait()
	return c.store.Close()
}

// startBackground registers a background task unless the cache is closing.
func (c *Cache) startBackground() bool {
	c.bgMu.RLock()
	defer c.bgMu.RUnlock()
	if c.closed.Load() {
		return false
	}
	c.bg.Add(1)
	return true
}

// grace returns the configured grace period.
func (c *Cache) grace() time.Duration {
	if c.cfg.Grace == nil {
		return 0
	}
	return c.cfg.Grace.D()
}

// warnOverrideOnce logs once per route and rule that a rule stores what the
// origin marked private or no-store.
func (c *Cache) warnOverrideOnce(route string, rule int) {
	k := fmt.Sprintf("%s#%d", route, rule)
	c.warnMu.Lock()
	seen := c.overrideWarned[k]
	c.overrideWarned[k] = true
	c.warnMu.Unlock()
	if !seen {
		c.log.Warn("ttl rule overrides origin no-store/private", "route", route, "rule", rule)
	}
}

func memBudget(s *units.Size) int64 {
	if s == nil {
		return 0
	}
	return s.Int64()
}
