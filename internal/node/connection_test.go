package node

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// A field the origin's Connection field names is the connection's: on a
// single-upstream route it is neither passed on nor stored, also when the
// same Connection field says close (which net/http's client removes whole,
// names and all).
func TestSingleUpstreamConnectionNamedNotStored(t *testing.T) {
	var hits atomic.Int32
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.Header().Set("Connection", "close, X-Secret")
		w.Header().Set("X-Secret", "hop-only")
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "asset")
	}))
	defer origin.Close()
	_, base := startNode(t, fmt.Sprintf(`node: test
data_dir: %s
edge: {listen: 127.0.0.1:0}
routes:
  - name: app
    upstream: %s
    cache: {}
`, t.TempDir(), origin.URL))
	for _, want := range []string{"MISS", "HIT", "HIT"} {
		res, err := http.Get(base + "/a.css")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if xc := res.Header.Get("X-Cache"); xc != want || string(b) != "asset" {
			t.Fatalf("X-Cache %q body %q, want %q and the asset", xc, b, want)
		}
		if v := res.Header.Get("X-Secret"); v != "" {
			t.Errorf("%s: client got X-Secret %q", want, v)
		}
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("origin hit %d times, want 1", n)
	}
}
