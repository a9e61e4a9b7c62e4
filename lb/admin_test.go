package lb

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestAdminHandler(t *testing.T) {
	a := startBackend(t, "a", nil)
	b := startBackend(t, "b", nil)
	cfg := poolConfig(PolicyP2C, a, b)
	cfg.Backends[1].Zone = "eu"
	p := newTestPool(t, cfg, Options{})
	if _, err := get(t, p, "/"); err != nil {
		t.Fatal(err)
	}
	h := AdminHandler(func() map[string]*Pool { return map[string]*Pool{"api": p} })

	rec := adminDo(t, h, http.MethodGet, "/v1/pools")
	var out struct {
		Pools []PoolStatus `json:"pools"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || rec.Code != 200 {
		t.Fatalf("GET /v1/pools: %d %v %s", rec.Code, err, rec.Body)
	}
	if len(out.Pools) != 1 || out.Pools[0].Policy != PolicyP2C || len(out.Pools[0].Backends) != 2 || out.Pools[0].Healthy != 2 {
		t.Fatalf("pools %+v", out.Pools)
	}
	bs := out.Pools[0].Backends
	if bs[1].Zone != "eu" || bs[0].Health != "healthy" || bs[0].Requests+bs[1].Requests != 1 {
		t.Errorf("backends %+v", bs)
	}

	for _, tc := range []struct {
		method, path string
		code         int
		want         string
	}{
		{http.MethodGet, "/v1/pools/api", 200, `"policy": "p2c"`},
		{http.MethodGet, "/v1/pools/nope", 404, `"code":"unknown_pool"`},
		{http.MethodPost, "/v1/pools/api/backends/a/drain", 200, `"draining": true`},
		{http.MethodPost, "/v1/pools/api/backends/zz/drain", 404, `"code":"unknown_backend"`},
		{http.MethodPost, "/v1/pools/nope/backends/a/enable", 404, `"code":"unknown_pool"`},
		{http.MethodPost, "/v1/pools/api/backends/a/enable", 200, `"draining": false`},
		{http.MethodDelete, "/v1/pools/api/backends/a/drain", 404, `"code":"not_found"`},
	} {
		rec := adminDo(t, h, tc.method, tc.path)
		if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.want) {
			t.Errorf("%s %s: %d %s, want %d with %s", tc.method, tc.path, rec.Code, rec.Body, tc.code, tc.want)
		}
	}
}

// TestMetricsShared: pools created and updated many times share one
// registration.
func TestMetricsShared(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	a := startBackend(t, "a", nil)
	p1 := newTestPool(t, poolConfig(PolicyRoundRobin, a), Options{Metrics: m})
	p2, err := New("other", poolConfig(PolicyRoundRobin, a), Options{Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	for range 3 {
		if err := p1.Update(poolConfig(PolicyLeastConnections, a)); err != nil {
			t.Fatal(err)
		}
	}
	for range 4 {
		if _, err := get(t, p1, "/"); err != nil {
			t.Fatal(err)
		}
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("test", "a")); got != 4 {
		t.Errorf("requests %v", got)
	}
	if n := testutil.CollectAndCount(m.latency); n != 2 {
		t.Errorf("latency series %d, want 2 (one per pool/backend)", n)
	}
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
}
