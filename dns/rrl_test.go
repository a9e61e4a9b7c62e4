package dns

import (
	"net/netip"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/outpost-edge/outpost/internal/testclock"
)

func TestRRLPolicy(t *testing.T) {
	clk := testclock.New(time.Unix(1e9, 0))
	r := newRRL(RRLConfig{ResponsesPerSecond: 5, Burst: 5, Slip: 2, IPv4Prefix: 24, IPv6Prefix: 56, Exempt: []string{"192.0.2.0/24"}}, clk.Now)
	a := netip.MustParseAddr("198.51.100.7")
	sameNet := netip.MustParseAddr("198.51.100.200")
	other := netip.MustParseAddr("203.0.113.1")
	var got []rrlAction
	for i := 0; i < 5; i++ {
		got = append(got, r.check(a))
	}
	for i := 0; i < 4; i++ {
		got = append(got, r.check(sameNet)) // same /24 shares the bucket
	}
	want := []rrlAction{rrlPass, rrlPass, rrlPass, rrlPass, rrlPass, rrlDrop, rrlSlip, rrlDrop, rrlSlip}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("actions %v, want %v", got, want)
		}
	}
	if r.check(other) != rrlPass {
		t.Fatal("another /24 was limited")
	}
	if r.check(netip.MustParseAddr("192.0.2.9")) != rrlPass {
		t.Fatal("exempt network limited")
	}
	clk.Advance(400 * time.Millisecond) // 2 tokens back
	refill := []rrlAction{r.check(a), r.check(a), r.check(a)}
	if refill[0] != rrlPass || refill[1] != rrlPass || refill[2] == rrlPass {
		t.Fatalf("after 400ms: %v, want two passes then a limit (5 per second)", refill)
	}
	v6a, v6b := netip.MustParseAddr("2001:db8:0:ff::1"), netip.MustParseAddr("2001:db8:0:1::1")
	for i := 0; i < 5; i++ {
		r.check(v6a)
	}
	if r.check(v6b) == rrlPass {
		t.Fatal("IPv6 addresses in one /56 do not share a bucket")
	}
}

// TestRRLServer: UDP answers beyond the rate are dropped or slipped as
// empty TC answers; TCP is never limited.
func TestRRLServer(t *testing.T) {
	clk := testclock.New(time.Unix(1e9, 0))
	cfg := testConfig(ZoneConfig{File: testdata("example.com.zone")})
	cfg.RRL = RRLConfig{ResponsesPerSecond: 3, Burst: 3, Slip: 2}
	cfg.SetDefaults()
	m, _ := NewMetrics(nil)
	_, addr := startServer(t, cfg, nil, Options{Now: clk.Now, Metrics: m})
	b, _ := newQuery("www.example.com.", mdns.TypeA).Pack()
	var answered, slipped, dropped int
	for i := 0; i < 9; i++ {
		resp := rawUDP(t, addr, b, 300*time.Millisecond)
		if resp == nil {
			dropped++
			continue
		}
		var r mdns.Msg
		if err := r.Unpack(resp); err != nil {
			t.Fatal(err)
		}
		if r.Truncated && len(r.Answer) == 0 {
			slipped++
		} else {
			answered++
		}
	}
	if answered != 3 || slipped != 3 || dropped != 3 {
		t.Fatalf("answered %d slipped %d dropped %d, want 3/3/3", answered, slipped, dropped)
	}
	if r := exchange(t, addr, "tcp", newQuery("www.example.com.", mdns.TypeA)); len(r.Answer) != 1 {
		t.Fatal("TCP was rate limited")
	}
	if testutil.ToFloat64(m.rrlDrop) != 3 || testutil.ToFloat64(m.rrlSlip) != 3 {
		t.Fatal("RRL metrics")
	}
	clk.Advance(time.Second)
	if r := exchange(t, addr, "udp", newQuery("www.example.com.", mdns.TypeA)); len(r.Answer) != 1 {
		t.Fatal("no answer after the bucket refilled")
	}
}
