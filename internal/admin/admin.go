// Package admin is the node's operator API on its own listener: health,
// readiness, metrics, status, reload, and the endpoints other packages
// mount (purge, pools, DNS records, keys, certificates). Everything but
// /healthz and /readyz needs the bearer token, compared in constant time.
package admin

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/internal/configerr"
	"github.com/outpost-edge/outpost/internal/httperr"
	"github.com/outpost-edge/outpost/internal/reqinfo"
	"github.com/outpost-edge/outpost/internal/units"
)

// Config is the admin API (YAML section `admin:`).
type Config struct {
	// Listen address. Default "127.0.0.1:9090". A non-loopback address
	// requires a token.
	Listen string `yaml:"listen"`
	// Token is the bearer token; use ${ENV_VAR} to keep it out of the file.
	// Empty disables auth, which is allowed on loopback only.
	Token string `yaml:"token"`
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:9090"
	}
}

// Validate checks the section.
func (c *Config) Validate() error {
	var l configerr.List
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil || !units.ValidHostPort(c.Listen) {
		l.Addf("listen", "want host:port, got %q", c.Listen)
	} else if c.Token == "" && !isLoopback(host) {
		l.Addf("listen", "%q is not a loopback address, so admin.token is required", c.Listen)
	}
	if c.Token != "" && len(c.Token) < 16 {
		l.Addf("token", "must be at least 16 characters")
	}
	if strings.ContainsFunc(c.Token, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		// A bearer token can't carry these (and a trailing newline from a
		// secret file would make every request a 401).
		l.Addf("token", "must not contain spaces, line breaks or control characters (a trailing newline in the environment variable?)")
	}
	return l.Err()
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Server is the admin HTTP handler. Build it, Handle the endpoints, then
// serve it on a listener.
type Server struct {
	mux   *http.ServeMux
	token [32]byte // sha256 of the token; hashing makes the compare length-independent
	open  bool     // no token configured (loopback only)
	log   *slog.Logger
}

// New returns an admin server checking token (empty = no auth).
func New(token string, log *slog.Logger) *Server {
	s := &Server{mux: http.NewServeMux(), log: log, open: token == ""}
	s.token = sha256.Sum256([]byte(token))
	return s
}

// Handle registers h for a Go 1.22 mux pattern ("POST /v1/reload"),
// behind token auth.
func (s *Server) Handle(pattern string, h http.Handler) {
	s.mux.Handle(pattern, s.auth(h))
}

// HandlePublic registers h without auth (health and readiness only).
func (s *Server) HandlePublic(pattern string, h http.Handler) {
	s.mux.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		closeUnreadBody(w, r)
		h.ServeHTTP(w, r)
	}))
}

// closeUnreadBody makes the answer to a request whose body will not be
// read close the connection. Otherwise Go's server drains the body before
// it writes the answer, with no deadline (the admin server has none past
// the headers), so anyone who announces a body and never sends it holds
// a goroutine and a connection for good.
func closeUnreadBody(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength != 0 {
		w.Header().Set("Connection", "close")
	}
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	info := &reqinfo.Info{ID: newRequestID()}
	w.Header().Set("X-Request-ID", info.ID)
	r = r.WithContext(reqinfo.With(r.Context(), info))
	h, pattern := s.mux.Handler(r)
	if pattern == "" {
		// Unknown path or wrong method: answer in our JSON shape, after
		// auth so the API surface isn't probeable anonymously.
		if !s.authorized(r) {
			s.unauthorized(w, r)
			return
		}
		h.ServeHTTP(&statusRewriter{ResponseWriter: w, r: r}, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) authorized(r *http.Request) bool {
	if s.open {
		return localTool(r)
	}
	// Authorization is a singleton field; two copies (one perhaps added by
	// a proxy) are ambiguous, so neither counts.
	fields := r.Header.Values("Authorization")
	if len(fields) != 1 {
		return false
	}
	// RFC 9110 §11.1: the scheme is case-insensitive.
	scheme, got, ok := strings.Cut(fields[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(got)))
	return subtle.ConstantTimeCompare(sum[:], s.token[:]) == 1
}

// localTool reports whether a request to a tokenless (loopback-only) API
// comes from a local tool rather than a web browser: a page on any site
// can POST to 127.0.0.1 (CSRF), or reach it under its own name after a DNS
// rebind. Browsers always say so: Origin on cross-origin POSTs, Fetch
// Metadata on everything, and the page's host name in Host.
func localTool(r *http.Request) bool {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if !isLoopback(strings.TrimSuffix(strings.Trim(host, "[]"), ".")) {
		return false
	}
	if r.Header.Get("Origin") != "" {
		return false
	}
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "none":
		return true
	}
	return false
}

func (s *Server) auth(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(r) {
			s.unauthorized(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (s *Server) unauthorized(w http.ResponseWriter, r *http.Request) {
	closeUnreadBody(w, r)
	if s.open {
		httperr.Write(w, r, http.StatusForbidden, "forbidden",
			"without admin.token the admin API only answers local tools addressing it by a loopback host, not browsers")
		return
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="outpost-admin"`)
	httperr.Write(w, r, http.StatusUnauthorized, "unauthorized", "a valid bearer token is required")
}

// statusRewriter turns the mux's plain-text 404/405 into our JSON shape.
type statusRewriter struct {
	http.ResponseWriter
	r       *http.Request
	written bool
}

func (s *statusRewriter) WriteHeader(code int) {
	if code == http.StatusNotFound || code == http.StatusMethodNotAllowed {
		s.written = true
		msg := "no such endpoint"
		c := "not_found"
		if code == http.StatusMethodNotAllowed {
			msg, c = "method not allowed on this endpoint", "method_not_allowed"
		}
		s.ResponseWriter.Header().Del("X-Content-Type-Options")
		httperr.Write(s.ResponseWriter, s.r, code, c, msg)
		return
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRewriter) Write(b []byte) (int, error) {
	if s.written {
		return len(b), nil
	}
	return s.ResponseWriter.Write(b)
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// WriteJSON writes v as a JSON document with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// ReadJSON decodes a request body of at most 1 MiB into v, strictly.
func ReadJSON(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("invalid JSON body: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("invalid JSON body: more after the JSON document")
	}
	return nil
}

// ReloadFunc re-reads and applies the config, returning validation errors.
type ReloadFunc func() (generation uint64, err error)

// ReloadHandler serves POST /v1/reload.
func ReloadHandler(reload ReloadFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gen, err := reload()
		var partial *configerr.Partial
		if errors.As(err, &partial) {
			httperr.Write(w, r, http.StatusInternalServerError, "reload_incomplete",
				fmt.Sprintf("the new config is in force as generation %d, except for the part that failed; fix it and reload", partial.Generation),
				partial.Err.Error())
			return
		}
		if err != nil {
			var details []string
			for _, fe := range configerr.Fields(err) {
				details = append(details, fe.Error())
			}
			if len(details) == 0 {
				details = []string{err.Error()}
			}
			httperr.Write(w, r, http.StatusUnprocessableEntity, "invalid_config",
				"the new config was rejected; the old one stays in force", details...)
			return
		}
		WriteJSON(w, http.StatusOK, map[string]any{"reloaded": true, "generation": gen})
	})
}

// StatusFunc reports the node's status document.
type StatusFunc func() any

// Status is the common part of GET /v1/status.
type Status struct {
	Node       string         `json:"node"`
	Version    string         `json:"version"`
	StartedAt  time.Time      `json:"started_at"`
	Uptime     string         `json:"uptime"`
	UptimeSecs float64        `json:"uptime_seconds"`
	Generation uint64         `json:"config_generation"`
	Extra      map[string]any `json:"extra,omitempty"`
}

// JSONHandler serves the value f returns.
func JSONHandler(f StatusFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, f())
	})
}

// ErrNoToken is returned when the admin API would listen beyond loopback
// without a token.
var ErrNoToken = errors.New("admin: refusing to listen on a non-loopback address without a token")

// CheckListener enforces the loopback rule on the address actually bound:
// a name ("localhost") is judged by what it resolved to, so a hosts file
// that maps it elsewhere cannot open a tokenless API beyond the machine.
func CheckListener(ln net.Listener, token string) error {
	host, _, err := net.SplitHostPort(ln.Addr().String())
	if token != "" || err == nil && isLoopback(host) {
		return nil
	}
	return fmt.Errorf("%w (bound %s)", ErrNoToken, ln.Addr())
}

// CheckListen enforces the loopback rule at start, whatever validation said.
func CheckListen(addr, token string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if token == "" && !isLoopback(host) {
		return ErrNoToken
	}
	return nil
}
