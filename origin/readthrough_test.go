package origin

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/redistest"
)

func TestReadThroughBackends(t *testing.T) {
	srv := redistest.Start(t)
	backends := []struct {
		name string
		make func(clk *fakeClock) CacheBackend
	}{
		{"memory", func(clk *fakeClock) CacheBackend { return NewMemoryCache(0, clk.Now) }},
		{"redis", func(*fakeClock) CacheBackend { return NewRedisCache(srv.Client(), "rt:") }},
	}
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			clk := newFakeClock()
			rt := NewReadThrough(be.make(clk), ReadThroughOptions{Now: clk.Now})
			var loads atomic.Int32
			db := "v1"
			load := func(context.Context) ([]byte, error) {
				loads.Add(1)
				return []byte(db), nil
			}
			key := "k-" + be.name
			v, st, err := rt.Get(ctx, key, time.Minute, load)
			if err != nil || string(v) != "v1" || st != StatusMiss {
				t.Fatalf("first get: %q %s %v", v, st, err)
			}
			v, st, err = rt.Get(ctx, key, time.Minute, load)
			if err != nil || string(v) != "v1" || st != StatusHit || loads.Load() != 1 {
				t.Fatalf("second get: %q %s %v loads=%d", v, st, err, loads.Load())
			}
			db = "v2"
			if err := rt.Invalidate(ctx, key); err != nil {
				t.Fatal(err)
			}
			v, st, _ = rt.Get(ctx, key, time.Minute, load)
			if string(v) != "v2" || st != StatusMiss {
				t.Fatalf("after invalidate: %q %s", v, st)
			}
			boom := errors.New("db down")
			if _, _, err := rt.Get(ctx, "other-"+be.name, time.Minute, func(context.Context) ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
				t.Fatalf("load error: %v", err)
			}
		})
	}
}

func TestMemoryCacheTTLAndBound(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	m := NewMemoryCache(10, clk.Now)
	_ = m.Set(ctx, "a", []byte("1"), 30*time.Second)
	clk.Advance(29 * time.Second)
	if _, ok, _ := m.Get(ctx, "a"); !ok {
		t.Fatal("entry gone before its TTL")
	}
	clk.Advance(time.Second)
	if _, ok, _ := m.Get(ctx, "a"); ok {
		t.Fatal("entry served after its TTL")
	}
	for i := range 100 {
		_ = m.Set(ctx, fmt.Sprint(i), []byte("x"), time.Minute)
	}
	if n := m.Len(); n > 10 {
		t.Fatalf("cache holds %d entries, bound is 10", n)
	}
	v, _, _ := m.Get(ctx, "99")
	v = append(v[:0], 'Z')
	if got, _, _ := m.Get(ctx, "99"); string(got) != "x" {
		t.Fatalf("caller mutated the cached value: %q (%q)", got, v)
	}
}

// TestReadThroughRedisDown stops a real redis-server under the cache: reads
// keep succeeding from the database, and the cache is used again once Redis
// is back and the cool-down has passed.
func TestReadThroughRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	clk := newFakeClock()
	rt := NewReadThrough(NewRedisCache(srv.Client(), ""), ReadThroughOptions{Now: clk.Now, Cooldown: 5 * time.Second})
	var loads atomic.Int32
	load := func(context.Context) ([]byte, error) {
		loads.Add(1)
		return []byte("from-db"), nil
	}
	if _, st, _ := rt.Get(ctx, "t", time.Minute, load); st != StatusMiss {
		t.Fatalf("warm: %s", st)
	}
	if _, st, _ := rt.Get(ctx, "t", time.Minute, load); st != StatusHit {
		t.Fatalf("warm hit: %s", st)
	}

	srv.Stop()
	for i := range 3 {
		v, st, err := rt.Get(ctx, "t", time.Minute, load)
		if err != nil || string(v) != "from-db" {
			t.Fatalf("get %d with redis down: %q %v", i, v, err)
		}
		if st == StatusHit {
			t.Fatalf("get %d: HIT with redis down", i)
		}
	}
	if loads.Load() != 4 {
		t.Fatalf("loads = %d, want 4 (every read went to the database)", loads.Load())
	}
	if err := rt.Invalidate(ctx, "t"); err == nil {
		t.Fatal("invalidate with redis down reported success")
	}

	srv.Restart()
	// Still in the cool-down: the backend is not tried.
	if _, st, _ := rt.Get(ctx, "t", time.Minute, load); st != StatusBypass {
		t.Fatalf("during cool-down: %s, want BYPASS", st)
	}
	clk.Advance(6 * time.Second)
	if _, st, _ := rt.Get(ctx, "t", time.Minute, load); st != StatusMiss {
		t.Fatalf("after recovery: %s, want MISS (redis restarted empty)", st)
	}
	if _, st, _ := rt.Get(ctx, "t", time.Minute, load); st != StatusHit {
		t.Fatalf("after recovery: %s, want HIT", st)
	}
}

func TestReadThroughCoalescesMisses(t *testing.T) {
	rt := NewReadThrough(NewMemoryCache(0, nil), ReadThroughOptions{})
	var loads atomic.Int32
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	load := func(context.Context) ([]byte, error) {
		loads.Add(1)
		select {
		case started <- struct{}{}:
		default:
		}
		<-release
		return []byte("v"), nil
	}
	var wg sync.WaitGroup
	first := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		close(first)
		_, _, _ = rt.Get(context.Background(), "k", time.Minute, load)
	}()
	<-first
	<-started
	const n = 8
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, _, err := rt.Get(context.Background(), "k", time.Minute, load)
			if err != nil || string(v) != "v" {
				t.Errorf("got %q %v", v, err)
			}
		}()
	}
	// Give the waiters a moment to join the in-flight load; correctness does
	// not depend on it (late ones hit the cache), only the load count does.
	time.Sleep(100 * time.Millisecond)
	close(release)
	wg.Wait()
	if loads.Load() != 1 {
		t.Fatalf("loads = %d, want 1", loads.Load())
	}
}

// TestReadThroughInvalidateDuringLoad: a load that read the database
// before a write must not leave its value cached after the write's
// invalidation, and callers after the invalidation do not join it.
// TestReadThroughInvalidateDuringLoad covers one ReadThrough, and two over
// one MemoryCache (two service instances in one process): a load that read
// the database before a write must not leave its value in the cache after
// the write's invalidation, whichever instance invalidated.
func TestReadThroughInvalidateDuringLoad(t *testing.T) {
	for _, tc := range []struct {
		name    string
		shareRT bool
	}{
		{"one ReadThrough", true},
		{"two ReadThroughs on one MemoryCache", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			mem := NewMemoryCache(0, nil)
			loader := NewReadThrough(mem, ReadThroughOptions{})
			writer := loader
			if !tc.shareRT {
				writer = NewReadThrough(mem, ReadThroughOptions{})
			}
			var db atomic.Value
			db.Store("old")
			inLoad := make(chan struct{})
			release := make(chan struct{})
			slow := func(context.Context) ([]byte, error) {
				v := db.Load().(string) // reads the database first...
				close(inLoad)
				<-release // ...and is slow to finish
				return []byte(v), nil
			}
			done := make(chan []byte)
			go func() {
				v, _, _ := loader.Get(ctx, "k", time.Minute, slow)
				done <- v
			}()
			<-inLoad
			db.Store("new")                                     // the write commits...
			if err := writer.Invalidate(ctx, "k"); err != nil { // ...then invalidates
				t.Fatal(err)
			}
			// A reader after the write starts its own load rather than joining.
			fresh := func(context.Context) ([]byte, error) { return []byte(db.Load().(string)), nil }
			if v, st, _ := writer.Get(ctx, "k", time.Minute, fresh); string(v) != "new" || st != StatusMiss {
				t.Fatalf("reader after the write: %q %s", v, st)
			}
			close(release)
			if v := <-done; string(v) != "old" {
				t.Fatalf("the overlapping reader got %q", v)
			}
			// The slow load's old value did not stay in the cache.
			for _, rt := range []*ReadThrough{loader, writer} {
				if v, st, _ := rt.Get(ctx, "k", time.Minute, fresh); string(v) != "new" {
					t.Fatalf("after both loads: %q %s, stale value cached", v, st)
				}
			}
		})
	}
}
