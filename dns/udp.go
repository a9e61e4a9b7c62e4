package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// udpServer serves one UDP socket with a few worker goroutines that read,
// answer and write in place: no goroutine or buffer per packet, and most
// answers come from the fast path. TCP stays on miekg/dns's server.
type udpServer struct {
	s      *Server
	conn   *net.UDPConn
	local  net.Addr
	oob    bool // wildcard bind: answer from the address the query came to
	closed atomic.Bool
	wg     sync.WaitGroup
}

// oobSize fits an IPv4 or IPv6 packet-info control message.
const oobSize = 64

// serveUDP starts the workers of one socket. batchWorkers is how many
// recvmmsg workers it gets: Serve spreads GOMAXPROCS of them over its
// sockets, one each with a socket per CPU (as Knot runs one thread per
// socket). More than that only contend: a batch call holds its P (see
// mmsgBatch), so an extra worker on the same socket cannot run beside it,
// and measured, two per socket were ~10 % slower than one.
func (s *Server) serveUDP(conn *net.UDPConn, batchWorkers int) *udpServer {
	u := &udpServer{s: s, conn: conn, local: conn.LocalAddr()}
	if a, ok := u.local.(*net.UDPAddr); ok && (a.IP == nil || a.IP.IsUnspecified()) {
		// As miekg/dns does: ask for the destination address so replies
		// leave from it on multi-homed hosts.
		err6 := ipv6.NewPacketConn(conn).SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true)
		err4 := ipv4.NewPacketConn(conn).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
		u.oob = err4 == nil || err6 == nil
	}
	// Per-packet workers block in the kernel one call at a time: more of
	// them than CPUs, so a slow-path query does not stall the socket.
	n := max(4, 2*runtime.GOMAXPROCS(0))
	batch := !u.oob
	if batch {
		n = max(1, batchWorkers)
	}
	for i := 0; i < n; i++ {
		var b *mmsgBatch
		if batch {
			b, _ = newMmsgBatch(conn, udpBatch, maxQuerySize)
		}
		u.wg.Add(1)
		if b != nil {
			go u.loopBatch(b)
		} else {
			go u.loop()
		}
	}
	return u
}

// udpBatch is how many datagrams one worker reads or writes per call.
const udpBatch = 16

// maxQuerySize bounds a query read in batch mode; larger datagrams are
// truncated by the kernel and then rejected as malformed.
const maxQuerySize = 4096

// loopBatch is loop with recvmmsg/sendmmsg.
func (u *udpServer) loopBatch(b *mmsgBatch) {
	defer u.wg.Done()
	sc := &scratch{key: make([]byte, 0, 300), out: make([]byte, 0, 1500)}
	for {
		n, err := b.read()
		if err != nil {
			if u.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			u.s.log.Debug("udp read", "error", err)
			continue
		}
		for i := 0; i < n; i++ {
			req, truncated, ap := b.datagram(i)
			if truncated || !ap.IsValid() {
				continue // truncated by the kernel: not a query we answer
			}
			if resp := u.handle(req, ap, nil, sc); resp != nil {
				b.queue(i, resp)
			}
		}
		if err := b.flush(); err != nil && !u.closed.Load() {
			u.s.log.Debug("udp write", "error", err)
		}
	}
}

// shutdown stops reading, lets in-flight answers finish, then closes.
func (u *udpServer) shutdown(ctx context.Context) error {
	u.closed.Store(true)
	_ = u.conn.SetReadDeadline(time.Now())
	done := make(chan struct{})
	go func() { u.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	u.conn.Close()
	<-done
	return err
}

func (u *udpServer) loop() {
	defer u.wg.Done()
	buf := make([]byte, 65535)
	oob := make([]byte, oobSize)
	sc := &scratch{key: make([]byte, 0, 300), out: make([]byte, 0, 1500)}
	for {
		var (
			n, oobn int
			ap      netip.AddrPort
			err     error
		)
		if u.oob {
			n, oobn, _, ap, err = u.conn.ReadMsgUDPAddrPort(buf, oob)
		} else {
			n, ap, err = u.conn.ReadFromUDPAddrPort(buf)
		}
		if err != nil {
			if u.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			u.s.log.Debug("udp read", "error", err)
			continue
		}
		if resp := u.handle(buf[:n], ap, oob[:oobn], sc); resp != nil {
			u.write(resp, ap, oob[:oobn])
		}
	}
}

// handle answers one datagram. A fast-path answer is returned for the
// caller to send (alone or in a batch); the full path writes its own.
func (u *udpServer) handle(req []byte, ap netip.AddrPort, oob []byte, sc *scratch) []byte {
	s := u.s
	sn := s.snap.Load()
	src := ap.Addr().Unmap()
	resp, st := s.fastUDP(sn, req, src, sc)
	if st == fastDone {
		return resp
	}
	if len(req) < 12 {
		return nil // a runt: answering could only help amplification
	}
	w := &udpWriter{u: u, ap: ap, oob: oob}
	m := new(mdns.Msg)
	if err := m.Unpack(req); err != nil {
		if m.Response {
			return nil
		}
		// As miekg/dns: FORMERR echoing the header only.
		fe := new(mdns.Msg)
		fe.Id, fe.Opcode, fe.Response, fe.Rcode = m.Id, m.Opcode, true, mdns.RcodeFormatError
		_ = w.WriteMsg(fe)
		s.metrics.query(0, mdns.RcodeFormatError)
		return nil
	}
	dh := mdns.Header{Id: m.Id, Bits: binary.BigEndian.Uint16(req[2:]),
		Qdcount: binary.BigEndian.Uint16(req[4:]), Ancount: binary.BigEndian.Uint16(req[6:]),
		Nscount: binary.BigEndian.Uint16(req[8:]), Arcount: binary.BigEndian.Uint16(req[10:])}
	switch acceptFunc(dh) {
	case mdns.MsgIgnore:
		return nil
	case mdns.MsgReject:
		fe := new(mdns.Msg)
		fe.SetRcodeFormatError(m)
		fe.Question, fe.Answer, fe.Ns, fe.Extra = nil, nil, nil, nil
		_ = w.WriteMsg(fe)
		s.metrics.query(0, mdns.RcodeFormatError)
		return nil
	}
	if t := m.IsTsig(); t != nil {
		w.tsigStatus = mdns.TsigVerifyWithProvider(req, s.tsig, "", false)
		w.tsigRequestMAC = t.MAC
	}
	// The fast path decided RRL already when it chose to slip.
	cacheable := s.respond(w, m, sc.limit)
	if st == fastMiss && cacheable && w.wrote != nil && len(w.wrote) >= 12 {
		rcode := int(w.wrote[3] & 0xF)
		sn.cache.put(sc.key, w.wrote, s.metrics.counter(m.Question[0].Qtype, rcode))
	}
	return nil
}

func (u *udpServer) write(b []byte, ap netip.AddrPort, oob []byte) {
	var err error
	if u.oob && len(oob) > 0 {
		_, _, err = u.conn.WriteMsgUDPAddrPort(b, correctSource(oob), ap)
	} else {
		_, err = u.conn.WriteToUDPAddrPort(b, ap)
	}
	if err != nil && !u.closed.Load() {
		u.s.log.Debug("udp write", "error", err)
	}
}

// correctSource turns received packet info into a control message that
// sends the reply from the address the query was sent to.
func correctSource(oob []byte) []byte {
	cm6 := new(ipv6.ControlMessage)
	if cm6.Parse(oob) == nil && cm6.Dst != nil && cm6.Dst.To4() == nil {
		return (&ipv6.ControlMessage{Src: cm6.Dst}).Marshal()
	}
	cm4 := new(ipv4.ControlMessage)
	if cm4.Parse(oob) == nil && cm4.Dst != nil {
		return (&ipv4.ControlMessage{Src: cm4.Dst}).Marshal()
	}
	if cm6.Dst != nil {
		return (&ipv4.ControlMessage{Src: cm6.Dst}).Marshal()
	}
	return nil
}

// udpWriter is the mdns.ResponseWriter of the full path on our UDP loop.
// It signs with TSIG like miekg/dns's writer and keeps what it wrote so the
// answer can be cached.
type udpWriter struct {
	u              *udpServer
	ap             netip.AddrPort
	oob            []byte
	tsigStatus     error
	tsigRequestMAC string
	tsigTimersOnly bool
	wrote          []byte
}

var _ mdns.ResponseWriter = (*udpWriter)(nil)

func (w *udpWriter) LocalAddr() net.Addr { return w.u.local }
func (w *udpWriter) RemoteAddr() net.Addr {
	return &net.UDPAddr{IP: w.ap.Addr().AsSlice(), Port: int(w.ap.Port())}
}

func (w *udpWriter) WriteMsg(m *mdns.Msg) error {
	var (
		b   []byte
		err error
	)
	if t := m.IsTsig(); t != nil {
		b, _, err = mdns.TsigGenerateWithProvider(m, w.u.s.tsig, w.tsigRequestMAC, w.tsigTimersOnly)
	} else {
		b, err = m.Pack()
	}
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func (w *udpWriter) Write(b []byte) (int, error) {
	w.wrote = b
	w.u.write(b, w.ap, w.oob)
	return len(b), nil
}

func (w *udpWriter) Close() error          { return nil }
func (w *udpWriter) TsigStatus() error     { return w.tsigStatus }
func (w *udpWriter) TsigTimersOnly(b bool) { w.tsigTimersOnly = b }
func (w *udpWriter) Hijack()               {}
