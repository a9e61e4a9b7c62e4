package node

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/config"
)

// TestReloadKeepsSlowRequestsInFlight: requests that are still waiting on
// their backend when a reload removes that backend's pool (or changes a
// route's upstream) finish on the old chain with the old backend's answer;
// none is cut, and new requests go to the new backend.
func TestReloadKeepsSlowRequestsInFlight(t *testing.T) {
	started := make(chan struct{}, 64)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		time.Sleep(400 * time.Millisecond)
		io.WriteString(w, "old")
	}))
	defer slow.Close()
	fast := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "new") }))
	defer fast.Close()
	poolYAML := func(pool, url string) string {
		return fmt.Sprintf("node: test\ndata_dir: /tmp\nedge: {listen: 127.0.0.1:0}\npools:\n  %s:\n    backends:\n      - {id: b, url: %q}\nroutes:\n  - {name: app, pool: %s}\n", pool, url, pool)
	}
	for _, c := range []struct{ name, before, after string }{
		{"pool removed", poolYAML("old", slow.URL), poolYAML("new", fast.URL)},
		{"upstream changed", proxyConfig(slow.URL, ""), proxyConfig(fast.URL, "")},
	} {
		t.Run(c.name, func(t *testing.T) {
			n, base := startNode(t, c.before)
			const inflight = 8
			var wg sync.WaitGroup
			errs := make(chan string, inflight)
			for range inflight {
				wg.Add(1)
				go func() {
					defer wg.Done()
					resp, err := http.Get(base + "/")
					if err != nil {
						errs <- err.Error()
						return
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 || string(b) != "old" {
						errs <- fmt.Sprintf("%d %q", resp.StatusCode, b)
					}
				}()
			}
			for range inflight {
				select {
				case <-started:
				case <-time.After(5 * time.Second):
					t.Fatal("requests never reached the slow backend")
				}
			}
			cfg, err := config.Parse("t.yaml", []byte(c.after), "", nil)
			if err != nil {
				t.Fatal(config.Format(err))
			}
			if _, err := n.Apply(cfg); err != nil {
				t.Fatal(err)
			}
			if got := getBody(t, base+"/"); got != "new" {
				t.Errorf("after the reload served %q, want new", got)
			}
			wg.Wait()
			close(errs)
			for e := range errs {
				t.Errorf("in-flight request: %s", e)
			}
		})
	}
}
