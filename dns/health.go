package dns

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost/internal/cluster"
)

// HealthView tells whether an edge node is healthy. The lead shows it in
// /v1/status; steering reads it on every steered answer.
type HealthView interface {
	Healthy(name string) bool
}

var _ HealthView = (*Health)(nil)

// NodeHealth is one node's health for status pages.
type NodeHealth struct {
	Name      string    `json:"name"`
	URL       string    `json:"url"`
	Healthy   bool      `json:"healthy"`
	Since     time.Time `json:"since"`                // last state change (or start)
	LastError string    `json:"last_error,omitempty"` // of the latest failed probe
}

// Health probes every edge node's HTTP health endpoint: a node leaves after
// Fall consecutive failures and returns after Rise consecutive successes.
// Nodes start healthy, so a starting cluster is not empty for the first
// Fall × Interval. It is long-lived: Update applies a reloaded config.
type Health struct {
	log     *slog.Logger
	metrics *Metrics
	client  *http.Client
	now     func() time.Time

	mu      sync.Mutex // guards cfg, nodes, started, ctx
	cfg     HealthConfig
	nodes   map[string]*nodeState
	started bool
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// nodeState is one node's probe state. up, since and lastErr are read by
// the answer path and status pages; the counters belong to the probe loop.
type nodeState struct {
	name    string
	url     string
	up      atomic.Bool
	since   atomic.Int64 // unix nanos
	lastErr atomic.Pointer[string]
	stop    context.CancelFunc
}

func (n *nodeState) healthy() bool { return n == nil || n.up.Load() }

// NewHealth builds a checker; probes run between Start and Stop.
func NewHealth(cfg HealthConfig, log *slog.Logger, m *Metrics, client *http.Client) *Health {
	if client == nil {
		client = &http.Client{Transport: &http.Transport{
			Proxy:             nil,
			DisableKeepAlives: true,
			DialContext:       (&net.Dialer{Timeout: cfg.Timeout.D()}).DialContext,
		}}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Health{log: log, metrics: m, client: client, now: time.Now, cfg: cfg, nodes: map[string]*nodeState{}}
}

// Healthy implements HealthView. Unknown nodes are unhealthy.
func (h *Health) Healthy(name string) bool {
	h.mu.Lock()
	n := h.nodes[name]
	h.mu.Unlock()
	return n != nil && n.up.Load()
}

// Status lists every node's state, sorted by name.
func (h *Health) Status() []NodeHealth {
	h.mu.Lock()
	out := make([]NodeHealth, 0, len(h.nodes))
	for _, n := range h.nodes {
		s := NodeHealth{Name: n.name, URL: n.url, Healthy: n.up.Load(), Since: time.Unix(0, n.since.Load()).UTC()}
		if e := n.lastErr.Load(); e != nil {
			s.LastError = *e
		}
		out = append(out, s)
	}
	h.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// state returns the live state of a node for steering.
func (h *Health) state(name string) *nodeState {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.nodes[name]
}

// healthURL is the URL probed for a node.
func healthURL(n cluster.Node, path string) string {
	if n.Health != "" {
		return n.Health
	}
	a := n.IPv4
	if !a.IsValid() {
		a = n.IPv6
	}
	return "http://" + netip.AddrPortFrom(a, 80).String() + path
}

// Update sets the probed node set and settings. Nodes whose URL is
// unchanged keep their state; all probes restart when the timing changed.
func (h *Health) Update(cfg HealthConfig, nodes []cluster.Node) {
	h.mu.Lock()
	defer h.mu.Unlock()
	restartAll := cfg != h.cfg
	h.cfg = cfg
	want := map[string]string{}
	for _, n := range nodes {
		want[n.Name] = healthURL(n, cfg.Path)
	}
	for name, st := range h.nodes {
		if u, ok := want[name]; !ok || u != st.url || restartAll {
			if st.stop != nil {
				st.stop()
				st.stop = nil
			}
			if !ok || u != st.url {
				delete(h.nodes, name)
				if h.metrics != nil {
					h.metrics.healthy.DeleteLabelValues(name)
				}
			}
		}
	}
	for name, u := range want {
		st := h.nodes[name]
		if st == nil {
			st = &nodeState{name: name, url: u}
			st.up.Store(true)
			st.since.Store(h.now().UnixNano())
			h.nodes[name] = st
			h.setGauge(st)
		}
		if cfg.Disabled && !st.up.Load() {
			st.up.Store(true)
			h.setGauge(st)
		}
		if h.started && st.stop == nil && !cfg.Disabled {
			h.startProbe(st)
		}
	}
}

// Start begins probing.
func (h *Health) Start() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.started {
		return
	}
	h.started = true
	h.ctx, h.cancel = context.WithCancel(context.Background())
	if h.cfg.Disabled {
		return
	}
	for _, st := range h.nodes {
		h.startProbe(st)
	}
}

// Stop ends probing and waits for the probes to return.
func (h *Health) Stop() {
	h.mu.Lock()
	if !h.started {
		h.mu.Unlock()
		return
	}
	h.started = false
	h.cancel()
	for _, st := range h.nodes {
		st.stop = nil
	}
	h.mu.Unlock()
	h.wg.Wait()
}

// startProbe runs st's probe loop; h.mu is held.
func (h *Health) startProbe(st *nodeState) {
	ctx, cancel := context.WithCancel(h.ctx)
	st.stop = cancel
	cfg := h.cfg
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.probeLoop(ctx, st, cfg)
	}()
}

func (h *Health) probeLoop(ctx context.Context, st *nodeState, cfg HealthConfig) {
	t := time.NewTicker(cfg.Interval.D())
	defer t.Stop()
	var run healthRun
	for {
		err := h.probe(ctx, st.url, cfg.Timeout.D())
		if ctx.Err() != nil {
			return
		}
		msg := ""
		if err != nil {
			msg = err.Error()
			st.lastErr.Store(&msg)
		}
		was := st.up.Load()
		if now := run.step(was, err == nil, cfg.Rise, cfg.Fall); now != was {
			h.transition(st, now, msg)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// healthRun counts consecutive probe results: a node goes down after fall
// failures in a row and up after rise successes in a row.
type healthRun struct{ ok, fail int }

// step records one probe result and returns the new state.
func (r *healthRun) step(up, success bool, rise, fall int) bool {
	if success {
		r.ok, r.fail = r.ok+1, 0
		return up || r.ok >= rise
	}
	r.ok, r.fail = 0, r.fail+1
	return up && r.fail < fall
}

func (h *Health) transition(st *nodeState, up bool, reason string) {
	st.up.Store(up)
	st.since.Store(h.now().UnixNano())
	h.setGauge(st)
	if up {
		h.log.Info("edge node healthy", "node", st.name)
	} else {
		h.log.Warn("edge node unhealthy", "node", st.name, "url", st.url, "error", reason)
	}
}

func (h *Health) setGauge(st *nodeState) {
	if h.metrics == nil {
		return
	}
	v := 0.0
	if st.up.Load() {
		v = 1
	}
	h.metrics.healthy.WithLabelValues(st.name).Set(v)
}

// probe GETs url; any 2xx within timeout is healthy.
func (h *Health) probe(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "outpost-dns-health")
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("status %s", strconv.Itoa(resp.StatusCode))
	}
	return nil
}
