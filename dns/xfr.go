package dns

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
)

// tsigKeys verifies and signs TSIG (RFC 8945) with the configured keys.
// It implements mdns.TsigProvider; Reload swaps the key set atomically.
type tsigKeys struct {
	keys atomic.Pointer[map[string]tsigKey]
}

type tsigKey struct {
	alg    string // canonical miekg/dns algorithm name
	secret []byte
}

var _ mdns.TsigProvider = (*tsigKeys)(nil)

func decodeSecret(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }

func (k *tsigKeys) set(keys []TSIGKey) error {
	m := map[string]tsigKey{}
	var bad []string
	for _, c := range keys {
		alg, ok := tsigAlgorithm(c.Algorithm)
		secret, err := decodeSecret(c.Secret)
		if !ok || err != nil {
			bad = append(bad, c.Name)
			continue
		}
		m[canonical(c.Name)] = tsigKey{alg: alg, secret: secret}
	}
	k.keys.Store(&m)
	if len(bad) > 0 {
		return fmt.Errorf("unusable TSIG keys: %s", strings.Join(bad, ", "))
	}
	return nil
}

func (k *tsigKeys) lookup(name string) (tsigKey, bool) {
	m := k.keys.Load()
	if m == nil {
		return tsigKey{}, false
	}
	key, ok := (*m)[canonical(name)]
	return key, ok
}

// Generate implements mdns.TsigProvider.
func (k *tsigKeys) Generate(msg []byte, t *mdns.TSIG) ([]byte, error) {
	key, ok := k.lookup(t.Hdr.Name)
	if !ok {
		return nil, mdns.ErrSecret
	}
	if canonical(t.Algorithm) != key.alg {
		return nil, mdns.ErrKeyAlg
	}
	var h func() hash.Hash
	switch key.alg {
	case mdns.HmacSHA1:
		h = sha1.New
	case mdns.HmacSHA224:
		h = sha256.New224
	case mdns.HmacSHA256:
		h = sha256.New
	case mdns.HmacSHA384:
		h = sha512.New384
	case mdns.HmacSHA512:
		h = sha512.New
	default:
		return nil, mdns.ErrKeyAlg
	}
	mac := hmac.New(h, key.secret)
	mac.Write(msg)
	return mac.Sum(nil), nil
}

// Verify implements mdns.TsigProvider.
func (k *tsigKeys) Verify(msg []byte, t *mdns.TSIG) error {
	want, err := k.Generate(msg, t)
	if err != nil {
		return err
	}
	got, err := hex.DecodeString(t.MAC)
	if err != nil {
		return err
	}
	if !hmac.Equal(want, got) {
		return mdns.ErrSig
	}
	return nil
}

// xfrPolicy says who may transfer zones.
type xfrPolicy struct {
	allow []xfrAllow
}

type xfrAllow struct {
	prefix netip.Prefix
	key    string // canonical key name; "" = no TSIG required
}

func newXFRPolicy(cfg TransferConfig) *xfrPolicy {
	p := &xfrPolicy{}
	for _, s := range cfg.Secondaries {
		pre, err := parsePrefixOrAddr(s.Address)
		if err != nil {
			continue // rejected by Validate
		}
		a := xfrAllow{prefix: pre}
		if s.Key != "" {
			a.key = canonical(s.Key)
		}
		p.allow = append(p.allow, a)
	}
	return p
}

// permits reports whether a transfer from addr, signed with key ("" when
// unsigned; the signature is already verified), is allowed.
func (p *xfrPolicy) permits(addr netip.Addr, key string) bool {
	for _, a := range p.allow {
		if a.prefix.Contains(addr) && (a.key == "" || a.key == key) {
			return true
		}
	}
	return false
}

// xfrChunk is how many records go into one AXFR message.
const xfrChunk = 200

// transfer answers AXFR, and IXFR with a full AXFR-style transfer (RFC 1995
// §4 allows it). Over UDP, IXFR gets the current SOA (telling the client to
// use TCP) and AXFR is refused.
func (s *Server) transfer(w mdns.ResponseWriter, r, m *mdns.Msg, sn *snapshot, isTCP bool) {
	q := r.Question[0]
	qtype := q.Qtype
	z := sn.zones[strings.ToLower(q.Name)]
	if z == nil {
		m.Rcode = mdns.RcodeNotAuth
		if sn.findZone(strings.ToLower(q.Name)) == nil {
			m.Rcode = mdns.RcodeRefused
		}
		s.metrics.xfr.WithLabelValues("refused").Inc()
		s.finish(w, r, m, qtype)
		return
	}
	key := ""
	if t := r.IsTsig(); t != nil && w.TsigStatus() == nil {
		key = canonical(t.Hdr.Name)
	}
	if r.IsTsig() != nil && w.TsigStatus() != nil {
		s.metrics.xfr.WithLabelValues("refused").Inc()
		s.log.Warn("zone transfer with a bad TSIG signature", "zone", z.origin, "client", remoteAddr(w).String(), "error", w.TsigStatus())
		s.finish(w, r, m, qtype) // NOTAUTH
		return
	}
	if !sn.xfr.permits(remoteAddr(w), key) {
		m.Rcode = mdns.RcodeRefused
		s.metrics.xfr.WithLabelValues("refused").Inc()
		s.finish(w, r, m, qtype)
		return
	}
	if !isTCP {
		if qtype == mdns.TypeIXFR {
			m.Authoritative = true
			m.Answer = []mdns.RR{z.soa}
		} else {
			m.Rcode = mdns.RcodeFormatError
		}
		s.finish(w, r, m, qtype)
		return
	}
	ch := make(chan *mdns.Envelope)
	tr := new(mdns.Transfer)
	done := make(chan error, 1)
	go func() { done <- tr.Out(w, r, ch) }()
	// Out stops reading ch on its first write error (the secondary went
	// away or stopped reading): stop sending then, or this handler, and
	// with it Shutdown, waits forever.
	var err error
	stopped := false
	chunk := []mdns.RR{}
	send := func() {
		if stopped {
			return
		}
		select {
		case ch <- &mdns.Envelope{RR: chunk}:
		case err = <-done:
			stopped = true
		}
		chunk = []mdns.RR{}
	}
	for _, rr := range z.records { // SOA first
		chunk = append(chunk, rr)
		if len(chunk) >= xfrChunk {
			send()
			if stopped {
				break
			}
		}
	}
	chunk = append(chunk, z.soa)
	send()
	close(ch)
	if !stopped {
		err = <-done
	}
	if err != nil {
		s.metrics.xfr.WithLabelValues("error").Inc()
		s.log.Warn("zone transfer failed", "zone", z.origin, "client", remoteAddr(w).String(), "error", err)
		// Part of a message may have been sent: the stream is unusable.
		w.Close()
		return
	}
	s.metrics.xfr.WithLabelValues("ok").Inc()
	s.metrics.query(qtype, mdns.RcodeSuccess)
	s.log.Info("zone transferred", "zone", z.origin, "client", remoteAddr(w).String(), "serial", z.soa.Serial, "tsig", key != "")
}

// writeDeadlineListener sets a deadline of d on every write of the
// connections it accepts. miekg/dns documents Server.WriteTimeout but never
// applies it (v1.1.73): without a deadline, a client that stops reading
// blocks its handler (an AXFR fills the socket buffers), and Shutdown with
// it, forever. d <= 0: no deadline.
type writeDeadlineListener struct {
	net.Listener
	d time.Duration
}

// backoffListener waits after a temporary Accept error (EMFILE at the
// descriptor limit, ECONNABORTED) before returning it, 5ms doubling to
// 1s as net/http does: miekg/dns retries such errors at once (v1.1.73),
// so at the descriptor limit its accept loop would spin a core until
// descriptors free up. Accept is called by one goroutine.
type backoffListener struct {
	net.Listener
	delay time.Duration
}

// Accept implements net.Listener.
func (l *backoffListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	var ne net.Error
	//lint:ignore SA1019 Temporary is what miekg/dns retries on at once
	if err == nil || !errors.As(err, &ne) || !ne.Temporary() {
		l.delay = 0
		return c, err
	}
	l.delay = min(max(2*l.delay, 5*time.Millisecond), time.Second)
	time.Sleep(l.delay)
	return c, err
}

// Accept implements net.Listener.
func (l writeDeadlineListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil || l.d <= 0 {
		return c, err
	}
	return &writeDeadlineConn{Conn: c, d: l.d}, nil
}

type writeDeadlineConn struct {
	net.Conn
	d time.Duration
}

// Write gives each message (miekg/dns writes one per call) d to go out.
func (c *writeDeadlineConn) Write(b []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.d)); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

// notifyLocked sends NOTIFY for origin to every target in the background;
// s.mu is held.
func (s *Server) notifyLocked(origin string) {
	targets := s.cfg.Transfer.Notify
	if len(targets) == 0 {
		return
	}
	keys := map[string]string{}
	for _, k := range s.cfg.Transfer.Keys {
		keys[canonical(k.Name)], _ = tsigAlgorithm(k.Algorithm)
	}
	for _, t := range targets {
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			s.sendNotify(origin, t, keys)
		}()
	}
}

// sendNotify tries a NOTIFY three times (RFC 1996 §3.6 retransmission).
func (s *Server) sendNotify(origin string, t NotifyTarget, algs map[string]string) {
	c := &mdns.Client{Net: "udp", Timeout: 2 * time.Second, TsigProvider: s.tsig}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if s.bgCtx.Err() != nil {
			return
		}
		msg := new(mdns.Msg)
		msg.SetNotify(origin)
		if t.Key != "" {
			msg.SetTsig(canonical(t.Key), algs[canonical(t.Key)], 300, s.now().Unix())
		}
		var resp *mdns.Msg
		resp, _, err = c.ExchangeContext(s.bgCtx, msg, t.Address)
		if err == nil && resp.Rcode == mdns.RcodeSuccess {
			s.metrics.notify.WithLabelValues("ok").Inc()
			return
		}
		if err == nil {
			err = fmt.Errorf("rcode %s", mdns.RcodeToString[resp.Rcode])
		}
	}
	s.metrics.notify.WithLabelValues("error").Inc()
	s.log.Warn("NOTIFY failed", "zone", origin, "target", t.Address, "error", err)
}
