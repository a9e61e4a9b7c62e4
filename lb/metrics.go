package lb

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the per-backend metrics of every pool. Create one with
// NewMetrics at start-up and share it through Options; pools and reloads
// never register anything.
type Metrics struct {
	requests    *prometheus.CounterVec
	errors      *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	transitions *prometheus.CounterVec
	retries     *prometheus.CounterVec
	ejections   *prometheus.CounterVec
	healthy     *prometheus.GaugeVec
}

// NewMetrics creates the lb metrics and registers them with reg (nil: not
// registered, for tests). It panics if they are already registered with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	pb := []string{"pool", "backend"}
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_lb_requests_total",
			Help: "Tries sent to a backend.",
		}, pb),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_lb_errors_total",
			Help: "Failed tries by kind: connect, timeout, transport, status_5xx.",
		}, []string{"pool", "backend", "kind"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "outpost_lb_response_header_seconds",
			Help:    "Time from sending a try to its response headers.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, pb),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_lb_health_transitions_total",
			Help: "Backend health changes by new state: healthy, unhealthy.",
		}, []string{"pool", "backend", "to"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_lb_retries_total",
			Help: "Retries sent to a backend after another one failed.",
		}, pb),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_lb_ejections_total",
			Help: "Passive outlier ejections of a backend.",
		}, pb),
		healthy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "outpost_lb_backend_healthy",
			Help: "1 when the backend takes new requests, else 0.",
		}, pb),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.errors, m.latency, m.transitions, m.retries, m.ejections, m.healthy)
	}
	return m
}

// backendMetrics are one backend's children, resolved once so the request
// path does no label lookups.
type backendMetrics struct {
	requests        prometheus.Counter
	retries         prometheus.Counter
	latency         prometheus.Observer
	ejections       prometheus.Counter
	healthy         prometheus.Gauge
	errConn         prometheus.Counter
	errTime         prometheus.Counter
	errOther        prometheus.Counter
	err5xx          prometheus.Counter
	becameHealthy   prometheus.Counter
	becameUnhealthy prometheus.Counter
}

func (m *Metrics) forBackend(pool, id string) backendMetrics {
	return backendMetrics{
		requests:        m.requests.WithLabelValues(pool, id),
		retries:         m.retries.WithLabelValues(pool, id),
		latency:         m.latency.WithLabelValues(pool, id),
		ejections:       m.ejections.WithLabelValues(pool, id),
		healthy:         m.healthy.WithLabelValues(pool, id),
		errConn:         m.errors.WithLabelValues(pool, id, "connect"),
		errTime:         m.errors.WithLabelValues(pool, id, "timeout"),
		errOther:        m.errors.WithLabelValues(pool, id, "transport"),
		err5xx:          m.errors.WithLabelValues(pool, id, "status_5xx"),
		becameHealthy:   m.transitions.WithLabelValues(pool, id, "healthy"),
		becameUnhealthy: m.transitions.WithLabelValues(pool, id, "unhealthy"),
	}
}

// forget drops a removed backend's series, or with id "" all of a
// closed pool's.
func (m *Metrics) forget(pool, id string) {
	l := prometheus.Labels{"pool": pool, "backend": id}
	if id == "" {
		l = prometheus.Labels{"pool": pool}
	}
	for _, v := range []*prometheus.MetricVec{
		m.requests.MetricVec, m.errors.MetricVec, m.latency.MetricVec,
		m.transitions.MetricVec, m.retries.MetricVec, m.ejections.MetricVec, m.healthy.MetricVec,
	} {
		v.DeletePartialMatch(l)
	}
}
