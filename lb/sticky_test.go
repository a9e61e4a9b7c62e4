package lb

import (
	"net/http"
	"strings"
	"testing"
)

// FuzzStickyLookup: a hostile cookie never panics and never pins unless it
// carries the right signature.
func FuzzStickyLookup(f *testing.F) {
	s := newSticky("api", StickyConfig{Cookie: "pin"}, []byte("0123456789abcdef0123"))
	bs := fakeBackends(1, 1)
	byID := map[string]*Backend{"b0": bs[0], "b1": bs[1]}
	f.Add(s.value("b0"))
	f.Add("b1.AAAAAAAAAAAAAAAAAAAAAA")
	f.Add("b0." + strings.Repeat("=", 30))
	f.Add(".")
	f.Add("\"b0.x\"")
	f.Fuzz(func(t *testing.T, v string) {
		req := &http.Request{Header: http.Header{"Cookie": {"pin=" + v}}}
		b := s.lookup(req, byID)
		if b != nil && s.value(b.id) != strings.Trim(v, "\"") {
			t.Fatalf("cookie %q pinned %s without its signature", v, b.id)
		}
	})
}

func TestStickyOtherPool(t *testing.T) {
	key := []byte("0123456789abcdef0123")
	a := newSticky("api", StickyConfig{Cookie: "pin"}, key)
	b := newSticky("web", StickyConfig{Cookie: "pin"}, key)
	bs := fakeBackends(1)
	req := &http.Request{Header: http.Header{"Cookie": {"pin=" + a.value("b0")}}}
	if b.lookup(req, map[string]*Backend{"b0": bs[0]}) != nil {
		t.Fatal("a cookie of pool api pins in pool web")
	}
	if a.lookup(req, map[string]*Backend{"b0": bs[0]}) != bs[0] {
		t.Fatal("valid cookie not accepted")
	}
}
