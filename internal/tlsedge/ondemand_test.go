package tlsedge

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/units"
)

func TestOnDemandPolicy(t *testing.T) {
	var (
		mu    sync.Mutex
		asked []string // mu guards asked
	)
	ask := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := r.URL.Query().Get("domain")
		mu.Lock()
		asked = append(asked, d)
		mu.Unlock()
		switch d {
		case "yes.example.test":
			w.WriteHeader(http.StatusOK)
		case "slow.example.test":
			time.Sleep(300 * time.Millisecond)
		default:
			w.WriteHeader(http.StatusForbidden)
		}
	}))
	defer ask.Close()

	withAsk := newOnDemandPolicy(OnDemandConfig{Enabled: true, Allow: []string{"a.example.test", "*.shop.test"},
		Ask: ask.URL + "/check?token=x", AskTimeout: units.Duration(100 * time.Millisecond)}, ask.Client())
	allowOnly := newOnDemandPolicy(OnDemandConfig{Enabled: true, Allow: []string{"a.example.test"}}, http.DefaultClient)

	tests := []struct {
		name    string
		p       *onDemandPolicy
		host    string
		allowed bool
		asked   bool
	}{
		{"exact allow", withAsk, "a.example.test", true, false},
		{"trailing dot and case", withAsk, "A.Example.Test.", true, false},
		{"pattern covers one label", withAsk, "x.shop.test", true, false},
		{"pattern not two labels", withAsk, "x.y.shop.test", false, true},
		{"pattern not the apex", withAsk, "shop.test", false, true},
		{"ask says yes", withAsk, "yes.example.test", true, true},
		{"ask says no", withAsk, "no.example.test", false, true},
		{"ask times out", withAsk, "slow.example.test", false, true},
		{"invalid name never asked", withAsk, "bad_name!.test", false, false},
		{"wildcard SNI never asked", withAsk, "*.example.test", false, false},
		{"no ask: refused", allowOnly, "b.example.test", false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			asked = nil
			mu.Unlock()
			err := tc.p.decide(context.Background(), tc.host)
			mu.Lock()
			n := len(asked)
			mu.Unlock()
			if (err == nil) != tc.allowed {
				t.Fatalf("decide(%q) = %v, want allowed=%v", tc.host, err, tc.allowed)
			}
			if (n > 0) != tc.asked {
				t.Fatalf("asked %d times, want asked=%v", n, tc.asked)
			}
			if err != nil && tc.host != "slow.example.test" && !errors.Is(err, errNotAllowed) {
				t.Fatalf("refusal %v does not wrap errNotAllowed", err)
			}
		})
	}
}
