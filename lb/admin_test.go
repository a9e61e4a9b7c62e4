package lb

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/outpost-edge/outpost/internal/units"
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

// TestAdminPoolsLoadFields: GET /v1/pools reports in_flight while a
// request is in progress, latency_ms once one was answered, and ejections
// with ejected_until for an ejected backend.
func TestAdminPoolsLoadFields(t *testing.T) {
	entered := make(chan string, 1)
	release := make(chan struct{})
	handler := func(name string) func(w http.ResponseWriter, r *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/slow":
				entered <- name
				<-release
			case "/fail":
				http.Error(w, "boom", http.StatusInternalServerError)
			}
		}
	}
	a, b := startBackend(t, "a", handler("a")), startBackend(t, "b", handler("b"))
	cfg := poolConfig(PolicyRoundRobin, a, b)
	cfg.Outlier.ConsecutiveFailures = 1
	cfg.Outlier.BaseEjectionTime = units.Duration(time.Minute) // outlasts the test
	cfg.Outlier.MaxEjectionTime = units.Duration(time.Minute)
	p := newTestPool(t, cfg, Options{})
	h := AdminHandler(func() map[string]*Pool { return map[string]*Pool{"api": p} })
	backends := func() map[string]map[string]any {
		t.Helper()
		rec := adminDo(t, h, http.MethodGet, "/v1/pools")
		var out struct {
			Pools []struct {
				Backends []map[string]any `json:"backends"`
			} `json:"pools"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || rec.Code != 200 || len(out.Pools) != 1 {
			t.Fatalf("GET /v1/pools: %d %v %s", rec.Code, err, rec.Body)
		}
		m := map[string]map[string]any{}
		for _, b := range out.Pools[0].Backends {
			for _, k := range []string{"in_flight", "latency_ms", "ejections"} {
				if _, ok := b[k].(float64); !ok {
					t.Fatalf("backend %v: %s missing or not a number", b["id"], k)
				}
			}
			m[b["id"].(string)] = b
		}
		return m
	}

	done := make(chan error, 1)
	go func() {
		_, err := get(t, p, "/slow")
		done <- err
	}()
	slow := <-entered
	peer := map[string]string{"a": "b", "b": "a"}
	other := peer[slow]
	bs := backends()
	if bs[slow]["in_flight"] != 1.0 || bs[other]["in_flight"] != 0.0 {
		t.Errorf("in_flight %v on %s, %v on %s; want 1 and 0", bs[slow]["in_flight"], slow, bs[other]["in_flight"], other)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	req, _ := http.NewRequest(http.MethodGet, "http://pool/fail", nil)
	resp, _, err := send(t, p, req)
	if err != nil || resp.StatusCode != 500 {
		t.Fatalf("GET /fail: %v %v", resp, err)
	}
	failed := resp.Header.Get("X-Backend")
	bs = backends()
	if lat := bs[slow]["latency_ms"].(float64); lat <= 0 || lat > 30000 {
		t.Errorf("%s latency_ms %v after a request", slow, lat)
	}
	for id, b := range bs {
		if b["in_flight"] != 0.0 {
			t.Errorf("%s in_flight %v with nothing in progress", id, b["in_flight"])
		}
	}
	if f := bs[failed]; f["ejections"] != 1.0 || f["health"] != "ejected" || f["ejected_until"] == nil {
		t.Errorf("%s after a 500 with consecutive_failures 1: %v", failed, f)
	}
	if bs[peer[failed]]["ejections"] != 0.0 {
		t.Errorf("ejections of the healthy backend: %v", bs)
	}
}
