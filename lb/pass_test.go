package lb

import (
	"errors"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/units"
)

// TestPassNotPassable: pools whose picks read the request (consistent
// hashing, sticky cookies) or that reach a backend without the synchronous
// HTTP/1.1 transport refuse pass-lane requests before sending anything, so
// the caller serves them the usual way; a reload that changes that is
// followed.
func TestPassNotPassable(t *testing.T) {
	b := startBackend(t, "b0", nil)
	for _, tc := range []struct {
		name string
		edit func(*PoolConfig)
		want bool
	}{
		{"round robin", func(*PoolConfig) {}, true},
		{"ip_hash", func(c *PoolConfig) { c.Policy = PolicyIPHash }, true},
		{"consistent_hash", func(c *PoolConfig) { c.Policy = PolicyConsistentHash }, true},
		{"sticky", func(c *PoolConfig) {
			c.Sticky = StickyConfig{Enabled: true, Cookie: "pin", Lifetime: units.Duration(time.Hour)}
		}, true},
		{"connection limit", func(c *PoolConfig) { c.Transport.MaxConnsPerBackend = 4 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := poolConfig(PolicyRoundRobin, b)
			tc.edit(&cfg)
			p := newTestPool(t, cfg, Options{})
			if got := p.Passable(); got != tc.want {
				t.Fatalf("Passable() = %v, want %v", got, tc.want)
			}
			hits := b.hits.Load()
			_, _, err := passFetch(p, "/x")
			switch {
			case tc.want && err != nil:
				t.Fatalf("pass: %v", err)
			case !tc.want && !errors.Is(err, ErrNotPassable):
				t.Fatalf("pass: %v, want ErrNotPassable", err)
			case !tc.want && b.hits.Load() != hits:
				t.Fatal("a refused pass reached the backend")
			}
		})
	}
	// A reload to a connection limit takes the lane away; back again, it
	// returns.
	cfg := poolConfig(PolicyRoundRobin, b)
	p := newTestPool(t, cfg, Options{})
	limited := cfg
	limited.Transport.MaxConnsPerBackend = 4
	if err := p.Update(limited); err != nil || p.Passable() {
		t.Fatalf("after a reload to a connection limit: passable %v, %v", p.Passable(), err)
	}
	if err := p.Update(cfg); err != nil || !p.Passable() {
		t.Fatalf("after a reload back: passable %v, %v", p.Passable(), err)
	}
}
