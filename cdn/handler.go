package cdn

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/cdn/store"
	"github.com/outpost-edge/outpost/internal/httperr"
	"github.com/outpost-edge/outpost/internal/reqinfo"
)

// X-Cache values.
const (
	resHit         = "HIT"
	resMiss        = "MISS"
	resStale       = "STALE"
	resRevalidated = "REVALIDATED"
	resBypass      = "BYPASS"
)

// handler is the per-route cache handler; it is cheap and rebuilt on reload.
type handler struct {
	c     *Cache
	route string
	rc    RouteConfig
	rules []compiledRule
	up    http.Handler
}

// Handler returns the cache handler of one route in front of upstream,
// which writes the origin's response (or a 502/504 error). It is cheap:
// build a new one on every config reload; the store and metrics persist in
// the Cache. rc should have had SetDefaults and Validate applied.
func (c *Cache) Handler(routeName string, rc RouteConfig, upstream http.Handler) http.Handler {
	return &handler{c: c, route: routeName, rc: rc, rules: compileRules(rc.TTLRules), up: upstream}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodOptions, http.MethodTrace:
		h.pass(w, r, resBypass, "method")
		return
	default:
		h.unsafe(w, r)
		return
	}
	key, ok := cacheKey(r)
	if !ok {
		h.pass(w, r, resBypass, "key")
		return
	}
	req := parseDirectives(r.Header["Cache-Control"])
	if len(r.Header["Cache-Control"]) == 0 && strings.Contains(strings.ToLower(r.Header.Get("Pragma")), "no-cache") {
		req.noCache = true
	}
	if req.noStore {
		h.pass(w, r, resBypass, "request-no-store")
		return
	}
	now := h.c.now()
	e := h.c.store.Lookup(key, r.Header)
	if e != nil {
		st := h.c.state(e, req, now)
		switch {
		case st.fresh:
			h.serveEntry(w, r, e, resHit, "hit", now)
			return
		case st.staleOK:
			h.serveEntry(w, r, e, resStale, "hit; detail=max-stale", now)
			return
		case st.swr:
			h.refresh(r, key, e)
			h.serveEntry(w, r, e, resStale, "hit; detail=stale-while-revalidate", now)
			return
		}
	}
	if req.onlyIfCached {
		h.c.m.result(resMiss)
		reqinfo.From(r.Context()).Set(reqinfo.FieldCache, resMiss)
		httperr.Write(w, r, http.StatusGatewayTimeout, "not_cached", "only-if-cached and not in cache")
		return
	}
	h.fetch(w, r, key, e)
}

// fillKey identifies the object a fetch for r produces.
func (h *handler) fillKey(key string, r *http.Request) string {
	return key + "\x00" + store.VariantKey(h.c.store.Vary(key), r.Header)
}

// fetch gets the object from the origin, coalescing concurrent requests
// for the same object into one fetch. stale is the stored entry to
// revalidate, if any.
func (h *handler) fetch(w http.ResponseWriter, r *http.Request, key string, stale *store.Entry) {
	fk := h.fillKey(key, r)
	f, leader := h.c.join(fk)
	if !leader {
		h.follow(w, r, f, key, stale)
		return
	}
	defer h.c.release(fk, f)
	h.lead(w, r, f, key, stale, false)
}

// refresh revalidates e in the background, once per object at a time.
func (h *handler) refresh(r *http.Request, key string, e *store.Entry) {
	fk := h.fillKey(key, r)
	f, ok := h.c.tryJoin(fk)
	if !ok {
		return
	}
	if !h.c.startBackground() {
		h.c.release(fk, f)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), h.c.cfg.RefreshTimeout.D())
	r2 := r.Clone(ctx)
	go func() {
		defer h.c.bg.Done()
		defer cancel()
		defer h.c.release(fk, f)
		defer func() {
			if v := recover(); v != nil && v != http.ErrAbortHandler {
				h.c.log.Error("background refresh panicked", "key", key, "panic", v)
			}
		}()
		h.lead(nil, r2, f, key, e, true)
	}()
}

// follow serves a request from a fetch another request leads.
func (h *handler) follow(w http.ResponseWriter, r *http.Request, f *fill, key string, stale *store.Entry) {
	t := time.NewTimer(h.c.cfg.CoalesceWait.D())
	defer t.Stop()
	select {
	case <-f.ready:
	case <-t.C:
		h.pass(w, r, resMiss, "coalesce-timeout")
		return
	case <-r.Context().Done():
		return
	}
	h.c.m.coalesced.Inc()
	switch f.outcome {
	case outcomeStoring:
		if store.VariantKey(f.vary, r.Header) != f.variant {
			h.pass(w, r, resMiss, "variant")
			return
		}
		if needsEntry(r) {
			select {
			case <-f.done:
			case <-r.Context().Done():
				return
			}
			if e := h.c.store.Lookup(key, r.Header); e != nil {
				h.serveEntry(w, r, e, resMiss, "fwd=miss; collapsed", h.c.now())
				return
			}
			h.pass(w, r, resMiss, "fill-failed")
			return
		}
		h.stream(w, r, f)
	case outcomeLookup:
		if f.stale != nil {
			h.serveEntry(w, r, f.stale, resStale, "hit; detail=stale-if-error; collapsed", h.c.now())
			return
		}
		if e := h.c.store.Lookup(key, r.Header); e != nil {
			h.serveEntry(w, r, e, f.xcache, "fwd=stale; fwd-status=304; collapsed", h.c.now())
			return
		}
		h.pass(w, r, resMiss, "gone")
	default:
		h.pass(w, r, resMiss, "uncacheable")
	}
}

// stream copies the body a fill is writing to w as it arrives.
func (h *handler) stream(w http.ResponseWriter, r *http.Request, f *fill) {
	file, err := openFile(f.tempPath)
	if err != nil {
		// Already renamed into place (or failed): use the stored entry.
		<-f.done
		key, _ := cacheKey(r)
		if e := h.c.store.Lookup(key, r.Header); e != nil {
			h.serveEntry(w, r, e, resMiss, "fwd=miss; collapsed", h.c.now())
			return
		}
		h.pass(w, r, resMiss, "fill-failed")
		return
	}
	defer file.Close()
	reqinfo.From(r.Context()).Set(reqinfo.FieldCache, resMiss)
	h.c.m.result(resMiss)
	hdr := w.Header()
	for k, v := range f.header {
		hdr[k] = v
	}
	hdr.Set("X-Cache", resMiss)
	hdr.Set("Cache-Status", "Outpost; fwd=miss; collapsed")
	w.WriteHeader(f.status)
	if r.Method == http.MethodHead {
		return
	}
	bp := h.c.bufs.Get().(*[]byte)
	defer h.c.bufs.Put(bp)
	if !f.follow(w, file, r.Context().Done(), *bp) {
		// The origin response broke off: cut the connection rather than
		// pass a truncated body off as complete.
		panic(http.ErrAbortHandler)
	}
}

// needsEntry reports requests answered from a complete stored entry rather
// than from a streaming fetch: ranges and conditionals.
func needsEntry(r *http.Request) bool {
	h := r.Header
	return h.Get("Range") != "" || h.Get("If-None-Match") != "" || h.Get("If-Modified-Since") != "" ||
		h.Get("If-Match") != "" || h.Get("If-Unmodified-Since") != ""
}

// unsafe forwards a request with an unsafe (or unknown) method and, when the
// response is not an error, invalidates the URL and its Location and
// Content-Location on the same host (RFC 9111 §4.4).
func (h *handler) unsafe(w http.ResponseWriter, r *http.Request) {
	sw := &passWriter{ResponseWriter: w, h: h, xcache: resBypass, detail: "method"}
	h.c.m.result(resBypass)
	reqinfo.From(r.Context()).Set(reqinfo.FieldCache, resBypass)
	h.up.ServeHTTP(sw, r)
	if sw.status == 0 {
		sw.status = http.StatusOK // nothing written: an empty 200
	}
	if sw.status < 200 || sw.status >= 400 {
		return
	}
	key, ok := cacheKey(r)
	if !ok {
		return
	}
	keys := []string{key}
	base, err := url.Parse(key)
	if err != nil {
		return
	}
	for _, f := range []string{"Location", "Content-Location"} {
		v := sw.Header().Get(f)
		if v == "" {
			continue
		}
		u, err := base.Parse(v)
		if err != nil || u.Scheme != base.Scheme || !strings.EqualFold(u.Host, base.Host) {
			continue // another host: never invalidate it (RFC 9111 §4.4)
		}
		lr := &http.Request{Host: u.Host, URL: u, TLS: r.TLS}
		lr = lr.WithContext(r.Context())
		if k, ok := cacheKey(lr); ok {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		h.c.store.Remove(h.c.store.Variants(k))
	}
}

// pass forwards r without caching; the response headers are still cleaned
// of the edge-only fields.
func (h *handler) pass(w http.ResponseWriter, r *http.Request, xcache, detail string) {
	if xcache == resBypass {
		h.c.m.result(resBypass)
	} else {
		h.c.m.result("PASS")
	}
	reqinfo.From(r.Context()).Set(reqinfo.FieldCache, xcache)
	h.up.ServeHTTP(&passWriter{ResponseWriter: w, h: h, xcache: xcache, detail: detail}, r)
}

// passWriter cleans response headers on the way through.
type passWriter struct {
	http.ResponseWriter
	h      *handler
	xcache string
	detail string
	status int
}

func (p *passWriter) WriteHeader(code int) {
	if p.status == 0 {
		p.status = code
		hdr := p.ResponseWriter.Header()
		p.h.cleanHeader(hdr, false)
		hdr.Set("X-Cache", p.xcache)
		if p.xcache == resBypass {
			hdr.Set("Cache-Status", "Outpost; fwd=bypass; detail="+p.detail)
		} else {
			hdr.Set("Cache-Status", "Outpost; fwd=uri-miss; detail="+p.detail)
		}
	}
	p.ResponseWriter.WriteHeader(code)
}

func (p *passWriter) Write(b []byte) (int, error) {
	if p.status == 0 {
		p.WriteHeader(http.StatusOK)
	}
	return p.ResponseWriter.Write(b)
}

// Flush supports streaming responses (server-sent events) through the cache.
func (p *passWriter) Flush() {
	if p.status == 0 {
		p.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(p.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the connection.
func (p *passWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }

// cleanHeader removes the fields that never leave the edge.
func (h *handler) cleanHeader(hdr http.Header, stripCookie bool) {
	delete(hdr, hdrOutpostCC)
	delete(hdr, hdrCDNCC)
	if !h.c.cfg.PassSurrogateHeaders {
		delete(hdr, "Surrogate-Key")
		delete(hdr, "Cache-Tag")
	}
	if stripCookie {
		delete(hdr, "Set-Cookie")
	}
}
