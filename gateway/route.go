package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"net/textproto"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost/internal/httperr"
	"github.com/outpost-edge/outpost/internal/reqinfo"
	"github.com/outpost-edge/outpost/origin/identity"
)

// route is one compiled route policy; it is the http.Handler that
// Gateway.Handler returns.
type route struct {
	g    *Gateway
	name string
	next http.Handler
	log  *slog.Logger

	methods     []string // nil = any
	allow       string   // Allow header for 405
	patterns    []pattern
	slashes     bool // a one-segment wildcard may hold %2F (encoded_slashes)
	stripPrefix string
	rewrite     *regexp.Regexp
	replace     string
	timeout     time.Duration
	maxBody     int64

	mode         string
	allowKey     bool
	allowJWT     bool
	scopes       []string
	roles        []string
	adminOnly    bool
	forwardCreds bool
	challenge    string // WWW-Authenticate for a missing credential

	limits       bool               // any rate limit applies on the route
	tierPolicies map[string]*policy // tier → policy
	routePolicy  *policy            // route-wide limit for tiers not listed

	sem chan struct{} // concurrency slots; nil = unlimited

	reqOps  headerOps
	managed map[string]bool // canonical names of the request fields the gateway sets
	query   [][2]string
	respOps *headerOps
	cors    *cors

	m routeMetrics
}

// Handler builds the policy handler for one route. next is the rest of
// the chain (cache, proxy to the route's pool); it receives a new
// outbound request with the path rewritten, credentials removed unless
// forwarded, and the signed identity set.
func (g *Gateway) Handler(routeName string, rc RouteConfig, next http.Handler) (http.Handler, error) {
	if next == nil {
		return nil, fmt.Errorf("gateway: route %q: nil next handler", routeName)
	}
	if err := rc.Validate(); err != nil {
		return nil, err
	}
	rt := &route{
		g:            g,
		name:         routeName,
		next:         next,
		log:          g.st.log.With("route", routeName),
		patterns:     make([]pattern, 0, len(rc.Paths)),
		slashes:      rc.EncodedSlashes,
		stripPrefix:  strings.TrimSuffix(normalizeEscaped(rc.StripPrefix), "/"),
		timeout:      rc.Timeout.D(),
		maxBody:      rc.MaxBody.Int64(),
		mode:         rc.Auth.Mode,
		scopes:       rc.Auth.Scopes,
		roles:        rc.Auth.Roles,
		adminOnly:    rc.Auth.AdminOnly,
		forwardCreds: rc.Auth.ForwardCredentials,
		reqOps:       compileOps(rc.Request.HeaderOps),
		cors:         compileCORS(rc.CORS, rc.Methods),
		m:            g.st.metrics.forRoute(routeName),
		tierPolicies: map[string]*policy{},
	}
	for _, m := range rc.Methods {
		rt.methods = append(rt.methods, strings.ToUpper(m))
	}
	if len(rt.methods) > 0 {
		if slices.Contains(rt.methods, http.MethodGet) && !slices.Contains(rt.methods, http.MethodHead) {
			rt.methods = append(rt.methods, http.MethodHead)
		}
		if rt.cors != nil && !slices.Contains(rt.methods, http.MethodOptions) {
			rt.allow = strings.Join(append(slices.Clone(rt.methods), http.MethodOptions), ", ")
		} else {
			rt.allow = strings.Join(rt.methods, ", ")
		}
	}
	for _, p := range rc.Paths {
		pt, _ := compilePattern(p) // Validate checked it
		rt.patterns = append(rt.patterns, pt)
	}
	if rc.Rewrite != nil {
		rt.rewrite = regexp.MustCompile(rc.Rewrite.Match) // Validate checked it
		rt.replace = rc.Rewrite.Replace
	}
	if rt.mode == "" {
		rt.mode = ModeRequired
	}
	methods := rc.Auth.Methods
	if len(methods) == 0 {
		methods = []string{MethodAPIKey, MethodJWT}
	}
	rt.allowKey = slices.Contains(methods, MethodAPIKey)
	rt.allowJWT = slices.Contains(methods, MethodJWT) && g.jwt.enabled()
	if rt.mode != ModeNone && !rt.allowKey && !rt.allowJWT {
		return nil, fmt.Errorf("gateway: route %q accepts only jwt but gateway.jwt has no keys or jwks", routeName)
	}
	rt.managed = map[string]bool{"X-Request-Id": true}
	for _, h := range identity.Headers {
		rt.managed[h] = true
	}
	for _, kv := range append(slices.Clone(rt.reqOps.set), rt.reqOps.add...) {
		rt.managed[kv[0]] = true
	}
	rt.challenge = `Bearer realm="` + g.cfg.Realm + `"`
	for k, v := range rc.Request.Query {
		rt.query = append(rt.query, [2]string{k, v})
	}
	slices.SortFunc(rt.query, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	if ops := compileOps(rc.Response); !ops.empty() {
		rt.respOps = &ops
	}
	if rc.Concurrency > 0 {
		rt.sem = make(chan struct{}, rc.Concurrency)
	}
	rt.buildPolicies(rc.RateLimit)
	return rt, nil
}

// buildPolicies resolves which limit applies to each tier: the route's
// tier override, else the route-wide limit, else the node-wide tier limit.
// Route limits count per route; tier limits count across all routes.
func (rt *route) buildPolicies(rl *RouteRateLimit) {
	g := rt.g
	if rl != nil && rl.Disabled {
		return
	}
	maps.Copy(rt.tierPolicies, g.tiers)
	if rl != nil {
		if rl.Requests > 0 {
			rt.routePolicy = newPolicy(rt.name, routeKeyPrefix(rt.name, ""), rl.RateLimit)
			for name := range rt.tierPolicies {
				rt.tierPolicies[name] = rt.routePolicy
			}
		}
		for name, l := range rl.Tiers {
			rt.tierPolicies[name] = newPolicy(rt.name+"/"+name, routeKeyPrefix(rt.name, name), l)
		}
	}
	rt.limits = len(rt.tierPolicies) > 0 || rt.routePolicy != nil
}

// routeKeyPrefix is the limiter key namespace of a route's limit (tier ""
// for the route-wide one). Names are quoted, so no pair of route and tier
// names shares a bucket with another: unquoted, route "a:b" with tier "c"
// and route "a" with tier "b:c" would count together.
func routeKeyPrefix(route, tier string) string {
	if tier == "" {
		return "r:" + strconv.Quote(route) + ":*:"
	}
	return "r:" + strconv.Quote(route) + ":" + strconv.Quote(tier) + ":"
}

func (rt *route) policyFor(tier string) *policy {
	if p := rt.tierPolicies[tier]; p != nil {
		return p
	}
	return rt.routePolicy
}

// ServeHTTP runs the policy steps in order: CORS preflight, path, method,
// body size, authentication, authorization, rate limit, concurrency, then
// the transformed upstream request.
func (rt *route) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	info := reqinfo.From(r.Context())
	// Path first: a path the route does not serve is 404 for every
	// method, preflights included (a browser must not learn a CORS policy
	// for a resource that does not exist); 405 says the resource exists.
	if len(rt.patterns) > 0 && !rt.matchPath(normalizeEscaped(r.URL.EscapedPath())) {
		writeError(w, r, http.StatusNotFound, "no_route", "no route for this path")
		return
	}
	if rt.cors != nil {
		origin := r.Header.Get("Origin")
		if r.Method == http.MethodOptions && origin != "" && r.Header.Get("Access-Control-Request-Method") != "" {
			rt.cors.preflight(w, r)
			return
		}
		// decorate adds Vary: Origin even without an Origin, so a shared
		// cache never serves a non-CORS answer to a CORS request.
		rt.cors.decorate(w.Header(), origin)
	}
	if rt.methods != nil && !slices.Contains(rt.methods, r.Method) {
		if r.Method == http.MethodOptions && rt.cors != nil {
			// Allow lists OPTIONS on a CORS route, so a plain OPTIONS (no
			// preflight headers) is answered here rather than refused
			// with a 405 that contradicts it (RFC 9110 §9.3.7). It says
			// no more than a 405 would, so it needs no credential.
			w.Header().Set("Allow", rt.allow)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("Allow", rt.allow)
		writeError(w, r, http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed on this route")
		return
	}
	if rt.methods != nil && (rt.overrideRefused(r.Header) || rt.queryOverrideRefused(r.URL.RawQuery)) {
		w.Header().Set("Allow", rt.allow)
		writeError(w, r, http.StatusMethodNotAllowed, "method_not_allowed", "method override names a method not allowed on this route")
		return
	}
	if rt.maxBody > 0 && r.ContentLength > rt.maxBody {
		writeError(w, r, http.StatusRequestEntityTooLarge, "body_too_large", "request body too large")
		return
	}

	id, cred, ok := rt.authenticate(w, r, info)
	if !ok {
		return
	}
	if !rt.authorize(w, r, id) {
		return
	}
	if !rt.rateLimit(w, r, info, id) {
		return
	}
	if rt.sem != nil {
		select {
		case rt.sem <- struct{}{}:
			defer func() { <-rt.sem }()
		default:
			rt.m.concRefused.Inc()
			w.Header().Set("Retry-After", "1")
			writeError(w, r, http.StatusServiceUnavailable, "concurrency_limited", "too many concurrent requests on this route")
			return
		}
	}
	rt.forward(w, r, info, id, cred)
}

func (rt *route) matchPath(p string) bool {
	for _, pt := range rt.patterns {
		if pt.match(p, rt.slashes) {
			return true
		}
	}
	return false
}

// forward builds the outbound request and calls next.
func (rt *route) forward(w http.ResponseWriter, r *http.Request, info *reqinfo.Info, id *identity.Identity, cred credKind) {
	ctx := r.Context()
	if rt.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rt.timeout)
		defer cancel()
	}
	if id != nil {
		// The credential is removed below, before the cache: the mark
		// keeps the cache from sharing this caller's responses.
		ctx = reqinfo.WithAuthenticated(ctx)
	}
	out := r.WithContext(ctx)
	out.Header = r.Header.Clone()
	u := *r.URL
	out.URL = &u
	h := out.Header

	if cred != credNone && !rt.forwardCreds {
		h.Del("Authorization")
		h.Del("X-Api-Key")
	}
	rt.unlistManaged(h)
	if rt.stripPrefix != "" || rt.rewrite != nil {
		rt.rewritePath(out.URL)
	}
	if len(rt.query) > 0 {
		out.URL.RawQuery = rt.injectQuery(out.URL.RawQuery)
	}
	rt.reqOps.apply(h)
	if info != nil && info.ID != "" {
		h.Set("X-Request-Id", info.ID)
	}
	// The identity headers are always rebuilt by the gateway: whatever the
	// client sent under these names is dropped, on every route and mode,
	// including spellings with '_' that CGI-style origins read as the same
	// variable (X_Outpost_User → HTTP_X_OUTPOST_USER).
	stripSpoofable(h)
	if len(rt.g.secret) > 0 {
		if id == nil {
			id = &identity.Identity{Tier: rt.g.cfg.AnonymousTier}
		}
		identity.Sign(out, id, rt.g.secret, rt.g.st.now())
		// Sign again if the method, path or query the origin really sees
		// differs once the request is final (a backend URL with a path
		// prefix, the cache filling a HEAD miss with a GET); the common
		// request is signed once.
		secret, now, signed, method, path, query := rt.g.secret, rt.g.st.now, id, out.Method, out.URL.Path, out.URL.RawQuery
		out = out.WithContext(reqinfo.WithFinalize(out.Context(), func(r *http.Request) {
			if r.Method != method || r.URL.Path != path || r.URL.RawQuery != query {
				identity.Sign(r, signed, secret, now())
			}
		}))
	} else {
		identity.Strip(h)
	}

	if len(r.Trailer) > 0 && out.Body != nil && out.Body != http.NoBody {
		out.Trailer = allowedFields(r.Trailer)
		out.Body = &trailerFilter{rc: out.Body, from: r.Trailer, to: out.Trailer}
	}
	var tripped *atomic.Bool
	if rt.maxBody > 0 && out.ContentLength < 0 && out.Body != nil && out.Body != http.NoBody {
		tripped = new(atomic.Bool)
		out.Body = &bodyLimit{rc: out.Body, left: rt.maxBody, tripped: tripped}
	}
	if rt.respOps == nil && rt.cors == nil && tripped == nil {
		rt.next.ServeHTTP(w, out)
		return
	}
	rw := &respWriter{ResponseWriter: w, r: r, ops: rt.respOps, cors: rt.cors, tripped: tripped}
	rt.next.ServeHTTP(rw, out)
}

// unlistManaged removes from the client's Connection field the names of
// fields the gateway sets. The proxy deletes every field Connection lists
// (hop-by-hop), after the gateway has set its own: "Connection:
// X-Outpost-Signature" would otherwise strip the signed identity, and
// "Connection: X-Api-Version" a route's request.set edit. Other tokens
// (close, Upgrade, a client's own hop-by-hop fields) stay.
func (rt *route) unlistManaged(h http.Header) {
	vals := h["Connection"]
	if len(vals) == 0 {
		return
	}
	var keep []string
	dropped := false
	for _, v := range vals {
		for tok := range strings.SplitSeq(v, ",") {
			tok = textproto.TrimString(tok)
			switch {
			case tok == "":
			case rt.managed[textproto.CanonicalMIMEHeaderKey(tok)]:
				dropped = true
			default:
				keep = append(keep, tok)
			}
		}
	}
	switch {
	case !dropped:
	case len(keep) == 0:
		delete(h, "Connection")
	default:
		h["Connection"] = []string{strings.Join(keep, ", ")}
	}
}

// injectQuery sets the route's query parameters in raw. The client's
// other parameters keep their order and escaping: re-encoding the whole
// query sorted and re-escaped it, which breaks origins that check a
// signed query string. A client parameter whose decoded name is injected
// is removed. (Pairs with ';' or a bad escape are the proxy's business:
// httputil.ReverseProxy drops them.)
func (rt *route) injectQuery(raw string) string {
	var b strings.Builder
	for pair := range strings.SplitSeq(raw, "&") {
		if pair != "" && !rt.injected(pair) {
			b.WriteString(pair)
			b.WriteByte('&')
		}
	}
	for i, kv := range rt.query {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(kv[0]) + "=" + url.QueryEscape(kv[1]))
	}
	return b.String()
}

// injected reports whether the raw pair names an injected parameter.
func (rt *route) injected(pair string) bool {
	name, _, _ := strings.Cut(pair, "=")
	if dec, err := url.QueryUnescape(name); err == nil {
		name = dec
	}
	for _, kv := range rt.query {
		if kv[0] == name {
			return true
		}
	}
	return false
}

// rewritePath applies strip_prefix and rewrite to the escaped path (in
// normal form), so encoded slashes survive, then re-derives the decoded
// path.
func (rt *route) rewritePath(u *url.URL) {
	p := normalizeEscaped(u.EscapedPath())
	if rt.stripPrefix != "" {
		if p == rt.stripPrefix {
			p = "/"
		} else if strings.HasPrefix(p, rt.stripPrefix+"/") {
			p = p[len(rt.stripPrefix):]
		}
	}
	if rt.rewrite != nil {
		p = rt.rewrite.ReplaceAllString(p, rt.replace)
	}
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	dec, err := url.PathUnescape(p)
	if err != nil {
		// The client's escaping was valid; a replacement broke it. Keep
		// the raw form so the request still goes out as configured.
		dec = p
	}
	u.Path, u.RawPath = dec, ""
	if dec != p {
		u.RawPath = p
	}
}

// rateLimit applies the caller's policy and writes the RateLimit fields.
func (rt *route) rateLimit(w http.ResponseWriter, r *http.Request, info *reqinfo.Info, id *identity.Identity) bool {
	if !rt.limits {
		return true
	}
	tier := rt.g.cfg.AnonymousTier
	var key string
	switch {
	case id == nil:
		key = "ip:" + clientKey(r, info)
	case id.KeyID != "":
		tier, key = id.Tier, "k:"+id.KeyID
	case id.Issuer != "":
		// The same sub from two issuers is two callers, each with its
		// own budget. Neither part holds a space (cleanWord).
		tier, key = id.Tier, "u:"+id.Issuer+" "+id.User
	default:
		tier, key = id.Tier, "u:"+id.User
	}
	p := rt.policyFor(tier)
	if p == nil {
		return true
	}
	key = p.keyPrefix + key
	d, fallback := rt.decide(r.Context(), key, p)
	h := w.Header()
	h.Set("RateLimit-Policy", p.header)
	t := ceilSeconds(d.Reset)
	if !d.Allowed {
		t = ceilSeconds(d.RetryAfter)
	}
	h.Set("RateLimit", p.rlPrefix+strconv.Itoa(d.Remaining)+";t="+strconv.FormatInt(t, 10))
	verdict := "allow"
	if !d.Allowed {
		verdict = "deny"
	}
	if fallback {
		verdict += "_local"
	}
	info.Set(reqinfo.FieldRateLimit, verdict)
	if d.Allowed {
		return true
	}
	rt.m.rateRefused.Inc()
	h.Set("Retry-After", strconv.FormatInt(max(ceilSeconds(d.RetryAfter), 1), 10))
	writeError(w, r, http.StatusTooManyRequests, "rate_limited", "rate limit exceeded")
	return false
}

// decide asks Redis when configured and reachable, else the local
// limiter. fallback reports a local decision made because Redis was not.
func (rt *route) decide(ctx context.Context, key string, p *policy) (Decision, bool) {
	if rt.g.useRedis {
		d, err := rt.g.st.redis.Allow(ctx, key, p)
		if err == nil {
			return d, false
		}
		rt.m.redisFallback.Inc()
		return rt.g.st.local.allow(key, p), true
	}
	return rt.g.st.local.allow(key, p), false
}

// clientKey is the anonymous limiter key: the edge-established client
// address (never X-Forwarded-For), IPv6 grouped by /64 since one host
// usually owns a whole /64.
func clientKey(r *http.Request, info *reqinfo.Info) string {
	var ip netip.Addr
	if info != nil && info.ClientIP.IsValid() {
		ip = info.ClientIP
	} else if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		ip = ap.Addr()
	}
	ip = ip.Unmap()
	if ip.Is6() {
		if pfx, err := ip.Prefix(64); err == nil {
			return pfx.String()
		}
	}
	return ip.String()
}

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// writeError writes the JSON error shape.
func writeError(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	httperr.Write(w, r, status, code, msg)
}

// trailerFilter keeps identity fields (and the other fields the gateway
// never lets through) out of the request's trailers, which the proxy
// forwards. net/http fills the inbound trailer map when the body reaches
// EOF; the allowed fields are copied to the outbound map right then,
// before the proxy writes them upstream.
type trailerFilter struct {
	rc       io.ReadCloser
	from, to http.Header
}

func (f *trailerFilter) Read(p []byte) (int, error) {
	n, err := f.rc.Read(p)
	if err == io.EOF {
		maps.Copy(f.to, allowedFields(f.from))
	}
	return n, err
}

// allowedFields is a copy of h without the fields a client may not send
// upstream: identity (any spelling) and path overrides.
func allowedFields(h http.Header) http.Header {
	c := h.Clone()
	identity.Strip(c)
	stripSpoofable(c)
	return c
}

func (f *trailerFilter) Close() error { return f.rc.Close() }

// Fields many frameworks read in place of the request line. The gateway
// checks methods and paths on the request line: a method override naming
// a method the route refuses is refused (Symfony and Laravel honour one on
// POST, Express's method-override on any method), and the path overrides
// (IIS, Symfony, Zend) never go upstream.
var (
	methodOverrides = []string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override"}
	pathOverrides   = []string{"X-Original-Url", "X-Rewrite-Url"}
)

// fieldIs reports whether the field name k is one of names, reading '_'
// as '-' as CGI-style origins do (X_Outpost_User → HTTP_X_OUTPOST_USER).
func fieldIs(k string, names []string) bool {
	n := strings.ReplaceAll(k, "_", "-")
	for _, x := range names {
		if strings.EqualFold(n, x) {
			return true
		}
	}
	return false
}

// overrideRefused reports whether a method-override field names a method
// outside the route's methods.
func (rt *route) overrideRefused(h http.Header) bool {
	for k, vs := range h {
		if !fieldIs(k, methodOverrides) {
			continue
		}
		for _, v := range vs {
			if !slices.Contains(rt.methods, strings.ToUpper(strings.TrimSpace(v))) {
				return true
			}
		}
	}
	return false
}

// queryOverrideRefused reports whether the query carries a "_method"
// parameter naming a method outside the route's methods: Laravel, Symfony
// and Express's method-override read it from the query of a POST. Names
// are compared as PHP reads them, with '.', ' ' and '[' turned into '_'
// ("?.method=DELETE" is $_GET['_method']), and without case.
func (rt *route) queryOverrideRefused(rawQuery string) bool {
	if rawQuery == "" {
		return false
	}
	q, _ := url.ParseQuery(rawQuery) // what parsed; the rest is nobody's parameter
	for k, vs := range q {
		if len(k) != len("_method") {
			continue
		}
		k = strings.Map(func(c rune) rune {
			if c == '.' || c == ' ' || c == '[' {
				return '_'
			}
			return c
		}, k)
		if !strings.EqualFold(k, "_method") {
			continue
		}
		for _, v := range vs {
			if !slices.Contains(rt.methods, strings.ToUpper(strings.TrimSpace(v))) {
				return true
			}
		}
	}
	return false
}

// stripSpoofable removes headers whose names contain '_' and equal
// an identity header once '_' is read as '-', and the path overrides
// however they are spelled.
func stripSpoofable(h http.Header) {
	for k := range h {
		if strings.Contains(k, "_") && fieldIs(k, identity.Headers[:]) || fieldIs(k, pathOverrides) {
			delete(h, k)
		}
	}
}
