package lb

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// healthBodyLimit is how much of a check response is searched for
// expect_body.
const healthBodyLimit = 64 << 10

// startChecker runs active checks of b until the returned checker is
// stopped. Caller holds p.mu.
func (p *Pool) startChecker(b *Backend, st *poolState) {
	ctx, cancel := context.WithCancel(context.Background())
	p.checkers[b] = cancel
	p.wg.Add(1)
	h := st.cfg.Health
	lo, hi := st.statusLo, st.statusHi
	tr := st.cfg.Transport
	go func() {
		defer p.wg.Done()
		// Checks use fresh connections, as a client after a restart would:
		// a pooled connection can hide a listener that no longer accepts.
		t := &http.Transport{
			DialContext:       (&net.Dialer{Timeout: h.Timeout.D()}).DialContext,
			TLSClientConfig:   &tls.Config{ServerName: tr.TLSServerName, InsecureSkipVerify: tr.InsecureSkipVerify}, //nolint:gosec // opt-in
			DisableKeepAlives: true,
		}
		defer t.CloseIdleConnections()
		c := &http.Client{
			Transport: t,
			Timeout:   h.Timeout.D(),
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
		for {
			reason := checkOnce(ctx, c, b, h, lo, hi)
			if ctx.Err() != nil {
				return
			}
			p.applyCheck(b, h, reason)
			tm := time.NewTimer(p.checkWait(h))
			select {
			case <-ctx.Done():
				tm.Stop()
				return
			case <-tm.C:
			}
		}
	}()
}

// checkWait is the pause before a backend's next check: the interval plus
// a random share of the jitter, so checks of many backends (and of many
// nodes checking one backend) do not fall into step.
func (p *Pool) checkWait(h HealthConfig) time.Duration {
	wait := h.Interval.D()
	if j := int64(h.Jitter); j > 0 {
		wait += time.Duration(p.rand() % uint64(j))
	}
	return wait
}

// checkOnce performs one check and returns "" on success or why it failed.
func checkOnce(ctx context.Context, c *http.Client, b *Backend, h HealthConfig, lo, hi int) string {
	u := *b.url
	u.Path, u.RawPath = h.Path, ""
	if p, q, ok := strings.Cut(h.Path, "?"); ok {
		u.Path, u.RawQuery = p, q
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "bad request: " + err.Error()
	}
	if h.Host != "" {
		req.Host = h.Host
	}
	req.Header.Set("User-Agent", "outpost-lb-health/1")
	resp, err := c.Do(req)
	if err != nil {
		return classify(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < lo || resp.StatusCode > hi {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, healthBodyLimit))
		return fmt.Sprintf("status %d", resp.StatusCode)
	}
	if h.ExpectBody != "" {
		body, err := io.ReadAll(io.LimitReader(resp.Body, healthBodyLimit))
		if err != nil {
			return classify(err)
		}
		if !bytes.Contains(body, []byte(h.ExpectBody)) {
			return "body mismatch"
		}
	}
	return ""
}

// classify turns a transport error into a short reason for the admin API;
// addresses and internals stay in the error kinds only.
func classify(err error) string {
	switch errorKind(err) {
	case kindConnect:
		return "connect error"
	case kindTimeout:
		return "timeout"
	}
	return "transport error"
}

// applyCheck moves b's health by one check result.
func (p *Pool) applyCheck(b *Backend, h HealthConfig, reason string) {
	now := p.now().UnixNano()
	b.mu.Lock()
	defer b.mu.Unlock()
	if reason == "" {
		b.lastCheck = "ok"
		b.checkFail = 0
		if b.ejectedUntil.Load() > now {
			// Checks during an ejection do not count: the backend
			// returns after `rise` successes past the ejection time.
			b.checkOK = 0
			return
		}
		b.checkOK++
		if b.state.Load() != stateHealthy && b.checkOK >= h.Rise {
			p.setHealthy(b, true, now)
		}
		return
	}
	b.lastCheck = reason
	b.checkFail++
	b.checkOK = 0
	switch b.state.Load() {
	case stateHealthy:
		if b.checkFail >= h.Fall {
			p.setHealthy(b, false, now)
		}
	case stateUnknown:
		p.setHealthy(b, false, now)
	}
}
