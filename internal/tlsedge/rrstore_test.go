package tlsedge

import (
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestTXTEscapingRoundTrip(t *testing.T) {
	for _, text := range []string{
		"Xy-_z0123456789abcdefABCDEF",
		`q"b\`,
		"ctl\x01\x7f\xffend",
		`\065 is not an escape in the input`,
		strings.Repeat("x", 300),
	} {
		rec := TXTRecord{Name: "_acme-challenge.example.test.", Text: text, TTL: time.Minute}
		if got := rrText(txtRR(rec)); got != text {
			t.Errorf("txtRR round trip: got %q, want %q", got, text)
		}
		rr, err := dns.NewRR(presentTXT(rec))
		if err != nil {
			t.Fatalf("presentTXT(%q) does not parse: %v", text, err)
		}
		if got := rrText(rr.(*dns.TXT)); got != text {
			t.Errorf("presentTXT round trip: got %q, want %q", got, text)
		}
		if !dns.IsDuplicate(rr, txtRR(rec)) {
			t.Errorf("presentTXT and txtRR disagree for %q: %v vs %v", text, rr, txtRR(rec))
		}
	}
}

func TestRecordServerTXT(t *testing.T) {
	srv, _ := startOutpostDNS(t)
	store := RecordServerTXT(srv)
	ctx := t.Context()
	a := TXTRecord{Name: "_acme-challenge.example.test", Text: "one", TTL: time.Minute}
	b := TXTRecord{Name: "_acme-challenge.example.test", Text: "two", TTL: time.Minute}
	for _, r := range []TXTRecord{a, b, a} { // adding twice is a no-op
		if err := store.AddTXT(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if recs, _ := store.ListTXT(ctx, "example.test"); len(recs) != 2 {
		t.Fatalf("ListTXT = %+v, want 2", recs)
	}
	if err := store.AddTXT(ctx, TXTRecord{Name: "_acme-challenge.other.test", Text: "x"}); err == nil {
		t.Fatal("adding outside every served zone must fail")
	}
	for _, r := range []TXTRecord{
		a, a, // removing a missing record is not an error
		{Name: "_acme-challenge.other.test", Text: "x"}, // nor outside served zones
		{Name: "_acme-challenge.example.test"},          // empty text: all at the name
	} {
		if err := store.RemoveTXT(ctx, r); err != nil {
			t.Fatalf("RemoveTXT(%+v): %v", r, err)
		}
	}
	if recs, _ := store.ListTXT(ctx, "example.test"); len(recs) != 0 {
		t.Fatalf("left %+v", recs)
	}
}
