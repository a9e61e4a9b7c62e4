package tlsedge

import (
	"context"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// memTXT is an in-memory TXTStore, used to unit-test the libdns adapter
// without a DNS server.
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
