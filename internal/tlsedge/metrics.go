package tlsedge

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the TLS edge's Prometheus collectors. Create them once per
// process with NewMetrics and hand them to every Manager (Options.Metrics),
// so rebuilding a Manager never registers twice.
type Metrics struct {
	obtained  *prometheus.CounterVec
	failed    *prometheus.CounterVec
	onDemand  *prometheus.CounterVec
	expiry    *expiryCollector
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
		expiry: &expiryCollector{desc: prometheus.NewDesc("outpost_tls_certificate_expiry_timestamp_seconds",
			"Expiry (Unix time) of the certificate serving each managed name.", []string{"name"}, nil)},
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

// expiryCollector reports certificate expiry at scrape time from the
// current Manager, so renewals show without event bookkeeping. The
// Manager built last (on start or rebuild) is the one reported.
type expiryCollector struct {
	desc *prometheus.Desc
	src  atomic.Pointer[func() []CertInfo]
}

func (c *expiryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *expiryCollector) Collect(ch chan<- prometheus.Metric) {
	src := c.src.Load()
	if src == nil {
		return
	}
	for _, ci := range (*src)() {
		if !ci.NotAfter.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(ci.NotAfter.Unix()), ci.Name)
		}
	}
}
