package node

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// edge.sendfile: false serves file bodies (cache hits larger than the
// memory tier) whole and unchanged, with either HTTP/1.1 server; that no
// sendfile is used is edge's TestCopyBodies.
func TestSendfileOff(t *testing.T) {
	body := make([]byte, 3<<20+17)
	for i := range body {
		body[i] = byte(i * 7 / 5)
	}
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Write(body)
	}))
	defer origin.Close()
	for _, fast := range []bool{true, false} {
		t.Run(fmt.Sprintf("fast_http1=%v", fast), func(t *testing.T) {
			_, base := startNode(t, fmt.Sprintf(`node: test
data_dir: %s
edge: {listen: 127.0.0.1:0, sendfile: false, fast_http1: %v}
routes:
  - name: app
    upstream: %s
    cache: {}
`, t.TempDir(), fast, origin.URL))
			for _, want := range []string{"MISS", "HIT", "HIT"} {
				res, err := http.Get(base + "/big.bin")
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(res.Body)
				res.Body.Close()
				if err != nil || !bytes.Equal(got, body) {
					t.Fatalf("%s: %d bytes (%v), want the origin's %d", want, len(got), err, len(body))
				}
				if xc := res.Header.Get("X-Cache"); xc != want {
					t.Fatalf("X-Cache %q, want %q", xc, want)
				}
			}
		})
	}
}
