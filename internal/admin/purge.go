package admin

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
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

// Relay carries a purge to the other nodes and reports each one's answer:
// a *cluster.Fanout (their admin APIs) or a *cluster.PurgeStream (Redis).
type Relay interface {
	Send(ctx context.Context, path string, body []byte) map[string]cluster.Result
}

// PurgeHandler serves POST /v1/purge: it purges every local cache, then
// (unless the request itself came from a peer) relays the same request to
// the other nodes and reports per node which applied it. relay may be nil.
func PurgeHandler(local []PurgeTarget, relay Relay) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req cdn.PurgeRequest
		if err := ReadJSON(w, r, &req); err != nil {
			httperr.WriteBodyError(w, r, err.Error(), err)
			return
		}
		if err := checkPurge(req); err != nil {
			httperr.Write(w, r, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
		resp := purgeLocal(r.Context(), local, req)
		if relay != nil && r.Header.Get(cluster.FanoutHeader) == "" {
			body, _ := json.Marshal(req)
			for name, res := range relay.Send(r.Context(), cluster.PurgePath, body) {
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

// purgeLocal applies req to every local cache.
func purgeLocal(ctx context.Context, local []PurgeTarget, req cdn.PurgeRequest) PurgeResponse {
	resp := PurgeResponse{Nodes: map[string]NodePurge{}}
	for _, t := range local {
		res, err := t.Cache.Purge(ctx, req)
		np := NodePurge{Purged: res.Purged, Applied: err == nil}
		if err != nil {
			np.Error = err.Error()
		}
		resp.Purged += res.Purged
		resp.Nodes[t.Node] = np
	}
	return resp
}

// ApplyPurge applies purges read from the Redis purge stream to local's
// caches, and answers what this node's admin API would answer a peer's
// pushed purge. A body that is not a purge the admin API would take is
// refused with the same message.
func ApplyPurge(local []PurgeTarget) cluster.StreamApply {
	return func(ctx context.Context, body []byte) (json.RawMessage, error) {
		var req cdn.PurgeRequest
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return nil, fmt.Errorf("not a purge: %w", err)
		}
		if err := checkPurge(req); err != nil {
			return nil, err
		}
		return json.Marshal(purgeLocal(ctx, local, req))
	}
}

// checkPurge refuses a purge that names nothing, a URL or prefix that is
// not absolute, and what the cache cannot key.
func checkPurge(req cdn.PurgeRequest) error {
	if len(req.URLs) == 0 && len(req.Prefixes) == 0 && len(req.Tags) == 0 && !req.All {
		return errors.New(`say what to purge: "urls", "prefixes", "tags" or "all"`)
	}
	for _, list := range [][]string{req.URLs, req.Prefixes} {
		for _, raw := range list {
			if u, err := url.Parse(raw); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fmt.Errorf("%q is not an absolute URL (want http://host/path)", raw)
			}
		}
	}
	return req.Check()
}
