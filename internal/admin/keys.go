package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/outpost-edge/outpost/gateway"
	"github.com/outpost-edge/outpost/internal/cluster"
)

// ReplicateKeys wraps the API key endpoints so that a key created or
// revoked through this node reaches every peer (POST /v1/keys/import, with
// the durable retry queue): a revocation must hold cluster-wide, not only
// on the node that was asked. Requests that came from a peer are not sent
// on again.
func ReplicateKeys(h http.Handler, fan *cluster.Fanout, log *slog.Logger) http.Handler {
	if fan == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		write := r.Method == http.MethodPost && r.URL.Path == "/v1/keys" ||
			r.Method == http.MethodDelete && len(r.URL.Path) > len("/v1/keys/")
		if !write || r.Header.Get(cluster.FanoutHeader) != "" {
			h.ServeHTTP(w, r)
			return
		}
		rec := &bufferedResponse{header: http.Header{}}
		h.ServeHTTP(rec, r)
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.status)
		_, _ = w.Write(rec.body.Bytes())
		if rec.status/100 != 2 {
			return
		}
		// Creation answers {"key", "record"}; revocation answers the record.
		var created struct {
			Record *gateway.KeyRecord `json:"record"`
		}
		var record gateway.KeyRecord
		if json.Unmarshal(rec.body.Bytes(), &created) == nil && created.Record != nil {
			record = *created.Record
		} else if json.Unmarshal(rec.body.Bytes(), &record) != nil || record.ID == "" {
			return
		}
		body, _ := json.Marshal(record) // the hash only: the plaintext key never leaves this node
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
		defer cancel()
		for peer, res := range fan.Send(ctx, "/v1/keys/import", body) {
			if res.Error != "" && log != nil {
				log.Warn("api key not yet replicated", "peer", peer, "key_id", record.ID, "error", res.Error, "queued", res.Queued)
			}
		}
	})
}

// bufferedResponse holds a small JSON response until it is known whether
// it must be replicated.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }
func (b *bufferedResponse) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}
func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}
