package admin

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/outpost-edge/outpost/cdn"
	"github.com/outpost-edge/outpost/internal/cluster"
	"github.com/outpost-edge/outpost/internal/httperr"
)

// PurgeTarget is a cache this admin API purges directly.
type PurgeTarget struct {
	Node  string
	Cache *cdn.Cache
}

// NodePurge is one node's answer to a purge.
type NodePurge struct {
	Purged  int    `json:"purged"`
	Applied bool   `json:"applied"`
	Error   string `json:"error,omitempty"`
	Queued  bool   `json:"queued,omitempty"` // will be retried until the node takes it
}

// PurgeResponse is the body of POST /v1/purge.
type PurgeResponse struct {
	Purged int                  `json:"purged"` // total over the nodes that answered
	Nodes  map[string]NodePurge `json:"nodes"`
}

// PurgeHandler serves POST /v1/purge: it purges every local cache, then
// (unless the request itself came from a peer) fans the same request out
// to the other nodes' admin APIs and reports per node which applied it.
func PurgeHandler(local []PurgeTarget, fan *cluster.Fanout) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req cdn.PurgeRequest
		if err := ReadJSON(w, r, &req); err != nil {
			httperr.WriteBodyError(w, r, err.Error(), err)
			return
		}
		if len(req.URLs) == 0 && len(req.Prefixes) == 0 && len(req.Tags) == 0 && !req.All {
			httperr.Write(w, r, http.StatusBadRequest, "bad_request", `say what to purge: "urls", "prefixes", "tags" or "all"`)
			return
		}
		for _, list := range [][]string{req.URLs, req.Prefixes} {
			for _, raw := range list {
				if u, err := url.Parse(raw); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
					httperr.Write(w, r, http.StatusBadRequest, "bad_request",
						fmt.Sprintf("%q is not an absolute URL (want http://host/path)", raw))
					return
				}
			}
		}
		if err := req.Check(); err != nil {
			httperr.Write(w, r, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
		resp := PurgeResponse{Nodes: map[string]NodePurge{}}
		for _, t := range local {
			res, err := t.Cache.Purge(r.Context(), req)
			np := NodePurge{Purged: res.Purged, Applied: err == nil}
			if err != nil {
				np.Error = err.Error()
			}
			resp.Purged += res.Purged
			resp.Nodes[t.Node] = np
		}
		if fan != nil && r.Header.Get(cluster.FanoutHeader) == "" {
			body, _ := json.Marshal(req)
			for name, res := range fan.Send(r.Context(), "/v1/purge", body) {
				np := NodePurge{Error: res.Error, Queued: res.Queued}
				var pr PurgeResponse
				if res.Error == "" && json.NewDecoder(bytes.NewReader(res.Result)).Decode(&pr) == nil {
					np.Purged, np.Applied = pr.Purged, true
					resp.Purged += pr.Purged
					// The peer took the request; whether its cache applied
					// it is in its own answer (207 when it did not). A
					// pushed purge touches only the peer's own caches.
					for _, own := range pr.Nodes {
						if !own.Applied {
							np.Applied, np.Error = false, cmp.Or(own.Error, "the peer did not apply the purge")
						}
					}
				}
				resp.Nodes[name] = np
			}
		}
		status := http.StatusOK
		for _, np := range resp.Nodes {
			if !np.Applied {
				status = http.StatusMultiStatus
			}
		}
		WriteJSON(w, status, resp)
	})
}
