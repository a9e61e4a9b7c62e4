package lb

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"
)

// BenchmarkPick measures one backend selection per policy at 3 and 100
// backends: ns and allocations per pick.
func BenchmarkPick(b *testing.B) {
	for _, name := range policyNames() {
		for _, n := range []int{3, 100} {
			b.Run(fmt.Sprintf("%s/%d", name, n), func(b *testing.B) {
				weights := make([]int, n)
				for i := range weights {
					weights[i] = 1 + i%3
				}
				bs := fakeBackends(weights...)
				p := newPolicy(b, name, bs, "")
				reqs := make([]*http.Request, 256)
				ips := make([]netip.Addr, len(reqs))
				for i := range reqs {
					reqs[i] = &http.Request{URL: &url.URL{Path: fmt.Sprintf("/static/%d.css", i)}, Header: http.Header{}}
					ips[i] = netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
				}
				s := NewSelection(nil, bs, testNow, rand.Uint64)
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					s.Req, s.ClientIP = reqs[i&255], ips[i&255]
					if p.Pick(s) == nil {
						b.Fatal("nil pick")
					}
				}
			})
		}
	}
}

// BenchmarkRoundTrip compares a request through a Pool with the same
// request through a bare http.Transport to one loopback backend: the
// difference is the pool's own cost per request.
func BenchmarkRoundTrip(b *testing.B) {
	body := strings.Repeat("x", 1024)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, body)
	}))
	defer srv.Close()
	run := func(b *testing.B, rt http.RoundTripper) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, _ := http.NewRequest(http.MethodGet, srv.URL+"/x", nil)
				resp, err := rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	b.Run("transport", func(b *testing.B) {
		t := &http.Transport{MaxIdleConnsPerHost: 128, DisableCompression: true}
		defer t.CloseIdleConnections()
		run(b, t)
	})
	b.Run("h1", func(b *testing.B) {
		d := &net.Dialer{}
		t := newH1Transport(&http.Transport{MaxIdleConnsPerHost: 128, DisableCompression: true}, d, 128, time.Minute, 0)
		defer t.retire()
		run(b, t)
	})
	b.Run("pool", func(b *testing.B) {
		p, err := New("bench", PoolConfig{Backends: []BackendConfig{{URL: srv.URL}}}, Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		run(b, p)
	})
}
