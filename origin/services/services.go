// Package services holds the example origin services behind the demo edge
// network, the seed's small Twitter: users (sign up, log in with a JWT the
// gateway accepts, profiles, follows), tweets, a home timeline read through
// a 30 s cache, content-addressed media and notifications, plus a few
// static assets. Everything is under /api/ and /static/, and the gateway
// forwards those paths unchanged.
//
// An App is stateless: all data is in the Store (and the optional session
// store and cache), so any number of Apps sharing them serve the same data.
// The demo runs two Apps in one process on one bbolt file; with the Redis
// store and cache they can run in separate processes.
package services

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/internal/httperr"
	"github.com/outpost-edge/outpost/origin"
	"github.com/outpost-edge/outpost/origin/store"
	"golang.org/x/crypto/bcrypt"
)

// Config is what an App needs. Store, SigningKey and IdentitySecret are
// required; everything else has a default.
type Config struct {
	// Store holds the data; share one between instances.
	Store store.Store
	// SigningKey signs the JWTs issued at login (EdDSA).
	SigningKey ed25519.PrivateKey
	// KeyID is the JWT "kid" header and JWKS key id. Default: the first 16
	// hex digits of the SHA-256 of the public key.
	KeyID string
	// Issuer is the JWT "iss" claim. Default "outpost-demo".
	Issuer string
	// Audience is the JWT "aud" claim (a single string). Default "outpost-api".
	Audience string
	// TokenTTL is the access token lifetime. Default 1h.
	TokenTTL time.Duration
	// RefreshTTL is the refresh session lifetime (with Sessions). Default 30 days.
	RefreshTTL time.Duration
	// IdentitySecret is the HMAC secret shared with the gateway for the
	// signed identity headers.
	IdentitySecret []byte
	// IdentityMaxAge bounds the signed identity's clock skew. Default 60s.
	IdentityMaxAge time.Duration
	// Purger, when set, is called after writes to purge edge-cached
	// responses by surrogate key.
	Purger origin.Purger
	// Cache is the read-through backend for timelines. Default: a memory
	// cache private to this App. Instances that share a Store should share
	// the Cache too (one MemoryCache in one process, or a RedisCache), or
	// an invalidation on one instance leaves the other's copy until its TTL.
	Cache origin.CacheBackend
	// Sessions, when set, makes login also return a refresh token (a
	// server-side session) usable at /api/users/refresh and /logout.
	Sessions origin.SessionStore
	// Instance names this App in the X-Origin-Instance header and /healthz.
	Instance string
	// BcryptCost is the password hashing cost. Default bcrypt.DefaultCost.
	BcryptCost int
	// MaxUpload bounds a media upload in bytes. Default 5 MiB.
	MaxUpload int64
	// Logger; default slog.Default(). A "component" attr is added.
	Logger *slog.Logger
	// Clock; default time.Now.
	Clock func() time.Time
}

// Defaults.
const (
	DefaultIssuer     = "outpost-demo"
	DefaultAudience   = "outpost-api"
	DefaultTokenTTL   = time.Hour
	DefaultRefreshTTL = 30 * 24 * time.Hour
	DefaultMaxUpload  = 5 << 20
	// TimelineTTL is how long a home timeline is served from the cache.
	TimelineTTL = 30 * time.Second
)

// DefaultScopes are granted to every user at login, space-separated as in
// the JWT "scope" claim. The gateway's routes may require any of them.
const DefaultScopes = "profile:read profile:write tweets:read tweets:write timeline:read media:write notifications:read"

// App is one instance of the example services.
type App struct {
	cfg      Config
	store    store.Store
	verifier *origin.Verifier
	cache    *origin.ReadThrough
	log      *slog.Logger
	now      func() time.Time
	pub      ed25519.PublicKey
	kid      string
	jwks     []byte
	statics  map[string]staticAsset
	dummy    []byte // bcrypt hash compared against for unknown users (constant-time login)
	handler  http.Handler
}

// New checks cfg and builds an App.
func New(cfg Config) (*App, error) {
	if cfg.Store == nil {
		return nil, errors.New("services: Store is required")
	}
	if len(cfg.SigningKey) != ed25519.PrivateKeySize {
		return nil, errors.New("services: SigningKey must be an Ed25519 private key")
	}
	if len(cfg.IdentitySecret) < 16 {
		return nil, errors.New("services: IdentitySecret must be at least 16 bytes")
	}
	if cfg.Issuer == "" {
		cfg.Issuer = DefaultIssuer
	}
	if cfg.Audience == "" {
		cfg.Audience = DefaultAudience
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = DefaultTokenTTL
	}
	if cfg.RefreshTTL <= 0 {
		cfg.RefreshTTL = DefaultRefreshTTL
	}
	if cfg.BcryptCost == 0 {
		cfg.BcryptCost = bcrypt.DefaultCost
	}
	if cfg.BcryptCost < bcrypt.MinCost || cfg.BcryptCost > bcrypt.MaxCost {
		return nil, fmt.Errorf("services: BcryptCost %d out of range [%d, %d]", cfg.BcryptCost, bcrypt.MinCost, bcrypt.MaxCost)
	}
	if cfg.MaxUpload <= 0 {
		cfg.MaxUpload = DefaultMaxUpload
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Cache == nil {
		cfg.Cache = origin.NewMemoryCache(0, cfg.Clock)
	}
	pub := cfg.SigningKey.Public().(ed25519.PublicKey)
	if cfg.KeyID == "" {
		sum := sha256.Sum256(pub)
		cfg.KeyID = hex.EncodeToString(sum[:8])
	}
	log := cfg.Logger.With("component", "origin.services")
	if cfg.Instance != "" {
		log = log.With("instance", cfg.Instance)
	}
	a := &App{
		cfg:      cfg,
		store:    cfg.Store,
		verifier: origin.NewVerifier(cfg.IdentitySecret, cfg.IdentityMaxAge, cfg.Clock, cfg.Logger),
		cache:    origin.NewReadThrough(cfg.Cache, origin.ReadThroughOptions{Logger: cfg.Logger, Now: cfg.Clock}),
		log:      log,
		now:      cfg.Clock,
		pub:      pub,
		kid:      cfg.KeyID,
	}
	var err error
	if a.jwks, err = buildJWKS(pub, cfg.KeyID); err != nil {
		return nil, err
	}
	if a.statics, err = buildStatics(); err != nil {
		return nil, err
	}
	if a.dummy, err = bcrypt.GenerateFromPassword([]byte("outpost-no-such-user"), cfg.BcryptCost); err != nil {
		return nil, fmt.Errorf("services: %w", err)
	}
	a.handler = a.routes()
	return a, nil
}

// Handler returns the App's HTTP handler (all of /api/, /static/, /healthz).
func (a *App) Handler() http.Handler { return a.handler }

// PublicKey is the key that verifies the App's JWTs.
func (a *App) PublicKey() ed25519.PublicKey { return a.pub }

// PublicKeyPEM is PublicKey as a PKIX "PUBLIC KEY" PEM block, the form a
// gateway's static key configuration takes.
func (a *App) PublicKeyPEM() string {
	der, err := x509.MarshalPKIXPublicKey(a.pub)
	if err != nil {
		// An Ed25519 key always marshals; keep the signature simple.
		return ""
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// KeyID is the "kid" of the App's JWTs.
func (a *App) KeyID() string { return a.kid }

// JWKS returns the JSON Web Key Set served at /api/users/.well-known/jwks.json.
func (a *App) JWKS() []byte { return append([]byte(nil), a.jwks...) }

func (a *App) routes() http.Handler {
	mux := http.NewServeMux()
	pub := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, a.verifier.Allow(h)) }
	auth := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, a.verifier.Require(h)) }

	mux.HandleFunc("GET /healthz", a.healthz)
	pub("GET /static/media/{file}", a.getMedia)
	pub("GET /static/{file}", a.getStatic)

	pub("POST /api/users/signup", a.signup)
	pub("POST /api/users/login", a.login)
	pub("POST /api/users/refresh", a.refresh)
	pub("POST /api/users/logout", a.logout)
	pub("GET /api/users/.well-known/jwks.json", a.getJWKS)
	auth("GET /api/users/me", a.getMe)
	auth("PATCH /api/users/me", a.updateMe)
	pub("GET /api/users/{name}", a.getProfile)
	pub("GET /api/users/{name}/followers", a.listFollowers)
	pub("GET /api/users/{name}/following", a.listFollowing)
	pub("GET /api/users/{name}/tweets", a.listUserTweets)
	auth("POST /api/users/{name}/follow", a.follow)
	auth("DELETE /api/users/{name}/follow", a.unfollow)

	auth("POST /api/tweets", a.createTweet)
	pub("GET /api/tweets/{id}", a.getTweet)
	auth("DELETE /api/tweets/{id}", a.deleteTweet)

	auth("GET /api/timeline", a.timeline)
	auth("POST /api/media", a.uploadMedia)
	auth("GET /api/notifications", a.notifications)

	return a.instanceHeader(jsonMisses(mux))
}

// jsonMisses answers the mux's own 404 and 405 in the JSON error shape
// (the mux writes plain text), keeping the Allow header of a 405.
func jsonMisses(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		probe := &statusProbe{header: http.Header{}}
		h.ServeHTTP(probe, r)
		switch probe.status {
		case http.StatusMethodNotAllowed:
			w.Header().Set("Allow", probe.header.Get("Allow"))
			httperr.Write(w, r, http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed on this endpoint")
		case http.StatusNotFound, 0:
			httperr.Write(w, r, http.StatusNotFound, "not_found", "no such endpoint")
		default:
			// A redirect (path cleaning): let the mux answer it.
			mux.ServeHTTP(w, r)
		}
	})
}

// statusProbe records what the mux's fallback handler would answer.
type statusProbe struct {
	header http.Header
	status int
}

func (p *statusProbe) Header() http.Header { return p.header }
func (p *statusProbe) Write(b []byte) (int, error) {
	if p.status == 0 {
		p.status = http.StatusOK
	}
	return len(b), nil
}
func (p *statusProbe) WriteHeader(code int) {
	if p.status == 0 {
		p.status = code
	}
}

// instanceHeader names the answering instance, so a client (or the demo
// guide) can watch the load balancer alternate.
func (a *App) instanceHeader(next http.Handler) http.Handler {
	if a.cfg.Instance == "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Origin-Instance", a.cfg.Instance)
		next.ServeHTTP(w, r)
	})
}

func (a *App) healthz(w http.ResponseWriter, r *http.Request) {
	origin.SetCache(w.Header(), origin.NoStore)
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "instance": a.cfg.Instance})
}

// writeJSON sends v with status. Encoding errors cannot be reported to the
// client once the header is out; the values sent are plain structs.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"error":{"status":500,"code":"internal","message":"encoding failed"}}`, http.StatusInternalServerError)
		return
	}
	writeRawJSON(w, status, body)
}

func writeRawJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
	_, _ = w.Write([]byte("\n"))
}

// maxJSONBody bounds request bodies other than media uploads.
const maxJSONBody = 64 << 10

// readJSON decodes a bounded JSON body into v, refusing unknown fields and
// trailing data; on failure it has already written a 400 (or a 413 for a
// body over maxJSONBody).
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	trailing := false
	if err == nil {
		if _, err = dec.Token(); err == io.EOF {
			return true
		}
		trailing = true
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		httperr.Write(w, r, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body exceeds %d bytes", maxJSONBody))
	case trailing:
		httperr.Write(w, r, http.StatusBadRequest, "bad_request", "trailing data after the JSON object")
	default:
		httperr.Write(w, r, http.StatusBadRequest, "bad_request", "request body must be a JSON object of the documented shape", jsonProblem(err))
	}
	return false
}

// jsonProblem describes a decoding failure for the client. The decoder's
// own text names Go types ("... into Go value of type services.x"), which
// are internals and mean nothing to an API caller.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return "empty body"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated JSON"
	case errors.As(err, &syn):
		return fmt.Sprintf("malformed JSON at byte %d", syn.Offset)
	case errors.As(err, &typ) && typ.Field != "":
		return fmt.Sprintf("field %q has the wrong type (got a JSON %s)", typ.Field, typ.Value)
	case errors.As(err, &typ):
		return "the body must be a JSON object, got a JSON " + typ.Value
	}
	// DisallowUnknownFields has no error type; its text names only the field.
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return "unknown field " + f
	}
	return "invalid JSON"
}

// requireUser returns the caller's user id, or writes a 401 when the
// gateway vouched for no user (anonymous, or an API key without a user).
func requireUser(w http.ResponseWriter, r *http.Request) (string, bool) {
	u := origin.UserFrom(r.Context())
	if u == "" {
		httperr.Write(w, r, http.StatusUnauthorized, "unauthorized", "this endpoint needs a logged-in user")
		return "", false
	}
	return u, true
}

// fail maps store errors to responses and logs the unexpected ones.
func (a *App) fail(w http.ResponseWriter, r *http.Request, err error, what string) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		httperr.Write(w, r, http.StatusNotFound, "not_found", what+" not found")
	case errors.Is(err, store.ErrExists):
		httperr.Write(w, r, http.StatusConflict, "conflict", what+" already exists")
	case errors.Is(err, context.Canceled):
		// The client went away; nothing to answer.
	default:
		a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err.Error())
		httperr.Write(w, r, http.StatusInternalServerError, "internal", "internal error")
	}
}

// purgeTimeout bounds the purge after a write: the write has succeeded, a
// slow admin API must not hold the client much longer.
const purgeTimeout = 2 * time.Second

// purge asks the edge to drop responses tagged with tags. Failures are
// logged, not returned: the write is done, and the edge copies expire by
// their TTL anyway.
func (a *App) purge(ctx context.Context, tags ...string) {
	if a.cfg.Purger == nil || len(tags) == 0 || ctx.Value(noPurgeKey{}) != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), purgeTimeout)
	defer cancel()
	if err := a.cfg.Purger.Purge(ctx, origin.PurgeRequest{Tags: tags}); err != nil {
		a.log.Warn("edge purge failed; cached copies live until their TTL", "tags", tags, "err", err.Error())
	}
}

// noPurgeKey marks a context whose writes need no edge purge (seeding:
// nothing of it can be cached yet, and the admin API may not be up).
type noPurgeKey struct{}

// invalidate drops read-through cache keys, logging a failure (the value
// then lives until its TTL).
func (a *App) invalidate(ctx context.Context, keys ...string) {
	if err := a.cache.Invalidate(ctx, keys...); err != nil {
		a.log.Warn("cache invalidation failed", "keys", len(keys), "err", err.Error())
	}
}

// Surrogate keys. A purge by one of these tags drops every edge copy of the
// responses that carried it.
func tagUser(id string) string       { return "user-" + id }
func tagUserTweets(id string) string { return "user-" + id + "-tweets" }
func tagTweet(id string) string      { return "tweet-" + id }
