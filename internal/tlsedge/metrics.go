package tlsedge

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the TLS edge's Prometheus collectors. Create them once per
// process with NewMetrics and hand them to every Manager (Options.Metrics),
// so rebuilding a Manager never registers twice.
type Metrics struct {
	obtained  *prometheus.CounterVec
	failed    *prometheus.CounterVec
	onDemand  *prometheus.CounterVec
	expiry    *prometheus.GaugeVec
	pushFails *prometheus.CounterVec
}

// NewMetrics creates the collectors and registers them with reg; a nil reg
// keeps them unregistered (tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		obtained: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_tls_certificates_obtained_total",
			Help: "Certificates obtained, by whether it was a renewal.",
		}, []string{"renewal"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_tls_certificate_failures_total",
			Help: "Failed certificate orders, by whether it was a renewal.",
		}, []string{"renewal"}),
		onDemand: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_tls_on_demand_decisions_total",
			Help: "On-demand issuance decisions, by result (allowed, denied).",
		}, []string{"result"}),
		expiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "outpost_tls_certificate_expiry_timestamp_seconds",
			Help: "Expiry (Unix time) of the newest certificate obtained for each name.",
		}, []string{"name"}),
		pushFails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_tls_dns01_push_failures_total",
			Help: "Failed pushes of dns-01 challenge records to peer nodes, by peer.",
		}, []string{"peer"}),
	}
	if reg != nil {
		reg.MustRegister(m.obtained, m.failed, m.onDemand, m.expiry, m.pushFails)
	}
	return m
}
