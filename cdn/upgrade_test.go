package cdn

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestUpgradeTunnelsThroughCache: a WebSocket-style upgrade on a cached
// route is passed through as a tunnel (101 with its Connection and Upgrade
// fields, then bytes both ways), never treated as a fill.
func TestUpgradeTunnelsThroughCache(t *testing.T) {
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			w.Header().Set("Cache-Control", "max-age=60")
			fmt.Fprint(w, "plain")
			return
		}
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo:" + line)
		brw.Flush()
	})
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.front.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(conn, "GET /ws HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols || res.Header.Get("Upgrade") != "echo" ||
		!strings.EqualFold(res.Header.Get("Connection"), "upgrade") {
		t.Fatalf("upgrade answered %d %v", res.StatusCode, res.Header)
	}
	fmt.Fprint(conn, "hello\n")
	if line, _ := br.ReadString('\n'); line != "echo:hello\n" {
		t.Fatalf("tunnel got %q", line)
	}
	if e.cache.Objects() != 0 {
		t.Fatal("an upgrade was stored")
	}
}
