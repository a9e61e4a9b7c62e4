package cdn

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
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
	if r.Header.Get("Upgrade") != "" {
		// A protocol switch (WebSocket) is a tunnel, not a representation.
		h.pass(w, r, resBypass, "upgrade")
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
	f, leader := h.c.join(fk, key)
	if !leader {
		h.follow(w, r, f, key, stale)
		return
	}
	var lc *leaderClient
	func() {
		defer h.c.release(fk, f)
		lc = h.lead(w, r, f, key, stale, false)
	}()
	lc.wait()
}

// refresh revalidates e in the background, once per object at a time.
func (h *handler) refresh(r *http.Request, key string, e *store.Entry) {
	fk := h.fillKey(key, r)
	f, ok := h.c.tryJoin(fk, key)
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
			h.serveEntry(w, r, f.stale, resStale, "fwd=stale; collapsed; detail=stale-if-error", h.c.now())
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
	addCacheStatus(hdr, "Outpost; fwd=miss; collapsed")
	w.WriteHeader(f.status)
	if r.Method == http.MethodHead {
		return
	}
	bp := h.c.bufs.Get().(*[]byte)
	defer h.c.bufs.Put(bp)
	if off, ok := f.follow(w, file, r.Context().Done(), *bp); !ok && !h.resume(w, r, f, off) {
		// Neither the fill nor the origin can finish this body: cut the
		// connection rather than pass a truncated body off as complete.
		panic(http.ErrAbortHandler)
	}
}

// resume finishes a follower's body from the origin after the fill it was
// copying stopped (disk full, an I/O error, an object over the size
// limit): the origin still serves the leader, so the follower must not be
// cut short either. It asks for the rest with a range request guarded by
// If-Range on a strong validator, so both halves are one representation,
// and accepts only a 206 for exactly the rest. Without a strong validator
// it reports false.
func (h *handler) resume(w http.ResponseWriter, r *http.Request, f *fill, off int64) bool {
	validator := f.header.Get("ETag")
	if validator == "" || strings.HasPrefix(validator, "W/") {
		lm, ok := strongLastModified(f.header)
		if !ok {
			return false
		}
		validator = lm
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	out := originRequest(ctx, r)
	out.Header.Set("Range", "bytes="+strconv.FormatInt(off, 10)+"-")
	out.Header.Set("If-Range", validator)
	h.c.m.fetches.WithLabelValues("resume").Inc()
	rw := &resumeWriter{w: w, off: off, header: make(http.Header)}
	if cl, err := strconv.ParseInt(f.header.Get("Content-Length"), 10, 64); err == nil {
		rw.total = cl
	} else {
		rw.total = -1
	}
	func() {
		defer func() {
			if p := recover(); p != nil && p != http.ErrAbortHandler {
				panic(p)
			}
		}()
		h.up.ServeHTTP(rw, out)
	}()
	ok := rw.ok && rw.copied == rw.want
	if !ok {
		h.c.log.Warn("cache fill stopped and the origin could not finish a follower's body",
			"path", r.URL.Path, "sent", off+rw.copied)
	}
	return ok
}

// strongLastModified returns h's Last-Modified if it is a strong validator:
// the response was generated at least a second after it (RFC 9110 §8.8.2.2,
// §13.1.5).
func strongLastModified(h http.Header) (string, bool) {
	v := h.Get("Last-Modified")
	lm, ok1 := parseHTTPDate(v)
	date, ok2 := parseHTTPDate(h.Get("Date"))
	return v, ok1 && ok2 && date.Sub(lm) >= time.Second
}

// resumeWriter takes the origin's answer to a resume request: it passes the
// body on only if the answer is a 206 for exactly the bytes still missing.
type resumeWriter struct {
	w       http.ResponseWriter
	header  http.Header
	off     int64
	total   int64 // the representation's length, -1 if the fill did not know it
	decided bool
	ok      bool
	want    int64
	copied  int64
}

func (rw *resumeWriter) Header() http.Header { return rw.header }

func (rw *resumeWriter) WriteHeader(code int) {
	if rw.decided || code < 200 {
		return
	}
	rw.decided = true
	if code != http.StatusPartialContent {
		return
	}
	first, last, size, ok := parseContentRange(rw.header.Get("Content-Range"))
	if !ok || first != rw.off || last != size-1 || (rw.total >= 0 && size != rw.total) {
		return
	}
	rw.ok, rw.want = true, size-first
}

func (rw *resumeWriter) Write(p []byte) (int, error) {
	if !rw.decided {
		rw.WriteHeader(http.StatusOK)
	}
	if !rw.ok {
		return 0, errResumeRefused // the proxy stops copying
	}
	if int64(len(p)) > rw.want-rw.copied {
		rw.ok = false // more than the range said: not what we asked for
		return 0, errResumeRefused
	}
	n, err := rw.w.Write(p)
	rw.copied += int64(n)
	return n, err
}

var errResumeRefused = errors.New("cdn: origin did not answer the resume range")

// parseContentRange reads "bytes first-last/size" (a known size only).
func parseContentRange(v string) (first, last, size int64, ok bool) {
	rest, found := strings.CutPrefix(v, "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	span, sz, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, 0, false
	}
	a, b, found := strings.Cut(span, "-")
	if !found {
		return 0, 0, 0, false
	}
	var err1, err2, err3 error
	first, err1 = strconv.ParseInt(a, 10, 64)
	last, err2 = strconv.ParseInt(b, 10, 64)
	size, err3 = strconv.ParseInt(sz, 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || first < 0 || last < first || size <= last {
		return 0, 0, 0, false
	}
	return first, last, size, true
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
	// Under purgeMu, as a purge: a compression rendition or a 304 refresh
	// replaces an entry with a copy, and a copy made between Variants and
	// Remove would be skipped as "changed meanwhile" and stay fresh.
	h.c.purgeMu.Lock()
	defer h.c.purgeMu.Unlock()
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
		if code != http.StatusSwitchingProtocols { // an upgrade needs its Connection and Upgrade
			p.h.cleanHeader(hdr, false)
		}
		hdr.Set("X-Cache", p.xcache)
		switch {
		case p.xcache == resBypass && p.detail == "method":
			// RFC 9211 §2.2: the method's semantics require the forward.
			addCacheStatus(hdr, "Outpost; fwd=method")
		case p.xcache == resBypass:
			addCacheStatus(hdr, "Outpost; fwd=bypass; detail="+p.detail)
		default:
			addCacheStatus(hdr, "Outpost; fwd=uri-miss; detail="+p.detail)
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
	dropConnectionFields(hdr)
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
