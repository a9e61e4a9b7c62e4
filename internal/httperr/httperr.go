// Package httperr writes the one JSON error shape Outpost uses everywhere
// (edge, gateway, admin API):
//
//	{"error": {"status": 404, "code": "no_route", "message": "no route for host/path", "request_id": "..."}}
//
// Client-facing messages never carry internal detail; log that separately.
package httperr

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/outpost-edge/outpost/internal/reqinfo"
)

// Body is the JSON error document.
type Body struct {
	Error Detail `json:"error"`
}

// Detail describes one error.
type Detail struct {
	Status    int      `json:"status"`
	Code      string   `json:"code"`
	Message   string   `json:"message"`
	RequestID string   `json:"request_id,omitempty"`
	Details   []string `json:"details,omitempty"`
}

// Write sends a JSON error. code is a stable, machine-readable snake_case
// word ("no_route", "unauthorized", "rate_limited", "bad_gateway", ...).
func Write(w http.ResponseWriter, r *http.Request, status int, code, msg string, details ...string) {
	d := Detail{Status: status, Code: code, Message: msg, Details: details}
	if r != nil {
		if info := reqinfo.From(r.Context()); info != nil {
			d.RequestID = info.ID
		}
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	w.WriteHeader(status)
	if r != nil && r.Method == http.MethodHead {
		return
	}
	_ = json.NewEncoder(w).Encode(Body{Error: d})
}

// WriteBodyError answers a request whose body could not be read or
// decoded: 413 when it was over the http.MaxBytesReader limit, 400
// otherwise.
func WriteBodyError(w http.ResponseWriter, r *http.Request, msg string, err error) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		Write(w, r, http.StatusRequestEntityTooLarge, "body_too_large",
			fmt.Sprintf("request body over %d bytes", mbe.Limit))
		return
	}
	Write(w, r, http.StatusBadRequest, "bad_request", msg)
}
