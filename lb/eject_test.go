package lb

import (
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/units"
)

// TestLastUsableBackendNotEjected: passive outlier detection never ejects
// the last backend taking traffic when the others are draining or already
// ejected, below max_ejected_percent 100; at 100 it may (the operator
// asked for an empty pool over a failing one). Requests go through real
// HTTP backends that answer 500.
func TestLastUsableBackendNotEjected(t *testing.T) {
	cases := []struct {
		name    string
		percent int
		drain   []string // drained before the failures
		eject   []string // ejected (by their own failures) before
		want    string   // health of "last" after its failures
	}{
		{"others draining", 50, []string{"a", "b"}, nil, "healthy"},
		{"others ejected or draining", 75, []string{"a"}, []string{"b"}, "healthy"},
		{"one other usable", 50, []string{"a"}, nil, "ejected"},
		{"explicit 100 percent", 100, []string{"a", "b"}, nil, "ejected"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			// Only "last" fails: b, when usable, keeps answering.
			fail := func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, "boom", http.StatusInternalServerError)
			}
			var bs []*testBackend
			for _, name := range []string{"a", "b"} {
				bs = append(bs, startBackend(t, name, nil))
			}
			bs = append(bs, startBackend(t, "last", fail))
			cfg := poolConfig(PolicyRoundRobin, bs...)
			cfg.Retries.MaxTries = 1
			cfg.Outlier = OutlierConfig{ConsecutiveFailures: 2, BaseEjectionTime: units.Duration(10 * time.Second),
				MaxEjectionTime: units.Duration(time.Minute), MaxEjectedPercent: tc.percent}
			p := newTestPool(t, cfg, Options{Now: clk.Now})
			st := p.state.Load()
			for _, id := range tc.eject {
				for range 2 {
					p.recordOutcome(st, st.byID[id], true)
				}
				if got := backendStatus(p, id).Health; got != "ejected" {
					t.Fatalf("setup: %s %s, want ejected", id, got)
				}
			}
			for _, id := range tc.drain {
				if err := p.Drain(id); err != nil {
					t.Fatal(err)
				}
			}
			// Requests go to the usable backends; "last" fails each.
			for range 8 {
				req, _ := http.NewRequest(http.MethodGet, "http://pool/", nil)
				resp, err := p.RoundTrip(req)
				if err != nil {
					if tc.want == "ejected" && errors.Is(err, ErrNoBackend) {
						continue
					}
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if got := backendStatus(p, "last").Health; got != tc.want {
				t.Errorf("last %s, want %s", got, tc.want)
			}
			if tc.want == "healthy" {
				if s := backendStatus(p, "last"); s.Failures < 2 {
					t.Errorf("last saw %d failures, want it to keep taking (failing) traffic", s.Failures)
				}
			}
		})
	}
}
