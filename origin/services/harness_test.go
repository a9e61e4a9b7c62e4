package services

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/testclock"
	"github.com/outpost-edge/outpost/origin"
	"github.com/outpost-edge/outpost/origin/identity"
	"github.com/outpost-edge/outpost/origin/store"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/crypto/bcrypt"
)

var testSecret = []byte("test-identity-secret-0123456789")

// clock is the shared manual test clock.
type clock = testclock.Clock

// recordingPurger stands in for the admin API when a test only needs to
// see which tags a write purged (the real client is tested in origin).
type recordingPurger struct {
	mu   sync.Mutex
	tags []string
}

func (p *recordingPurger) Purge(_ context.Context, req origin.PurgeRequest) error {
	p.mu.Lock()
	p.tags = append(p.tags, req.Tags...)
	p.mu.Unlock()
	return nil
}

func (p *recordingPurger) has(tag string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range p.tags {
		if t == tag {
			return true
		}
	}
	return false
}

func (p *recordingPurger) reset() {
	p.mu.Lock()
	p.tags = nil
	p.mu.Unlock()
}

// env is a store shared by one or more App instances, each behind a real
// HTTP server on 127.0.0.1.
type env struct {
	t      testing.TB
	clk    *clock
	db     *bolt.DB
	store  store.Store
	cache  origin.CacheBackend
	purger *recordingPurger
	key    ed25519.PrivateKey
	apps   []*App
	srvs   []*httptest.Server
	seed   SeedResult
}

func newEnv(t testing.TB, instances int, tweak func(*Config)) *env {
	t.Helper()
	return newEnvStore(t, instances, nil, tweak)
}

// newEnvStore is newEnv with a given store (nil: a fresh bbolt file).
func newEnvStore(t testing.TB, instances int, st store.Store, tweak func(*Config)) *env {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "origin.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if st == nil {
		if st, err = store.NewBolt(db); err != nil {
			t.Fatal(err)
		}
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	clk := testclock.New(time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC))
	e := &env{t: t, clk: clk, db: db, store: st, purger: &recordingPurger{}, key: key}
	e.cache = origin.NewMemoryCache(0, clk.Now)
	sessions, err := origin.NewBoltSessions(db, origin.SessionOptions{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	for i := range instances {
		cfg := Config{
			Store: st, SigningKey: key, KeyID: "test-key", Issuer: "test-iss", Audience: "test-aud",
			IdentitySecret: testSecret, Purger: e.purger, Cache: e.cache, Sessions: sessions,
			Instance: string(rune('a' + i)), BcryptCost: bcrypt.MinCost, Clock: clk.Now,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		}
		if tweak != nil {
			tweak(&cfg)
		}
		app, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(app.Handler())
		t.Cleanup(srv.Close)
		e.apps = append(e.apps, app)
		e.srvs = append(e.srvs, srv)
	}
	e.seed, err = e.apps[0].Seed(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// who is the identity the test gateway vouches for; nil sends none.
func (e *env) user(name string) *identity.Identity {
	e.t.Helper()
	u, err := e.store.UserByName(context.Background(), name)
	if err != nil {
		e.t.Fatalf("user %s: %v", name, err)
	}
	return &identity.Identity{User: u.ID, Scopes: []string{"tweets:write"}, Roles: u.Roles, Tier: u.Tier}
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("body is not JSON (%v): %s", err, r.body)
	}
}

// do sends a request to instance i, signed like the gateway would when id
// is non-nil. body may be nil, []byte (sent raw) or a value sent as JSON.
func (e *env) do(i int, method, path string, id *identity.Identity, body any, hdr ...string) resp {
	e.t.Helper()
	var rd io.Reader
	ct := ""
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
		ct = "application/json"
	}
	req, err := http.NewRequest(method, e.srvs[i].URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	for j := 0; j+1 < len(hdr); j += 2 {
		req.Header.Set(hdr[j], hdr[j+1])
	}
	if id != nil {
		identity.Sign(req, id, testSecret, e.clk.Now())
	}
	res, err := e.srvs[i].Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp{status: res.StatusCode, header: res.Header, body: data}
}

func (e *env) must(r resp, status int) resp {
	e.t.Helper()
	if r.status != status {
		e.t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	return r
}
