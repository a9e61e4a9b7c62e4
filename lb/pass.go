package lb

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"net/netip"
	"net/textproto"
	"time"

	"github.com/outpost-edge/outpost/internal/httpwire"
	"github.com/outpost-edge/outpost/internal/reqinfo"
)

// PassRequest is a request on the pass lane: a bodiless GET or HEAD whose
// head the proxy has already rewritten as bytes, sent without an
// http.Request. Pool.Pass takes it through the same picks, retries,
// passive health, in-flight counts and metrics as RoundTrip.
type PassRequest struct {
	// Method is GET or HEAD.
	Method string
	// Target is the origin-form request target (path and query) as the
	// client sent it; a backend URL's path prefix is put before it.
	Target string
	// WriteFields writes the rest of the head after the request line —
	// Host and every other field line — through the blank line that ends
	// it. It runs once per try, into the backend connection's buffer.
	WriteFields func(*bufio.Writer)
	// ClientIP is the client as the edge established it (ip_hash).
	ClientIP netip.Addr
	// Field returns the values the named (canonical) field has in the
	// request RoundTrip would be given for this one — after the proxy's
	// rewrite; nil when it has none. consistent_hash on a header or a
	// cookie and sticky cookies read it.
	Field func(name string) []string
	// Info receives the upstream field; may be nil.
	Info *reqinfo.Info
	// BodyTimeout bounds each read of the response body that waits for
	// the backend; 0: none.
	BodyTimeout time.Duration
	// Got1xx is told each informational response (103 Early Hints)
	// before the final one; may be nil.
	Got1xx func(code int, header textproto.MIMEHeader) error
	// Ctx, when set, ends the request once done — the client reset its
	// HTTP/2 stream or closed its connection — as a request's context
	// ends RoundTrip's: the backend connection is aborted, and the
	// backend is not blamed. Nil: only the timeouts end it.
	Ctx context.Context
	// Watch, when set with Ctx, is called once the backend has not begun
	// to answer within 100 ms: the caller then watches for its client
	// leaving, which ends Ctx; until then Ctx is not looked at. The
	// HTTP/1.1 lane sets it (http1.Pass.Watch), so that a fast request
	// costs no watch at all.
	Watch func()

	// Head is the fields of the response relay is given when its head
	// was of the plain kind — HTTP/1.1, a final status, framed by one
	// Content-Length or by rule, without Transfer-Encoding or Trailer:
	// nearly all — in the order they came (names canonical), with a
	// sticky pool's Set-Cookie appended; the response's Header is then
	// nil, which tells the relay to write them itself, with no header
	// map. Any other head comes in Header, and Head is nil. Set by Pass;
	// valid until relay returns.
	Head []httpwire.Field

	// sel is Pass's, here so that a PassRequest the caller reuses
	// carries it from one request to the next without allocating it.
	sel Selection
}

// ErrNotPassable is returned by Pass, before anything is sent, for a pool
// whose backends are not all plain-http HTTP/1.1 ones, or that is closed:
// the caller serves the request the usual way.
var ErrNotPassable = errors.New("lb: this pool takes no pass-lane requests")

// passable reports whether a state can serve the pass lane: only
// plain-http backends on the synchronous HTTP/1.1 transport are reached
// without an http.Request. Policies and sticky cookies are served: Pass
// gives them the request's target and fields, which are all they read,
// and sets the sticky cookie on the response as RoundTrip does.
func (st *poolState) passable() bool {
	for _, b := range st.backends {
		if b.url.Scheme != "http" || b.transport.Load().off {
			return false
		}
	}
	return true
}

// Passable reports whether Pass would take a request now.
func (p *Pool) Passable() bool {
	return !p.closedFlag.Load() && p.state.Load().pass
}

// The requests readResponse parses pass-lane responses for: only the
// method matters to it (a HEAD's response has no body).
var (
	passGET  = &http.Request{Method: http.MethodGet}
	passHEAD = &http.Request{Method: http.MethodHead}
)

// Pass sends pr to a backend of the pool and hands the response to relay,
// which copies it to the client; Pass closes the body after relay returns
// and returns relay's error. A failure before the response headers — a
// connect error, a stale connection, a per-try timeout, a broken head — is
// retried on another backend within max_tries, the retry budget and
// timeouts.total, as RoundTrip retries an idempotent request (a GET or
// HEAD always is). When no try answered, Pass returns RoundTrip's errors
// (*Error: 503, 504 or 502) without calling relay; ErrNotPassable when the
// pool cannot take the request this way.
func (p *Pool) Pass(pr *PassRequest, relay func(*http.Response) error) error {
	var req *http.Request
	switch pr.Method {
	case http.MethodGet:
		req = passGET
	case http.MethodHead:
		req = passHEAD
	}
	st := p.state.Load()
	if p.closedFlag.Load() || !st.pass || req == nil {
		return ErrNotPassable
	}
	start := p.now()
	sel := &pr.sel
	*sel = Selection{Backends: st.backends, ClientIP: pr.ClientIP, slowStart: st.slowStart, rand: p.rand, now: start.UnixNano()}
	if ch, ok := st.policy.(*consistentHash); ok {
		sel.Req = ch.passRequest(pr)
	}
	var pinned *Backend
	var refresh bool
	if st.sticky.enabled && pr.Field != nil {
		pinned, refresh = st.pinOf(&http.Request{Header: http.Header{"Cookie": pr.Field("Cookie")}}, start)
	}
	p.budget.deposit()
	// timeouts.total, on the wall clock (the deadline of sockets and
	// timers; p.now may be a test's).
	wall := start
	if !p.wallNow {
		wall = time.Now()
	}
	deadline := wall.Add(st.cfg.Timeouts.Total.D())
	var lastErr error
	var lastKind int
	var last *Backend
	// Retries wait out their backoff within timeouts.total; the context
	// for that is made only when a request is retried.
	var retryCtx context.Context
	for try := 0; try < st.cfg.Retries.MaxTries; try++ {
		b := st.pick(sel, try, pinned)
		if b == nil {
			break
		}
		sent, sentWall := start, wall
		if try > 0 {
			if retryCtx == nil {
				var cancel context.CancelFunc
				retryCtx, cancel = context.WithDeadline(context.Background(), deadline)
				defer cancel()
			}
			if !p.retry(retryCtx, st, b, try) {
				if retryCtx.Err() != nil {
					lastErr, lastKind = errTotalTimeout, kindTimeout
				}
				break
			}
			sent = p.now()
			sentWall = sent
			if !p.wallNow {
				sentWall = time.Now()
			}
		}
		sel.exclude(b)
		pr.Info.Set(reqinfo.FieldUpstream, b.url.Host)
		b.begin()
		resp, err := b.transport.Load().pass(b, pr, req, sentWall, deadline)
		if err != nil {
			b.inflight.Add(-1)
			if pr.gone() {
				// The client went away; not the backend's fault.
				lastErr, lastKind, last = pr.Ctx.Err(), kindOther, b
				break
			}
			lastKind = p.tryFailed(st, b, err)
			lastErr, last = err, b
			continue
		}
		done := p.now()
		failed := b.gotHeaders(sent, done, resp.StatusCode)
		if failed {
			p.recordOutcome(st, b, true)
		}
		body := resp.Body.(*h1Body) // awaitResponse's
		raw := resp.Header == nil   // a plain head: its fields are the connection's list
		pr.Head = nil
		if raw {
			pr.Head = body.pc.passed.fields
		}
		st.repin(resp, &pr.Head, b, pinned, refresh, pr.Info != nil && pr.Info.TLS, done)
		rerr := relay(resp)
		// A failed read is the backend's doing; a failed write to the
		// client is not (relay stops reading then), nor a read the
		// client's leaving aborted. Read before release: body, like
		// resp, is the connection's, which release hands to the next
		// request.
		broke := body.broke && !pr.gone()
		if raw {
			body.pc.passed.fields = pr.Head[:0] // with the room a cookie took
			pr.Head = nil
		}
		body.release() // resp, the connection's reused one, is done with
		b.inflight.Add(-1)
		if broke {
			b.metrics.errOther.Inc()
		}
		if !failed {
			// A success is known only once the body arrived whole.
			p.recordOutcome(st, b, broke)
		}
		return rerr
	}
	if lastErr != nil && pr.gone() {
		return pr.Ctx.Err()
	}
	return p.failure(lastErr, lastKind, last)
}

// gone reports whether the request's context ended: the client left.
func (pr *PassRequest) gone() bool { return pr.Ctx != nil && pr.Ctx.Err() != nil }

// pass sends pr to backend b over a kept-alive connection, or a new one,
// and waits for the response headers no later than deadline (the pool's
// total timeout); now is the wall clock's reading as it begins. A kept-alive connection the backend had closed is
// replaced once, as RoundTrip's transport does: a GET or HEAD may be sent
// again.
func (t *h1Transport) pass(b *Backend, pr *PassRequest, req *http.Request, now, deadline time.Time) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			now = time.Now()
		}
		pc, reused, err := t.get(context.Background(), dialAddr(b.url), now)
		if err != nil {
			return nil, err
		}
		// Cancellation unblocks the reads below, and the body's; a
		// connection it touched is never reused.
		w := headWait{stop: noStop, reuse: true, ctx: pr.Ctx}
		switch {
		case pr.Ctx != nil && pr.Watch != nil:
			w.due.watch = pr.Watch
		case pr.Ctx != nil:
			w.stop = context.AfterFunc(pr.Ctx, pc.abort)
		}
		pc.armHeader(deadline, &w, now)
		bw := pc.bw
		bw.WriteString(pr.Method)
		bw.WriteByte(' ')
		if b.url.Path != "" {
			bw.WriteString(b.url.EscapedPath())
		}
		bw.WriteString(pr.Target)
		bw.WriteString(" HTTP/1.1\r\n")
		pr.WriteFields(bw)
		if err = bw.Flush(); err != nil {
			err = staleErr{err: err}
		} else {
			var resp *http.Response
			resp, err = pc.awaitResponse(req, pr.Got1xx, &w, pr.BodyTimeout)
			if err == nil {
				return resp, nil
			}
		}
		w.stop()
		pc.c.Close()
		if pr.gone() {
			return nil, err
		}
		if err = afterFailure(err, reused && attempt == 0, true); err != nil {
			return nil, err // a GET or HEAD may always be repeated
		}
	}
}

// watchAfter is how long a pass-lane request with a Watch waits for its
// backend's answer before its client is watched: the HTTP/1.1 server's
// delay for the handler's requests.
const watchAfter = 100 * time.Millisecond

// noStop is the stop of a request no context can cancel, or whose
// cancellation is not arranged yet.
func noStop() bool { return true }

// noWatch is the watch of a request that has nothing to start but its
// cancellation (RoundTrip's, as opposed to the pass lane's).
func noWatch() {}
