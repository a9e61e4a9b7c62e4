package tlsedge

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// RecordServer is the runtime records API of Outpost's DNS server
// (*dns.Server from package dns satisfies it). Declaring it here keeps
// tlsedge free of an import of the dns package.
type RecordServer interface {
	// AddRecord adds rr to the zone holding its name; adding a present
	// record is a no-op.
	AddRecord(rr dns.RR) error
	// RemoveRecord removes a runtime record (name, type and data match).
	RemoveRecord(rr dns.RR) error
	// Records returns every record of zone, nil when it is not served.
	Records(zone string) []dns.RR
}

// RecordServerTXT adapts a RecordServer to TXTStore, so dns-01 challenge
// records appear in this node's DNS answers the moment they are added.
func RecordServerTXT(s RecordServer) TXTStore { return &rrTXT{s: s} }

type rrTXT struct{ s RecordServer }

func (r *rrTXT) AddTXT(_ context.Context, rec TXTRecord) error {
	return r.s.AddRecord(txtRR(rec))
}

func (r *rrTXT) RemoveTXT(_ context.Context, rec TXTRecord) error {
	name := strings.ToLower(fqdn(rec.Name))
	zone := r.zoneOf(name)
	if zone == "" {
		return nil // no served zone: nothing to remove
	}
	var errs []error
	for _, rr := range r.s.Records(zone) {
		t, ok := rr.(*dns.TXT)
		if !ok || strings.ToLower(t.Hdr.Name) != name || (rec.Text != "" && rrText(t) != rec.Text) {
			continue
		}
		if err := r.s.RemoveRecord(t); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

func (r *rrTXT) ListTXT(_ context.Context, zone string) ([]TXTRecord, error) {
	zone = strings.ToLower(fqdn(zone))
	var out []TXTRecord
	for _, rr := range r.s.Records(zone) {
		if t, ok := rr.(*dns.TXT); ok {
			out = append(out, TXTRecord{Name: t.Hdr.Name, Text: rrText(t), TTL: secondsTTL(t.Hdr.Ttl)})
		}
	}
	return out, nil
}

// zoneOf finds the served zone holding name by asking for each suffix in
// turn, longest first; "" when none is served.
func (r *rrTXT) zoneOf(name string) string {
	for off, end := 0, false; !end; off, end = dns.NextLabel(name, off) {
		if r.s.Records(name[off:]) != nil {
			return name[off:]
		}
	}
	return ""
}

// txtRR builds the TXT RR for rec, split into 255-byte strings. miekg/dns
// keeps TXT strings in escaped presentation form, hence escapeTXT.
func txtRR(rec TXTRecord) *dns.TXT {
	parts := splitTXT(rec.Text)
	for i, p := range parts {
		parts[i] = escapeTXT(p)
	}
	return &dns.TXT{
		Hdr: dns.RR_Header{Name: strings.ToLower(fqdn(rec.Name)), Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: uint32(rec.TTL.Seconds())},
		Txt: parts,
	}
}

func secondsTTL(ttl uint32) time.Duration { return time.Duration(ttl) * time.Second }

// splitTXT cuts text into the 255-byte character-strings a TXT RR holds.
func splitTXT(text string) []string {
	var parts []string
	for len(text) > 255 {
		parts = append(parts, text[:255])
		text = text[255:]
	}
	return append(parts, text)
}

// escapeTXT renders one character-string in presentation form: quotes and
// backslashes escaped, bytes outside printable ASCII as \DDD.
func escapeTXT(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c > 0x7e:
			fmt.Fprintf(&b, "\\%03d", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// unescapeTXT reverses escapeTXT (and miekg/dns's presentation escapes).
func unescapeTXT(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			n := int(s[i+1]-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0')
			if n <= 255 {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i+1])
		i++
	}
	return b.String()
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// rrText is the unescaped text of a miekg TXT record.
func rrText(t *dns.TXT) string {
	var b strings.Builder
	for _, p := range t.Txt {
		b.WriteString(unescapeTXT(p))
	}
	return b.String()
}
