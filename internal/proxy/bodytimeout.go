package proxy

import (
	"net/http"
	"time"

	"github.com/outpost-edge/outpost/lb"
)

// bodyTimeout bounds each read of an upstream response body (a route's
// body_timeout): lb's transports do it themselves (RoundTripIdle), any
// other through lb.IdleRoundTrip.
type bodyTimeout struct {
	rt http.RoundTripper
	d  time.Duration
}

// idleRoundTripper is implemented by lb.Pool and lb.Transport.
type idleRoundTripper interface {
	RoundTripIdle(req *http.Request, idle time.Duration) (*http.Response, error)
}

func (t bodyTimeout) RoundTrip(req *http.Request) (*http.Response, error) {
	if it, ok := t.rt.(idleRoundTripper); ok {
		return it.RoundTripIdle(req, t.d)
	}
	return lb.IdleRoundTrip(t.rt, req, t.d)
}
