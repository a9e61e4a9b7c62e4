package tlsedge

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestStopLeavesNoGoroutines starts a manager with every listener (HTTPS,
// port 80, HTTP/3), serves a request, stops it all and checks that no
// goroutine of ours or certmagic's is left behind.
func TestStopLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Run("serve", func(t *testing.T) {
		e, roots := newInternal(t, nil)
		fetch(t, clientFor(roots, e.tlsAddr, true), "https://demo.test/")
		fetch(t, h3ClientFor(t, roots, e.tlsAddr), "https://demo.test/")
	}) // cleanups (listeners, h3, manager) run here
	// certmagic's file storage keeps each lock file fresh from a goroutine
	// that notices the unlock on its next 5-second tick: allow for it.
	deadline := time.Now().Add(8 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			var ours []string
			for _, g := range strings.Split(string(buf[:n]), "\n\n") {
				if strings.Contains(g, "certmagic") || strings.Contains(g, "tlsedge") || strings.Contains(g, "quic-go") {
					ours = append(ours, g)
				}
			}
			t.Fatalf("%d goroutines before, %d after Stop:\n%s", before, runtime.NumGoroutine(), strings.Join(ours, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
