package tlsedge

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/libdns/libdns"
)

// TXTRecord is one TXT record held by Outpost's DNS.
type TXTRecord struct {
	// Name is the absolute owner name with a trailing dot,
	// e.g. "_acme-challenge.example.com.".
	Name string `json:"name"`
	// Text is the record's value, unquoted.
	Text string `json:"text"`
	// TTL of the record.
	TTL time.Duration `json:"ttl"`
}

// TXTStore is the small slice of the DNS server's runtime records API that
// the dns-01 challenge needs. The node wiring adapts the dns package to it
// (tlsedge does not import dns); PeerPush fans it out to other nodes.
type TXTStore interface {
	// AddTXT makes the record visible in answers. Adding a record that
	// already exists is not an error.
	AddTXT(ctx context.Context, rec TXTRecord) error
	// RemoveTXT removes the record with rec's Name and Text (TTL is
	// ignored); an empty Text removes every TXT record at Name. Removing a
	// missing record is not an error.
	RemoveTXT(ctx context.Context, rec TXTRecord) error
	// ListTXT returns the TXT records at or below zone ("example.com.").
	ListTXT(ctx context.Context, zone string) ([]TXTRecord, error)
}

// LibDNS adapts a TXTStore to the libdns provider interfaces that
// certmagic's DNS01Solver uses. Only TXT records are supported: the
// provider exists to publish ACME challenge records, not to edit zones.
type LibDNS struct {
	Store TXTStore
}

var (
	_ libdns.RecordGetter   = (*LibDNS)(nil)
	_ libdns.RecordAppender = (*LibDNS)(nil)
	_ libdns.RecordSetter   = (*LibDNS)(nil)
	_ libdns.RecordDeleter  = (*LibDNS)(nil)
)

// GetRecords implements libdns.RecordGetter.
func (p *LibDNS) GetRecords(ctx context.Context, zone string) ([]libdns.Record, error) {
	zone = fqdn(zone)
	recs, err := p.Store.ListTXT(ctx, zone)
	if err != nil {
		return nil, err
	}
	out := make([]libdns.Record, 0, len(recs))
	for _, r := range recs {
		out = append(out, libdns.TXT{Name: libdns.RelativeName(fqdn(r.Name), zone), TTL: r.TTL, Text: r.Text})
	}
	return out, nil
}

// AppendRecords implements libdns.RecordAppender.
func (p *LibDNS) AppendRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	zone = fqdn(zone)
	txts, err := toTXT(zone, recs)
	if err != nil {
		return nil, err
	}
	out := make([]libdns.Record, 0, len(txts))
	for i, t := range txts {
		if err := p.Store.AddTXT(ctx, t); err != nil {
			return out, fmt.Errorf("adding TXT %s: %w", t.Name, err)
		}
		out = append(out, libdns.TXT{Name: recs[i].RR().Name, TTL: t.TTL, Text: t.Text})
	}
	return out, nil
}

// SetRecords implements libdns.RecordSetter: for every name in recs, the
// TXT records at that name become exactly the ones given.
func (p *LibDNS) SetRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	zone = fqdn(zone)
	txts, err := toTXT(zone, recs)
	if err != nil {
		return nil, err
	}
	existing, err := p.Store.ListTXT(ctx, zone)
	if err != nil {
		return nil, err
	}
	want := make(map[string]map[string]bool)
	for _, t := range txts {
		k := strings.ToLower(t.Name)
		if want[k] == nil {
			want[k] = map[string]bool{}
		}
		want[k][t.Text] = true
	}
	for _, e := range existing {
		if vals, ok := want[strings.ToLower(fqdn(e.Name))]; ok && !vals[e.Text] {
			if err := p.Store.RemoveTXT(ctx, e); err != nil {
				return nil, fmt.Errorf("removing TXT %s: %w", e.Name, err)
			}
		}
	}
	return p.AppendRecords(ctx, zone, recs)
}

// DeleteRecords implements libdns.RecordDeleter. An empty value deletes
// every TXT record at the name; only TXT (or an empty type) is accepted.
func (p *LibDNS) DeleteRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	zone = fqdn(zone)
	existing, err := p.Store.ListTXT(ctx, zone)
	if err != nil {
		return nil, err
	}
	var out []libdns.Record
	for _, r := range recs {
		rr := r.RR()
		if rr.Type != "" && rr.Type != "TXT" {
			return out, fmt.Errorf("record type %q is not supported (TXT only)", rr.Type)
		}
		name := strings.ToLower(libdns.AbsoluteName(rr.Name, zone))
		text := txtText(r)
		for _, e := range existing {
			if strings.ToLower(fqdn(e.Name)) != name || (text != "" && e.Text != text) {
				continue
			}
			if rr.TTL != 0 && e.TTL != rr.TTL {
				continue
			}
			if err := p.Store.RemoveTXT(ctx, e); err != nil {
				return out, fmt.Errorf("removing TXT %s: %w", e.Name, err)
			}
			out = append(out, libdns.TXT{Name: libdns.RelativeName(fqdn(e.Name), zone), TTL: e.TTL, Text: e.Text})
		}
	}
	return out, nil
}

func toTXT(zone string, recs []libdns.Record) ([]TXTRecord, error) {
	out := make([]TXTRecord, 0, len(recs))
	for _, r := range recs {
		rr := r.RR()
		if rr.Type != "TXT" {
			return nil, fmt.Errorf("record type %q is not supported (TXT only)", rr.Type)
		}
		if rr.Name == "" {
			return nil, fmt.Errorf("record name is empty")
		}
		out = append(out, TXTRecord{Name: libdns.AbsoluteName(rr.Name, zone), Text: txtText(r), TTL: rr.TTL})
	}
	return out, nil
}

// txtText returns a TXT record's text: libdns.TXT keeps it unquoted in Text,
// while a generic RR carries it in Data.
func txtText(r libdns.Record) string {
	if t, ok := r.(libdns.TXT); ok {
		return t.Text
	}
	if t, ok := r.(*libdns.TXT); ok {
		return t.Text
	}
	return r.RR().Data
}

func fqdn(name string) string {
	if strings.HasSuffix(name, ".") {
		return name
	}
	return name + "."
}
