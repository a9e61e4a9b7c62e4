package gateway

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/outpost-edge/outpost/internal/httperr"
)

// AdminHandler serves the key endpoints, to be mounted by the admin API
// behind its own authentication:
//
//	POST   /v1/keys       create: body KeySpec → 201 {"key": "opk_…", "record": KeyRecord}
//	GET    /v1/keys       list:   200 {"keys": [KeyRecord…]}
//	GET    /v1/keys/{id}  one:    200 KeyRecord
//	DELETE /v1/keys/{id}  revoke: 200 KeyRecord (with revoked_at)
//
// The plaintext key appears only in the creation response.
func AdminHandler(s *KeyStore, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "gateway.admin")
	if s == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			httperr.Write(w, r, http.StatusServiceUnavailable, "no_key_store", "no API key store is configured on this node")
		})
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/keys", func(w http.ResponseWriter, r *http.Request) {
		var spec KeySpec
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&spec); err != nil {
			httperr.WriteBodyError(w, r, "body must be a JSON key spec: "+err.Error(), err)
			return
		}
		key, rec, err := s.Create(spec)
		var se SpecError
		switch {
		case errors.Is(err, ErrKeyExists):
			httperr.Write(w, r, http.StatusConflict, "key_exists", "a key with this id already exists")
			return
		case errors.As(err, &se):
			httperr.Write(w, r, http.StatusBadRequest, "bad_request", se.Error())
			return
		case err != nil:
			log.Error("create api key", "err", err)
			httperr.Write(w, r, http.StatusInternalServerError, "internal", "could not store the key")
			return
		}
		log.Info("api key created", "key_id", rec.ID, "owner", rec.Owner)
		writeJSON(w, http.StatusCreated, struct {
			Key    string    `json:"key"`
			Record KeyRecord `json:"record"`
		}{key, rec})
	})
	// Replication from another node's admin API (see KeyStore.Import).
	mux.HandleFunc("POST /v1/keys/import", func(w http.ResponseWriter, r *http.Request) {
		var rec KeyRecord
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rec); err != nil {
			httperr.WriteBodyError(w, r, "body must be a JSON key record: "+err.Error(), err)
			return
		}
		got, err := s.Import(rec)
		var se SpecError
		switch {
		case errors.Is(err, ErrKeyExists):
			httperr.Write(w, r, http.StatusConflict, "key_exists", "a different key with this id already exists")
			return
		case errors.As(err, &se):
			httperr.Write(w, r, http.StatusBadRequest, "bad_request", se.Error())
			return
		case err != nil:
			log.Error("import api key", "err", err)
			httperr.Write(w, r, http.StatusInternalServerError, "internal", "could not store the key")
			return
		}
		log.Info("api key imported", "key_id", got.ID, "revoked", got.RevokedAt != nil)
		writeJSON(w, http.StatusOK, got)
	})
	mux.HandleFunc("GET /v1/keys", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, struct {
			Keys []KeyRecord `json:"keys"`
		}{s.List()})
	})
	mux.HandleFunc("GET /v1/keys/{id}", func(w http.ResponseWriter, r *http.Request) {
		rec, ok := s.Get(r.PathValue("id"))
		if !ok {
			httperr.Write(w, r, http.StatusNotFound, "not_found", "no such key")
			return
		}
		writeJSON(w, http.StatusOK, rec)
	})
	mux.HandleFunc("DELETE /v1/keys/{id}", func(w http.ResponseWriter, r *http.Request) {
		rec, err := s.Revoke(r.PathValue("id"))
		switch {
		case errors.Is(err, ErrKeyNotFound):
			httperr.Write(w, r, http.StatusNotFound, "not_found", "no such key")
			return
		case err != nil:
			log.Error("revoke api key", "key_id", r.PathValue("id"), "err", err)
			httperr.Write(w, r, http.StatusInternalServerError, "internal", "could not revoke the key")
			return
		}
		log.Info("api key revoked", "key_id", rec.ID)
		writeJSON(w, http.StatusOK, rec)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern == "" {
			// Keep the JSON error shape for unknown paths and methods.
			if r.URL.Path == "/v1/keys" || strings.HasPrefix(r.URL.Path, "/v1/keys/") {
				httperr.Write(w, r, http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed")
				return
			}
			httperr.Write(w, r, http.StatusNotFound, "not_found", "no such endpoint")
			return
		}
		mux.ServeHTTP(w, r) // sets the {id} path value
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
