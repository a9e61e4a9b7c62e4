package lb

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/outpost-edge/outpost/internal/httperr"
)

// AdminHandler serves the pool admin API. pools returns the current pools
// by name (it is called per request, so it sees reloads). Mount it for the
// paths "/v1/pools" and "/v1/pools/" behind the admin authentication:
//
//	GET  /v1/pools                               all pools and backends
//	GET  /v1/pools/{pool}                        one pool
//	POST /v1/pools/{pool}/backends/{id}/drain    stop new requests to a backend
//	POST /v1/pools/{pool}/backends/{id}/enable   undo drain
func AdminHandler(pools func() map[string]*Pool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/pools", func(w http.ResponseWriter, r *http.Request) {
		ps := sortedPools(pools())
		out := struct {
			Pools []PoolStatus `json:"pools"`
		}{Pools: make([]PoolStatus, 0, len(ps))}
		for _, p := range ps {
			out.Pools = append(out.Pools, p.Status())
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /v1/pools/{pool}", func(w http.ResponseWriter, r *http.Request) {
		p := pools()[r.PathValue("pool")]
		if p == nil {
			httperr.Write(w, r, http.StatusNotFound, "unknown_pool", "no such pool")
			return
		}
		writeJSON(w, http.StatusOK, p.Status())
	})
	backendAction := func(drain bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			p := pools()[r.PathValue("pool")]
			if p == nil {
				httperr.Write(w, r, http.StatusNotFound, "unknown_pool", "no such pool")
				return
			}
			id := r.PathValue("id")
			var err error
			if drain {
				err = p.Drain(id)
			} else {
				err = p.Enable(id)
			}
			if errors.Is(err, ErrUnknownBackend) {
				httperr.Write(w, r, http.StatusNotFound, "unknown_backend", "no such backend in pool")
				return
			}
			for _, b := range p.Status().Backends {
				if b.ID == id {
					writeJSON(w, http.StatusOK, b)
					return
				}
			}
			// Removed by a reload between the two calls.
			httperr.Write(w, r, http.StatusNotFound, "unknown_backend", "no such backend in pool")
		}
	}
	mux.HandleFunc("POST /v1/pools/{pool}/backends/{id}/drain", backendAction(true))
	mux.HandleFunc("POST /v1/pools/{pool}/backends/{id}/enable", backendAction(false))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httperr.Write(w, r, http.StatusNotFound, "not_found", "unknown admin path")
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
