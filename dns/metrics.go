package dns

import (
	"errors"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the DNS server's Prometheus metrics. Create them once with
// NewMetrics and pass them to New; they survive reloads.
type Metrics struct {
	queries  *prometheus.CounterVec
	steered  *prometheus.CounterVec
	healthy  *prometheus.GaugeVec
	rrl      *prometheus.CounterVec
	failOpen prometheus.Counter
	xfr      *prometheus.CounterVec
	notify   *prometheus.CounterVec

	// byType caches the query counters of common types and rcodes so the
	// answer path does no label hashing.
	byType           map[uint16]*[rcodeSlots]prometheus.Counter
	other            *[rcodeSlots]prometheus.Counter
	rrlDrop, rrlSlip prometheus.Counter
}

// rcodeSlots covers rcodes 0..15 plus BADVERS (16) in the last slot.
const rcodeSlots = 17

var countedTypes = []uint16{
	mdns.TypeA, mdns.TypeAAAA, mdns.TypeNS, mdns.TypeSOA, mdns.TypeCNAME, mdns.TypeMX,
	mdns.TypeTXT, mdns.TypeSRV, mdns.TypeCAA, mdns.TypePTR, mdns.TypeANY, mdns.TypeAXFR,
	mdns.TypeIXFR, mdns.TypeDS, mdns.TypeDNSKEY, mdns.TypeHTTPS, mdns.TypeSVCB,
}

// NewMetrics registers the DNS metrics with reg (a private registry when
// reg is nil).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &Metrics{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "outpost", Subsystem: "dns", Name: "queries_total",
			Help: "DNS queries answered, by query type and response code (RRL drops are counted in rrl_actions_total).",
		}, []string{"qtype", "rcode"}),
		steered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "outpost", Subsystem: "dns", Name: "steered_answers_total",
			Help: "Node addresses handed out in steered answers, by node.",
		}, []string{"node"}),
		healthy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "outpost", Subsystem: "dns", Name: "node_healthy",
			Help: "Edge node health as seen by this node's probes (1 healthy, 0 not).",
		}, []string{"node"}),
		rrl: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "outpost", Subsystem: "dns", Name: "rrl_actions_total",
			Help: "Responses limited by response rate limiting, by action (drop, slip).",
		}, []string{"action"}),
		failOpen: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "outpost", Subsystem: "dns", Name: "steering_fail_open_total",
			Help: "Steered answers given with every node because none was healthy.",
		}),
		xfr: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "outpost", Subsystem: "dns", Name: "transfers_total",
			Help: "Zone transfer requests, by result (ok, refused, error).",
		}, []string{"result"}),
		notify: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "outpost", Subsystem: "dns", Name: "notify_sent_total",
			Help: "NOTIFY messages sent, by result (ok, error).",
		}, []string{"result"}),
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.queries, m.steered, m.healthy, m.rrl, m.failOpen, m.xfr, m.notify} {
		errs = append(errs, reg.Register(c))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	m.byType = make(map[uint16]*[rcodeSlots]prometheus.Counter, len(countedTypes))
	for _, t := range countedTypes {
		m.byType[t] = m.rcodeCounters(mdns.TypeToString[t])
	}
	m.other = m.rcodeCounters("other")
	m.rrlDrop = m.rrl.WithLabelValues("drop")
	m.rrlSlip = m.rrl.WithLabelValues("slip")
	return m, nil
}

func (m *Metrics) rcodeCounters(qtype string) *[rcodeSlots]prometheus.Counter {
	var a [rcodeSlots]prometheus.Counter
	for rc := 0; rc < rcodeSlots; rc++ {
		a[rc] = m.queries.WithLabelValues(qtype, rcodeName(rc))
	}
	return &a
}

func rcodeName(rc int) string {
	if rc == mdns.RcodeBadVers {
		return "BADVERS"
	}
	if s, ok := mdns.RcodeToString[rc]; ok {
		return s
	}
	return "RCODE" + string(rune('0'+rc/10)) + string(rune('0'+rc%10))
}

// query counts one answered query.
func (m *Metrics) query(qtype uint16, rcode int) { m.counter(qtype, rcode).Inc() }

// counter is the queries_total counter of a qtype and rcode.
func (m *Metrics) counter(qtype uint16, rcode int) prometheus.Counter {
	a := m.byType[qtype]
	if a == nil {
		a = m.other
	}
	if rcode < 0 || rcode >= rcodeSlots {
		rcode = mdns.RcodeServerFailure
	}
	return a[rcode]
}
