package lb

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/units"
)

// FuzzStickyLookup: a hostile cookie never panics and never pins unless it
// carries the right signature.
func FuzzStickyLookup(f *testing.F) {
	s := newSticky("api", StickyConfig{Cookie: "pin"}, []byte("0123456789abcdef0123"))
	life := newSticky("api", StickyConfig{Cookie: "pin", Lifetime: units.Duration(time.Hour)}, []byte("0123456789abcdef0123"))
	bs := fakeBackends(1, 1)
	byID := map[string]*Backend{"b0": bs[0], "b1": bs[1]}
	f.Add(s.value("b0", 0))
	f.Add(life.value("b0", 1000))
	f.Add("b0.1000.AAAAAAAAAAAAAAAAAAAAAA")
	f.Add("b1.AAAAAAAAAAAAAAAAAAAAAA")
	f.Add("b0." + strings.Repeat("=", 30))
	f.Add(".")
	f.Add("\"b0.x\"")
	f.Fuzz(func(t *testing.T, v string) {
		req := &http.Request{Header: http.Header{"Cookie": {"pin=" + v}}}
		v = strings.Trim(v, "\"")
		// Only a cookie signed for its backend pins, in either form:
		// "ID.SIG", or "ID.TS.SIG" with the time signed too.
		signed := func(id string) bool {
			if s.value(id, 0) == v {
				return true
			}
			head := v[:strings.LastIndexByte(v, '.')]
			j := strings.LastIndexByte(head, '.')
			if j <= 0 {
				return false
			}
			ts, err := strconv.ParseInt(head[j+1:], 10, 64)
			return err == nil && life.value(id, ts) == v
		}
		if b, _ := s.lookup(req, byID, 0); b != nil && !signed(b.id) {
			t.Fatalf("cookie %q pinned %s without its signature", v, b.id)
		}
		if b, refresh := life.lookup(req, byID, 1<<40); b != nil && (!signed(b.id) || !refresh) {
			t.Fatalf("cookie %q pinned %s without its signature, or not refreshed long after it was issued", v, b.id)
		}
	})
}

func TestStickyOtherPool(t *testing.T) {
	key := []byte("0123456789abcdef0123")
	a := newSticky("api", StickyConfig{Cookie: "pin"}, key)
	b := newSticky("web", StickyConfig{Cookie: "pin"}, key)
	bs := fakeBackends(1)
	req := &http.Request{Header: http.Header{"Cookie": {"pin=" + a.value("b0", 0)}}}
	if got, _ := b.lookup(req, map[string]*Backend{"b0": bs[0]}, 0); got != nil {
		t.Fatal("a cookie of pool api pins in pool web")
	}
	if got, _ := a.lookup(req, map[string]*Backend{"b0": bs[0]}, 0); got != bs[0] {
		t.Fatal("valid cookie not accepted")
	}
}

// TestStickyRefresh: a cookie with a lifetime is re-issued, for the same
// backend, once past half its lifetime, so an active client keeps its pin,
// and pins no more once the lifetime ran out;
// a signed cookie from before the lifetime was configured ("ID.SIG") still
// pins and is replaced at once. Real backends, the pool's clock faked.
func TestStickyRefresh(t *testing.T) {
	clk := newFakeClock()
	bs := []*testBackend{startBackend(t, "b0", nil), startBackend(t, "b1", nil), startBackend(t, "b2", nil)}
	cfg := poolConfig(PolicyRoundRobin, bs...)
	const secret = "0123456789abcdef-secret"
	cfg.Sticky = StickyConfig{Enabled: true, Cookie: "pin", Lifetime: units.Duration(time.Hour), Secret: secret}
	p := newTestPool(t, cfg, Options{Now: clk.Now})

	do := func(cookie string) (*http.Cookie, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://pool/s", nil)
		if cookie != "" {
			req.Header.Set("Cookie", "pin="+cookie)
		}
		resp, _, err := send(t, p, req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("request: %v %v", resp, err)
		}
		return isSetCookie(resp, "pin"), resp.Header.Get("X-Backend")
	}

	c, first := do("")
	if c == nil || c.MaxAge != 3600 {
		t.Fatalf("first cookie %+v", c)
	}
	clk.Advance(20 * time.Minute)
	if again, got := do(c.Value); again != nil || got != first {
		t.Fatalf("at 20 of 60 minutes: cookie %v, backend %s (pinned %s)", again, got, first)
	}
	clk.Advance(11 * time.Minute)
	fresh, got := do(c.Value)
	if fresh == nil || got != first || fresh.MaxAge != 3600 || fresh.Value == c.Value {
		t.Fatalf("at 31 of 60 minutes: cookie %+v, backend %s (pinned %s)", fresh, got, first)
	}
	if again, got := do(fresh.Value); again != nil || got != first {
		t.Fatalf("the refreshed cookie: cookie %v, backend %s", again, got)
	}

	// The first cookie, replayed after its lifetime (31+30 minutes): it
	// pins no more, and the response re-pins with a new cookie. Round
	// robin moves on, so the backend differs from the pinned one at least
	// once in three tries.
	clk.Advance(30 * time.Minute)
	moved := false
	for range 3 {
		nc, got := do(c.Value)
		if nc == nil || nc.Value == c.Value || !strings.HasPrefix(nc.Value, got+".") {
			t.Fatalf("expired cookie: new cookie %+v for backend %s", nc, got)
		}
		moved = moved || got != first
	}
	if !moved {
		t.Fatalf("an expired cookie still pinned %s", first)
	}
	// The refreshed one, 30 of its 60 minutes old: still pins, and is
	// due for renewal.
	if again, got := do(fresh.Value); again == nil || got != first {
		t.Fatalf("the refreshed cookie at 30 of 60 minutes: cookie %v, backend %s (pinned %s)", again, got, first)
	}

	// A cookie from when the pool had no lifetime: same secret, no time.
	old := newSticky("test", StickyConfig{Cookie: "pin"}, []byte(secret)).value("b2", 0)
	for range 3 {
		c, got := do(old)
		if got != "b2" || c == nil || !strings.HasPrefix(c.Value, "b2.") {
			t.Fatalf("old-format cookie: backend %s, cookie %+v", got, c)
		}
	}
}
