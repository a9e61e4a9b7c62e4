package cdn

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// cdnGoroutines lists live goroutines running code of this package.
func cdnGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if (strings.Contains(g, "outpost/cdn.") || strings.Contains(g, "outpost/cdn/store.")) && !strings.Contains(g, "cdnGoroutines") && !strings.Contains(g, "testing.tRunner") {
			out = append(out, g)
		}
	}
	return out
}

// TestNoGoroutineLeak: background refreshes and the store's flusher end
// with Close.
func TestNoGoroutineLeak(t *testing.T) {
	e := newEnv(t, static("x", "Cache-Control: max-age=1, stale-while-revalidate=60"))
	e.get("/l")
	e.clock.Advance(5 * time.Second)
	e.get("/l") // starts a background refresh
	e.front.Close()
	if err := e.cache.Close(); err != nil {
		t.Fatal(err)
	}
	e.client.CloseIdleConnections()
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := cdnGoroutines()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
