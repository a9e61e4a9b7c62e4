package edge

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/http1"
	"github.com/outpost-edge/outpost/internal/units"
)

// startEdge serves a Handler through NewServer on 127.0.0.1 with cfg's
// limits (after defaults).
func startEdge(t *testing.T, cfg Config) string {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	rt := NewRouter()
	rt.Handle("r", []string{"example.com"}, "/", named("r"))
	srv := NewServer(&cfg, NewSwapper(&Handler{Router: rt}), nil)
	ln, err := Listen(cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	if fastFront {
		f := http1.New(srv)
		go func() { _ = f.Serve(ln) }()
		t.Cleanup(func() { _ = f.Close() })
		return ln.Addr().String()
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// rawStatus writes req on a fresh connection and returns the status line.
func rawStatus(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "read: " + err.Error()
	}
	return strings.TrimSpace(line)
}

func TestServerRejectsHostileRequests(t *testing.T) {
	addr := startEdge(t, Config{MaxHeaderBytes: 4 << 10})
	big := strings.Repeat("a", 16<<10)
	for _, c := range []struct{ name, req, want string }{
		{"ok", "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", "HTTP/1.1 200"},
		{"oversized header", "GET / HTTP/1.1\r\nHost: example.com\r\nX-Big: " + big + "\r\n\r\n", "HTTP/1.1 431"},
		{"no host", "GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 400"},
		{"two hosts", "GET / HTTP/1.1\r\nHost: example.com\r\nHost: other.com\r\n\r\n", "HTTP/1.1 400"},
		{"bad host chars", "GET / HTTP/1.1\r\nHost: exa mple.com\r\n\r\n", "HTTP/1.1 400"},
		{"conflicting content-length", "POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", "HTTP/1.1 400"},
		{"unknown transfer-encoding", "POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", "HTTP/1.1 501"},
		{"dot segments", "GET /x/../y HTTP/1.1\r\nHost: example.com\r\n\r\n", "HTTP/1.1 400"},
		{"encoded dot segments", "GET /x/%2e%2E/y HTTP/1.1\r\nHost: example.com\r\n\r\n", "HTTP/1.1 400"},
		{"backslash", "GET /x\\..\\admin HTTP/1.1\r\nHost: example.com\r\n\r\n", "HTTP/1.1 400"},
		{"encoded backslash", "GET /admin%5Cx HTTP/1.1\r\nHost: example.com\r\n\r\n", "HTTP/1.1 400"},
		{"unknown host", "GET / HTTP/1.1\r\nHost: other.example\r\n\r\n", "HTTP/1.1 404"},
	} {
		if got := rawStatus(t, addr, c.req); !strings.HasPrefix(got, c.want) {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}

// A client that never finishes its headers is cut off after
// read_header_timeout (slowloris).
func TestServerReadHeaderTimeout(t *testing.T) {
	addr := startEdge(t, Config{ReadHeaderTimeout: units.Duration(200 * time.Millisecond)})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: example.com\r\n")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	_, err = io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("connection still open after 5s")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("closed after %v", d)
	}
}

func TestNewServerAppliesDefaults(t *testing.T) {
	var cfg Config
	cfg.SetDefaults()
	srv := NewServer(&cfg, http.NotFoundHandler(), nil)
	if srv.ReadHeaderTimeout != 10*time.Second || srv.IdleTimeout != 120*time.Second || srv.MaxHeaderBytes != 64<<10 {
		t.Errorf("limits %v %v %v", srv.ReadHeaderTimeout, srv.IdleTimeout, srv.MaxHeaderBytes)
	}
}
