package tlsedge

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// memTXT is an in-memory TXTStore, used to unit-test the libdns adapter
// and the peer push without a DNS server.
type memTXT struct {
	mu   sync.Mutex
	recs []TXTRecord // mu guards recs
}

func (s *memTXT) AddTXT(_ context.Context, r TXTRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r.Name = strings.ToLower(fqdn(r.Name))
	for _, e := range s.recs {
		if e.Name == r.Name && e.Text == r.Text {
			return nil
		}
	}
	s.recs = append(s.recs, r)
	return nil
}

func (s *memTXT) RemoveTXT(_ context.Context, r TXTRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := strings.ToLower(fqdn(r.Name))
	kept := s.recs[:0]
	for _, e := range s.recs {
		if e.Name == name && (r.Text == "" || e.Text == r.Text) {
			continue
		}
		kept = append(kept, e)
	}
	s.recs = kept
	return nil
}

func (s *memTXT) ListTXT(_ context.Context, zone string) ([]TXTRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	zone = strings.ToLower(fqdn(zone))
	var out []TXTRecord
	for _, e := range s.recs {
		if dns.IsSubDomain(zone, e.Name) {
			out = append(out, e)
		}
	}
	return out, nil
}

// startMemDNS serves a tiny authoritative zone from memTXT on 127.0.0.1
// (UDP and TCP): SOA at the apex, A 127.0.0.1 for every name in the zone,
// TXT from the store. It stands in for a DNS server in unit tests of the
// push and adapter; the end-to-end ACME tests use the dns package.
func startMemDNS(t *testing.T, zone string, store *memTXT) string {
	t.Helper()
	zone = dns.Fqdn(zone)
	h := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Authoritative = true
		if len(q.Question) != 1 || !dns.IsSubDomain(zone, strings.ToLower(q.Question[0].Name)) {
			m.Rcode = dns.RcodeRefused
			_ = w.WriteMsg(m)
			return
		}
		qn := strings.ToLower(q.Question[0].Name)
		hdr := func(rt uint16) dns.RR_Header {
			return dns.RR_Header{Name: q.Question[0].Name, Rrtype: rt, Class: dns.ClassINET, Ttl: 1}
		}
		soa := &dns.SOA{Hdr: dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
			Ns: "ns." + zone, Mbox: "hostmaster." + zone, Serial: 1, Refresh: 60, Retry: 60, Expire: 600, Minttl: 1}
		switch q.Question[0].Qtype {
		case dns.TypeSOA:
			if qn == zone {
				m.Answer = append(m.Answer, soa)
			}
		case dns.TypeA:
			if !strings.HasPrefix(qn, "_acme-challenge.") {
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr(dns.TypeA), A: net.IPv4(127, 0, 0, 1)})
			}
		case dns.TypeTXT:
			recs, _ := store.ListTXT(context.Background(), zone)
			for _, r := range recs {
				if r.Name == qn {
					m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr(dns.TypeTXT), Txt: []string{r.Text}})
				}
			}
		}
		if len(m.Answer) == 0 {
			m.Ns = append(m.Ns, soa)
		}
		_ = w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	udp := &dns.Server{PacketConn: pc, Handler: h}
	tcp := &dns.Server{Listener: ln, Handler: h}
	go func() { _ = udp.ActivateAndServe() }()
	go func() { _ = tcp.ActivateAndServe() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = udp.ShutdownContext(ctx)
		_ = tcp.ShutdownContext(ctx)
	})
	return pc.LocalAddr().String()
}
