package demo

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/telemetry"
)

// TestDemoPortInUse holds one contract address at a time, including those
// the nodes open themselves (DNS over UDP and TCP, HTTPS): Start fails with
// a message naming that address, and frees everything it had opened, so
// the demo then starts on the same ports.
func TestDemoPortInUse(t *testing.T) {
	if testing.Short() {
		t.Skip("binds the demo's fixed ports; skipped with -short")
	}
	quiet := telemetry.NewLogger(io.Discard, "error", "text")
	for _, tc := range []struct{ network, addr string }{
		{"tcp", AdminAddr},
		{"udp", DNSAddr},
		{"tcp", "127.0.0.12:8053"},
		{"tcp", "127.0.0.13:8443"},
	} {
		t.Run(tc.network+" "+tc.addr, func(t *testing.T) {
			release := hold(t, tc.network, tc.addr)
			defer release()
			d, err := Start(Options{DataDir: t.TempDir(), Log: quiet})
			if err == nil {
				shutdown(t, d)
				t.Fatal("Start succeeded with the address taken")
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.addr) || !strings.Contains(msg, "already in use") || strings.Count(msg, tc.addr) != 1 {
				t.Errorf("error %q: want one clear mention of %s in use", msg, tc.addr)
			}
		})
	}
	d, err := Start(Options{DataDir: t.TempDir(), Log: quiet})
	if err != nil {
		t.Fatalf("after the failed starts: %v", err)
	}
	shutdown(t, d)
}

func hold(t *testing.T, network, addr string) (release func()) {
	t.Helper()
	if network == "udp" {
		pc, err := net.ListenPacket(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		return func() { pc.Close() }
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	return func() { ln.Close() }
}

func shutdown(t *testing.T, d *Demo) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}
