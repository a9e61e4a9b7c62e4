// Package reqinfo carries per-request facts through the edge chain: the
// request id, the client address as the edge established it (never a
// client-sent header from an untrusted peer), the route, and the fields the
// access log prints at the end (cache status, upstream, identity, rate-limit
// decision).
package reqinfo

import (
	"context"
	"net/http"
	"net/netip"
	"sync"
)

// Info is created by the edge listener for each request.
type Info struct {
	ID       string     // X-Request-ID, sanitized or generated
	ClientIP netip.Addr // socket peer, or the forwarded client when the peer is a trusted proxy
	PeerIP   netip.Addr // socket peer, always
	Trusted  bool       // PeerIP is a configured trusted proxy
	TLS      bool       // the client connection is TLS

	// mu guards the log fields below; handlers deeper in the chain (and the
	// cache's background refresh) may set them from other goroutines.
	mu    sync.Mutex
	route string
	// The first fields live inline: a request sets a few (the upstream,
	// the cache status, the identity), and a map would cost two
	// allocations for them. more holds any past len(inline).
	inline [4]field
	n      int
	more   map[string]string
}

type field struct{ key, value string }

type ctxKey struct{}

// With returns a context carrying info.
func With(ctx context.Context, info *Info) context.Context {
	return context.WithValue(ctx, ctxKey{}, info)
}

// Context is a context carrying an Info, as With returns, for a caller
// that keeps it in an allocation of its own: the edge keeps it with the
// request's other state instead of allocating it apart. Bind it before
// use; it answers Value as context.WithValue's context does, and its
// cancellation and deadline are its parent's.
type Context struct {
	context.Context
	info *Info
}

// Bind makes c carry info over parent.
func (c *Context) Bind(parent context.Context, info *Info) {
	c.Context, c.info = parent, info
}

// Value implements context.Context.
func (c *Context) Value(key any) any {
	if key == (ctxKey{}) {
		return c.info
	}
	return c.Context.Value(key)
}

// From returns the Info in ctx, or nil.
func From(ctx context.Context) *Info {
	i, _ := ctx.Value(ctxKey{}).(*Info)
	return i
}

// SetRoute records the matched route name.
func (i *Info) SetRoute(name string) {
	if i == nil {
		return
	}
	i.mu.Lock()
	i.route = name
	i.mu.Unlock()
}

// Route returns the matched route name.
func (i *Info) Route() string {
	if i == nil {
		return ""
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.route
}

// Well-known log field names.
const (
	FieldCache     = "cache"      // HIT, MISS, STALE, REVALIDATED, BYPASS
	FieldUpstream  = "upstream"   // backend address that served the request
	FieldUser      = "user_id"    // authenticated user
	FieldIssuer    = "issuer"     // the user's token issuer, when it has one
	FieldKeyID     = "key_id"     // API key id (never the key)
	FieldRateLimit = "rate_limit" // limiter decision, e.g. "allow" or "deny"
	FieldAuthFail  = "auth_error" // authentication failure reason
)

// Set records a log field; safe on a nil Info.
func (i *Info) Set(key, value string) {
	if i == nil {
		return
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	for j := range i.inline[:i.n] {
		if i.inline[j].key == key {
			i.inline[j].value = value
			return
		}
	}
	if i.n == len(i.inline) { // inline is full, so more holds the rest
		if i.more == nil {
			i.more = make(map[string]string)
		}
		i.more[key] = value
		return
	}
	i.inline[i.n] = field{key, value}
	i.n++
}

// Get returns a log field.
func (i *Info) Get(key string) string {
	if i == nil {
		return ""
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	for _, f := range i.inline[:i.n] {
		if f.key == key {
			return f.value
		}
	}
	return i.more[key]
}

// Fields returns a copy of the log fields.
func (i *Info) Fields() map[string]string {
	if i == nil {
		return nil
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	out := make(map[string]string, i.n+len(i.more))
	for _, f := range i.inline[:i.n] {
		out[f.key] = f.value
	}
	for k, v := range i.more {
		out[k] = v
	}
	return out
}

// Finalize is called with an outgoing request once its upstream URL is
// final (after a load balancer picked a backend and joined the backend's
// path prefix), right before it is written. The gateway uses it to sign the
// identity over the path the origin will really see.
type Finalize func(*http.Request)

type finalizeKey struct{}

// WithFinalize returns a context whose outgoing requests get f called by
// the last hop. A later WithFinalize replaces an earlier one.
func WithFinalize(ctx context.Context, f Finalize) context.Context {
	return context.WithValue(ctx, finalizeKey{}, f)
}

// FinalizeOutgoing calls the Finalize carried by r's context, if any. Call
// it wherever a request's URL becomes final; calling it again after a
// further rewrite is harmless, the last call wins.
func FinalizeOutgoing(r *http.Request) {
	if f, _ := r.Context().Value(finalizeKey{}).(Finalize); f != nil {
		f(r)
	}
}

type authenticatedKey struct{}

// WithAuthenticated marks a request whose caller was authenticated by an
// earlier hop of the chain. The gateway removes the credential it consumed
// (Authorization, X-API-Key) before the cache sees the request, so the
// cache reads this mark where it would read Authorization: a response to
// such a request is personal unless the origin says otherwise (RFC 9111
// §3.5).
func WithAuthenticated(ctx context.Context) context.Context {
	return context.WithValue(ctx, authenticatedKey{}, true)
}

// Authenticated reports whether ctx carries the WithAuthenticated mark.
func Authenticated(ctx context.Context) bool {
	b, _ := ctx.Value(authenticatedKey{}).(bool)
	return b
}
