package cdn

import (
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/cdn/store"
	"github.com/outpost-edge/outpost/internal/reqinfo"
)

// Targeted cache-control fields (RFC 9213), most specific first. Either
// one, when present, replaces Cache-Control for this cache, and both are
// removed before a response leaves the edge.
const (
	hdrOutpostCC = "Outpost-Cdn-Cache-Control"
	hdrCDNCC     = "Cdn-Cache-Control"
)

// responseDirectives returns the directives that govern this cache and
// whether they come from a targeted field. The first targeted field with a
// valid, non-empty value replaces Cache-Control and Expires (RFC 9213
// §2.1, §2.2); an empty or invalid one is ignored.
func responseDirectives(h http.Header) (d directives, targeted bool) {
	for _, k := range [...]string{hdrOutpostCC, hdrCDNCC} {
		if v := h[k]; validTargetedValues(v) {
			return parseDirectives(v), true
		}
	}
	return parseDirectives(h["Cache-Control"]), false
}

// validTargetedValues checks a targeted field's lines as one value.
func validTargetedValues(values []string) bool {
	switch len(values) {
	case 0:
		return false
	case 1:
		return validTargeted(values[0])
	}
	return validTargeted(strings.Join(values, ", "))
}

// heuristicStatus lists the status codes cacheable by default (RFC 9110 §15.1).
func heuristicStatus(code int) bool {
	switch code {
	case 200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
}

// hopByHop are never stored (RFC 9110 §7.6.1), with the fields a cache
// computes itself. The targeted fields are stored (a 304 that does not
// repeat them leaves them in force) but never sent on.
var hopByHop = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer",
	"Transfer-Encoding", "Upgrade", "Proxy-Authenticate", "Proxy-Authorization",
	"Age",
}

// storeDecision is the outcome of deciding whether a response is stored.
type storeDecision struct {
	ok     bool
	reason string // why not, for logs and Cache-Status detail
	meta   store.Meta
	// unshared are the fields named by no-cache="…" and private="…": the
	// client that caused the fetch gets them, nobody else does.
	unshared []string
}

// decide applies RFC 9111 §3 and the route's TTL rules to a response.
func (h *handler) decide(r *http.Request, key string, status int, hdr http.Header, reqTime, respTime time.Time) storeDecision {
	d, targeted := responseDirectives(hdr)
	if status == http.StatusPartialContent || status == http.StatusNotModified || status < 200 || (status >= 500 && status != 501) {
		return storeDecision{reason: "status"}
	}
	rule := matchRule(h.rules, r.URL.Path, hdr.Get("Content-Type"))
	override := rule != nil && rule.Override > 0
	overridePrivate := override && rule.OverridePrivate
	if d.noStore || d.private {
		if !overridePrivate {
			return storeDecision{reason: "private"}
		}
		h.c.warnOverrideOnce(h.route, rule.index)
	}
	// A caller the gateway authenticated counts as one with Authorization:
	// the gateway has removed the credential by the time the cache runs.
	authorized := r.Header.Get("Authorization") != "" || reqinfo.Authenticated(r.Context())
	if authorized && !d.public && d.sMaxAge < 0 && !d.mustRevalidate {
		return storeDecision{reason: "authorization"}
	}
	if len(hdr["Set-Cookie"]) > 0 && !h.rc.StripSetCookie {
		return storeDecision{reason: "set-cookie"}
	}
	vary := parseVary(hdr)
	if slices.Contains(vary, "*") {
		return storeDecision{reason: "vary"}
	}
	if cl := hdr.Get("Content-Length"); cl != "" {
		if n, ok := parseContentLength(cl); !ok || n > h.c.cfg.MaxObjectSize.Int64() {
			return storeDecision{reason: "size"}
		}
	}

	date, ok := parseHTTPDate(hdr.Get("Date"))
	if !ok {
		date = respTime
	}
	// RFC 9111 §4.2.3 age calculation.
	apparent := respTime.Sub(date)
	if apparent < 0 {
		apparent = 0
	}
	corrected := parseAge(hdr) + respTime.Sub(reqTime)
	initialAge := max(apparent, corrected)

	var lifetime time.Duration
	explicit := true
	switch {
	case override:
		lifetime = rule.Override.D()
	case d.sMaxAge >= 0:
		lifetime = d.sMaxAge
	case d.maxAge >= 0:
		lifetime = d.maxAge
	case len(hdr["Expires"]) > 0 && !targeted:
		// An Expires that does not parse means already expired (§5.3).
		if exp, ok := parseHTTPDate(hdr.Get("Expires")); ok {
			lifetime = exp.Sub(date)
		}
	default:
		explicit = false
	}
	if !explicit {
		if !heuristicStatus(status) {
			return storeDecision{reason: "no-freshness"}
		}
		switch {
		case rule != nil && rule.Default > 0:
			lifetime = rule.Default.D()
		case h.rc.DefaultTTL > 0:
			lifetime = h.rc.DefaultTTL.D()
		default:
			if lm, ok := parseHTTPDate(hdr.Get("Last-Modified")); ok && lm.Before(date) {
				lifetime = time.Duration(float64(date.Sub(lm)) * h.c.cfg.HeuristicFraction)
				lifetime = min(lifetime, h.c.cfg.HeuristicMax.D())
			}
		}
	} else if rule != nil && !override {
		if rule.Min > 0 && lifetime < rule.Min.D() {
			lifetime = rule.Min.D()
		}
		if rule.Max > 0 && lifetime > rule.Max.D() {
			lifetime = rule.Max.D()
		}
	}
	if lifetime < 0 {
		lifetime = 0
	}
	noCache := d.noCache && !overridePrivate
	hasValidator := hdr.Get("ETag") != "" || hdr.Get("Last-Modified") != ""
	if lifetime <= 0 && !hasValidator && d.swr <= 0 && d.sie <= 0 {
		return storeDecision{reason: "no-freshness"}
	}

	stored := storedHeader(hdr, d, h.rc.StripSetCookie)
	if _, ok := parseHTTPDate(hdr.Get("Date")); !ok {
		// RFC 9110 §6.6.1: a cache records when a response without Date
		// arrived and sends that with it (not the time of each hit).
		stored["Date"] = []string{httpDate(respTime)}
	}
	m := store.Meta{
		Key:            key,
		Vary:           vary,
		Variant:        store.VariantKey(vary, r.Header),
		Status:         status,
		Header:         stored,
		RequestTime:    reqTime,
		ResponseTime:   respTime,
		InitialAge:     initialAge,
		Lifetime:       lifetime,
		SWR:            max(d.swr, 0),
		SIE:            max(d.sie, 0),
		MustRevalidate: d.mustRevalidate || d.proxyRevalidate,
		SharedMaxAge:   d.sMaxAge >= 0,
		NoCache:        noCache,
		Immutable:      d.immutable && !noCache,
		Tags:           surrogateKeys(hdr),
	}
	m.Compressible = status == http.StatusOK && !d.noTransform && h.c.compressible(stored)
	return storeDecision{ok: true, meta: m, unshared: slices.Concat(d.noCacheFields, d.privateFields)}
}

func httpDate(t time.Time) string { return t.UTC().Format(http.TimeFormat) }

// dropConnectionFields removes what belongs to one connection (RFC 9110
// §7.6.1): Connection, the fields it names, Keep-Alive and
// Proxy-Connection. The edge's proxy drops them already; this keeps what
// the cache forwards on a MISS as clean as a HIT, whatever the upstream.
func dropConnectionFields(h http.Header) {
	for _, v := range h["Connection"] {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				delete(h, http.CanonicalHeaderKey(f))
			}
		}
	}
	delete(h, "Connection")
	delete(h, "Keep-Alive")
	delete(h, "Proxy-Connection")
}

// storedHeader copies the end-to-end fields worth storing.
func storedHeader(hdr http.Header, d directives, stripCookie bool) http.Header {
	drop := make(map[string]bool, len(hopByHop)+4)
	for _, k := range hopByHop {
		drop[k] = true
	}
	for _, v := range hdr["Connection"] {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				drop[http.CanonicalHeaderKey(f)] = true
			}
		}
	}
	for _, f := range d.noCacheFields {
		drop[f] = true
	}
	for _, f := range d.privateFields {
		drop[f] = true
	}
	if stripCookie {
		drop["Set-Cookie"] = true
	}
	out := make(http.Header, len(hdr))
	for k, v := range hdr {
		if !drop[k] {
			out[k] = slices.Clip(slices.Clone(v))
		}
	}
	return out
}

// parseVary returns the canonical, sorted, de-duplicated Vary names.
func parseVary(h http.Header) []string {
	var out []string
	for _, v := range h["Vary"] {
		for _, f := range strings.Split(v, ",") {
			f = strings.TrimSpace(f)
			if f == "" {
				continue
			}
			if f != "*" {
				f = http.CanonicalHeaderKey(f)
			}
			if !slices.Contains(out, f) {
				out = append(out, f)
			}
		}
	}
	slices.Sort(out)
	return out
}

// surrogateKeys collects tags from Surrogate-Key (space separated) and
// Cache-Tag (comma separated).
func surrogateKeys(h http.Header) []string {
	var out []string
	add := func(t string) {
		if t != "" && len(t) <= 256 && !slices.Contains(out, t) && len(out) < 256 {
			out = append(out, t)
		}
	}
	for _, v := range h["Surrogate-Key"] {
		for _, t := range strings.Fields(v) {
			add(t)
		}
	}
	for _, v := range h["Cache-Tag"] {
		for _, t := range strings.Split(v, ",") {
			add(strings.TrimSpace(t))
		}
	}
	return out
}

func parseContentLength(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, true
}

// compressibleType reports media types worth compressing.
func compressibleType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	if strings.HasPrefix(mt, "text/") {
		return true
	}
	switch mt {
	case "application/json", "application/javascript", "application/x-javascript",
		"application/ecmascript", "application/xml", "application/xhtml+xml",
		"application/rss+xml", "application/atom+xml", "application/ld+json",
		"application/manifest+json", "application/wasm", "image/svg+xml",
		"image/x-icon", "image/vnd.microsoft.icon", "font/ttf", "font/otf",
		"application/vnd.ms-fontobject", "application/x-font-ttf":
		return true
	}
	return strings.HasSuffix(mt, "+json") || strings.HasSuffix(mt, "+xml")
}

// freshState classifies a stored entry for one request.
type freshState struct {
	age       time.Duration
	ttl       time.Duration // lifetime - age; negative when stale
	fresh     bool          // usable without revalidation
	staleOK   bool          // client's max-stale allows serving it stale
	swr       bool          // within stale-while-revalidate (or soft-purged)
	mustCheck bool          // request or entry demands revalidation
}

func (c *Cache) currentAge(e *store.Entry, now time.Time) time.Duration {
	a := e.InitialAge + now.Sub(e.ResponseTime)
	if a < 0 {
		a = 0
	}
	return a
}

// state applies the response's freshness and the request's directives.
func (c *Cache) state(e *store.Entry, req directives, now time.Time) freshState {
	age := c.currentAge(e, now)
	st := freshState{age: age, ttl: e.Lifetime - age}
	// A fresh immutable response does not change, so a reload (browsers
	// send max-age=0 or no-cache) is answered from the cache (RFC 8246 §2).
	reload := !(e.Immutable && st.ttl > 0)
	st.mustCheck = e.NoCache || (req.noCache && reload) || e.Invalidated
	fresh := st.ttl > 0
	if req.maxAge >= 0 && age > req.maxAge && reload {
		fresh = false
	}
	if req.minFresh >= 0 && st.ttl < req.minFresh {
		fresh = false
	}
	st.fresh = fresh && !st.mustCheck
	if st.fresh || e.NoCache || (req.noCache && reload) {
		return st
	}
	staleness := -st.ttl
	if staleness < 0 {
		staleness = 0
	}
	// max-stale admits a stale response; a request max-age still bounds
	// its age (RFC 9111 §5.2.1.1).
	withinAge := req.maxAge < 0 || age <= req.maxAge
	if !e.MustRevalidate && !e.SharedMaxAge && !e.Invalidated && withinAge && (req.maxStaleAny || (req.maxStale >= 0 && staleness <= req.maxStale)) {
		st.staleOK = true
	}
	if e.Invalidated || (!e.MustRevalidate && e.SWR > 0 && staleness <= e.SWR) {
		st.swr = true
	}
	return st
}

// staleOnError reports whether e may be served because the origin failed:
// within stale-if-error, or within the configured grace.
//
// must-revalidate, proxy-revalidate and no-cache forbid it (RFC 9111
// §4.2.4). s-maxage carries proxy-revalidate's semantics (§5.2.2.10), so
// grace, which the origin never asked for, does not apply to it; an
// explicit stale-if-error does.
func (c *Cache) staleOnError(e *store.Entry, now time.Time) bool {
	if e.MustRevalidate || e.NoCache {
		return false
	}
	staleness := c.currentAge(e, now) - e.Lifetime
	return staleness <= e.SIE || (!e.SharedMaxAge && staleness <= c.grace())
}
