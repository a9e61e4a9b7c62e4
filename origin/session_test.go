package origin

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/redistest"
	"github.com/outpost-edge/outpost/internal/testclock"
	bolt "go.etcd.io/bbolt"
)

// fakeClock is the shared manual test clock.
type fakeClock = testclock.Clock

func newFakeClock() *fakeClock {
	return testclock.New(time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC))
}

func openBolt(t *testing.T) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "s.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func TestSessionStores(t *testing.T) {
	redisSrv := redistest.Start(t)
	stores := []struct {
		name string
		make func(t *testing.T, clk *fakeClock) SessionStore
	}{
		{"bolt", func(t *testing.T, clk *fakeClock) SessionStore {
			s, err := NewBoltSessions(openBolt(t), SessionOptions{Now: clk.Now})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
		{"redis", func(t *testing.T, clk *fakeClock) SessionStore {
			return NewRedisSessions(redisSrv.Client(), "test:"+strings.ReplaceAll(t.Name(), "/", ":")+":", SessionOptions{Now: clk.Now})
		}},
	}
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			ctx := context.Background()
			clk := newFakeClock()
			s := st.make(t, clk)

			sess, err := s.Create(ctx, "u1", map[string]string{"agent": "curl"}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if len(sess.ID) != 43 || sess.UserID != "u1" || !sess.ExpiresAt.Equal(clk.Now().Add(time.Hour)) {
				t.Fatalf("bad session %+v", sess)
			}
			got, err := s.Get(ctx, sess.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.UserID != "u1" || got.Data["agent"] != "curl" {
				t.Fatalf("got %+v", got)
			}

			other, err := s.Create(ctx, "u2", nil, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if other.ID == sess.ID {
				t.Fatal("two sessions got the same id")
			}

			for _, bad := range []string{"", "nope", "../../etc/passwd", strings.Repeat("A", 43) + "x"} {
				if _, err := s.Get(ctx, bad); !errors.Is(err, ErrSessionNotFound) {
					t.Errorf("Get(%q) = %v, want not found", bad, err)
				}
			}

			if err := s.Delete(ctx, sess.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Get(ctx, sess.ID); !errors.Is(err, ErrSessionNotFound) {
				t.Fatalf("deleted session: %v", err)
			}
			if err := s.Delete(ctx, sess.ID); err != nil {
				t.Fatalf("second delete: %v", err)
			}

			clk.Advance(time.Hour)
			if _, err := s.Get(ctx, other.ID); !errors.Is(err, ErrSessionNotFound) {
				t.Fatalf("expired session: %v", err)
			}
			if _, err := s.Create(ctx, "u3", nil, 0); err == nil {
				t.Fatal("ttl 0 accepted")
			}
		})
	}
}

func TestBoltSessionsSweepAndSharing(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	db := openBolt(t)
	a, err := NewBoltSessions(db, SessionOptions{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	// A second instance on the same *bolt.DB sees the first one's sessions.
	b, err := NewBoltSessions(db, SessionOptions{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	short, _ := a.Create(ctx, "u1", nil, time.Minute)
	long, _ := a.Create(ctx, "u1", nil, time.Hour)
	if _, err := b.Get(ctx, short.ID); err != nil {
		t.Fatalf("instance b: %v", err)
	}
	clk.Advance(2 * time.Minute)
	n, err := b.Sweep(ctx)
	if err != nil || n != 1 {
		t.Fatalf("sweep = %d, %v; want 1", n, err)
	}
	if _, err := a.Get(ctx, long.ID); err != nil {
		t.Fatalf("live session swept: %v", err)
	}
}

func TestRedisSessionsSharedAndExpiredByRedis(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	a := NewRedisSessions(srv.Client(), "", SessionOptions{})
	b := NewRedisSessions(srv.Client(), "", SessionOptions{})
	sess, err := a.Create(ctx, "u9", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.Get(ctx, sess.ID); err != nil || got.UserID != "u9" {
		t.Fatalf("instance b: %+v %v", got, err)
	}
	ttl, err := srv.Client().TTL(ctx, "outpost:session:"+sess.ID).Result()
	if err != nil || ttl <= 0 || ttl > time.Hour {
		t.Fatalf("redis TTL %v %v, want native expiry", ttl, err)
	}
	srv.Stop()
	if _, err := b.Get(ctx, sess.ID); err == nil || errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("redis down: %v, want a backend error distinct from not-found", err)
	}
}

func TestBoltSessionsRunSweeperStops(t *testing.T) {
	s, err := NewBoltSessions(openBolt(t), SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.RunSweeper(ctx, time.Millisecond, nil); close(done) }()
	sess, _ := s.Create(ctx, "u1", nil, time.Millisecond)
	// The real clock: wait until the sweeper has removed the expired session.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var present bool
		_ = s.db.View(func(tx *bolt.Tx) error {
			present = tx.Bucket(sessionBucket).Get([]byte(sess.ID)) != nil
			return nil
		})
		if !present {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sweeper never removed the expired session")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
}
