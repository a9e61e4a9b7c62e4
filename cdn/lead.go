package cdn

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost/cdn/store"
	"github.com/outpost-edge/outpost/internal/reqinfo"
)

// leadMode is what the leader does with the origin response.
type leadMode int

const (
	modeNone        leadMode = iota
	modeStore                // tee: to the store and (unless deferred) the client
	modePass                 // not storable: straight to the client
	modeRevalidated          // 304 for the stale entry: refresh and serve it
	modeStaleError           // origin error with a usable stale entry: serve it
	modeRetryPass            // range too large to fill: pass the original request
	modeMismatch             // 304 for another representation: drop stale, pass
)

// conditionalHeaders are removed from fill requests: the cache wants the
// full object, and answers the client's conditionals itself.
var conditionalHeaders = []string{"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range", "Range"}

// unkeyedOverrides are request fields some origins honour to change the
// URL, host or method they answer for. They are not part of the cache key,
// so a fill never forwards them: one client's header must not shape the
// stored response every other client gets (cache poisoning). The proxy
// behind the cache sets its own X-Forwarded-* from the connection.
var unkeyedOverrides = []string{
	"X-Forwarded-Host", "X-Forwarded-Server", "X-Forwarded-Proto", "X-Forwarded-Scheme",
	"X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Path", "X-Host", "X-Original-Url",
	"X-Original-Host", "X-Rewrite-Url", "X-Http-Method-Override", "X-Http-Method",
	"X-Method-Override", "Forwarded",
}

// originRequest is the bodiless GET the cache sends the origin for r: the
// client's own conditionals and the unkeyed overrides are dropped.
func originRequest(ctx context.Context, r *http.Request) *http.Request {
	out := r.Clone(ctx)
	out.Method = http.MethodGet
	out.Body = http.NoBody
	out.ContentLength = 0
	for _, k := range conditionalHeaders {
		out.Header.Del(k)
	}
	for _, k := range unkeyedOverrides {
		out.Header.Del(k)
	}
	return out
}

// lead performs the origin fetch for a fill. w is nil for a background
// refresh. It must be called with a deferred release of f. When the
// client is served from the body file (see leaderClient), lead returns
// with that still going on: the caller releases f first — the fetch is
// over for everyone else — and then waits for it.
func (h *handler) lead(w http.ResponseWriter, r *http.Request, f *fill, key string, stale *store.Entry, bg bool) (lc *leaderClient) {
	c := h.c
	deferClient := bg || needsEntry(r)
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	out := originRequest(ctx, r)
	kind := "fill"
	if stale != nil {
		kind = "revalidate"
		if et := stale.Header.Get("ETag"); et != "" {
			out.Header.Set("If-None-Match", et)
		}
		if lm := stale.Header.Get("Last-Modified"); lm != "" {
			out.Header.Set("If-Modified-Since", lm)
		}
	}
	if bg {
		kind = "background"
	}
	c.m.fetches.WithLabelValues(kind).Inc()

	cw := &captureWriter{header: make(http.Header), f: f}
	cw.onFileErr = func(err error) { c.ioError("write", key, err) }
	// lc, once the body is being stored, serves this client from the
	// file. On a panic its writes must still end before the handler does:
	// the fill is marked failed first (release, which would, runs only
	// after lead), so the client stops waiting for more and is cut.
	returned := false
	defer func() {
		if lc != nil && !returned {
			lc.pw.CloseWithError(errUpstreamBroke)
			n, _, _, _ := f.snapshot()
			f.progress(n, false, true)
			<-lc.done
		}
	}()
	// Purges numbered after mark ran while this was fetched.
	mark := c.purgeSeq.Load()
	reqTime := c.now()
	var dec storeDecision
	var respTime time.Time
	var hdr http.Header
	// Cache-Status (RFC 9211 §2.2): why this went forward, and with a
	// stored response, what came back.
	fwd, fwdPass := "fwd=miss", "fwd=uri-miss"
	cw.onHeader = func(status int, hd http.Header) {
		respTime = c.now()
		hdr = hd
		if stale != nil {
			fwd = "fwd=" + c.fwdReason(stale, reqTime) + "; fwd-status=" + strconv.Itoa(status)
			fwdPass = fwd
		}
		switch {
		case stale != nil && status == http.StatusNotModified && !sameValidator(stale.Header, hd):
			cw.mode = modeMismatch
			f.setReady(outcomePass)
			return
		case stale != nil && status == http.StatusNotModified:
			cw.mode = modeRevalidated
			return
		case stale != nil && status >= 500 && c.staleOnError(stale, respTime):
			cw.mode = modeStaleError
			return
		}
		dec = h.decide(r, key, status, hd, reqTime, respTime)
		if !dec.ok && !bg && r.Header.Get("Range") != "" {
			// Not storable, and the fill dropped the client's Range: ask
			// again with it rather than send a whole (maybe huge) body.
			cw.mode = modeRetryPass
			f.setReady(outcomePass)
			cancel()
			return
		}
		if !dec.ok {
			cw.mode = modePass
			f.setReady(outcomePass)
			if !bg {
				cw.client = w
				h.cleanHeader(hd, false)
				copyHeader(w.Header(), hd)
				w.Header().Set("X-Cache", resMiss)
				addCacheStatus(w.Header(), "Outpost; "+fwdPass+"; detail="+dec.reason)
				cw.clientBody = r.Method != http.MethodHead
				reqinfo.From(r.Context()).Set(reqinfo.FieldCache, resMiss)
				c.m.result(resMiss)
				w.WriteHeader(status)
			}
			return
		}
		if !bg && r.Header.Get("Range") != "" {
			if n, ok := parseContentLength(hd.Get("Content-Length")); ok && n > c.cfg.RangeFetchLimit.Int64() {
				cw.mode = modeRetryPass
				f.setReady(outcomePass)
				cancel()
				return
			}
		}
		wr, err := c.store.Create()
		if err != nil {
			c.ioError("create", key, err)
			cw.mode = modePass
			f.setReady(outcomePass)
			if !bg {
				cw.client = w
				h.cleanHeader(hd, false)
				copyHeader(w.Header(), hd)
				w.Header().Set("X-Cache", resMiss)
				addCacheStatus(w.Header(), "Outpost; "+fwdPass+"; detail=store-error")
				cw.clientBody = r.Method != http.MethodHead
				reqinfo.From(r.Context()).Set(reqinfo.FieldCache, resMiss)
				c.m.result(resMiss)
				w.WriteHeader(status)
			}
			return
		}
		cw.mode = modeStore
		cw.storing.Store(true)
		cw.file = wr
		ch := make(http.Header, len(hd)+3)
		copyHeader(ch, hd)
		h.cleanHeader(ch, h.rc.StripSetCookie)
		if dec.meta.InitialAge >= time.Second || len(hd["Age"]) > 0 {
			// Also replaces an Age the origin sent that meant nothing
			// (not a number, negative): RFC 9111 §5.1.
			ch.Set("Age", strconv.FormatInt(int64(dec.meta.InitialAge/time.Second), 10))
		}
		if dec.meta.Compressible {
			varyOnEncoding(ch)
		}
		if _, ok := parseHTTPDate(hd.Get("Date")); !ok {
			ch["Date"] = dec.meta.Header["Date"] // as stored: when it arrived
		}
		// Requests collapsed onto this fetch are other clients: they do
		// not get the fields the origin kept for this one.
		fh := ch
		if len(dec.unshared) > 0 {
			fh = ch.Clone()
			for _, k := range dec.unshared {
				delete(fh, k)
			}
		}
		f.status, f.header, f.vary, f.variant, f.tempPath = status, fh, dec.meta.Vary, dec.meta.Variant, wr.TempPath()
		f.tags = dec.meta.Tags
		f.setReady(outcomeStoring)
		if !deferClient {
			copyHeader(w.Header(), ch)
			w.Header().Set("X-Cache", resMiss)
			addCacheStatus(w.Header(), "Outpost; "+fwd+"; stored")
			reqinfo.From(r.Context()).Set(reqinfo.FieldCache, resMiss)
			c.m.result(resMiss)
			if r.Method == http.MethodHead {
				cw.client = w // for its header only (clientBody is false)
				w.WriteHeader(status)
				return
			}
			// This client reads the body from the file being written, as
			// its followers do, not from the fill: a client that reads
			// slowly (or not at all) must not hold the origin fetch — and
			// every request coalesced onto it — to its own pace.
			file, err := openFile(wr.TempPath())
			if err != nil {
				c.ioError("open", key, err)
				cw.client, cw.clientBody = w, true // tee, as a last resort
				w.WriteHeader(status)
				return
			}
			w.WriteHeader(status)
			lc = &leaderClient{done: make(chan struct{})}
			lc.pr, lc.pw = io.Pipe()
			cw.lc = lc
			go lc.follow(h, w, r, f, file)
		}
	}
	// A foreground fetch is cancelled when its client leaves, unless the
	// body is being stored: then it completes for the cache's sake.
	if !bg {
		stop := context.AfterFunc(r.Context(), func() {
			if !cw.storing.Load() {
				cancel()
			}
		})
		defer stop()
	}

	p := h.callUpstream(cw, out)
	if lc != nil {
		// The end of what the fill passes on once the file failed.
		if p != nil {
			lc.pw.CloseWithError(errUpstreamBroke)
		} else {
			lc.pw.Close()
		}
	}
	if p != nil {
		if cw.file != nil {
			cw.file.Abort()
			cw.file = nil
		}
		f.progress(0, false, true)
		switch {
		case cw.mode == modeRetryPass, cw.mode == modeRevalidated, cw.mode == modeStaleError, cw.mode == modeMismatch:
			// The body was being discarded (or cut on purpose): carry on.
		case cw.mode == modeStore && lc != nil:
			// The file and the pipe both ended with the failure: the
			// client following them is cut. Nothing is left to commit.
			cw.mode = modeNone
		case cw.mode == modeStore && cw.client == nil:
			// Nothing reached this client yet (deferred or background):
			// fetch it for them uncached.
			cw.mode = modeRetryPass
		case cw.mode == modeNone && stale != nil && c.staleOnError(stale, c.now()):
			cw.mode = modeStaleError
		default:
			panic(p)
		}
	}
	if p == nil && !cw.wroteHeader {
		cw.WriteHeader(http.StatusOK)
	}

	switch cw.mode {
	case modeStore:
		h.commit(w, r, f, cw, dec, hdr, mark, fwd, deferClient, bg)
	case modeRevalidated:
		e, err := h.revalidated(r, key, stale, hdr, reqTime, respTime)
		if errors.Is(err, errNoLongerStorable) {
			// The stored copy is gone (its body may be too): this client
			// gets the response, with the 304's fields, from the origin.
			f.setReady(outcomePass)
			if !bg {
				h.pass(w, r, resMiss, "no-longer-storable")
			}
			break
		}
		if err != nil {
			e = stale
		}
		f.xcache = resRevalidated
		f.setReady(outcomeLookup)
		if !bg {
			h.serveEntry(w, r, e, resRevalidated, fwd, c.now())
		}
	case modeStaleError:
		// Its tags let a later hard purge of stale detach this fill
		// before anyone else is served it.
		f.stale, f.tags = stale, stale.Tags
		f.setReady(outcomeLookup)
		if !bg {
			c.log.Warn("origin failed, serving stale", "key", key, "status", cw.status)
			h.serveEntry(w, r, stale, resStale, "fwd=stale; fwd-status="+strconv.Itoa(cw.status)+"; detail=stale-if-error", c.now())
		}
	case modeRetryPass:
		if !bg {
			h.pass(w, r, resMiss, "range-too-large")
		}
	case modeMismatch:
		// RFC 9111 §4.3.4: a 304 whose validator is not the stored
		// response's must not refresh it. That copy is outdated (or the
		// origin confused): drop it, and fetch this client's answer anew.
		c.store.Remove([]*store.Entry{stale})
		if !bg {
			h.pass(w, r, resMiss, "validator-mismatch")
		}
	case modePass:
		if stale != nil && cw.status < 500 {
			// The origin answered but no longer lets this be stored (or it
			// is gone): drop the old copy.
			c.store.Remove([]*store.Entry{stale})
		}
	}
	returned = true
	return lc
}

// leaderClient serves the leading request's client from the body file of
// its own fill, on a goroutine of its own, so the fill runs at the
// origin's pace rather than that client's. If the fill stops writing the
// file (disk full, an I/O error, an object over the size limit) the rest
// of the body reaches this client through pr, straight from the origin
// response as the fill receives it: the leader is never cut for the
// cache's trouble, whatever validators the response has.
type leaderClient struct {
	done chan struct{}
	pr   *io.PipeReader
	pw   *io.PipeWriter // the fill's end, written once the file failed
	cut  bool           // the body could not be finished: the connection must be cut
}

// wait waits until the client has its body; one that could not be
// finished is cut (the handler aborts), never passed off as complete. A
// nil lc has nothing to wait for.
func (lc *leaderClient) wait() {
	if lc == nil {
		return
	}
	<-lc.done
	if lc.cut {
		panic(http.ErrAbortHandler)
	}
}

func (lc *leaderClient) follow(h *handler, w http.ResponseWriter, r *http.Request, f *fill, file *os.File) {
	defer close(lc.done)
	defer file.Close()
	// Leaving early (the client went away) unblocks the fill's writes.
	defer lc.pr.Close()
	bp := h.c.bufs.Get().(*[]byte)
	defer h.c.bufs.Put(bp)
	buf := *bp
	off, ok := f.follow(w, file, r.Context().Done(), buf)
	if ok {
		return // whole, or the client left
	}
	// The fill failed. follow copied what it wrote to the file before;
	// the pipe has the rest. A file that could not be read that far
	// leaves a gap the pipe cannot fill.
	if n, _, _, _ := f.snapshot(); off < n {
		lc.cut = true
		return
	}
	if _, err := io.CopyBuffer(struct{ io.Writer }{w}, lc.pr, buf); err != nil {
		lc.cut = true
	}
}

// callUpstream runs the upstream handler and returns what it panicked
// with, if anything (httputil.ReverseProxy panics with http.ErrAbortHandler
// when a body copy fails, including when the cache cancelled it).
func (h *handler) callUpstream(cw *captureWriter, out *http.Request) (panicked any) {
	defer func() { panicked = recover() }()
	h.up.ServeHTTP(cw, out)
	return nil
}

// commit finishes a stored body and, for deferred clients, serves it.
func (h *handler) commit(w http.ResponseWriter, r *http.Request, f *fill, cw *captureWriter, dec storeDecision, hdr http.Header, mark uint64, fwd string, deferClient, bg bool) {
	c := h.c
	wr := cw.file
	var err error
	if n, ok := parseContentLength(hdr.Get("Content-Length")); ok && n != wr.Written() && wr.Err() == nil {
		err = errors.New("origin body shorter than Content-Length")
	} else if werr := wr.Err(); werr != nil {
		err = werr
	}
	if err != nil {
		wr.Abort()
		cw.file = nil
		f.progress(wr.Written(), false, true)
	} else {
		f.progress(wr.Written(), true, false)
		m := dec.meta
		var e *store.Entry
		var cerr error
		c.purgeMu.RLock()
		hard, soft := c.purgeLog.since(mark, m.Key, m.Tags)
		if hard {
			// A hard purge of this object ran while it was fetched: the
			// body may be what it removed. The clients streaming it get
			// it whole; nobody else does.
			wr.Abort()
			cerr = errPurgedWhileFetched
		} else {
			if soft {
				// A soft one: keep it but revalidate.
				m.Invalidated = true
			}
			e, cerr = wr.Commit(m)
		}
		c.purgeMu.RUnlock()
		cw.file = nil
		switch {
		case errors.Is(cerr, errPurgedWhileFetched):
			c.log.Debug("not stored: purged while fetched", "key", dec.meta.Key)
		case errors.Is(cerr, store.ErrTooManyVariants):
			c.log.Debug("not stored: variant limit", "key", dec.meta.Key)
		case cerr != nil:
			c.ioError("commit", dec.meta.Key, cerr)
		}
		if cerr == nil && deferClient && !bg {
			h.serveEntry(w, r, e, resMiss, fwd+"; stored", c.now())
			return
		}
	}
	if deferClient && !bg {
		// Nothing was written to this client yet: fetch it for them.
		h.pass(w, r, resMiss, "store-error")
	}
}

var (
	errUpstreamBroke      = errors.New("cdn: the upstream failed mid-body")
	errPurgedWhileFetched = errors.New("cdn: purged while fetched")
	errNoLongerStorable   = errors.New("cdn: a 304 made the stored response unstorable")
)

// revalidated applies a 304 to the stale entry: stored header fields are
// replaced by the 304's (except Content-Length) and freshness restarts.
func (h *handler) revalidated(r *http.Request, key string, stale *store.Entry, h304 http.Header, reqTime, respTime time.Time) (*store.Entry, error) {
	merged := store.CloneHeader(stale.Header)
	d, _ := responseDirectives(h304)
	upd := storedHeader(h304, d, h.rc.StripSetCookie)
	for k, v := range upd {
		if k == "Content-Length" || k == "Set-Cookie" {
			continue
		}
		merged[k] = v
	}
	if _, ok := parseHTTPDate(h304.Get("Date")); !ok {
		// The 304 is the response freshness restarts from: without its
		// own Date, the stored one would make it look as old as the
		// first fetch (RFC 9110 §6.6.1, RFC 9111 §4.2.3).
		merged["Date"] = []string{httpDate(respTime)}
	}
	// Targeted fields govern freshness; the 304's replace the stored ones.
	probe := store.CloneHeader(merged)
	for _, k := range []string{hdrOutpostCC, hdrCDNCC, "Age"} {
		if v, ok := h304[k]; ok {
			probe[k] = v
		}
	}
	dec := h.decide(r, key, stale.Status, probe, reqTime, respTime)
	if !dec.ok {
		h.c.store.Remove([]*store.Entry{stale})
		return nil, errNoLongerStorable
	}
	// Under purgeMu: the update replaces stale with a copy, which a purge
	// between selecting stale and removing (or invalidating) it would miss.
	h.c.purgeMu.RLock()
	defer h.c.purgeMu.RUnlock()
	return h.c.store.Update(stale, func(m *store.Meta) {
		m.Header = merged
		m.RequestTime, m.ResponseTime = reqTime, respTime
		m.InitialAge, m.Lifetime = dec.meta.InitialAge, dec.meta.Lifetime
		m.SWR, m.SIE = dec.meta.SWR, dec.meta.SIE
		m.MustRevalidate, m.SharedMaxAge, m.NoCache = dec.meta.MustRevalidate, dec.meta.SharedMaxAge, dec.meta.NoCache
		m.Immutable = dec.meta.Immutable
		m.Tags = dec.meta.Tags
		m.Invalidated = false
	})
}

// fwdReason is the Cache-Status fwd value of a forward made with stale at
// hand (RFC 9211 §2.2): "request" when it was fresh and the request would
// not take it (no-cache, max-age, min-fresh), else "stale".
func (c *Cache) fwdReason(stale *store.Entry, now time.Time) string {
	if stale.Lifetime > c.currentAge(stale, now) && !stale.NoCache && !stale.Invalidated {
		return "request"
	}
	return "stale"
}

// sameValidator reports whether a 304 is about the stored response with
// header stored (RFC 9111 §4.3.4): an ETag must be the stored one, a
// Last-Modified (when there are no two ETags to compare) the stored one.
// ETags compare weakly: an origin that weakens the ETag of a compressed
// body (nginx) sends its 304 with the strong one. A validator the stored
// response lacks is no contradiction.
func sameValidator(stored, h304 http.Header) bool {
	et, st := h304.Get("Etag"), stored.Get("Etag")
	if et != "" && st != "" {
		return strings.TrimPrefix(et, "W/") == strings.TrimPrefix(st, "W/")
	}
	lm, ok1 := parseHTTPDate(h304.Get("Last-Modified"))
	slm, ok2 := parseHTTPDate(stored.Get("Last-Modified"))
	return !ok1 || !ok2 || lm.Equal(slm)
}

// addCacheStatus adds this cache's member after those of the caches before
// it (RFC 9211 §2), never writing into a slice another header shares.
func addCacheStatus(h http.Header, member string) {
	prev := h["Cache-Status"]
	h["Cache-Status"] = append(prev[:len(prev):len(prev)], member)
}

func (c *Cache) ioError(op, key string, err error) {
	c.m.ioErrors.WithLabelValues(op).Inc()
	c.log.Error("cache store error; serving uncached", "op", op, "key", key, "err", err)
}

func copyHeader(dst, src http.Header) {
	for k, v := range src {
		dst[k] = v
	}
}

// captureWriter is the ResponseWriter the upstream writes into on a fill.
// onHeader decides, once, where the body goes.
type captureWriter struct {
	header      http.Header
	onHeader    func(status int, h http.Header)
	wroteHeader bool
	status      int
	mode        leadMode
	storing     atomic.Bool // mode == modeStore, readable from other goroutines

	f          *fill
	file       *store.Writer
	onFileErr  func(error) // reports a store write error (once)
	fileFailed bool
	client     http.ResponseWriter
	clientBody bool
	clientErr  error
	lc         *leaderClient // the leader's client, following the file
}

func (cw *captureWriter) Header() http.Header { return cw.header }

func (cw *captureWriter) WriteHeader(code int) {
	if cw.wroteHeader {
		return
	}
	if code >= 100 && code < 200 {
		return // informational responses are not relayed through the cache
	}
	cw.wroteHeader = true
	cw.status = code
	cw.onHeader(code, cw.header)
}

func (cw *captureWriter) Write(p []byte) (int, error) {
	if !cw.wroteHeader {
		cw.WriteHeader(http.StatusOK)
	}
	rest := p // what the file did not take, for the leader's client
	if cw.file != nil && !cw.fileFailed {
		before := cw.file.Written()
		if _, err := cw.file.Write(p); err != nil {
			cw.fileFailed = true
			rest = p[cw.file.Written()-before:]
			cw.f.progress(cw.file.Written(), false, true)
			if !errors.Is(err, store.ErrTooLarge) && cw.onFileErr != nil {
				cw.onFileErr(err)
			}
		} else {
			cw.f.progress(cw.file.Written(), false, false)
		}
	}
	if cw.lc != nil && cw.fileFailed && cw.clientErr == nil && len(rest) > 0 {
		if _, err := cw.lc.pw.Write(rest); err != nil {
			cw.clientErr = err
		}
	}
	if cw.client != nil && cw.clientBody && cw.clientErr == nil {
		if _, err := cw.client.Write(p); err != nil {
			cw.clientErr = err
		}
	}
	if cw.mode == modeStore && cw.fileFailed && (cw.client == nil && cw.lc == nil || cw.clientErr != nil) {
		return 0, errors.New("cdn: nobody to write to")
	}
	return len(p), nil
}

// Flush forwards to the client for streamed pass-through responses.
func (cw *captureWriter) Flush() {
	if !cw.wroteHeader {
		cw.WriteHeader(http.StatusOK)
	}
	if cw.client != nil {
		_ = http.NewResponseController(cw.client).Flush()
	}
}
