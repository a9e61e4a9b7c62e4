package lb

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"
)

// errBodyTimeout ends an upstream response whose body stalled.
var errBodyTimeout = errors.New("lb: the upstream sent nothing within the body timeout")

// IdleRoundTrip is rt.RoundTrip(req) with each read of the response body
// bounded by idle, as nginx's proxy_read_timeout bounds it: an origin that
// sends its header and then stalls (or trickles nothing) would otherwise
// hold the client, the upstream connection and any cache fill waiting on
// it forever. The deadline runs only while the proxy waits for the origin,
// not while it writes to a slow client. It costs a cancellable request and
// a timer; lb's own transports (Pool, Transport) do it on their
// synchronous path with the connection's read deadline instead
// (RoundTripIdle), and use this for the rest.
func IdleRoundTrip(rt http.RoundTripper, req *http.Request, idle time.Duration) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(req.Context())
	// The request copy with ctx lives in the body wrapper, allocated
	// with it (WithContext's copy is only copied from, so it stays on
	// the stack).
	b := &idleBody{d: idle, cancel: cancel}
	b.req = *req.WithContext(ctx)
	resp, err := rt.RoundTrip(&b.req)
	if err != nil {
		cancel(nil)
		return nil, err
	}
	if rwc, ok := resp.Body.(io.ReadWriteCloser); ok && resp.StatusCode == http.StatusSwitchingProtocols {
		// An upgraded connection is the client's and origin's to keep
		// quiet as long as they like.
		resp.Body = upgraded{ReadWriteCloser: rwc, cancel: cancel}
		return resp, nil
	}
	b.ReadCloser = resp.Body
	resp.Body = b
	return resp, nil
}

// upgraded is a switched-protocols body, still an io.ReadWriteCloser as
// ReverseProxy requires.
type upgraded struct {
	io.ReadWriteCloser
	cancel context.CancelCauseFunc
}

func (u upgraded) Close() error {
	err := u.ReadWriteCloser.Close()
	u.cancel(nil)
	return err
}

type idleBody struct {
	io.ReadCloser
	req    http.Request // the request sent, with the cancellable context
	d      time.Duration
	cancel context.CancelCauseFunc
	timer  *time.Timer
	once   sync.Once
}

func (b *idleBody) fire() { b.cancel(errBodyTimeout) }

func (b *idleBody) Read(p []byte) (int, error) {
	b.once.Do(func() { b.timer = time.AfterFunc(b.d, b.fire) })
	b.timer.Reset(b.d)
	n, err := b.ReadCloser.Read(p)
	b.timer.Stop()
	return n, err
}

// Close cancels the request context only after the body is closed, so a
// transport that reuses a connection read to its end still does.
func (b *idleBody) Close() error {
	b.once.Do(func() {})
	if b.timer != nil {
		b.timer.Stop()
	}
	err := b.ReadCloser.Close()
	b.cancel(nil)
	return err
}
