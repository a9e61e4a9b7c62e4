package demo

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/outpost-edge/outpost/gateway"
	"github.com/outpost-edge/outpost/internal/admin"
	"github.com/outpost-edge/outpost/internal/buildinfo"
	"github.com/outpost-edge/outpost/internal/httperr"
	"github.com/outpost-edge/outpost/lb"
)

// adminServer is the one admin API for the whole demo network: a purge,
// DNS record or key change applies on all three edges.
func (d *Demo) adminServer() *admin.Server {
	a := admin.New(d.Token, d.log.With("component", "admin"))
	a.HandlePublic("GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		admin.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}))
	a.HandlePublic("GET /readyz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		admin.WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	}))
	a.Handle("GET /metrics", promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{}))
	a.Handle("GET /v1/status", admin.JSONHandler(d.status))
	a.Handle("POST /v1/reload", admin.ReloadHandler(d.Reload))

	var targets []admin.PurgeTarget
	for _, n := range d.nodes {
		if c := n.Cache(); c != nil {
			targets = append(targets, admin.PurgeTarget{Node: n.Name(), Cache: c})
		}
	}
	a.Handle("POST /v1/purge", admin.PurgeHandler(targets, nil))

	// Pools: each edge balances over the same origins with its own health
	// view; ?node= picks one (default eu). Drain and enable apply to all.
	a.Handle("GET /v1/pools", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := d.Node(r.URL.Query().Get("node"))
		if n == nil {
			n = d.nodes[0]
		}
		lb.AdminHandler(n.Pools).ServeHTTP(w, r)
	}))
	a.Handle("GET /v1/pools/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lb.AdminHandler(d.nodes[0].Pools).ServeHTTP(w, r)
	}))
	a.Handle("POST /v1/pools/", d.everyNode(func(i int) http.Handler { return lb.AdminHandler(d.nodes[i].Pools) }))

	a.Handle("/v1/dns/records", d.everyNode(func(i int) http.Handler { return d.nodes[i].DNS().AdminHandler() }))

	// The three edges share one internal CA and the same names.
	if m := d.nodes[0].TLSManager(); m != nil {
		a.Handle("GET /v1/certificates", m.AdminHandler())
	}

	// One key store is shared by the three gateways (one config).
	d.keys.SetReserved(d.nodes[0].HasConfigKey)
	kh := gateway.AdminHandler(d.keys, d.log)
	a.Handle("/v1/keys", kh)
	a.Handle("/v1/keys/", kh)
	return a
}

// everyNode sends a write to each node's handler (reads go to the first)
// and answers with the first node's response, or the first failure.
func (d *Demo) everyNode(h func(i int) http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			h(0).ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			httperr.Write(w, r, http.StatusRequestEntityTooLarge, "too_large", "request body too large")
			return
		}
		var first *httptest.ResponseRecorder
		for i := range d.nodes {
			rec := httptest.NewRecorder()
			r2 := r.Clone(r.Context())
			r2.Body = io.NopCloser(bytes.NewReader(body))
			h(i).ServeHTTP(rec, r2)
			if first == nil || (rec.Code >= 300 && first.Code < 300) {
				first = rec
			}
		}
		for k, v := range first.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(first.Code)
		w.Write(first.Body.Bytes())
	})
}

func (d *Demo) status() any {
	nodes := map[string]any{}
	for _, n := range d.nodes {
		nodes[n.Name()] = n.Status()
	}
	up := time.Since(d.started)
	return map[string]any{
		"node":              "demo",
		"version":           buildinfo.Version(),
		"started_at":        d.started.UTC(),
		"uptime":            up.Round(time.Second).String(),
		"uptime_seconds":    up.Seconds(),
		"config_generation": d.nodes[0].Generation(),
		"data_dir":          d.DataDir,
		"nodes":             nodes,
	}
}
