package tlsedge

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libdns/libdns"
)

func TestLibDNSAdapter(t *testing.T) {
	ctx := context.Background()
	store := &memTXT{}
	p := &LibDNS{Store: store}
	zone := "example.test." // certmagic passes zones with a trailing dot

	got, err := p.AppendRecords(ctx, zone, []libdns.Record{
		libdns.TXT{Name: "_acme-challenge", Text: "token-1", TTL: time.Minute},
		libdns.RR{Name: "_acme-challenge.www", Type: "TXT", Data: "token-2"},
	})
	if err != nil || len(got) != 2 {
		t.Fatalf("AppendRecords = %v, %v", got, err)
	}
	if _, ok := got[1].(libdns.TXT); !ok {
		t.Fatalf("AppendRecords returned %T, want libdns.TXT", got[1])
	}
	recs, _ := store.ListTXT(ctx, zone)
	names := []string{}
	for _, r := range recs {
		names = append(names, r.Name+"="+r.Text)
	}
	slices.Sort(names)
	if want := []string{"_acme-challenge.example.test.=token-1", "_acme-challenge.www.example.test.=token-2"}; !slices.Equal(names, want) {
		t.Fatalf("store holds %v, want %v", names, want)
	}

	all, err := p.GetRecords(ctx, "example.test") // zone without the dot works too
	if err != nil || len(all) != 2 || all[0].RR().Name != "_acme-challenge" {
		t.Fatalf("GetRecords = %+v, %v", all, err)
	}

	// SetRecords replaces the RRset at the name, leaving other names alone.
	if _, err := p.SetRecords(ctx, zone, []libdns.Record{libdns.TXT{Name: "_acme-challenge", Text: "token-3"}}); err != nil {
		t.Fatal(err)
	}
	recs, _ = store.ListTXT(ctx, zone)
	if len(recs) != 2 || !slices.ContainsFunc(recs, func(r TXTRecord) bool { return r.Text == "token-3" }) ||
		slices.ContainsFunc(recs, func(r TXTRecord) bool { return r.Text == "token-1" }) {
		t.Fatalf("after SetRecords: %+v", recs)
	}

	tests := []struct {
		name    string
		del     libdns.Record
		deleted int
		left    int
		wantErr string
	}{
		{"wrong value leaves the record", libdns.TXT{Name: "_acme-challenge", Text: "nope"}, 0, 2, ""},
		{"non-TXT type is refused", libdns.RR{Name: "_acme-challenge", Type: "A", Data: "127.0.0.1"}, 0, 2, "TXT only"},
		{"exact match deletes", libdns.TXT{Name: "_acme-challenge", Text: "token-3"}, 1, 1, ""},
		{"empty value deletes every TXT at the name", libdns.RR{Name: "_acme-challenge.www"}, 1, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := p.DeleteRecords(ctx, zone, []libdns.Record{tc.del})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if len(out) != tc.deleted {
				t.Fatalf("deleted %d, want %d", len(out), tc.deleted)
			}
			if recs, _ := store.ListTXT(ctx, zone); len(recs) != tc.left {
				t.Fatalf("%d left, want %d", len(recs), tc.left)
			}
		})
	}

	if _, err := p.AppendRecords(ctx, zone, []libdns.Record{libdns.RR{Name: "x", Type: "CNAME", Data: "y."}}); err == nil {
		t.Fatal("AppendRecords accepted a CNAME")
	}
}

func TestPresentTXT(t *testing.T) {
	tests := []struct {
		rec  TXTRecord
		want string
	}{
		{TXTRecord{Name: "_acme-challenge.example.test", Text: "abc-_DEF", TTL: time.Minute}, `_acme-challenge.example.test. 60 IN TXT "abc-_DEF"`},
		{TXTRecord{Name: "a.test.", Text: `q"b\`, TTL: 0}, `a.test. 0 IN TXT "q\"b\\"`},
		{TXTRecord{Name: "a.test.", Text: strings.Repeat("x", 300)}, `a.test. 0 IN TXT "` + strings.Repeat("x", 255) + `" "` + strings.Repeat("x", 45) + `"`},
	}
	for _, tc := range tests {
		if got := presentTXT(tc.rec); got != tc.want {
			t.Errorf("presentTXT(%+v) = %s, want %s", tc.rec, got, tc.want)
		}
	}
}
