package lb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost/internal/reqinfo"
)

// errTotalTimeout is the cancel cause when timeouts.total expires before
// response headers.
var errTotalTimeout = errors.New("lb: total timeout")

// errBodyDetached is returned by a request body wrapper that a retry has
// taken over; the abandoned try must not consume the client's bytes.
var errBodyDetached = errors.New("lb: request body moved to a retry")

// RoundTrip sends req to a backend of the pool. req is the outbound request
// built by the proxy; its URL's scheme and host are filled in here, and the
// backend's path prefix is prepended. A connect failure, or a failure of an
// idempotent request before response headers, is retried on another backend
// within max_tries, the retry budget and timeouts.total; a request whose
// body was partly sent is retried only when req.GetBody can replay it.
//
// Errors: ErrNoBackend (answer 503), timeouts that match
// context.DeadlineExceeded (504), or the last try's error (502).
func (p *Pool) RoundTrip(req *http.Request) (*http.Response, error) {
	return p.RoundTripIdle(req, 0)
}

// RoundTripIdle is RoundTrip with each read of the response body that
// waits for the backend bounded by idle (a route's body_timeout; 0: none;
// see h1Transport.RoundTripIdle). A body cut short that way counts against
// its backend, as any body the backend breaks off.
func (p *Pool) RoundTripIdle(req *http.Request, idle time.Duration) (*http.Response, error) {
	if p.closedFlag.Load() {
		closeBody(req.Body)
		return nil, ErrClosed
	}
	if req.URL == nil {
		closeBody(req.Body)
		return nil, errors.New("lb: request without URL")
	}
	st := p.state.Load()
	parent := req.Context()
	info := reqinfo.From(parent)
	start := p.now()
	// One allocation carries the selection state, the first try's
	// request and URL and, after the headers, the response body wrapper.
	c := &call{}
	sel := &c.sel
	*sel = Selection{Req: req, Backends: st.backends, slowStart: st.slowStart, rand: p.rand, now: start.UnixNano()}
	if info != nil {
		sel.ClientIP = info.ClientIP
	}
	pinned, refresh := st.pinOf(req, start)
	p.budget.deposit()

	// The first try is bounded by the connect and per-try timeouts; the
	// total timer is armed only when those could exceed it, or before a
	// retry, so the common request allocates no context or timer for it.
	ctx := parent
	total := st.cfg.Timeouts.Total.D()
	if st.cfg.Timeouts.Connect.D()+st.cfg.Timeouts.Try.D() > total {
		ctx = c.arm(parent, total)
	}

	body := req.Body
	if body == http.NoBody {
		body = nil
	}
	var lastErr error
	var lastKind int
	var last *Backend
	tries := st.cfg.Retries.MaxTries
	for try := 0; try < tries; try++ {
		b := st.pick(sel, try, pinned)
		if b == nil {
			break
		}
		if try > 0 {
			if c.cancel == nil {
				left := total - p.now().Sub(start)
				if left <= 0 {
					lastErr, lastKind = errTotalTimeout, kindTimeout
					break
				}
				ctx = c.arm(parent, left)
			}
			if !p.retry(ctx, st, b, try) {
				if context.Cause(ctx) == errTotalTimeout && parent.Err() == nil {
					// timeouts.total ran out while waiting to retry: a
					// timeout (504), whatever the last try said.
					lastErr, lastKind = errTotalTimeout, kindTimeout
				}
				break
			}
		}
		sel.exclude(b)

		// A failed try's transport may still hold its request and URL,
		// so retries get their own; the first try's live in call.
		// (WithContext's copy is only copied from, so it stays on the
		// stack.)
		out, u := &c.req, &c.url
		if try > 0 {
			out, u = req.WithContext(ctx), new(url.URL)
		} else {
			c.req = *req.WithContext(ctx)
		}
		*u = *req.URL
		u.Scheme, u.Host = b.url.Scheme, b.url.Host
		joinPrefix(u, b.url)
		out.URL = u
		reqinfo.FinalizeOutgoing(out)
		var rb *reqBody
		if body != nil {
			rb = &reqBody{rc: body}
			out.Body = rb
		}
		info.Set(reqinfo.FieldUpstream, b.url.Host)
		b.begin()
		sent := start
		if try > 0 {
			sent = p.now()
		}
		resp, err := b.transport.Load().RoundTripIdle(out, idle)
		if err == nil {
			c.headers.Store(true)
			if c.timer != nil {
				c.timer.Stop()
			}
			done := p.now()
			failed := b.gotHeaders(sent, done, resp.StatusCode)
			if failed || resp.StatusCode == http.StatusSwitchingProtocols {
				p.recordOutcome(st, b, failed)
			} else {
				// A success is known only once the body arrived whole: a
				// backend that breaks every body after good headers must
				// be ejected like one that answers 502.
				c.pool, c.st, c.parent = p, st, parent
			}
			if rb != nil {
				rb.release()
			}
			st.repin(resp, nil, b, pinned, refresh, req.TLS != nil || (info != nil && info.TLS), done)
			c.backend = b
			c.body = resp.Body
			if resp.StatusCode == http.StatusSwitchingProtocols {
				if _, ok := resp.Body.(io.Writer); ok {
					resp.Body = &upgradeBody{c}
					return resp, nil
				}
			}
			resp.Body = c
			return resp, nil
		}
		b.inflight.Add(-1)
		if parent.Err() != nil {
			// The client went away; not the backend's fault.
			lastErr, lastKind, last = parent.Err(), kindOther, b
			break
		}
		if context.Cause(ctx) == errTotalTimeout {
			lastErr, lastKind, last = errTotalTimeout, kindTimeout, b
			break
		}
		lastKind = p.tryFailed(st, b, err)
		lastErr, last = err, b
		if lastKind != kindConnect && !idempotent(req) {
			break
		}
		if rb != nil && !rb.detach() {
			// Some of the body went to the failed backend: only an
			// idempotent request with a replayable body may go again.
			if req.GetBody == nil || !idempotent(req) {
				break
			}
			nb, gerr := req.GetBody()
			if gerr != nil {
				break
			}
			body = nb
		}
	}
	if c.cancel != nil {
		c.timer.Stop()
		c.cancel(nil)
	}
	closeBody(body)
	if lastErr != nil && parent.Err() != nil {
		// The client went away, during a try or while waiting to retry.
		return nil, parent.Err()
	}
	return nil, p.failure(lastErr, lastKind, last)
}

// failure is the error of a request no try answered: lastErr of kind
// lastKind from backend last, or none tried.
func (p *Pool) failure(lastErr error, lastKind int, last *Backend) error {
	switch {
	case lastErr == nil:
		return &Error{Pool: p.name, Err: ErrNoBackend}
	case lastKind == kindTimeout:
		return &Error{Pool: p.name, Backend: last.id, Err: fmt.Errorf("%w: %w", ErrTimeout, lastErr), timeout: true}
	}
	return &Error{Pool: p.name, Backend: last.id, Err: lastErr}
}

// begin counts a try sent to b.
func (b *Backend) begin() {
	b.inflight.Add(1)
	b.requests.Add(1)
	b.metrics.requests.Inc()
}

// gotHeaders records a try sent at sent whose response headers arrived at
// done, and reports whether its status counts as a failure (5xx).
func (b *Backend) gotHeaders(sent, done time.Time, status int) bool {
	lat := done.Sub(sent)
	b.observeLatency(lat, done.UnixNano())
	b.metrics.latency.Observe(lat.Seconds())
	if status >= 500 {
		b.metrics.err5xx.Inc()
		return true
	}
	return false
}

// tryFailed records a try to b that failed before its response headers
// (b's in-flight count already dropped) and returns the kind of failure.
func (p *Pool) tryFailed(st *poolState, b *Backend, err error) int {
	kind := errorKind(err)
	switch kind {
	case kindConnect:
		b.metrics.errConn.Inc()
	case kindTimeout:
		b.metrics.errTime.Inc()
	default:
		b.metrics.errOther.Inc()
	}
	p.recordOutcome(st, b, true)
	return kind
}

// Error is a failed RoundTrip: which pool, which backend was tried last, and
// why. Match its cause with errors.Is (ErrNoBackend, ErrTimeout,
// context.DeadlineExceeded); Timeout reports timeouts even through
// *url.Error. Backend ids and causes are for logs, not for clients.
type Error struct {
	Pool    string
	Backend string // last backend tried; "" when none was available
	Err     error
	timeout bool
}

func (e *Error) Error() string {
	if e.Backend == "" {
		return fmt.Sprintf("lb: pool %q: %v", e.Pool, e.Err)
	}
	return fmt.Sprintf("lb: pool %q: backend %s: %v", e.Pool, e.Backend, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Timeout reports whether the request timed out (net.Error).
func (e *Error) Timeout() bool { return e.timeout }

// Temporary is part of net.Error.
func (e *Error) Temporary() bool { return e.timeout }

// HTTPStatus is the status a proxy should answer: 503 when no backend was
// available, 504 on timeout, else 502.
func (e *Error) HTTPStatus() int {
	switch {
	case errors.Is(e.Err, ErrNoBackend):
		return http.StatusServiceUnavailable
	case e.timeout:
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

// retry admits retry number try (1-based) to b: the retry budget allows
// it and its backoff ran out before ctx ended.
func (p *Pool) retry(ctx context.Context, st *poolState, b *Backend, try int) bool {
	if !p.budget.withdraw() || !p.backoff(ctx, st.cfg.Retries, try) {
		return false
	}
	b.metrics.retries.Inc()
	return true
}

// backoff waits before retry number try (1-based) with full jitter. It
// reports false when ctx ended first.
func (p *Pool) backoff(ctx context.Context, c RetryConfig, try int) bool {
	d := c.Backoff.D()
	for i := 1; i < try && d < c.MaxBackoff.D(); i++ {
		d *= 2
	}
	d = min(d, c.MaxBackoff.D())
	if d <= 0 {
		return ctx.Err() == nil
	}
	d = time.Duration(p.rand() % uint64(d))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// joinPrefix prepends the backend URL's path prefix to u's path.
func joinPrefix(u *url.URL, backend *url.URL) {
	if backend.Path == "" {
		return
	}
	path := u.Path
	if path == "" || path[0] != '/' {
		path = "/" + path
	}
	if u.RawPath == "" {
		u.Path = backend.Path + path
		return
	}
	ep := u.EscapedPath()
	if ep == "" || ep[0] != '/' {
		ep = "/" + ep
	}
	u.Path = backend.Path + path
	u.RawPath = backend.EscapedPath() + ep
}

// idempotent reports whether req may be repeated after it reached a backend
// (RFC 9110 section 9.2.2, or an Idempotency-Key header).
func idempotent(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	_, k1 := req.Header["Idempotency-Key"]
	_, k2 := req.Header["X-Idempotency-Key"]
	return k1 || k2
}

// Error kinds of one try.
const (
	kindOther = iota
	kindConnect
	kindTimeout
)

func errorKind(err error) int {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return kindConnect
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		return kindTimeout
	}
	return kindOther
}

func closeBody(b io.ReadCloser) {
	if b != nil {
		_ = b.Close()
	}
}

// reqBody wraps the request body for one try. It records whether the
// transport read any of it: http.Transport closes the body even when the dial
// fails, so the wrapper holds that Close back until the pool knows whether a
// retry will reuse the untouched body.
type reqBody struct {
	rc          io.ReadCloser
	state       atomic.Int32 // bodyUntouched, bodyRead or bodyDetached
	closeWanted atomic.Bool  // the transport called Close while untouched
	released    atomic.Bool  // the try succeeded; Close passes through
	closed      atomic.Bool
}

const (
	bodyUntouched int32 = iota
	bodyRead
	bodyDetached
)

func (r *reqBody) Read(p []byte) (int, error) {
	for {
		switch r.state.Load() {
		case bodyDetached:
			return 0, errBodyDetached
		case bodyRead:
			return r.rc.Read(p)
		}
		if r.state.CompareAndSwap(bodyUntouched, bodyRead) {
			return r.rc.Read(p)
		}
	}
}

func (r *reqBody) Close() error {
	if r.state.Load() == bodyDetached {
		return nil
	}
	r.closeWanted.Store(true)
	if r.state.Load() == bodyRead || r.released.Load() {
		r.closeUnderlying()
	}
	return nil
}

// detach takes the untouched body back for a retry, reporting false if the
// transport already read from it.
func (r *reqBody) detach() bool {
	return r.state.CompareAndSwap(bodyUntouched, bodyDetached)
}

// release hands the body to the transport for good after a successful try.
func (r *reqBody) release() {
	r.released.Store(true)
	if r.closeWanted.Load() {
		r.closeUnderlying()
	}
}

func (r *reqBody) closeUnderlying() {
	if r.closed.CompareAndSwap(false, true) {
		_ = r.rc.Close()
	}
}

// call is one request's state: the total timer when armed, and after the
// response headers the wrapper of the response body that drops the
// backend's in-flight count, and releases the request's context, when the
// body is done.
type call struct {
	sel     Selection
	req     http.Request
	url     url.URL
	backend *Backend
	body    io.ReadCloser
	cancel  context.CancelCauseFunc
	timer   *time.Timer
	headers atomic.Bool
	done    atomic.Bool

	// pool and st are set when the outcome for passive health is recorded
	// at the end of the body; parent is the client's context, whose end
	// makes a body error the client's doing rather than the backend's.
	pool    *Pool
	st      *poolState
	parent  context.Context
	bodyErr atomic.Bool // the backend broke the body
}

// arm starts the total timer for the remaining budget d.
func (c *call) arm(parent context.Context, d time.Duration) context.Context {
	ctx, cancel := context.WithCancelCause(parent)
	c.cancel = cancel
	c.timer = time.AfterFunc(d, c.totalExpired)
	return ctx
}

func (c *call) totalExpired() {
	if !c.headers.Load() {
		c.cancel(errTotalTimeout)
	}
}

func (c *call) Read(p []byte) (int, error) {
	n, err := c.body.Read(p)
	if err == io.EOF {
		c.finish()
	} else if err != nil && c.st != nil && c.parent.Err() == nil && !c.bodyErr.Swap(true) {
		c.backend.metrics.errOther.Inc()
	}
	return n, err
}

func (c *call) Close() error {
	err := c.body.Close()
	c.finish()
	return err
}

func (c *call) finish() {
	if c.done.CompareAndSwap(false, true) {
		c.backend.inflight.Add(-1)
		if c.st != nil {
			// A body closed early by the client counts as a success.
			c.pool.recordOutcome(c.st, c.backend, c.bodyErr.Load())
		}
		if c.cancel != nil {
			c.cancel(nil)
		}
	}
}

// upgradeBody keeps the io.Writer of a 101 Switching Protocols body, which
// reverse proxies need for WebSocket tunnels.
type upgradeBody struct{ *call }

func (u *upgradeBody) Write(p []byte) (int, error) { return u.body.(io.Writer).Write(p) }
