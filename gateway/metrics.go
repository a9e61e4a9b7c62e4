package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the gateway's Prometheus collectors. They are registered
// once per process (NewState does it) and shared by every config
// generation, so reloads never register twice.
type Metrics struct {
	authFailures  *prometheus.CounterVec // route, reason
	authzDenied   *prometheus.CounterVec // route
	refused       *prometheus.CounterVec // route, limit (rate, concurrency)
	redisFallback *prometheus.CounterVec // route
	redisUp       prometheus.Gauge
	jwksFetch     *prometheus.CounterVec // result
}

// newMetrics creates the collectors and registers them with reg (nil:
// not registered, e.g. in tests and benchmarks).
func newMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "outpost", Subsystem: "gateway", Name: "auth_failures_total",
			Help: "Requests refused with 401, by route and reason.",
		}, []string{"route", "reason"}),
		authzDenied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "outpost", Subsystem: "gateway", Name: "authz_denied_total",
			Help: "Authenticated requests refused with 403 (missing scope or role), by route.",
		}, []string{"route"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "outpost", Subsystem: "gateway", Name: "limit_refused_total",
			Help: "Requests refused by a limit (rate: 429, concurrency: 503, auth_failures: 429), by route.",
		}, []string{"route", "limit"}),
		redisFallback: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "outpost", Subsystem: "gateway", Name: "ratelimit_redis_fallbacks_total",
			Help: "Rate-limit decisions made locally because Redis was unreachable, by route.",
		}, []string{"route"}),
		redisUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "outpost", Subsystem: "gateway", Name: "ratelimit_redis_up",
			Help: "1 while the Redis rate limiter answers, 0 while decisions fall back to local.",
		}),
		jwksFetch: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "outpost", Subsystem: "gateway", Name: "jwks_fetches_total",
			Help: "JWKS fetches by result (ok, error).",
		}, []string{"result"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.authFailures, m.authzDenied, m.refused, m.redisFallback, m.redisUp, m.jwksFetch} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// routeMetrics are one route's children, resolved once per route build so
// the request path does no label hashing for the common counters.
type routeMetrics struct {
	m             *Metrics
	route         string
	authzDenied   prometheus.Counter
	rateRefused   prometheus.Counter
	concRefused   prometheus.Counter
	failRefused   prometheus.Counter
	redisFallback prometheus.Counter
}

func (m *Metrics) forRoute(route string) routeMetrics {
	return routeMetrics{
		m:             m,
		route:         route,
		authzDenied:   m.authzDenied.WithLabelValues(route),
		rateRefused:   m.refused.WithLabelValues(route, "rate"),
		concRefused:   m.refused.WithLabelValues(route, "concurrency"),
		failRefused:   m.refused.WithLabelValues(route, "auth_failures"),
		redisFallback: m.redisFallback.WithLabelValues(route),
	}
}

func (rm routeMetrics) authFailure(reason string) {
	rm.m.authFailures.WithLabelValues(rm.route, reason).Inc()
}
