package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
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
	quiet := fixedPortsLogger(t)
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

// skipFixedPorts skips under -short: the demo's ports are fixed, so tests
// that start it cannot run beside another demo (or another copy of
// themselves). The default run, ./scripts/test.sh, runs them.
func skipFixedPorts(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("binds the demo's fixed ports; skipped with -short")
	}
}

// fixedPortsLogger is skipFixedPorts and a silent logger.
func fixedPortsLogger(t *testing.T) *slog.Logger {
	t.Helper()
	skipFixedPorts(t)
	return telemetry.NewLogger(io.Discard, "error", "text")
}

// TestDemoKeepsDataAcrossRestart stops the demo and starts it again on the
// same data directory: accounts, tweets, the JWT signing key and refresh
// sessions all survive, and the seed adds nothing the second time.
func TestDemoKeepsDataAcrossRestart(t *testing.T) {
	quiet := fixedPortsLogger(t)
	dir := t.TempDir()
	client := &http.Client{Timeout: 15 * time.Second}
	eu := "http://" + Edges[0].EdgeAddr()
	aliceTweets := func() int {
		// Straight to an origin: the edge may hold a cached copy.
		r := get(t, client, "http://"+Origin1+"/api/users/alice/tweets", nil)
		var list struct{ Tweets []json.RawMessage }
		if err := json.Unmarshal([]byte(r.body), &list); err != nil || r.status != 200 {
			t.Fatalf("alice's tweets: %d %s", r.status, r.body)
		}
		return len(list.Tweets)
	}

	d, err := Start(Options{DataDir: dir, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if r := post(t, client, eu+"/api/users/signup", "", `{"username":"erin","password":"erin-password"}`); r.status != 201 {
		shutdown(t, d)
		t.Fatalf("signup: %d %s", r.status, r.body)
	}
	access, refresh := login(t, client, eu, "erin", "erin-password")
	if r := post(t, client, eu+"/api/tweets", access, `{"text":"written before the restart"}`); r.status != 201 {
		t.Errorf("tweet: %d %s", r.status, r.body)
	}
	seeded := aliceTweets()
	shutdown(t, d)

	d, err = Start(Options{DataDir: dir, Log: quiet})
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	defer shutdown(t, d)
	if d.Seed.Created {
		t.Error("the second start seeded again")
	}
	if n := aliceTweets(); n != seeded {
		t.Errorf("alice has %d tweets after the restart, %d before", n, seeded)
	}
	for _, c := range []struct {
		name, method, path, tok, body string
		status                        int
		contains                      string
	}{
		{"old access token, timeline", "GET", "/api/timeline", access, "", 200, "written before the restart"},
		{"old refresh token", "POST", "/api/users/refresh", "", fmt.Sprintf(`{"refresh_token":%q}`, refresh), 200, "access_token"},
		{"password login", "POST", "/api/users/login", "", `{"username":"erin","password":"erin-password"}`, 200, "access_token"},
	} {
		var hdr map[string]string
		if c.tok != "" {
			hdr = map[string]string{"Authorization": "Bearer " + c.tok}
		}
		if r := do(t, client, c.method, eu+c.path, hdr, c.body); r.status != c.status || !strings.Contains(r.body, c.contains) {
			t.Errorf("%s after the restart: %d %s", c.name, r.status, r.body)
		}
	}
}
