package gateway

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/outpost-edge/outpost/internal/units"
)

func TestGCRA(t *testing.T) {
	const T = time.Second
	var tat, now int64
	now = int64(time.Hour)
	// Burst of 3 at one instant, then refused for exactly T.
	for i := range 3 {
		var d Decision
		tat, d = gcra(tat, now, T, 3)
		if !d.Allowed || d.Remaining != 2-i {
			t.Fatalf("request %d: %+v", i, d)
		}
	}
	_, d := gcra(tat, now, T, 3)
	if d.Allowed || d.RetryAfter != T {
		t.Fatalf("4th: %+v, want refused with retry %v", d, T)
	}
	// Retry-After is honest: at now+RetryAfter one request passes.
	tat2, d := gcra(tat, now+int64(d.RetryAfter), T, 3)
	if !d.Allowed || d.Remaining != 0 {
		t.Fatalf("after retry: %+v", d)
	}
	// A refused request does not move the schedule.
	if got, _ := gcra(tat2, now+int64(T), T, 3); got != tat2 {
		t.Fatal("refusal moved tat")
	}
}

func TestRateLimitBurstThen429(t *testing.T) {
	const key = "opk_limited-0123456789abcdef"
	e := newEnv(t, envOpts{
		cfg: Config{
			APIKeys: []APIKeyConfig{{ID: "k1", Hash: HashKey(key), Owner: "u1", Tier: "free"}},
			Tiers:   map[string]RateLimit{"free": {Requests: 100, Window: units.Duration(time.Minute), Burst: 5}},
		},
	})
	hdr := map[string]string{"X-API-Key": key}
	for i := range 5 {
		r := e.do("GET", "/x", hdr, nil)
		if r.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, r.StatusCode)
		}
		if got := r.Header.Get("RateLimit-Policy"); got != `"free";q=100;w=60` {
			t.Fatalf("RateLimit-Policy = %q", got)
		}
		if got, want := r.Header.Get("RateLimit"), fmt.Sprintf(`"free";r=%d;t=%d`, 4-i, ceilSeconds(time.Duration(i+1)*600*time.Millisecond)); got != want {
			t.Fatalf("request %d: RateLimit = %q, want %q", i, got, want)
		}
	}
	r := e.do("GET", "/x", hdr, nil)
	if r.StatusCode != http.StatusTooManyRequests || errCode(t, r) != "rate_limited" {
		t.Fatalf("6th: %d %s", r.StatusCode, bodyOf(r))
	}
	// T = 600ms: one request becomes possible 600ms from now; Retry-After
	// is whole seconds, rounded up.
	if got := r.Header.Get("Retry-After"); got != "1" {
		t.Fatalf("Retry-After = %q, want 1", got)
	}
	if got := r.Header.Get("RateLimit"); got != `"free";r=0;t=1` {
		t.Fatalf("RateLimit on 429 = %q", got)
	}
	if e.info.fields()["rate_limit"] != "deny" {
		t.Errorf("log field %v", e.info.fields())
	}
	if n := testutil.ToFloat64(e.st.metrics.refused.WithLabelValues("api", "rate")); n != 1 {
		t.Errorf("refused metric = %v", n)
	}
	before := e.origin.count()
	ra, _ := strconv.Atoi(r.Header.Get("Retry-After"))
	e.clock.Advance(time.Duration(ra) * time.Second)
	if r := e.do("GET", "/x", hdr, nil); r.StatusCode != 200 {
		t.Fatalf("after Retry-After: %d", r.StatusCode)
	}
	if e.origin.count() != before+1 {
		t.Fatal("refused requests reached the origin")
	}
}

// TestAnonymousLimitByClientIP: anonymous callers are limited per
// edge-established client IP; X-Forwarded-For is never consulted.
func TestAnonymousLimitByClientIP(t *testing.T) {
	e := newEnv(t, envOpts{
		cfg:   Config{Tiers: map[string]RateLimit{"anonymous": {Requests: 2, Window: units.Duration(time.Hour)}}},
		route: RouteConfig{Auth: AuthConfig{Mode: ModeOptional}},
	})
	for i := range 2 {
		if r := e.do("GET", "/x", map[string]string{"X-Forwarded-For": fmt.Sprintf("10.9.9.%d", i)}, nil); r.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, r.StatusCode)
		}
	}
	if r := e.do("GET", "/x", map[string]string{"X-Forwarded-For": "10.9.9.77"}, nil); r.StatusCode != 429 {
		t.Fatalf("X-Forwarded-For changed the limiter key: %d", r.StatusCode)
	}
	// A different client IP (as the edge resolved it) has its own budget.
	if r := e.do("GET", "/x", map[string]string{"X-Test-Client-Ip": "192.0.2.7"}, nil); r.StatusCode != 200 {
		t.Fatalf("other client: %d", r.StatusCode)
	}
	// IPv6 clients share a budget per /64.
	for i, ip := range []string{"2001:db8::1", "2001:db8::2", "2001:db8::3"} {
		r := e.do("GET", "/x", map[string]string{"X-Test-Client-Ip": ip}, nil)
		if want := map[bool]int{true: 200, false: 429}[i < 2]; r.StatusCode != want {
			t.Fatalf("%s: %d, want %d", ip, r.StatusCode, want)
		}
	}
}

func TestPolicyResolution(t *testing.T) {
	st, _ := NewState(StateOptions{})
	cfg := Config{Tiers: map[string]RateLimit{"free": {Requests: 100}, "pro": {Requests: 1000}}}
	cfg.SetDefaults()
	g, err := New(cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	next := http.NotFoundHandler()
	build := func(rl *RouteRateLimit) *route {
		rc := RouteConfig{RateLimit: rl}
		rc.SetDefaults()
		h, err := g.Handler("r", rc, next)
		if err != nil {
			t.Fatal(err)
		}
		return h.(*route)
	}
	tests := []struct {
		name string
		rl   *RouteRateLimit
		tier string
		want string // policy name, "" = none
	}{
		{"tier default", nil, "pro", "pro"},
		{"anonymous without tier", nil, "anonymous", ""},
		{"route-wide overrides tier", &RouteRateLimit{RateLimit: RateLimit{Requests: 10}}, "pro", "r"},
		{"route-wide covers anonymous", &RouteRateLimit{RateLimit: RateLimit{Requests: 10}}, "anonymous", "r"},
		{"route tier override", &RouteRateLimit{Tiers: map[string]RateLimit{"pro": {Requests: 50}}}, "pro", "r/pro"},
		{"route tier override leaves others", &RouteRateLimit{Tiers: map[string]RateLimit{"pro": {Requests: 50}}}, "free", "free"},
		{"disabled", &RouteRateLimit{Disabled: true}, "free", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := build(tc.rl).policyFor(tc.tier)
			got := ""
			if p != nil {
				got = p.name
			}
			if got != tc.want {
				t.Fatalf("policy %q, want %q", got, tc.want)
			}
		})
	}
}

// burstAcross sends n requests alternately through the nodes, concurrently,
// and returns the number allowed; any other status fails the test.
func burstAcross(t *testing.T, nodes []*env, hdr map[string]string, n int) int {
	t.Helper()
	var mu sync.Mutex
	allowed := 0
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := nodes[i%len(nodes)].do("GET", "/x", hdr, nil)
			switch r.StatusCode {
			case 200:
				mu.Lock()
				allowed++
				mu.Unlock()
			case 429:
			default:
				t.Errorf("status %d (no 5xx allowed): %s", r.StatusCode, bodyOf(r))
			}
		}()
	}
	wg.Wait()
	return allowed
}

// TestRedisGlobalLimitAndFallback: two nodes sharing one real Redis
// enforce one limit; Redis stopped → local fallback without 5xx; Redis
// back → global again.
func TestRedisGlobalLimitAndFallback(t *testing.T) {
	rs := startRedis(t)
	const key = "opk_global-0123456789abcdef"
	const limit = 10
	cfg := Config{
		APIKeys: []APIKeyConfig{{ID: "g1", Hash: HashKey(key), Owner: "u1"}},
		Tiers:   map[string]RateLimit{"free": {Requests: limit, Window: units.Duration(time.Hour)}},
		// A generous timeout: on a loaded CI machine a slow answer must
		// not be mistaken for an outage in the "global" phases.
		Redis: RedisConfig{Enabled: true, Cooldown: units.Duration(200 * time.Millisecond), Timeout: units.Duration(2 * time.Second)},
	}
	o := newOrigin(t)
	var nodes []*env
	for range 2 {
		nodes = append(nodes, newEnv(t, envOpts{cfg: cfg, redis: rs.client(t), origin: o, now: time.Now}))
	}
	hdr := map[string]string{"X-API-Key": key}

	if got := burstAcross(t, nodes, hdr, 3*limit); got != limit {
		t.Fatalf("global: %d allowed across two nodes, want exactly %d", got, limit)
	}

	rs.stop()
	// Local fallback: each node enforces the limit on its own; nothing 5xx.
	got := burstAcross(t, nodes, hdr, 6*limit)
	if got < limit || got > 2*limit {
		t.Fatalf("fallback: %d allowed, want between %d and %d", got, limit, 2*limit)
	}
	var fallbacks float64
	for _, n := range nodes {
		fallbacks += testutil.ToFloat64(n.st.metrics.redisFallback.WithLabelValues("api"))
		if testutil.ToFloat64(n.st.metrics.redisUp) != 0 {
			t.Error("redis_up gauge still 1 with Redis down")
		}
		if f := n.info.fields()["rate_limit"]; f != "deny_local" && f != "allow_local" {
			t.Errorf("log field rate_limit = %q during fallback", f)
		}
	}
	if fallbacks != 6*limit {
		t.Fatalf("fallback metric = %v, want %d", fallbacks, 6*limit)
	}

	rs.start()
	// Wait for each node's circuit to close (a probe succeeds after the
	// cooldown), probing with a key outside the test's budget.
	p := newPolicy("probe", "probe:", RateLimit{Requests: 1000, Window: units.Duration(time.Hour)})
	for _, n := range nodes {
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := n.st.redis.Allow(context.Background(), "probe", p); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("redis limiter did not recover")
			}
			time.Sleep(50 * time.Millisecond)
		}
		if testutil.ToFloat64(n.st.metrics.redisUp) != 1 {
			t.Error("redis_up gauge not back to 1")
		}
	}
	// The restarted Redis has no state (no persistence): one fresh global budget.
	if got := burstAcross(t, nodes, hdr, 3*limit); got != limit {
		t.Fatalf("after recovery: %d allowed, want exactly %d", got, limit)
	}
}

func TestRedisCircuitSkipsDeadRedis(t *testing.T) {
	rs := startRedis(t)
	c := rs.client(t)
	clk := newClock()
	st, err := NewState(StateOptions{Redis: c, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	st.redis.configure(RedisConfig{KeyPrefix: "t:", Timeout: units.Duration(2 * time.Second), Cooldown: units.Duration(time.Second)})
	p := newPolicy("p", "p:", RateLimit{Requests: 10, Window: units.Duration(time.Minute), Burst: 10})
	if _, err := st.redis.Allow(context.Background(), "k", p); err != nil {
		t.Fatal(err)
	}
	rs.stop()
	if _, err := st.redis.Allow(context.Background(), "k", p); err == nil {
		t.Fatal("want error with Redis down")
	}
	// Open circuit: no call is attempted until the cooldown passes.
	for range 100 {
		if _, err := st.redis.Allow(context.Background(), "k", p); err != errCircuitOpen {
			t.Fatalf("err %v, want errCircuitOpen", err)
		}
	}
	clk.Advance(time.Second)
	if _, err := st.redis.Allow(context.Background(), "k", p); err == errCircuitOpen || err == nil {
		t.Fatalf("after cooldown a probe should reach (dead) Redis, got %v", err)
	}
	if _, err := st.redis.Allow(context.Background(), "k", p); err != errCircuitOpen {
		t.Fatalf("failed probe should reopen the circuit, got %v", err)
	}
}

// TestRedisBlackholeFallsBackFast: a Redis that accepts connections but
// never answers costs one short timeout, then the circuit keeps requests
// away from it; every request is still answered (no 5xx).
func TestRedisBlackholeFallsBackFast(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // hold it open, never reply
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	rdb := redis.NewClient(&redis.Options{Addr: l.Addr().String(), ContextTimeoutEnabled: true, MaxRetries: -1})
	defer rdb.Close()
	e := newEnv(t, envOpts{
		redis: rdb,
		now:   time.Now,
		cfg: Config{
			Tiers: map[string]RateLimit{"anonymous": {Requests: 3, Window: units.Duration(time.Hour)}},
			Redis: RedisConfig{Enabled: true, Timeout: units.Duration(50 * time.Millisecond), Cooldown: units.Duration(time.Hour)},
		},
		route: RouteConfig{Auth: AuthConfig{Mode: ModeOptional}},
	})
	codes := map[int]int{}
	for range 5 {
		codes[e.do("GET", "/x", nil, nil).StatusCode]++
	}
	if codes[200] != 3 || codes[429] != 2 {
		t.Fatalf("statuses %v, want 3×200 then 2×429 from the local fallback", codes)
	}
	if _, err := e.st.redis.Allow(context.Background(), "k", e.gw.tiers["anonymous"]); err != errCircuitOpen {
		t.Fatalf("circuit not open after a timeout: %v", err)
	}
	if n := testutil.ToFloat64(e.st.metrics.redisFallback.WithLabelValues("api")); n != 5 {
		t.Fatalf("fallback metric %v, want 5", n)
	}
}

// Limiter namespaces never collide, whatever the route and tier names:
// colons in names and a tier called "*" once shared buckets.
func TestRouteKeyPrefixDistinct(t *testing.T) {
	pairs := [][2]string{
		{"a:b", "c"}, {"a", "b:c"}, {"a", "*"}, {"a", ""}, {"a:*", ""}, {`a"`, "b"}, {"a", `"b`},
	}
	seen := map[string][2]string{}
	for _, p := range pairs {
		k := routeKeyPrefix(p[0], p[1])
		if prev, dup := seen[k]; dup {
			t.Fatalf("route %q tier %q and route %q tier %q share %q", p[0], p[1], prev[0], prev[1], k)
		}
		seen[k] = p
	}
}

// TestRateLimitFieldsAreStructured: policy names come from tier and route
// names, which may hold any text; the RateLimit fields must still be
// valid structured-field strings (printable ASCII, only \" and \\
// escaped), or clients that parse them reject the whole field.
func TestRateLimitFieldsAreStructured(t *testing.T) {
	const key = "opk_limited-0123456789abcdef"
	tier := "prö\"%\\"
	e := newEnv(t, envOpts{cfg: Config{
		APIKeys: []APIKeyConfig{{ID: "k1", Hash: HashKey(key), Owner: "u1", Tier: tier}},
		Tiers:   map[string]RateLimit{tier: {Requests: 10, Window: units.Duration(time.Minute)}},
	}})
	r := e.do("GET", "/x", map[string]string{"X-API-Key": key}, nil)
	if r.StatusCode != 200 {
		t.Fatalf("status %d", r.StatusCode)
	}
	want := `"pr%C3%B6\"%25\\"`
	if got := r.Header.Get("RateLimit-Policy"); got != want+";q=10;w=60" {
		t.Errorf("RateLimit-Policy = %q, want %q", got, want+";q=10;w=60")
	}
	if got := r.Header.Get("RateLimit"); !strings.HasPrefix(got, want+";r=9;") {
		t.Errorf("RateLimit = %q", got)
	}
}
