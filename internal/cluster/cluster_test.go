package cluster

import (
	"net/netip"
	"strings"
	"testing"
)

// An admin URL is a base that API paths are appended to: a query or a
// fragment would swallow them (http://h:9090/?x + /v1/purge), so such a
// URL is refused instead of failing every push.
func TestNodeAdminURLIsABase(t *testing.T) {
	for _, c := range []struct {
		admin string
		ok    bool
	}{
		{"https://10.0.0.1:9443", true},
		{"https://10.0.0.1:9443/", true},
		{"https://proxy.internal/outpost/fra1", true},
		{"http://10.0.0.1:9090/?x=1", false},
		{"http://10.0.0.1:9090/#frag", false},
		{"http://10.0.0.1:9090?", false},
		{"ftp://10.0.0.1", false},
	} {
		n := Node{Name: "n", IPv4: netip.MustParseAddr("192.0.2.1"), Admin: c.admin}
		err := n.Validate()
		if (err == nil) != c.ok || (err != nil && !strings.Contains(err.Error(), "admin")) {
			t.Errorf("%q: %v, want ok=%v", c.admin, err, c.ok)
		}
	}
}
