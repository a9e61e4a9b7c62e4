//go:build soak

package gateway

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/outpost-edge/outpost/internal/units"
)

// TestSoakRedisFlap runs two nodes under steady load for 20 s while
// Redis is killed and restarted every second. Not a single request may
// get a 5xx; both statuses 200 and 429 must occur; fallbacks are counted.
//
//	go test -tags soak -run TestSoakRedisFlap -v ./gateway/
func TestSoakRedisFlap(t *testing.T) {
	rs := startRedis(t)
	const key = "opk_soak-0123456789abcdef"
	cfg := Config{
		APIKeys: []APIKeyConfig{{ID: "s", Hash: HashKey(key), Owner: "soak"}},
		Tiers:   map[string]RateLimit{"free": {Requests: 200, Window: units.Duration(time.Second), Burst: 50}},
		Redis:   RedisConfig{Enabled: true, Timeout: units.Duration(50 * time.Millisecond), Cooldown: units.Duration(200 * time.Millisecond)},
	}
	o := newOrigin(t)
	nodes := []*env{
		newEnv(t, envOpts{cfg: cfg, redis: rs.client(t), origin: o, now: time.Now}),
		newEnv(t, envOpts{cfg: cfg, redis: rs.client(t), origin: o, now: time.Now}),
	}
	stop := make(chan struct{})
	var ok, limited, bad atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r := nodes[(w+i)%2].do("GET", "/soak", map[string]string{"X-API-Key": key}, nil)
				switch {
				case r.StatusCode == 200:
					ok.Add(1)
				case r.StatusCode == 429:
					limited.Add(1)
				default:
					bad.Add(1)
					t.Errorf("status %d", r.StatusCode)
				}
			}
		}()
	}
	deadline := time.Now().Add(20 * time.Second)
	for up := true; time.Now().Before(deadline); up = !up {
		time.Sleep(time.Second)
		if up {
			rs.stop()
		} else {
			rs.start()
		}
	}
	close(stop)
	wg.Wait()
	var fallbacks float64
	for _, n := range nodes {
		fallbacks += testutil.ToFloat64(n.st.metrics.redisFallback.WithLabelValues("api"))
	}
	t.Logf("200: %d, 429: %d, other: %d, local fallbacks: %v", ok.Load(), limited.Load(), bad.Load(), fallbacks)
	if bad.Load() != 0 || ok.Load() == 0 || limited.Load() == 0 || fallbacks == 0 {
		t.Fatal("soak failed")
	}
}
