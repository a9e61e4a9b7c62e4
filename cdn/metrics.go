package cdn

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are registered once per Cache; handlers rebuilt on reload share them.
type metrics struct {
	requests *prometheus.CounterVec // by result: hit, miss, stale, revalidated, bypass, pass, error
	// byResult holds the requests children resolved once, so the hit path
	// does not hash label values.
	byResult  map[string]prometheus.Counter
	servedB   prometheus.Counter     // body bytes served from the store
	fetches   *prometheus.CounterVec // origin fetches made by the cache, by kind
	coalesced prometheus.Counter     // requests that shared another request's fetch
	evictions prometheus.Counter
	evictedB  prometheus.Counter
	ioErrors  *prometheus.CounterVec // by op: create, write, commit, read
	purged    *prometheus.CounterVec // by kind: url, prefix, tag, all
	compress  *prometheus.CounterVec // renditions stored, by encoding
}

func newMetrics(reg prometheus.Registerer, objects, bytes func() float64) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "outpost", Subsystem: "cache", Name: "requests_total",
			Help: "Requests through the cache by result (hit, miss, stale, revalidated, bypass, pass, error).",
		}, []string{"result"}),
		servedB: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "outpost", Subsystem: "cache", Name: "served_bytes_total",
			Help: "Body bytes served from the cache store.",
		}),
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "outpost", Subsystem: "cache", Name: "origin_fetches_total",
			Help: "Fetches the cache made to the upstream, by kind (fill, revalidate, background).",
		}, []string{"kind"}),
		coalesced: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "outpost", Subsystem: "cache", Name: "coalesced_total",
			Help: "Requests served from another request's concurrent fetch.",
		}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "outpost", Subsystem: "cache", Name: "evictions_total",
			Help: "Entries evicted for space.",
		}),
		evictedB: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "outpost", Subsystem: "cache", Name: "evicted_bytes_total",
			Help: "Body bytes evicted for space.",
		}),
		ioErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "outpost", Subsystem: "cache", Name: "io_errors_total",
			Help: "Store I/O errors by operation; the response was served uncached.",
		}, []string{"op"}),
		purged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "outpost", Subsystem: "cache", Name: "purged_entries_total",
			Help: "Entries purged, by purge kind.",
		}, []string{"kind"}),
		compress: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "outpost", Subsystem: "cache", Name: "compressed_renditions_total",
			Help: "Compressed renditions stored, by encoding.",
		}, []string{"encoding"}),
	}
	m.byResult = make(map[string]prometheus.Counter, 6)
	for _, r := range []string{resHit, resMiss, resStale, resRevalidated, resBypass, "PASS"} {
		m.byResult[r] = m.requests.WithLabelValues(strings.ToLower(r))
	}
	cs := []prometheus.Collector{m.requests, m.servedB, m.fetches, m.coalesced, m.evictions, m.evictedB, m.ioErrors, m.purged, m.compress,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "outpost", Subsystem: "cache", Name: "objects",
			Help: "Entries in the store.",
		}, objects),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "outpost", Subsystem: "cache", Name: "bytes",
			Help: "Body bytes in the store.",
		}, bytes),
	}
	if reg != nil {
		for _, c := range cs {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// result counts one request by its X-Cache word (or PASS).
func (m *metrics) result(xcache string) {
	if c, ok := m.byResult[xcache]; ok {
		c.Inc()
		return
	}
	m.requests.WithLabelValues(strings.ToLower(xcache)).Inc()
}
