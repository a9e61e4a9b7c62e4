package origin

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/outpost-edge/outpost/internal/httperr"
	"github.com/outpost-edge/outpost/origin/identity"
)

// DefaultIdentityMaxAge is how far a signed identity's timestamp may be from
// the origin's clock. The gateway signs each request as it forwards it, so
// this only has to cover clock skew between hosts and a slow hop.
const DefaultIdentityMaxAge = 60 * time.Second

type identityKey struct{}

// WithIdentity returns a context carrying id.
func WithIdentity(ctx context.Context, id *identity.Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// IdentityFrom returns the verified identity in ctx, or nil when the request
// is anonymous.
func IdentityFrom(ctx context.Context) *identity.Identity {
	id, _ := ctx.Value(identityKey{}).(*identity.Identity)
	return id
}

// UserFrom returns the verified user id in ctx, or "" when the caller is
// anonymous or authenticated without a user (an API key alone).
func UserFrom(ctx context.Context) string {
	if id := IdentityFrom(ctx); id != nil {
		return id.User
	}
	return ""
}

// Verifier checks the gateway's signed identity headers. It is safe for
// concurrent use.
type Verifier struct {
	secret []byte
	maxAge time.Duration
	now    func() time.Time
	log    *slog.Logger
}

// NewVerifier returns a Verifier for the HMAC secret shared with the
// gateway. maxAge <= 0 means DefaultIdentityMaxAge; now nil means time.Now;
// logger nil means slog.Default().
func NewVerifier(secret []byte, maxAge time.Duration, now func() time.Time, logger *slog.Logger) *Verifier {
	if maxAge <= 0 {
		maxAge = DefaultIdentityMaxAge
	}
	if now == nil {
		now = time.Now
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Verifier{secret: secret, maxAge: maxAge, now: now, log: logger.With("component", "origin.identity")}
}

// Verify checks r's identity headers.
func (v *Verifier) Verify(r *http.Request) (*identity.Identity, error) {
	if len(v.secret) == 0 {
		// An empty secret would let anyone sign; refuse rather than trust.
		return nil, identity.ErrForged
	}
	return identity.Verify(r, v.secret, v.now(), v.maxAge)
}

// Require wraps next so that it only runs with a verified identity in the
// request context. Missing, forged or expired identities get a 401 JSON
// error.
func (v *Verifier) Require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := v.Verify(r)
		if err != nil {
			v.reject(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), id)))
	})
}

// Allow wraps next for routes open to anonymous callers: a request without
// identity headers runs anonymously, a request with valid ones runs with the
// identity, and a request with forged or expired ones is still rejected
// (a bad signature is an attack or a misconfiguration, never anonymous).
func (v *Verifier) Allow(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := v.Verify(r)
		switch {
		case errors.Is(err, identity.ErrMissing) && !hasAnyIdentityHeader(r.Header):
			// The gateway strips client-sent identity headers, so none at
			// all means an anonymous caller (or a direct health probe).
			next.ServeHTTP(w, r)
		case err != nil:
			v.reject(w, r, err)
		default:
			next.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), id)))
		}
	})
}

func hasAnyIdentityHeader(h http.Header) bool {
	for _, k := range identity.Headers {
		if h.Get(k) != "" {
			return true
		}
	}
	return false
}

func (v *Verifier) reject(w http.ResponseWriter, r *http.Request, err error) {
	msg := "missing gateway identity"
	switch {
	case errors.Is(err, identity.ErrExpired):
		msg = "expired gateway identity"
	case errors.Is(err, identity.ErrForged):
		msg = "invalid gateway identity"
	}
	// Path only: query strings may carry tokens.
	v.log.Debug("identity rejected", "method", r.Method, "path", r.URL.Path, "reason", err.Error())
	httperr.Write(w, r, http.StatusUnauthorized, "unauthorized", msg)
}
