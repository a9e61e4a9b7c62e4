package edge

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the edge listener's Prometheus metrics. Create them once per
// process (they outlive config reloads) and pass them to every Handler.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inflight prometheus.Gauge
	handoffs *prometheus.CounterVec
	passed   prometheus.Counter

	// routes caches each route's series (route name → *routeSeries):
	// WithLabelValues hashes the labels and takes a lock on every call,
	// 2% of a small hit's CPU. Series are never deleted, so a cached one
	// stays the exported one.
	routes sync.Map
}

type routeSeries struct {
	duration prometheus.Observer
	codes    [500]atomic.Pointer[prometheus.Counter] // status 100–599
}

// observe counts one finished request.
func (m *Metrics) observe(route string, status int, d time.Duration) {
	v, ok := m.routes.Load(route)
	if !ok {
		v, _ = m.routes.LoadOrStore(route, &routeSeries{duration: m.duration.WithLabelValues(route)})
	}
	rs := v.(*routeSeries)
	rs.duration.Observe(d.Seconds())
	if status < 100 || status > 599 {
		m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
		return
	}
	slot := &rs.codes[status-100]
	c := slot.Load()
	if c == nil {
		cnt := m.requests.WithLabelValues(route, strconv.Itoa(status))
		c = &cnt
		slot.Store(c)
	}
	(*c).Inc()
}

// NewMetrics registers the edge metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "outpost", Subsystem: "http", Name: "requests_total",
			Help: "Edge HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "outpost", Subsystem: "http", Name: "request_duration_seconds",
			Help:    "Edge HTTP request duration (until the handler returns) by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "outpost", Subsystem: "http", Name: "requests_in_flight",
			Help: "Edge HTTP requests being served.",
		}),
		handoffs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "outpost", Subsystem: "http", Name: "fast_path_handoffs_total",
			Help: "Connections the edge's own HTTP/1.1 server handed to net/http, by reason: request (not of the fast path's shape), head_size, alpn (HTTP/2).",
		}, []string{"reason"}),
		passed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "outpost", Subsystem: "http", Name: "pass_lane_requests_total",
			Help: "Edge requests served on the pass lane (bodiless GET and HEAD to a route that is only a pool, without the handler chain); they are counted in requests_total too.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.inflight, m.handoffs, m.passed)
	}
	return m
}

// HandOff counts a connection internal/http1 gave to net/http; it is
// http1.Server's OnHandOff.
func (m *Metrics) HandOff(reason string) {
	m.handoffs.WithLabelValues(reason).Inc()
}
